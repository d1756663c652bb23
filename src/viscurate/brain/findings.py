"""Store the findings of an analysis on the samples: one sub-document per sample and the issues the
analysis owns, replacing what an earlier run of the same analysis stored (and nothing else)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ViscurateError
from ..store.documents import get_path

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["store_findings", "store_box_findings", "box_vectors", "sample_values"]

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


def image_vectors(cat: "Catalog", model: str | None, query: dict | None, analysis: str, minimum: int = 1):
    """``(model, scope, ids, matrix)``: the image embeddings an analysis works on (``model`` default: the
    default embedder), or a clear error when there are none or fewer than ``minimum``."""
    from .duplicates import _default_model, _scope

    model = model or _default_model(cat)
    if model is None:
        raise ViscurateError(f"{analysis} need embeddings: run `viscurate embed` (or `viscurate label`) first")
    scope = _scope(query)
    ids, _, matrix = cat.read_vectors(model, query=scope)
    if len(ids) < minimum:
        raise ViscurateError(f"{analysis} need at least {minimum} samples with {model} vectors; found {len(ids)}")
    return model, scope, ids, matrix


def box_vectors(cat: "Catalog", field: str, model: str | None, query: dict | None, analysis: str):
    """``(model, scope, ids, box indexes, matrix)``: the box embeddings of ``field`` an analysis of boxes
    works on (``model`` default: the default embedder), or a clear error when there are none."""
    from .duplicates import _default_model, _scope

    model = model or _default_model(cat)
    if model is None:
        raise ViscurateError(f"{analysis} need box embeddings: run `viscurate embed NAME --boxes` "
                             "(or `viscurate label`) first")
    scope = _scope(query)
    ids, idxs, matrix = cat.read_vectors(model, field=field, query=scope)
    return model, scope, ids, [int(i) for i in idxs], matrix


def store_box_findings(cat: "Catalog", scope: dict, field: str, key: str, issue: str, attrs: Sequence[str],
                       marks: Mapping[str, Mapping[int, Mapping[str, Any]]],
                       summaries: Mapping[str, dict[str, Any]]) -> int:
    """Findings about boxes: ``marks`` (sample id -> box index -> box attributes among ``attrs``) are set
    on the boxes of ``field`` after every attribute in ``attrs`` is cleared from them; a sample in
    ``summaries`` gets that sub-document as ``key`` and the ``issue``. Samples in ``scope`` holding ``key``
    or the issue from an earlier run, and marked no more, lose them. Returns the samples written.

    >>> store_box_findings(cat, {}, "object_analysis", "object_duplicates", "object_duplicate",
    ...                    ["object_duplicate"], {"s1": {0: {"object_duplicate": "s2#1"}}}, {"s1": {"count": 1}})  # doctest: +SKIP
    """
    top = field.split(".")[0]
    stale = cat.ids({"$and": [scope, {"$or": [{key: {"$exists": True}}, {"issues": issue}]}]})
    todo = list(dict.fromkeys(list(marks) + list(summaries) + list(stale)))
    for start in range(0, len(todo), WRITE_BATCH):
        part = todo[start:start + WRITE_BATCH]
        out = []
        for doc in cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]:
            found = marks.get(doc["_id"], {})
            objs = get_path(doc, field)
            if isinstance(objs, list):
                for i, o in enumerate(objs):
                    if isinstance(o, dict):
                        for a in attrs:
                            o.pop(a, None)
                        o.update({a: v for a, v in (found.get(i) or {}).items() if v is not None})
            issues = [x for x in doc.get("issues") or [] if x != issue]
            new: dict[str, Any] = {"_id": doc["_id"]}
            if top in doc:
                new[top] = doc[top]
            summary = summaries.get(doc["_id"])
            if summary is not None:
                issues.append(issue)
                new[key] = summary
            if issues or "issues" in doc:
                new["issues"] = issues
            out.append(new)
        cat.write(out, mode="merge", merge_keys=(top, key, "issues"))
    return len(todo)


def sample_values(cat: "Catalog", path: str, query: dict, why: str) -> dict[str, Any]:
    """``{sample id: value}`` of one field for the samples matching ``query``, in catalog order: a declared
    scalar field in one column scan, any other path (``meta.fold``, a field an import added) by walking
    the documents. ``why`` finishes the error for a declared field that is not one value per sample."""
    spec = cat.fields.get(path)
    if spec is not None and spec.kind == "scalar":
        cols = cat.columns([path], query)
        return dict(zip(cols["_id"], cols[path]))
    if spec is not None:
        raise ViscurateError(f"{path!r} is not a single value per sample; {why}")
    return {doc["_id"]: get_path(doc, path) for doc in cat.iter_docs(query)}
