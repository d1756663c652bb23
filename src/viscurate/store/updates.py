"""The update engine: MongoDB update operators (``$set``, ``$unset``, ``$addToSet``, ``$pull``) checked,
turned into one SQL ``UPDATE`` where they touch only typed leaf columns, or applied to whole documents;
and the audit trail of hand edits written with them.

>>> apply_update({"_id": "a", "tags": ["x"]}, {"$addToSet": {"tags": "y"}, "$set": {"meta.k": 1}})
{'_id': 'a', 'tags': ['x', 'y'], 'meta': {'k': 1}}
"""
from __future__ import annotations

import copy
from typing import Any

import orjson

from ..errors import QueryError
from . import documents
from .query.compiler import Ctx

#: The audit trail of hand edits (curate.edits): who changed what, when, and the value before and after.
EDIT_COLUMNS = ("at", "by", "sample_id", "action", "field", "idx", "before", "after")
EDIT_COLUMN_LIST = ", ".join(f'"{c}"' for c in EDIT_COLUMNS)


def edit_row(record: dict) -> list:
    """An edit record as the values of :data:`EDIT_COLUMNS` (``before``/``after`` as JSON)."""
    return [orjson.dumps(record[c]).decode() if c in ("before", "after") and record.get(c) is not None
            else record.get(c) for c in EDIT_COLUMNS]


UPDATE_OPS = ("$set", "$unset", "$addToSet", "$pull")


def validate_update(changes: dict) -> dict:
    """``changes`` when it is a well-formed update (supported operators over field paths, ``_id``
    untouched); else a ``QueryError`` saying what is wrong."""
    if not isinstance(changes, dict) or not changes:
        raise QueryError("an update needs operators, e.g. {'$set': {'split': 'val'}}")
    for op, body in changes.items():
        if op not in UPDATE_OPS:
            raise QueryError(f"unsupported update operator {op} (supported: {', '.join(UPDATE_OPS)})")
        if not isinstance(body, dict) or not body:
            raise QueryError(f"{op} needs an object of field paths")
        for path in body:
            if not isinstance(path, str) or not path or any(p == "" or p.startswith("$") for p in path.split(".")):
                raise QueryError(f"{op}: invalid field path {path!r}")
            if path == "_id" or path.startswith("_id."):
                raise QueryError("_id cannot be changed")
    return changes


def fast_update_sql(ops: dict, fields: dict, ctx: Ctx) -> tuple[str, str] | None:
    """Single-statement SQL (SET clause, "row would change" condition) for updates that touch only typed
    leaf columns (e.g. tagging a million samples); None when the general read-modify-write path is needed."""
    sets, changed = [], []
    touched = set()
    for op, body in ops.items():
        for path, value in body.items():
            spec = fields.get(path)
            if spec is None or spec.kind not in ("scalar", "list") or path in touched:
                return None
            touched.add(path)
            col = spec.column
            t = spec.sql_type if spec.kind == "scalar" else f"{spec.sql_type}[]"
            if op == "$set":
                if spec.kind == "scalar":
                    v = documents.coerce_scalar(value, spec.sql_type, path)
                else:
                    v = documents.coerce_list(value, spec.sql_type, path)
                ref = ctx.p(v, t)
                sets.append(f"{col} = {ref}")
                changed.append(f"{col} IS DISTINCT FROM {ref}")
            elif op == "$unset":
                sets.append(f"{col} = NULL")
                changed.append(f"{col} IS NOT NULL")
            elif op in ("$addToSet", "$pull"):
                if spec.kind != "list":
                    return None
                if isinstance(value, dict):
                    if list(value) != (["$in"] if op == "$pull" else ["$each"]):
                        return None
                    values = value["$in"] if op == "$pull" else value["$each"]
                else:
                    values = [value]
                values = [documents.coerce_scalar(v, spec.sql_type, path) for v in values]
                if any(v is None for v in values):
                    return None
                values = list(dict.fromkeys(values))
                ref = ctx.p(values, t)
                current = f"coalesce({col}, CAST([] AS {t}))"
                if op == "$addToSet":
                    # append the values not already present, in order; a missing list becomes one
                    sets.append(f"{col} = list_concat({current}, list_filter({ref}, "
                                f"lambda v: NOT list_contains({current}, v)))")
                    changed.append(f"({col} IS NULL OR NOT list_has_all({col}, {ref}))")
                else:
                    sets.append(f"{col} = list_filter({col}, lambda v: NOT list_contains({ref}, v))")
                    changed.append(f"coalesce(list_has_any({col}, {ref}), FALSE)")
    return ", ".join(sets), " OR ".join(changed) or "FALSE"


def apply_update(doc: dict, ops: dict) -> dict | None:
    """The updated document, or None when nothing changed."""
    new = copy.deepcopy({k: v for k, v in doc.items() if k != "_seq_"})
    for op, body in ops.items():
        for path, value in body.items():
            parts = path.split(".")
            if op == "$set":
                set_path(new, parts, value)
            elif op == "$unset":
                unset_path(new, parts)
            elif op == "$addToSet":
                values = value["$each"] if isinstance(value, dict) and list(value) == ["$each"] else [value]
                current = documents.get_path(new, path)
                if current is None:
                    current = []
                if not isinstance(current, list):
                    raise QueryError(f"$addToSet: {path} is not an array")
                for v in values:
                    if v not in current:
                        current = current + [v]
                set_path(new, parts, current)
            elif op == "$pull":
                current = documents.get_path(new, path)
                drop = value["$in"] if isinstance(value, dict) and list(value) == ["$in"] else [value]
                if isinstance(current, list):
                    set_path(new, parts, [v for v in current if v not in drop])
    old = {k: v for k, v in doc.items() if k != "_seq_"}
    return None if new == old else new


def set_path(doc: dict, parts: list[str], value: Any) -> None:
    """Set the value at the path ``parts`` of ``doc``, making the sub-documents on the way."""
    cur = doc
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise QueryError(f"cannot set {'.'.join(parts)}: {p} is not an object")
        cur = nxt
    cur[parts[-1]] = value


def unset_path(doc: dict, parts: list[str]) -> None:
    """Remove the value at the path ``parts`` of ``doc``, if it is there."""
    cur: Any = doc
    for p in parts[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return
        cur = cur[p]
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)

