"""Store the findings of an analysis on the samples: one sub-document per sample and the issues the
analysis owns, replacing what an earlier run of the same analysis stored (and nothing else); and read
what analyses work on (embeddings, one field's values) with a clear error when it is not there."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import ViscurateError
from ..store.documents import get_path
from ..usable import usable

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["store_findings", "store_box_findings", "rewrite_samples", "default_model", "image_vectors",
           "box_vectors", "sample_values", "WRITE_BATCH"]

#: Samples read and merge-written at a time by :func:`rewrite_samples`.
WRITE_BATCH = 2000


def default_model(cat: "Catalog") -> str | None:
    """The embedding model analyses use when none is named: the default embedder when the catalog holds
    its image vectors, else the model with the most image vectors, else ``None``.

    >>> default_model(cat)                                                           # doctest: +SKIP
    'efficientnet_lite3@uint8-280-obj224'
    """
    from ..models import registry

    have = cat.vector_models(field=None)
    if not have:
        return None
    default = registry.get_spec(registry.DEFAULTS["embedder"]).key
    return default if default in have else min(have, key=lambda m: (-have[m], m))


def rewrite_samples(cat: "Catalog", ids: Sequence[str], rewrite: Callable[[dict], dict],
                    merge_keys: Sequence[str]) -> int:
    """Read the samples ``ids`` ``WRITE_BATCH`` at a time, turn each stored document into the document
    to merge with ``rewrite(doc)`` (``_id`` and the fields of ``merge_keys`` it sets) and merge-write the
    batch: one read and one write per batch, whatever the number of samples. Returns ``len(ids)``.

    >>> rewrite_samples(cat, ["s1"], lambda d: {"_id": d["_id"], "seen": True}, ("seen",))  # doctest: +SKIP
    1
    """
    for start in range(0, len(ids), WRITE_BATCH):
        part = list(ids[start:start + WRITE_BATCH])
        docs = cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]
        cat.write([rewrite(d) for d in docs], mode="merge", merge_keys=tuple(merge_keys))
    return len(ids)


def _to_rewrite(cat: "Catalog", scope: dict, key: str, owned_issues: Sequence[str], found: Sequence[str]
                ) -> list[str]:
    """The samples a run must write: those with a finding now (``found``, in order), then those in
    ``scope`` carrying ``key`` or one of ``owned_issues`` from an earlier run (to clear them)."""
    stale = cat.ids({"$and": [scope, {"$or": [{key: {"$exists": True}}, {"issues": {"$in": list(owned_issues)}}]}]})
    return list(dict.fromkeys(list(found) + list(stale)))


def _set_issues(doc: dict, new: dict[str, Any], owned_issues: Sequence[str], issue: str | None) -> None:
    """``new["issues"]``: ``doc``'s issues less ``owned_issues``, plus ``issue``; left out when the sample
    never had an ``issues`` field and gets none."""
    issues = [i for i in doc.get("issues") or [] if i not in owned_issues]
    if issue:
        issues.append(issue)
    if issues or "issues" in doc:
        new["issues"] = issues


def store_findings(cat: "Catalog", scope: dict, key: str, owned_issues: Sequence[str],
                   findings: dict[str, tuple[dict[str, Any], str | None]]) -> int:
    """``findings``: sample id -> (the ``key`` sub-document, the issue to add or ``None``). Samples in
    ``scope`` that carry ``key`` or one of ``owned_issues`` from an earlier run and have no finding now
    lose them; other issues are kept. One merge write per batch. Returns the samples written.

    >>> store_findings(cat, {}, "leak", ["leak"], {"s1": ({"with": "s2"}, "leak")})       # doctest: +SKIP
    """
    def rewrite(doc: dict) -> dict:
        new: dict[str, Any] = {"_id": doc["_id"]}
        found = findings.get(doc["_id"])
        if found is not None:
            new[key] = {k: v for k, v in found[0].items() if v is not None}
        _set_issues(doc, new, owned_issues, found[1] if found is not None else None)
        return new

    return rewrite_samples(cat, _to_rewrite(cat, scope, key, owned_issues, findings), rewrite, (key, "issues"))


def image_vectors(cat: "Catalog", model: str | None, query: dict | None, analysis: str, minimum: int = 1):
    """``(model, scope, ids, matrix)``: the image embeddings an analysis works on (``model`` default: the
    default embedder), or a clear error when there are none or fewer than ``minimum``."""
    model = model or default_model(cat)
    if model is None:
        raise ViscurateError(f"{analysis} need embeddings: run `viscurate embed` (or `viscurate label`) first")
    scope = usable(query)
    ids, _, matrix = cat.read_vectors(model, query=scope)
    if len(ids) < minimum:
        raise ViscurateError(f"{analysis} need at least {minimum} samples with {model} vectors; found {len(ids)}")
    return model, scope, ids, matrix


def box_vectors(cat: "Catalog", field: str, model: str | None, query: dict | None, analysis: str):
    """``(model, scope, ids, box indexes, matrix)``: the box embeddings of ``field`` an analysis of boxes
    works on (``model`` default: the default embedder), or a clear error when there are none."""
    model = model or default_model(cat)
    if model is None:
        raise ViscurateError(f"{analysis} need box embeddings: run `viscurate embed NAME --boxes` "
                             "(or `viscurate label`) first")
    scope = usable(query)
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

    def rewrite(doc: dict) -> dict:
        found = marks.get(doc["_id"], {})
        objs = get_path(doc, field)
        if isinstance(objs, list):
            for i, o in enumerate(objs):
                if isinstance(o, dict):
                    for a in attrs:
                        o.pop(a, None)
                    o.update({a: v for a, v in (found.get(i) or {}).items() if v is not None})
        new: dict[str, Any] = {"_id": doc["_id"]}
        if top in doc:
            new[top] = doc[top]
        summary = summaries.get(doc["_id"])
        if summary is not None:
            new[key] = summary
        _set_issues(doc, new, (issue,), issue if summary is not None else None)
        return new

    todo = _to_rewrite(cat, scope, key, (issue,), list(dict.fromkeys(list(marks) + list(summaries))))
    return rewrite_samples(cat, todo, rewrite, (top, key, "issues"))


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
