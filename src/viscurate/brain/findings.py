"""Store the findings of an analysis on the samples: one sub-document per sample and the issues the
analysis owns, replacing what an earlier run of the same analysis stored (and nothing else)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["store_findings"]

WRITE_BATCH = 2000


def store_findings(cat: "Catalog", scope: dict, key: str, owned_issues: Sequence[str],
                   findings: dict[str, tuple[dict[str, Any], str | None]]) -> int:
    """``findings``: sample id -> (the ``key`` sub-document, the issue to add or ``None``). Samples in
    ``scope`` that carry ``key`` or one of ``owned_issues`` from an earlier run and have no finding now
    lose them; other issues are kept. One merge write per batch. Returns the samples written.

    >>> store_findings(cat, {}, "leak", ["leak"], {"s1": ({"with": "s2"}, "leak")})       # doctest: +SKIP
    """
    stale = cat.ids({"$and": [scope, {"$or": [{key: {"$exists": True}}, {"issues": {"$in": list(owned_issues)}}]}]})
    todo = list(findings) + [s for s in stale if s not in findings]
    for start in range(0, len(todo), WRITE_BATCH):
        part = todo[start:start + WRITE_BATCH]
        out = []
        for d in cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]:
            issues = [i for i in d.get("issues") or [] if i not in owned_issues]
            new: dict[str, Any] = {"_id": d["_id"]}
            found = findings.get(d["_id"])
            if found is not None:
                new[key] = {k: v for k, v in found[0].items() if v is not None}
                if found[1]:
                    issues.append(found[1])
            if issues or "issues" in d:
                new["issues"] = issues
            out.append(new)
        cat.write(out, mode="merge", merge_keys=(key, "issues"))
    return len(todo)
