"""MongoDB's total order over values, as byte strings that sort the same way.

MongoDB compares values of different types by a fixed order of type brackets (null < numbers < strings <
objects < arrays < booleans), numbers by value whatever their width, strings bytewise, objects field by
field (type of the value, then name, then value) and arrays element by element. ``order_key`` turns a
JSON value into bytes whose ``memcmp`` order is exactly that order, so DuckDB can compare and sort by
them. ``sort_key`` applies MongoDB's rules for the key a document sorts by on a dotted path.

>>> order_key(None) < order_key(-5) < order_key(2.5) < order_key("a") < order_key({}) < order_key([]) < order_key(False)
True
>>> sort_key({"a": [3, 1]}, ["a"], descending=False) == order_key(1)
True
"""
from __future__ import annotations

import struct
from typing import Any

import orjson

# Canonical type ranks, as MongoDB orders type brackets.
RANK_UNDEFINED = 0  # an empty array reached at the end of a sort path sorts below null
RANK_NULL = 1
RANK_NUMBER = 2
RANK_STRING = 3
RANK_OBJECT = 4
RANK_ARRAY = 5
RANK_BOOL = 8

_MISSING = object()


def rank(value: Any) -> int:
    if value is None:
        return RANK_NULL
    if isinstance(value, bool):
        return RANK_BOOL
    if isinstance(value, (int, float)):
        return RANK_NUMBER
    if isinstance(value, str):
        return RANK_STRING
    if isinstance(value, dict):
        return RANK_OBJECT
    if isinstance(value, list):
        return RANK_ARRAY
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _number_bytes(x: int | float) -> bytes:
    # Exact for integers (kept as integers); doubles by their IEEE bits flipped to sort as unsigned.
    # Integers and doubles share one order: encode both as (double approximation, exact tie-break).
    d = float(x) if not isinstance(x, float) else x
    bits = struct.unpack(">Q", struct.pack(">d", d))[0]
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    head = bits.to_bytes(8, "big")
    # Ties between an integer and the double it rounds to: order by the exact difference.
    if isinstance(x, int) and not isinstance(x, bool):
        diff = x - int(d) if d == d and abs(d) != float("inf") else 0
    else:
        diff = 0
    # Map diff (a small signed integer, |diff| < 2**11 for int64) to a fixed-width unsigned.
    return head + (diff + (1 << 31)).to_bytes(4, "big")


def _string_bytes(s: str) -> bytes:
    return s.encode("utf-8").replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def _body(value: Any) -> bytes:
    r = rank(value)
    if r == RANK_NULL:
        return b""
    if r == RANK_NUMBER:
        return _number_bytes(value)
    if r == RANK_STRING:
        return _string_bytes(value)
    if r == RANK_BOOL:
        return b"\x01" if value else b"\x00"
    if r == RANK_OBJECT:
        out = bytearray()
        for k, v in value.items():
            out += b"\x01" + bytes([rank(v)]) + _string_bytes(k) + _body(v)
        return bytes(out + b"\x00")
    out = bytearray()
    for v in value:
        out += b"\x01" + bytes([rank(v)]) + _body(v)
    return bytes(out + b"\x00")


def order_key(value: Any) -> bytes:
    """Bytes that compare (memcmp) the way MongoDB compares ``value`` with other values."""
    return bytes([rank(value)]) + _body(value)


UNDEFINED_KEY = bytes([RANK_UNDEFINED])
NULL_KEY = bytes([RANK_NULL])


def _sort_candidates(value: Any, parts: list[str], out: list) -> None:
    """Collect the values a document sorts by on a path, the way MongoDB builds sort keys."""
    if not parts:
        if isinstance(value, list):
            if not value:
                out.append(_EMPTY)
            else:
                out.extend(value)
        elif value is _MISSING:
            out.append(None)
        else:
            out.append(value)
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        _sort_candidates(value.get(head, _MISSING), rest, out)
    elif isinstance(value, list):
        if head.isdigit() and not (len(head) > 1 and head[0] == "0") and int(head) < len(value):
            _sort_candidates(value[int(head)], rest, out)
            return
        if not value:
            out.append(None)
        for element in value:
            if isinstance(element, dict):
                _sort_candidates(element.get(head, _MISSING), rest, out)
            else:
                out.append(None)
    else:
        out.append(None)


_EMPTY = object()


def sort_key(value: Any, parts: list[str], descending: bool) -> bytes:
    """The key a document whose field at ``parts[0]`` holds ``value`` sorts by (``_MISSING``-safe)."""
    found: list = []
    _sort_candidates(value, parts, found)
    keys = [UNDEFINED_KEY if c is _EMPTY else order_key(c) for c in found]
    return max(keys) if descending else min(keys)


def sort_key_from_json(text: str | None, path: str, descending: bool) -> bytes:
    """DuckDB UDF body: ``text`` is the JSON of the top-level field (NULL when missing), ``path`` the
    rest of the dotted path (empty for the field itself)."""
    value = _MISSING if text is None else orjson.loads(text)
    parts = path.split(".") if path else []
    if value is _MISSING and not parts:
        return NULL_KEY
    return sort_key(value, parts, descending)


def order_key_from_json(text: str | None) -> bytes | None:
    """DuckDB UDF body: the order key of a JSON value (NULL stays NULL: missing has no key)."""
    if text is None:
        return None
    return order_key(orjson.loads(text))
