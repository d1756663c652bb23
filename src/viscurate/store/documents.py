"""Sample documents <-> catalog rows.

A document is split into typed column values (declared fields), rows of the objects table (box lists)
and the ``extra`` JSON object (everything undeclared). ``assemble`` puts them back together, with the
declared fields first in schema order and the extra fields after them in their own order.

Normalizations (documented in docs/query.md): a declared scalar, list, group or box list set to
``None`` is removed (missing); an empty declared group is removed; a float written to an integer field
must be integral; an int written to a float field becomes a float.

>>> row, objects, extra = split({"_id": "a", "width": 3, "metadata": {"k": 1}})
>>> row["width"], extra
(3, {'metadata': {'k': 1}})
>>> assemble(row, {}, extra)
{'_id': 'a', 'width': 3, 'metadata': {'k': 1}}
"""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Iterable

from ..errors import FieldTypeError
from . import schema
from .schema import FieldSpec

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def to_json_value(value: Any, where: str) -> Any:
    """A JSON-compatible copy of ``value`` (numpy scalars, tuples, datetimes converted)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise FieldTypeError(f"{where}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise FieldTypeError(f"{where}: NaN and infinity cannot be stored; use null")
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FieldTypeError(f"{where}: field names must be strings, got {k!r}")
            if k.startswith("$") or "." in k or k == "":
                raise FieldTypeError(f"{where}: invalid field name {k!r} (no '$' prefix, no dots, not empty)")
            out[k] = to_json_value(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, f"{where}[]") for v in value]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return to_json_value(item(), where)
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return to_json_value(tolist(), where)
    raise FieldTypeError(f"{where}: cannot store a value of type {type(value).__name__}")


_EXACT = {"VARCHAR": str, "BOOLEAN": bool, "BIGINT": int, "DOUBLE": float}


def coerce_scalar(value: Any, sql_type: str, where: str) -> Any:
    t = type(value)
    if t is _EXACT[sql_type]:  # the common case, checked without the general conversion below
        if t is float:
            if value - value != 0.0:  # NaN or infinity
                raise FieldTypeError(f"{where}: NaN and infinity cannot be stored; use null")
        elif t is int and not INT64_MIN <= value <= INT64_MAX:
            raise FieldTypeError(f"{where}: integer {value} does not fit in 64 bits")
        return value
    value = to_json_value(value, where)
    if value is None:
        return None
    if sql_type == "VARCHAR":
        if isinstance(value, str):
            return value
    elif sql_type == "BOOLEAN":
        if isinstance(value, bool):
            return value
    elif sql_type == "BIGINT":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and INT64_MIN <= value <= INT64_MAX:
            return int(value)
    elif sql_type == "DOUBLE":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    raise FieldTypeError(f"{where}: expected {_type_word(sql_type)}, got {value!r}")


def _type_word(sql_type: str) -> str:
    return {"VARCHAR": "a string", "BOOLEAN": "a boolean", "BIGINT": "an integer",
            "DOUBLE": "a number"}[sql_type]


def coerce_list(value: Any, sql_type: str, where: str) -> list | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
        raise FieldTypeError(f"{where}: expected a list of {_type_word(sql_type)}s, got {value!r}")
    items = value.tolist() if hasattr(value, "tolist") else value
    exact = _EXACT[sql_type]
    if sql_type != "DOUBLE" and all(type(v) is exact for v in items):
        if sql_type != "BIGINT" or all(INT64_MIN <= v <= INT64_MAX for v in items):
            return list(items)
    out = []
    for i, v in enumerate(items):
        if v is None:
            raise FieldTypeError(f"{where}[{i}]: list elements cannot be null")
        out.append(coerce_scalar(v, sql_type, f"{where}[{i}]"))
    return out


def split(doc: dict, fields: dict[str, FieldSpec] | None = None,
          object_attrs: dict[str, FieldSpec] | None = None) -> tuple[dict, dict, dict]:
    """Split a document into (typed row values keyed by path, {objects field: [object docs]}, extra)."""
    fields = fields if fields is not None else schema.FIELDS
    object_attrs = object_attrs if object_attrs is not None else schema.OBJECT_ATTRS
    if not isinstance(doc, dict):
        raise FieldTypeError(f"a sample document must be an object, got {type(doc).__name__}")
    row: dict[str, Any] = {}
    objects: dict[str, list[dict]] = {}
    extra: dict[str, Any] = {}
    for key, value in doc.items():
        if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
            raise FieldTypeError(f"invalid field name {key!r} (no '$' prefix, no dots, not empty)")
        spec = fields.get(key)
        if spec is None:
            extra[key] = to_json_value(value, key)
        else:
            _split_declared(spec, value, row, objects, fields, object_attrs)
    return row, objects, extra


def _split_declared(spec: FieldSpec, value: Any, row: dict, objects: dict, fields: dict, object_attrs: dict) -> None:
    if spec.kind == "scalar":
        row[spec.path] = coerce_scalar(value, spec.sql_type, spec.path)
    elif spec.kind == "list":
        row[spec.path] = coerce_list(value, spec.sql_type, spec.path)
    elif spec.kind == "group":
        if value is None:
            return
        if not isinstance(value, dict):
            raise FieldTypeError(f"{spec.path}: expected an object, got {value!r}")
        for k, v in value.items():
            child = fields.get(f"{spec.path}.{k}")
            if child is None:
                known = ", ".join(c.path.rsplit(".", 1)[1] for c in schema.children(spec.path, fields))
                raise FieldTypeError(f"{spec.path}.{k} is not a field of {spec.path} (its fields: {known}); "
                                     f"put free-form data under 'metadata'")
            _split_declared(child, v, row, objects, fields, object_attrs)
    else:
        if value is None:
            return
        if not isinstance(value, (list, tuple)):
            raise FieldTypeError(f"{spec.path}: expected a list of objects, got {value!r}")
        items = []
        for i, obj in enumerate(value):
            if not isinstance(obj, dict):
                raise FieldTypeError(f"{spec.path}[{i}]: expected an object, got {obj!r}")
            items.append(split_object(obj, f"{spec.path}[{i}]", object_attrs))
        objects[spec.path] = items


def split_object(obj: dict, where: str, object_attrs: dict) -> dict:
    """An object document as {attr: typed value..., "attrs": {other keys}}."""
    out: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for k, v in obj.items():
        spec = object_attrs.get(k)
        if spec is None:
            if not isinstance(k, str) or not k or k.startswith("$") or "." in k:
                raise FieldTypeError(f"{where}: invalid field name {k!r}")
            attrs[k] = to_json_value(v, f"{where}.{k}")
        elif spec.kind == "scalar":
            out[k] = coerce_scalar(v, spec.sql_type, f"{where}.{k}")
        else:
            out[k] = coerce_list(v, spec.sql_type, f"{where}.{k}")
    out["attrs"] = attrs
    return out


def assemble(row: dict, objects: dict[str, list[dict]], extra: dict | None,
             fields: dict[str, FieldSpec] | None = None, object_attrs: dict | None = None) -> dict:
    """The document for a row (typed values keyed by path), its box lists and its extra fields."""
    fields = fields if fields is not None else schema.FIELDS
    object_attrs = object_attrs if object_attrs is not None else schema.OBJECT_ATTRS
    doc: dict[str, Any] = {}
    for path, keys, count_column in _plan(fields):
        if count_column is None:
            value = row.get(path)
            if value is None:
                continue
        else:  # a box list: its boxes, [] when its length is stored but it has none, else absent
            items = objects.get(path)
            if items is None:
                if row.get(count_column) is None:
                    continue
                items = ()
            value = [assemble_object(o, object_attrs) for o in items]
        target = doc
        for key in keys[:-1]:  # groups appear with their first value, in the order of the schema
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    if extra:
        doc.update(extra)
    return doc


_PLANS: dict[int, tuple[dict, int, list[tuple[str, tuple[str, ...], str | None]]]] = {}


def _plan(fields: dict[str, FieldSpec]) -> list[tuple[str, tuple[str, ...], str | None]]:
    """Every value field of a field table in document order, as (column, keys from the document's
    root, count column of a box list or None): worked out once per table, so assembling a row is one
    flat pass over its columns instead of a walk of the schema's tree."""
    hit = _PLANS.get(id(fields))
    if hit is None or hit[0] is not fields or hit[1] != len(fields):
        kids = schema.child_index(fields)
        steps: list[tuple[str, tuple[str, ...], str | None]] = []

        def walk(spec: FieldSpec) -> None:
            if spec.kind == "group":
                for child in kids.get(spec.path, ()):
                    walk(child)
            else:
                steps.append((spec.path, tuple(spec.path.split(".")),
                              spec.path + "#n" if spec.kind == "objects" else None))

        for spec in schema.top_level(fields):
            walk(spec)
        if len(_PLANS) > 64:
            _PLANS.clear()
        hit = _PLANS[id(fields)] = (fields, len(fields), steps)
    return hit[2]


def assemble_object(obj: dict, object_attrs: dict | None = None) -> dict:
    object_attrs = object_attrs if object_attrs is not None else schema.OBJECT_ATTRS
    out = {k: obj[k] for k in object_attrs if obj.get(k) is not None}
    attrs = obj.get("attrs")
    if attrs:
        out.update(attrs)
    return out


def get_path(doc: Any, path: str) -> Any:
    """The value at a dotted ``path`` of a document, ``None`` where the path leaves sub-documents.

    >>> get_path({"a": {"b": [1]}}, "a.b"), get_path({"a": 3}, "a.b")
    ([1], None)
    """
    cur = doc
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def merge(old: dict, new: dict, keys: Iterable[str] | None = None) -> dict:
    """``old`` with the top-level fields of ``new`` (or only ``keys`` of it) replacing its own."""
    out = dict(old)
    for k in (keys if keys is not None else new.keys()):
        if k in new:
            out[k] = new[k]
        else:
            out.pop(k, None)
    return out
