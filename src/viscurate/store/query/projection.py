"""MongoDB find() projections over documents: ``{"width": 1, "quality.blur": 1}`` keeps those fields
(and ``_id`` unless ``"_id": 0``); ``{"histogram": 0}`` drops fields. Dotted paths reach through
arrays of sub-documents as in MongoDB.

>>> project({"_id": "a", "w": 1, "q": {"b": 2, "c": 3}}, {"q.b": 1})
{'_id': 'a', 'q': {'b': 2}}
>>> project({"_id": "a", "w": 1, "q": {"b": 2, "c": 3}}, {"q": 0})
{'_id': 'a', 'w': 1}
"""
from __future__ import annotations

from typing import Any

from ...errors import QueryError, UnsupportedOperator


def _tree(paths: list[str]) -> dict:
    tree: dict = {}
    for path in paths:
        node = tree
        parts = path.split(".")
        for i, p in enumerate(parts):
            if p == "" or p.startswith("$"):
                raise UnsupportedOperator(f"projection path {path!r}")
            if i == len(parts) - 1:
                node[p] = True
            else:
                nxt = node.get(p)
                if nxt is True:
                    break  # a parent is already projected whole
                node = node.setdefault(p, {})
    return tree


def _prune(value: Any, tree: dict, include: bool) -> Any:
    """``value`` with the paths of ``tree`` kept (``include``) or dropped. Kept paths reach into arrays
    of sub-documents and leave out what cannot hold them (scalars); dropped ones leave the rest as is."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub = tree.get(k)
            if isinstance(sub, dict):
                if not include or isinstance(v, (dict, list)):
                    out[k] = _prune(v, sub, include)
            elif (sub is True) == include:  # a projected leaf: kept when including, dropped when excluding
                out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v, tree, include) for v in value if not include or isinstance(v, (dict, list))]
    return value


def project(doc: dict, projection: dict) -> dict:
    if not isinstance(projection, dict):
        raise QueryError("a projection must be an object like {'width': 1}")
    flags = {}
    for k, v in projection.items():
        if isinstance(v, bool) or (isinstance(v, (int, float)) and v in (0, 1)):
            flags[k] = bool(v)
        else:
            raise UnsupportedOperator(f"projection value for {k!r} (only 1/0 or true/false are supported)")
    keep_id = flags.pop("_id", True)
    includes = [k for k, v in flags.items() if v]
    excludes = [k for k, v in flags.items() if not v]
    if includes and excludes:
        raise QueryError("a projection cannot mix inclusion and exclusion (except for _id)")
    if includes:
        out = _prune(doc, _tree(includes), include=True)
        if keep_id and "_id" in doc:
            out = {"_id": doc["_id"], **{k: v for k, v in out.items() if k != "_id"}}
        return out
    out = _prune(doc, _tree(excludes), include=False) if excludes else dict(doc)
    if not keep_id:
        out.pop("_id", None)
    return out
