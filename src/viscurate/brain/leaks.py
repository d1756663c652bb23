"""Leaks: duplicates (exact or near, by the rules of :mod:`viscurate.brain.duplicates`) that sit on both
sides of a split, so that a model is evaluated on pictures it was trained on.

>>> report = find_leaks(cat, "split")                                               # doctest: +SKIP
>>> report.leaks[0]                                                                 # doctest: +SKIP
{'_id': 'b2...', 'value': 'val', 'with': 'a1...', 'with_value': 'train', 'reason': 'phash', 'count': 1}

Any field can stand for the split (``split`` by default; ``metadata.fold``, ``ground_truth.label``
for "the same picture with two labels"...). Every sample with at least one duplicate whose value of the
field is a different one gets the issue ``leak`` and the sub-document ``leak``: the field, its own value,
``with`` (its closest counterpart across the divide: an exact copy first, then the best-ranked near
duplicate), ``with_value``, the ``reason`` they are duplicates, and ``count`` (how many counterparts).
Samples without a value for the field take no side and are never flagged.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..usable import usable
from .duplicates import DuplicateRules, duplicate_graph
from .findings import sample_values, store_findings

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["LeaksReport", "find_leaks"]


@dataclass
class LeaksReport:
    """``leaks``: one entry per flagged sample (see the module doc); ``samples``: samples looked at;
    ``values``: how many samples carry each value of the field."""

    field: str
    samples: int = 0
    leaks: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, int] = field(default_factory=dict)
    model: str | None = None
    note: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "samples": self.samples, "leaking": len(self.leaks), "values": self.values,
                "model": self.model, "note": self.note, "seconds": round(self.seconds, 3), "leaks": self.leaks}


def _values(cat: "Catalog", path: str, ids: list[str], scope: dict) -> list[Any]:
    by_id = sample_values(cat, path, scope, "leaks need a field such as 'split'")
    out = []
    for i in ids:
        v = by_id.get(i)
        out.append(None if v is None or isinstance(v, (dict, list)) else str(v))
    return out


def find_leaks(cat: "Catalog", split_field: str = "split", *, model: str | None | bool = None,
               rules: DuplicateRules | None = None, query: dict | None = None, write: bool = True,
               threads: int | None = None) -> LeaksReport:
    """Duplicates across the values of ``split_field`` among the samples matching ``query``; stored on the
    samples (``write=True``) as the issue ``leak`` and the ``leak`` sub-document."""
    t0 = time.monotonic()
    rules = rules or DuplicateRules()
    scope = usable(query)
    g = duplicate_graph(cat, scope, model, rules, threads)
    values = _values(cat, split_field, g.ids, scope)
    report = LeaksReport(field=split_field, samples=len(g.ids), model=g.model, note=g.note)
    for v in values:
        if v is not None:
            report.values[v] = report.values.get(v, 0) + 1

    members: dict[int, list[int]] = {}  # node -> its samples (exact copies), best first
    for k in g.order:
        members.setdefault(int(g.node_of[k]), []).append(k)
    adjacent: dict[int, list[tuple[int, str]]] = {}
    for (a, b), evidence in g.edges.items():
        adjacent.setdefault(a, []).append((b, evidence[0]))
        adjacent.setdefault(b, []).append((a, evidence[0]))
    for node in adjacent:
        adjacent[node].sort(key=lambda t: g.rank[t[0]])

    findings: dict[str, tuple[dict[str, Any], str | None]] = {}
    for k in g.order:
        mine = values[k]
        if mine is None:
            continue
        node = int(g.node_of[k])
        candidates = [(m, "exact") for m in members[node] if m != k]
        candidates += [(m, reason) for other, reason in adjacent.get(node, ()) for m in members[other]]
        across = [(m, reason) for m, reason in candidates if values[m] is not None and values[m] != mine]
        if not across:
            continue
        m, reason = across[0]
        entry = {"field": split_field, "value": mine, "with": g.ids[m], "with_value": values[m], "reason": reason,
                 "count": len(across)}
        report.leaks.append({"_id": g.ids[k], **{x: y for x, y in entry.items() if x != "field"}})
        findings[g.ids[k]] = (entry, "leak")
    if write:
        store_findings(cat, scope, "leak", ("leak",), findings)
    report.seconds = time.monotonic() - t0
    return report
