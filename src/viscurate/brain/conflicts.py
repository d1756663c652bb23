"""Label consistency: duplicates that carry different labels, and images whose label disagrees with a
cluster that is almost all one class (what fastdup reads off its similarity graph).

>>> report = find_label_conflicts(cat)                # after find_duplicates / find_clusters   # doctest: +SKIP

Reads what the other analyses stored (``duplicates.group``, ``cluster.id``) and the labels
(``ground_truth.label`` by default):

- **duplicate groups** holding two labels or more: every member whose label is not the group's majority
  (with a tie, not the representative's) is flagged; copies of one picture should share a label;
- **clusters** where one label holds at least ``cluster_majority`` (0.8) of the labeled members: the
  members labeled otherwise are flagged (a cluster may mix classes; a lone dissenter in a nearly pure one
  is suspect).

Flagged samples get the issue ``label_conflict`` and ``label_conflict.source`` (``duplicates`` or
``cluster``), ``.group``, ``.majority`` (the suggested label) and ``.share`` (the majority's share).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..usable import usable
from .findings import store_findings

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["ConflictsReport", "find_label_conflicts"]


@dataclass
class ConflictsReport:
    """``conflicts``: flagged samples (``{"_id", "label", "source", "group", "majority", "share"}``)."""

    label_field: str
    samples: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"label_field": self.label_field, "samples": self.samples, "conflicts": self.conflicts,
                "seconds": round(self.seconds, 3)}


def find_label_conflicts(cat: "Catalog", *, label_field: str = "ground_truth.label", cluster_majority: float = 0.8,
                         query: dict | None = None, write: bool = True) -> ConflictsReport:
    """See the module doc."""
    t0 = time.monotonic()
    scope = usable(query)
    cols = cat.columns([label_field, "duplicates.group", "duplicates.representative", "cluster.id"], scope)
    ids, labels = cols["_id"], cols[label_field]
    report = ConflictsReport(label_field=label_field, samples=len(ids))
    found: dict[str, dict[str, Any]] = {}
    for source, key in (("duplicates", "duplicates.group"), ("cluster", "cluster.id")):
        groups: dict[Any, list[int]] = {}
        for n, g in enumerate(cols[key]):
            if g is not None and labels[n] is not None:
                groups.setdefault(g, []).append(n)
        for g, members in groups.items():
            votes = Counter(str(labels[n]) for n in members)
            if len(votes) < 2:
                continue
            top = max(votes.values())
            leaders = [lab for lab, c in votes.items() if c == top]
            if source == "duplicates":
                rep = next((n for n in members if cols["duplicates.representative"][n]), members[0])
                majority = str(labels[rep]) if len(leaders) > 1 and str(labels[rep]) in leaders else sorted(leaders)[0]
            else:
                if len(leaders) > 1 or top / len(members) < cluster_majority:
                    continue
                majority = leaders[0]
            share = round(votes[majority] / len(members), 3)
            for n in members:
                if str(labels[n]) != majority and ids[n] not in found:
                    found[ids[n]] = {"source": source, "group": str(g), "majority": majority, "share": share}
                    report.conflicts.append({"_id": ids[n], "label": str(labels[n]), **found[ids[n]]})
    if write:
        store_findings(cat, scope, "label_conflict", ("label_conflict",),
                       {sid: (v, "label_conflict") for sid, v in found.items()})
    report.seconds = time.monotonic() - t0
    return report
