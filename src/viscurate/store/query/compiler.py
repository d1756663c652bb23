"""MongoDB query language -> parameterized DuckDB SQL, with MongoDB's matching semantics.

A query is compiled against a *root*: the samples table (declared fields are typed columns, the rest
is the ``extra`` JSON column), a row of the objects table (inside ``$elemMatch`` on a box list), or a
JSON value (inside ``$elemMatch`` on free-form JSON). Every value a user gives reaches DuckDB as a
parameter; only identifiers we generate ourselves and JSON paths built from validated field names are
part of the SQL text (paths go in as parameters too).

MongoDB semantics, as the differential tests against a real ``mongod`` pin them down:
- A dotted path is resolved by descending into sub-documents; an array met on the way is traversed:
  each element that is a document is descended into (non-documents contribute nothing), and a numeric
  component also selects the element at that position.
- A leaf operator matches when *any* candidate value matches. Arrays at the end of the path are
  candidates both as a whole and element by element ("leaf expansion"), except for ``$size``,
  ``$elemMatch`` and ``$exists``, and except where the array was reached by position.
- Missing values compare equal to null; ``$ne``/``$nin``/``$not`` negate the whole path predicate.
- Comparisons only match values of the operand's type bracket (numbers with numbers, and so on).

Example:
>>> from viscurate.store.query.compiler import compile_query
>>> sql, params = compile_query({"width": {"$gt": 100}})
>>> params
[100]
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson
from typing import Any, Callable

from ...errors import QueryError, UnsupportedOperator
from .. import schema
from .bson_order import order_key
from .budget import QueryBudget, check_query, check_sql, over_budget

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
JSON_INT_TYPES = "('BIGINT', 'UBIGINT')"
JSON_NUM_TYPES = "('BIGINT', 'UBIGINT', 'DOUBLE')"
_SQL_NUMERIC = ("BIGINT", "DOUBLE")

LOGICAL = {"$and", "$or", "$nor"}
IGNORED_TOP = {"$comment"}
KNOWN_FIELD_OPS = {
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type", "$not",
    "$regex", "$options", "$size", "$all", "$elemMatch",
}

TYPE_ALIASES = {
    "double": {"double"}, 1: {"double"},
    "string": {"string"}, 2: {"string"},
    "object": {"object"}, 3: {"object"},
    "array": {"array"}, 4: {"array"},
    "bool": {"bool"}, 8: {"bool"},
    "null": {"null"}, 10: {"null"},
    "int": {"int"}, 16: {"int"},
    "long": {"long"}, 18: {"long"},
    "number": {"double", "int", "long"},
}
# Types a JSON value can never have here (no BSON dates, ObjectIds... in our documents): valid
# aliases that simply never match.
NEVER_TYPES = {"binData": 5, "undefined": 6, "objectId": 7, "date": 9, "regex": 11, "dbPointer": 12,
               "javascript": 13, "symbol": 14, "javascriptWithScope": 15, "timestamp": 17,
               "decimal": 19, "minKey": -1, "maxKey": 127}


def is_index(part: str) -> bool:
    """A path component that MongoDB also reads as an array position."""
    return part.isdigit() and (part == "0" or part[0] != "0")


def json_pointer(part: str) -> str:
    return "/" + part.replace("~", "~0").replace("/", "~1")


# --------------------------------------------------------------------------------------------
# Parameters and fresh names


@dataclass
class Ctx:
    params: list = field(default_factory=list)
    counter: int = 0

    _lists: dict[int, str] = field(default_factory=dict)

    def p(self, value: Any, cast: str | None = None) -> str:
        # numbered parameters, so an expression may appear several times in the SQL text; a list (of
        # thousands of $in values, say) that several branches use is one parameter (``params`` keeps
        # it alive, so its id stays its own)
        if isinstance(value, list) and id(value) in self._lists:
            ref = self._lists[id(value)]
        else:
            self.params.append(value)
            ref = f"${len(self.params)}"
            if isinstance(value, list):
                self._lists[id(value)] = ref
        return f"CAST({ref} AS {cast})" if cast else ref

    def var(self, prefix: str = "x") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


TRUE, FALSE = "TRUE", "FALSE"
MAX_PREFILTER_NEEDLES = 16
_NO_CANDIDATES = "CAST([] AS STRUCT(v JSON, p BOOLEAN)[])"

_REF = re.compile(r"\$(\d+)")


def bind(sql: str, params: list) -> tuple[str, list]:
    """Renumber the ``$n`` parameters that ``sql`` actually uses to 1..k and return their values
    (DuckDB refuses values for parameters a statement does not use)."""
    mapping: dict[int, int] = {}
    out: list = []

    def sub(m: re.Match) -> str:
        n = int(m.group(1))
        if n not in mapping:
            mapping[n] = len(out) + 1
            out.append(params[n - 1])
        return f"${mapping[n]}"

    return _REF.sub(sub, sql), out


def _and(*parts: str) -> str:
    parts = [p for p in parts if p != TRUE]
    if FALSE in parts:
        return FALSE
    if not parts:
        return TRUE
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def _or(*parts: str) -> str:
    parts = [p for p in parts if p != FALSE]
    if TRUE in parts:
        return TRUE
    if not parts:
        return FALSE
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _not(part: str) -> str:
    # NULL means "no match" everywhere else (AND, OR, WHERE treat it as false); only a negation
    # must turn it into FALSE first
    if part == TRUE:
        return FALSE
    if part == FALSE:
        return TRUE
    if isinstance(part, NeverNull):
        return NeverNull(f"(NOT {part})")
    return NeverNull(f"(NOT coalesce({part}, FALSE))")


def _const(b: bool) -> str:
    return TRUE if b else FALSE


class NeverNull(str):
    """SQL that is never NULL (EXISTS, IS NULL...): needs no coalesce, and stays a plain EXISTS that
    DuckDB can plan as a semi-join."""


# --------------------------------------------------------------------------------------------
# Value helpers


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_value(v: Any, where: str) -> None:
    """Operands are JSON values; anything else (a Python object, NaN...) is a clear error."""
    if v is None or isinstance(v, (bool, str)):
        return
    if isinstance(v, int):
        if not INT64[0] <= v <= INT64[1]:
            raise QueryError(f"{where}: integer {v} does not fit in 64 bits")
        return
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise QueryError(f"{where}: NaN and infinity are not supported as operands")
        return
    if isinstance(v, list):
        for x in v:
            _check_value(x, where)
        return
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise QueryError(f"{where}: field names must be strings")
            _check_value(x, where)
        return
    raise QueryError(f"{where}: unsupported value of type {type(v).__name__}")


def _exact_numbers(values: list) -> tuple[list[int], list[float]]:
    """The numbers among ``values`` as the integers and the doubles they equal exactly (MongoDB
    compares numbers by value: 2 matches 2.0; 2**53 + 1 matches no double)."""
    ints: dict[int, None] = {}
    doubles: dict[float, None] = {}
    for v in values:
        if not _is_number(v):
            continue
        if isinstance(v, float):
            doubles[v] = None
            if v.is_integer() and abs(v) < 2**64:
                ints[int(v)] = None
        else:
            ints[v] = None
            if float(v) == v:  # Python compares an int with a float exactly
                doubles[float(v)] = None
    return list(ints), list(doubles)


def _num_compare(ctx: Ctx, expr: str, kind: str, op: str, n: int | float) -> str:
    """Exact comparison of a number with operand ``n``. ``kind``: 'int' (a HUGEINT expression, from
    JSON), 'bigint' (a BIGINT column) or 'double'. MongoDB compares 64-bit integers and doubles by exact
    numeric value; so do we."""
    import math
    if kind in ("int", "bigint"):
        if isinstance(n, float):
            # integer vs double operand: x > n <=> x > floor(n); x >= n <=> x >= ceil(n);
            # x < n <=> x < ceil(n); x <= n <=> x <= floor(n); x = n only if n is integral
            if op == "=":
                if not n.is_integer():
                    return FALSE
                bound = int(n)
            else:
                bound = math.floor(n) if op in (">", "<=") else math.ceil(n)
            if abs(bound) > 2**100:
                return _const((op in (">", ">=")) == (bound < 0)) if op != "=" else FALSE
            n = int(bound)
        cast = "BIGINT" if kind == "bigint" and INT64[0] <= n <= INT64[1] else "HUGEINT"
        return f"({expr} {op} {ctx.p(n, cast)})"
    # double expression
    if isinstance(n, float) or float(n) == n:
        return f"({expr} {op} {ctx.p(float(n), 'DOUBLE')})"
    # n is an integer that is not exactly a double: doubles this large are integers, compare exactly
    exact = f"(TRY_CAST({expr} AS HUGEINT) {op} {ctx.p(n, 'HUGEINT')})"
    approx = f"({expr} {op} {ctx.p(float(n), 'DOUBLE')})"
    return f"(CASE WHEN abs({expr}) < 1e30 THEN {exact} ELSE {approx} END)"


# --------------------------------------------------------------------------------------------
# Leaf predicates. Each knows how to test one candidate of each storage kind.


class Pred:
    """A predicate over one candidate value; ``expand`` says whether leaf arrays are also tested
    element by element."""

    expand = True

    def on_missing(self) -> bool:
        raise NotImplementedError

    # candidate kinds -------------------------------------------------
    def json(self, ctx: Ctx, c: str) -> str:
        """``c`` is a JSON expression; SQL NULL means the value is missing."""
        raise NotImplementedError

    def typed(self, ctx: Ctx, c: str, sql_type: str) -> str:
        """``c`` is a typed scalar expression; SQL NULL means missing."""
        raise NotImplementedError

    def typed_list(self, ctx: Ctx, c: str, elem_type: str) -> str:
        """``c`` is a non-NULL typed list, as one candidate (the whole array)."""
        raise NotImplementedError

    def group(self, ctx: Ctx, present: str, spec_path: str, fields: dict) -> str:
        """A closed sub-document of declared fields; ``present`` is SQL true when it exists."""
        raise NotImplementedError

    def objects_array(self, ctx: Ctx, n: str, objects: "ObjectsRef") -> str:
        """A box list as one candidate (the whole array); ``n`` its length, NULL when missing."""
        raise NotImplementedError

    def object_doc(self, ctx: Ctx, objects: "ObjectsRef", row: str) -> str:
        """One element of a box list (a sub-document held in objects-table row ``row``)."""
        raise NotImplementedError


def _unsupported(what: str) -> UnsupportedOperator:
    return UnsupportedOperator(what)


# MongoDB's own operators that this compiler does not implement: a query using one is valid MongoDB,
# so it gets UnsupportedOperator; any other $-name is a typo and gets the closest valid operator.
MONGO_ONLY_OPS = {
    "$expr", "$jsonSchema", "$mod", "$text", "$where", "$geoIntersects", "$geoWithin", "$near", "$nearSphere",
    "$box", "$center", "$centerSphere", "$geometry", "$maxDistance", "$minDistance", "$polygon",
    "$bitsAllClear", "$bitsAllSet", "$bitsAnyClear", "$bitsAnySet", "$rand", "$natural", "$sampleRate",
}


def _unknown_operator(op: str, valid: set[str], where: str | None) -> QueryError:
    """The error for an operator name that neither MongoDB nor viscurate knows (``$gtee``), naming the
    closest valid one and listing them all."""
    import difflib
    if op in MONGO_ONLY_OPS:
        return _unsupported(f"operator {op}" + (f" (on {where})" if where else " (top level)"))
    close = difflib.get_close_matches(op, sorted(valid), n=1, cutoff=0.5)
    on = f" on field {where}" if where and not where.startswith("$") else (f" in {where}" if where else "")
    hint = f" — did you mean {close[0]}?" if close else "."
    return QueryError(f"unknown operator {op}{on}{hint} Valid operators: {', '.join(sorted(valid))}.")


class Eq(Pred):
    def __init__(self, value: Any):
        self.value = value

    def on_missing(self) -> bool:
        return self.value is None

    def json(self, ctx, c):
        v = self.value
        if v is None:
            return f"({c} IS NULL OR json_type({c}) = 'NULL')"
        return json_equals(ctx, c, v)

    def typed(self, ctx, c, t):
        v = self.value
        if v is None:
            return f"({c} IS NULL)"
        return typed_equals(ctx, c, t, v)

    def typed_list(self, ctx, c, t):
        v = self.value
        if not isinstance(v, list):
            return FALSE
        if not v:
            return f"(len({c}) = 0)"
        if t == "VARCHAR" and all(isinstance(x, str) for x in v):
            return f"({c} = {ctx.p(v, 'VARCHAR[]')})"
        if t in _SQL_NUMERIC and all(_is_number(x) for x in v):
            parts = [f"(len({c}) = {len(v)})"]
            for i, x in enumerate(v):
                parts.append(typed_equals(ctx, f"{c}[{i + 1}]", t, x))
            return _and(*parts)
        if t == "BOOLEAN" and all(isinstance(x, bool) for x in v):
            return f"({c} = {ctx.p(v, 'BOOLEAN[]')})"
        return FALSE

    def group(self, ctx, present, path, fields):
        v = self.value
        if v is None:
            return _not(present)
        if not isinstance(v, dict):
            return FALSE
        return group_equals(ctx, path, fields, v)

    def objects_array(self, ctx, n, objects):
        v = self.value
        if v is None:
            return FALSE  # the array exists, and its elements are documents, never null
        if isinstance(v, list) and not v:
            return f"({n} = 0)"
        if isinstance(v, list):
            raise _unsupported(f"comparing the whole list '{objects.field}' with a non-empty array; "
                               "query its elements instead (e.g. $elemMatch)")
        return FALSE

    def object_doc(self, ctx, objects, row):
        v = self.value
        if isinstance(v, dict):
            raise _unsupported(f"comparing an element of '{objects.field}' with a whole document; "
                               "use $elemMatch on its fields")
        return FALSE


class Cmp(Pred):
    SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}

    def __init__(self, op: str, value: Any):
        self.op, self.value = op, value
        self.sql = self.SQL[op]

    def on_missing(self) -> bool:
        return self.value is None and self.op in ("$gte", "$lte")

    def json(self, ctx, c):
        v = self.value
        if v is None:
            return Eq(None).json(ctx, c) if self.op in ("$gte", "$lte") else FALSE
        if _is_number(v):
            return _or(
                _and(f"json_type({c}) IN {JSON_INT_TYPES}", _num_compare(ctx, f"TRY_CAST({c} AS HUGEINT)", "int", self.sql, v)),
                _and(f"json_type({c}) = 'DOUBLE'", _num_compare(ctx, f"TRY_CAST({c} AS DOUBLE)", "double", self.sql, v)),
            )
        if isinstance(v, str):
            return f"(json_type({c}) = 'VARCHAR' AND ({c} ->> '$') {self.sql} {ctx.p(v)})"
        if isinstance(v, bool):
            return f"(json_type({c}) = 'BOOLEAN' AND (CAST({c} AS VARCHAR) = 'true') {self.sql} {ctx.p(v)})"
        bracket = "'ARRAY'" if isinstance(v, list) else "'OBJECT'"
        return f"(json_type({c}) = {bracket} AND vc_order_key(CAST({c} AS VARCHAR)) {self.sql} {ctx.p(order_key(v), 'BLOB')})"

    def typed(self, ctx, c, t):
        v = self.value
        if v is None:
            return f"({c} IS NULL)" if self.op in ("$gte", "$lte") else FALSE
        if t in _SQL_NUMERIC and _is_number(v):
            return _num_compare(ctx, c, "bigint" if t == "BIGINT" else "double", self.sql, v)
        if t == "VARCHAR" and isinstance(v, str):
            return f"({c} {self.sql} {ctx.p(v)})"
        if t == "BOOLEAN" and isinstance(v, bool):
            return f"({c} {self.sql} {ctx.p(v)})"
        return FALSE

    def typed_list(self, ctx, c, t):
        v = self.value
        if not isinstance(v, list):
            return FALSE
        return f"(vc_order_key(CAST(to_json({c}) AS VARCHAR)) {self.sql} {ctx.p(order_key(v), 'BLOB')})"

    def group(self, ctx, present, path, fields):
        v = self.value
        if v is None:
            return _not(present) if self.op in ("$gte", "$lte") else FALSE
        if isinstance(v, dict):
            raise _unsupported(f"{self.op} with a document operand on the sub-document '{path}'; compare its fields")
        return FALSE

    def objects_array(self, ctx, n, objects):
        v = self.value
        if v is None or not isinstance(v, list):
            return FALSE
        raise _unsupported(f"{self.op} with an array operand on the list '{objects.field}'")

    def object_doc(self, ctx, objects, row):
        if isinstance(self.value, dict):
            raise _unsupported(f"{self.op} with a document operand on elements of '{objects.field}'")
        return FALSE


class In(Pred):
    def __init__(self, values: list):
        self.values = values
        # strings and numbers are matched as lists (below), and mean nothing to the other kinds of
        # candidates; the rest are few distinct values (a repeated one would cost SQL again). The lists
        # are made once: a path's SQL may test the candidates in several places, with one parameter each.
        self.strings = [v for v in values if isinstance(v, str)]
        self.ints, self.doubles = _exact_numbers(values)
        self.int_texts = [str(i) for i in self.ints]  # as text: no Python int past 64 bits binds
        others = {orjson.dumps(v): v for v in values if not isinstance(v, (str, int, float)) or isinstance(v, bool)}
        self.eqs = [Eq(v) for v in others.values()]

    def on_missing(self) -> bool:
        return any(e.on_missing() for e in self.eqs)

    # Strings and numbers are each one list parameter: SQL of constant size however long the list
    # (one equality per value was ~480 characters each on free-form JSON; issue 14).

    def json(self, ctx, c):
        parts = []
        if self.strings:
            parts.append(f"(json_type({c}) = 'VARCHAR' AND list_contains({ctx.p(self.strings, 'VARCHAR[]')}, {c} ->> '$'))")
        if self.int_texts:
            parts.append(f"(json_type({c}) IN {JSON_INT_TYPES} AND "
                         f"list_contains({ctx.p(self.int_texts, 'HUGEINT[]')}, TRY_CAST({c} AS HUGEINT)))")
        if self.doubles:
            parts.append(f"(json_type({c}) = 'DOUBLE' AND "
                         f"list_contains({ctx.p(self.doubles, 'DOUBLE[]')}, TRY_CAST({c} AS DOUBLE)))")
        parts += [e.json(ctx, c) for e in self.eqs]
        return _or(*parts)

    def typed(self, ctx, c, t):
        parts = []
        if t == "VARCHAR":
            if self.strings:
                parts.append(f"list_contains({ctx.p(self.strings, 'VARCHAR[]')}, {c})")
        elif t in _SQL_NUMERIC:
            if t == "BIGINT":
                ints = [str(i) for i in self.ints if INT64[0] <= i <= INT64[1]]
                if ints:
                    parts.append(f"list_contains({ctx.p(ints, 'BIGINT[]')}, {c})")
            elif self.doubles:
                parts.append(f"list_contains({ctx.p(self.doubles, 'DOUBLE[]')}, {c})")
        parts += [e.typed(ctx, c, t) for e in self.eqs]
        return _or(*parts)

    def typed_list(self, ctx, c, t):
        return _or(*[e.typed_list(ctx, c, t) for e in self.eqs])

    def group(self, ctx, present, path, fields):
        return _or(*[e.group(ctx, present, path, fields) for e in self.eqs])

    def objects_array(self, ctx, n, objects):
        return _or(*[e.objects_array(ctx, n, objects) for e in self.eqs])

    def object_doc(self, ctx, objects, row):
        return _or(*[e.object_doc(ctx, objects, row) for e in self.eqs])


class Exists(Pred):
    expand = False

    def on_missing(self) -> bool:
        return False

    def json(self, ctx, c):
        return f"({c} IS NOT NULL)"

    def typed(self, ctx, c, t):
        return f"({c} IS NOT NULL)"

    def typed_list(self, ctx, c, t):
        return TRUE

    def group(self, ctx, present, path, fields):
        return present

    def objects_array(self, ctx, n, objects):
        return f"({n} IS NOT NULL)"

    def object_doc(self, ctx, objects, row):
        return TRUE


class TypeIs(Pred):
    def __init__(self, names: set[str]):
        self.names = names

    def on_missing(self) -> bool:
        return False

    def json(self, ctx, c):
        parts = []
        simple = {"double": "DOUBLE", "string": "VARCHAR", "object": "OBJECT", "array": "ARRAY",
                  "bool": "BOOLEAN", "null": "NULL"}
        kinds = [simple[n] for n in self.names if n in simple]
        if kinds:
            parts.append(f"json_type({c}) IN ({', '.join(repr(k) for k in kinds)})")
        int_range = f"TRY_CAST({c} AS HUGEINT) BETWEEN {INT32[0]} AND {INT32[1]}"
        if "int" in self.names:
            parts.append(f"(json_type({c}) IN {JSON_INT_TYPES} AND {int_range})")
        if "long" in self.names:
            parts.append(f"(json_type({c}) IN {JSON_INT_TYPES} AND NOT ({int_range}))")
        return _or(*parts)

    def typed(self, ctx, c, t):
        names = self.names
        if t == "VARCHAR":
            return f"({c} IS NOT NULL)" if "string" in names else FALSE
        if t == "BOOLEAN":
            return f"({c} IS NOT NULL)" if "bool" in names else FALSE
        if t == "DOUBLE":
            return f"({c} IS NOT NULL)" if "double" in names else FALSE
        if t == "BIGINT":
            parts = []
            if "int" in names:
                parts.append(f"({c} BETWEEN {INT32[0]} AND {INT32[1]})")
            if "long" in names:
                parts.append(f"({c} NOT BETWEEN {INT32[0]} AND {INT32[1]})")
            return _or(*parts)
        return FALSE

    def typed_list(self, ctx, c, t):
        return _const("array" in self.names)

    def group(self, ctx, present, path, fields):
        return present if "object" in self.names else FALSE

    def objects_array(self, ctx, n, objects):
        return f"({n} IS NOT NULL)" if "array" in self.names else FALSE

    def object_doc(self, ctx, objects, row):
        return _const("object" in self.names)


class Regex(Pred):
    def __init__(self, pattern: str, options: str):
        bad = set(options) - set("imsx")
        if bad:
            raise QueryError(f"$options: unsupported regex option(s) {''.join(sorted(bad))!r}")
        if "x" in options:
            raise _unsupported("$regex option 'x' (extended syntax)")
        flags = "".join(o for o in "ims" if o in options)
        for construct, name in (("(?=", "lookahead"), ("(?!", "negative lookahead"), ("(?<=", "lookbehind"),
                                ("(?<!", "negative lookbehind"), ("(?>", "atomic group")):
            if construct in pattern:
                raise _unsupported(f"$regex {name} {construct!r} (regular expressions run on RE2)")
        if re.search(r"\\[1-9]", pattern):
            raise _unsupported("$regex backreferences (regular expressions run on RE2)")
        try:
            re.compile(pattern)
        except re.error as e:
            raise QueryError(f"invalid $regex {pattern!r}: {e}") from None
        self.pattern = f"(?{flags}){pattern}" if flags else pattern

    def on_missing(self) -> bool:
        return False

    def json(self, ctx, c):
        return f"(json_type({c}) = 'VARCHAR' AND regexp_matches({c} ->> '$', {ctx.p(self.pattern)}))"

    def typed(self, ctx, c, t):
        if t != "VARCHAR":
            return FALSE
        return f"regexp_matches({c}, {ctx.p(self.pattern)})"

    def typed_list(self, ctx, c, t):
        return FALSE

    def group(self, ctx, present, path, fields):
        return FALSE

    def objects_array(self, ctx, n, objects):
        return FALSE

    def object_doc(self, ctx, objects, row):
        return FALSE


class Size(Pred):
    expand = False

    def __init__(self, n: int):
        self.n = n

    def on_missing(self) -> bool:
        return False

    def json(self, ctx, c):
        return f"(json_type({c}) = 'ARRAY' AND json_array_length({c}) = {ctx.p(self.n)})"

    def typed(self, ctx, c, t):
        return FALSE

    def typed_list(self, ctx, c, t):
        return f"(len({c}) = {ctx.p(self.n)})"

    def group(self, ctx, present, path, fields):
        return FALSE

    def objects_array(self, ctx, n, objects):
        return f"({n} = {ctx.p(self.n)})"

    def object_doc(self, ctx, objects, row):
        return FALSE


class ElemMatch(Pred):
    """``$elemMatch``: some element of an array candidate satisfies the sub-query. In value form
    (``{"$gt": 1}``) the operators apply to the element itself, without leaf expansion; in object form
    (``{"name": "cat"}``) the element must be a document (or an array, read as a document whose
    fields are its positions) and the sub-query applies to it as a root."""

    expand = False

    def __init__(self, spec: dict, compiler: "Compiler"):
        if not isinstance(spec, dict):
            raise QueryError("$elemMatch needs an object")
        self.spec = spec
        self.compiler = compiler
        keys = list(spec)
        self.value_form = bool(keys) and keys[0].startswith("$") and keys[0] not in LOGICAL
        if self.value_form:
            for k in keys:
                if not k.startswith("$") or k in LOGICAL:
                    raise QueryError("$elemMatch cannot mix operators and field names")
            self.ops = compiler.field_preds(spec, "$elemMatch")

    def on_missing(self) -> bool:
        return False

    def _value_form(self, ctx, fn: Callable[[Pred], str]) -> str:
        # each operator applies to the element itself (no leaf expansion)
        return on_candidate(self.ops, fn)

    def json(self, ctx, c):
        e = ctx.var("e")
        if self.value_form:
            body = self._value_form(ctx, lambda pred: pred.json(ctx, e))
        else:
            # compiled once for both kinds of element (twice grew 4x per nesting level; issue 14)
            body = _and(f"json_type({e}) IN ('OBJECT', 'ARRAY')", self.compiler.compile_doc(self.spec, JsonRoot(e), ctx))
        return f"(json_type({c}) = 'ARRAY' AND list_bool_or(list_transform(json_extract({c}, '$[*]'), lambda {e}: {body})))"

    def typed(self, ctx, c, t):
        return FALSE

    def typed_list(self, ctx, c, t):
        if not self.value_form:
            return FALSE
        e = ctx.var("e")
        body = self._value_form(ctx, lambda pred: pred.typed(ctx, e, t))
        return f"list_bool_or(list_transform({c}, lambda {e}: {body}))"

    def group(self, ctx, present, path, fields):
        return FALSE

    def objects_array(self, ctx, n, objects):
        if self.value_form:
            o = ctx.var("o")
            body = self._value_form(ctx, lambda pred: pred.object_doc(ctx, objects, o))
            return objects.exists(ctx, o, body)
        o = ctx.var("o")
        body = self.compiler.compile_doc(self.spec, ObjectRowRoot(o, objects), ctx)
        return objects.exists(ctx, o, body)

    def object_doc(self, ctx, objects, row):
        return FALSE


class _Group(Pred):
    """Several operators on one path, ANDed (each with its own candidates), some negated."""

    def __init__(self, items: list[tuple[bool, Pred]]):
        self.items = items


def on_candidate(items: list[tuple[bool, Pred]], fn: Callable[[Pred], str]) -> str:
    """AND of (possibly negated) predicates applied by ``fn`` to one candidate, groups flattened."""
    parts = []
    for negated, pred in items:
        sql = on_candidate(pred.items, fn) if isinstance(pred, _Group) else fn(pred)
        parts.append(_not(sql) if negated else sql)
    return _and(*parts)


# --------------------------------------------------------------------------------------------
# Roots and traversal


@dataclass
class ObjectsRef:
    """A box list: rows of the objects table for one sample and one field."""

    field: str
    sample_seq: str  # SQL expression of the owning sample's _seq

    def exists(self, ctx: Ctx, alias: str, cond: str) -> str:
        if cond == FALSE:
            return FALSE
        cond = "" if cond == TRUE else f" AND {cond}"
        return NeverNull(f"EXISTS (SELECT 1 FROM objects {alias} WHERE {alias}.sample_seq = {self.sample_seq} "
                         f"AND {alias}.field = {ctx.p(self.field)}{cond})")


@dataclass
class SampleRoot:
    alias: str = "s"


@dataclass
class JsonRoot:
    """A JSON document or an array, read as a document whose fields are its positions."""

    expr: str


@dataclass
class ObjectRowRoot:
    alias: str
    objects: ObjectsRef


class Compiler:
    """Compiles one query. ``fields`` maps declared sample paths to their specs."""

    def __init__(self, fields: dict[str, schema.FieldSpec] | None = None,
                 object_attrs: dict[str, schema.FieldSpec] | None = None, budget: QueryBudget | None = None):
        self.fields = fields if fields is not None else schema.FIELDS
        self.object_attrs = object_attrs if object_attrs is not None else schema.OBJECT_ATTRS
        self.budget = budget if budget is not None else QueryBudget.from_env()
        self._charged = 0
        self.json_reads = 0  # traversals of free-form JSON written so far: each parses JSON text per row

    def charge(self, sql_bytes: int) -> None:
        """Count SQL written for branches of logical operators (an upper bound of the final size)."""
        self._charged += sql_bytes
        if self._charged > self.budget.max_sql_bytes:
            raise over_budget(f"the query compiles to more than {self.budget.max_sql_bytes} bytes of SQL",
                              "max_sql_bytes", self.budget.max_sql_bytes)

    # ---- documents and logical operators ---------------------------------------------------

    def compile_doc(self, query: dict, root, ctx: Ctx) -> str:
        if not isinstance(query, dict):
            raise QueryError(f"a query must be an object, got {type(query).__name__}")
        parts = []
        for key, value in query.items():
            if not isinstance(key, str):
                raise QueryError("field names must be strings")
            if key.startswith("$"):
                if key in IGNORED_TOP:
                    continue
                if key not in LOGICAL:
                    raise _unknown_operator(key, LOGICAL | IGNORED_TOP, None)
                if not isinstance(value, list) or not value:
                    raise QueryError(f"{key} needs a non-empty array of queries")
                subs = []
                for q in value:  # the SQL budget stops a wide query as soon as it is over, not after
                    subs.append(self.compile_doc(q, root, ctx))
                    self.charge(len(subs[-1]))
                if key == "$and":
                    parts.append(_and(*subs))
                elif key == "$or":
                    parts.append(_or(*subs))
                else:
                    parts.append(_not(_or(*subs)))
                continue
            path = self.split_path(key)
            parts.append(self.compile_field(path, value, root, ctx))
        return _and(*parts)

    @staticmethod
    def split_path(key: str) -> list[str]:
        parts = key.split(".")
        for p in parts:
            if p == "":
                raise QueryError(f"invalid field path {key!r}: empty component")
            if p.startswith("$"):
                raise _unsupported(f"positional or operator path component {p!r} in {key!r}")
        return parts

    def compile_field(self, path: list[str], value: Any, root, ctx: Ctx) -> str:
        items = self.field_preds(value, ".".join(path))
        parts = []
        for negated, pred in items:
            sql = self.any(root, path, pred, ctx)
            parts.append(_not(sql) if negated else sql)
        return _and(*parts)

    def field_preds(self, value: Any, where: str) -> list[tuple[bool, Pred]]:
        """The (negated, predicate) list a field's value means: a literal is equality, an object whose
        first key starts with '$' is a set of operators."""
        if isinstance(value, dict) and value and next(iter(value)).startswith("$"):
            return self.operator_preds(value, where)
        if isinstance(value, dict):
            for k in value:
                if k.startswith("$"):
                    raise QueryError(f"{where}: cannot mix operators and fields in one object")
        _check_value(value, where)
        return [(False, Eq(value))]

    def operator_preds(self, ops: dict, where: str) -> list[tuple[bool, Pred]]:
        out: list[tuple[bool, Pred]] = []
        keys = list(ops)
        for k in keys:
            if not k.startswith("$"):
                raise QueryError(f"{where}: cannot mix operators and fields in one object")
            if k not in KNOWN_FIELD_OPS:
                raise _unknown_operator(k, KNOWN_FIELD_OPS, where)
        if "$options" in ops and "$regex" not in ops:
            raise QueryError(f"{where}: $options needs $regex")
        for k, v in ops.items():
            if k in ("$eq", "$ne"):
                _check_value(v, where)
                out.append((k == "$ne", Eq(v)))
            elif k in Cmp.SQL:
                _check_value(v, where)
                out.append((False, Cmp(k, v)))
            elif k in ("$in", "$nin"):
                if not isinstance(v, list):
                    raise QueryError(f"{where}: {k} needs an array")
                for x in v:
                    if isinstance(x, dict) and any(str(kk).startswith("$") for kk in x):
                        raise QueryError(f"{where}: cannot nest $ under {k}")
                _check_value(v, where)
                out.append((k == "$nin", In(v)))
            elif k == "$exists":
                out.append((not _truthy(v), Exists()))
            elif k == "$type":
                out.append((False, TypeIs(_type_names(v, where))))
            elif k == "$regex":
                if not isinstance(v, str):
                    raise QueryError(f"{where}: $regex needs a string pattern")
                opts = ops.get("$options", "")
                if not isinstance(opts, str):
                    raise QueryError(f"{where}: $options needs a string")
                out.append((False, Regex(v, opts)))
            elif k == "$options":
                continue
            elif k == "$size":
                if isinstance(v, bool) or not _is_number(v) or v < 0 or (isinstance(v, float) and not v.is_integer()):
                    raise QueryError(f"{where}: $size needs a non-negative integer")
                out.append((False, Size(int(v))))
            elif k == "$all":
                if not isinstance(v, list):
                    raise QueryError(f"{where}: $all needs an array")
                if not v:
                    out.append((False, _Never()))
                for item in v:
                    if isinstance(item, dict) and item and next(iter(item)).startswith("$"):
                        if list(item) != ["$elemMatch"]:
                            raise QueryError(f"{where}: $all accepts values or {{$elemMatch: ...}}")
                        out.append((False, ElemMatch(item["$elemMatch"], self)))
                    else:
                        _check_value(item, where)
                        out.append((False, Eq(item)))
            elif k == "$elemMatch":
                out.append((False, ElemMatch(v, self)))
            elif k == "$not":
                if isinstance(v, dict):
                    if not v or not next(iter(v)).startswith("$"):
                        raise QueryError(f"{where}: $not needs an operator object or a regex")
                    out.append((True, _Group(self.operator_preds(v, where))))
                else:
                    raise QueryError(f"{where}: $not needs an operator object")
        return out

    # ---- traversal -----------------------------------------------------------------------------

    def any(self, root, path: list[str], pred: Pred, ctx: Ctx) -> str:
        """SQL that is true when some candidate value at ``path`` under ``root`` satisfies ``pred``."""
        if isinstance(pred, _Group):
            parts = []
            for negated, p in pred.items:
                sql = self.any(root, path, p, ctx)
                parts.append(_not(sql) if negated else sql)
            return _and(*parts)
        if isinstance(root, SampleRoot):
            return self._sample_any(root, path, pred, ctx)
        if isinstance(root, ObjectRowRoot):
            return self._object_row_any(root, path, pred, ctx)
        head, rest = path[0], path[1:]
        ptr = ctx.p(json_pointer(head))
        if is_index(head):  # a field of a document, or a position of an array
            top = f"json_extract({root.expr}, {ptr})"
        else:  # only a document has it: an array read as a document has positions only
            top = f"(CASE WHEN json_type({root.expr}) = 'OBJECT' THEN json_extract({root.expr}, {ptr}) END)"
        return self.json_any(top, rest, pred, ctx)

    def _sample_any(self, root: SampleRoot, path: list[str], pred: Pred, ctx: Ctx) -> str:
        head = path[0]
        spec = self.fields.get(head)
        if spec is None:
            return self._free_json_any(f"{root.alias}.extra", path, pred, ctx)
        return self._declared_any(root, spec, path[1:], pred, ctx)

    def _free_json_any(self, column: str, path: list[str], pred: Pred, ctx: Ctx) -> str:
        """A path into a free-form JSON column (an object of top-level fields), exactly, plus two
        speed-ups that never change the result:
        - the value at the whole path read in one go (a JSON pointer) is always one of MongoDB's
          candidates, so a match on it is a match (``direct OR exact`` = ``exact``, and the exact
          traversal runs only where the direct read did not match);
        - equality with strings needs the string in the JSON text (see ``_with_text_prefilter``)."""
        self.json_reads += 1
        first = f"json_extract({column}, {ctx.p(json_pointer(path[0]))})"
        exact = self.json_any(first, path[1:], pred, ctx)
        if not pred.on_missing() and exact not in (TRUE, FALSE) and not any(is_index(p) for p in path):
            # Where no value along the path is an array, MongoDB's traversal is a chain of field
            # lookups, which is what a JSON pointer does: one parse instead of one per step.
            pointer = "".join(json_pointer(p) for p in path)
            value = f"json_extract({column}, {ctx.p(pointer)})"
            strings = _string_operands(pred)
            if strings:  # a string's JSON text is unique to it: one parse, no type check
                texts = [orjson.dumps(v).decode() for v in strings]
                direct = _or(f"list_contains({ctx.p(texts, 'VARCHAR[]')}, CAST({value} AS VARCHAR))",
                             _and(f"json_type({value}) = 'ARRAY'", self.json_any(value, [], pred, ctx)))
            else:
                direct = self.json_any(value, [], pred, ctx)
            prefixes = ["".join(json_pointer(p) for p in path[:k]) for k in range(1, len(path))]
            crossing = _or(*[f"(json_type(json_extract({column}, {ctx.p(ptr)})) = 'ARRAY')" for ptr in prefixes])
            exact = _or(direct, _and(crossing, exact))
        return _with_text_prefilter(column, pred, exact, ctx)

    def _declared_any(self, root: SampleRoot, spec: schema.FieldSpec, rest: list[str], pred: Pred, ctx: Ctx) -> str:
        col = f"{root.alias}.{spec.column}"
        if spec.kind == "scalar":
            if rest:
                return _const(pred.on_missing())
            return pred.typed(ctx, col, spec.sql_type)
        if spec.kind == "list":
            return self.typed_list_any(col, spec.sql_type, rest, pred, ctx)
        if spec.kind == "group":
            if rest:
                child = self.fields.get(spec.path + "." + rest[0])
                if child is None:
                    return _const(pred.on_missing())
                return self._declared_any(root, child, rest[1:], pred, ctx)
            return pred.group(ctx, self.group_present(root.alias, spec.path), spec.path, self.fields)
        # objects
        objects = ObjectsRef(spec.path, f"{root.alias}._seq")
        n = f"{root.alias}.{schema.column_name(spec.path + '#n')}"
        return self.objects_any(objects, n, rest, pred, ctx)

    def group_present(self, alias: str, path: str) -> str:
        leaves = schema.leaves_under(path, self.fields)
        cols = []
        for leaf in leaves:
            name = leaf.path + "#n" if leaf.kind == "objects" else leaf.path
            cols.append(f"{alias}.{schema.column_name(name)} IS NOT NULL")
        return "(" + " OR ".join(cols) + ")"

    def typed_list_any(self, col: str, t: str, rest: list[str], pred: Pred, ctx: Ctx) -> str:
        if rest:
            head = rest[0]
            if not is_index(head):
                # elements are scalars: nothing to descend into; a missing list means a missing value
                return self._missing_or(col, pred, FALSE)
            if len(rest) > 1:
                inner = FALSE  # a scalar reached by position has nothing below it, not even "missing"
            else:
                inner = pred.typed(ctx, f"{col}[{int(head) + 1}]", t)
            return self._missing_or(col, pred, _and(f"len({col}) > {int(head)}", inner))
        whole = pred.typed_list(ctx, col, t)
        if pred.expand:
            e = ctx.var("e")
            elem = pred.typed(ctx, e, t)
            if elem != FALSE:
                if isinstance(pred, Eq) and pred.value is not None and not isinstance(pred.value, (list, dict)):
                    if (t == "VARCHAR" and isinstance(pred.value, str)):
                        elem_any = f"list_contains({col}, {ctx.p(pred.value)})"
                    else:
                        elem_any = f"list_bool_or(list_transform({col}, lambda {e}: {elem}))"
                else:
                    elem_any = f"list_bool_or(list_transform({col}, lambda {e}: {elem}))"
                whole = _or(whole, elem_any)
        return self._missing_or(col, pred, whole)

    @staticmethod
    def _missing_or(col: str, pred: Pred, present_sql: str) -> str:
        """``present_sql`` where ``col`` is present; what ``pred`` says of a missing value elsewhere."""
        if pred.on_missing():
            return _or(NeverNull(f"({col} IS NULL)"), present_sql)
        return _and(NeverNull(f"({col} IS NOT NULL)"), present_sql)

    def objects_any(self, objects: ObjectsRef, n: str, rest: list[str], pred: Pred, ctx: Ctx) -> str:
        if not rest:
            whole = pred.objects_array(ctx, n, objects)
            if pred.expand:
                o = ctx.var("o")
                elem = pred.object_doc(ctx, objects, o)
                whole = _or(whole, objects.exists(ctx, o, elem))
            return self._missing_or(n, pred, whole)
        head = rest[0]
        o = ctx.var("o")
        by_field = objects.exists(ctx, o, self._object_row_any(ObjectRowRoot(o, objects), rest, pred, ctx))
        if is_index(head):
            p = ctx.var("o")
            if len(rest) == 1:
                inner = pred.object_doc(ctx, objects, p)
            else:
                inner = self._object_row_any(ObjectRowRoot(p, objects), rest[1:], pred, ctx)
            by_pos = objects.exists(ctx, p, _and(f"{p}.idx = {int(head)}", inner))
            by_field = _or(by_field, by_pos)
        # a missing list has no rows in the objects table, so only "missing matches" needs the count
        return _or(f"({n} IS NULL)", by_field) if pred.on_missing() else by_field

    def _object_row_any(self, root: ObjectRowRoot, path: list[str], pred: Pred, ctx: Ctx) -> str:
        head, rest = path[0], path[1:]
        spec = self.object_attrs.get(head)
        col = f"{root.alias}.{schema.column_name(head)}"
        if spec is None:
            return self._free_json_any(f"{root.alias}.attrs", path, pred, ctx)
        if spec.kind == "scalar":
            if rest:
                return _const(pred.on_missing())
            return pred.typed(ctx, col, spec.sql_type)
        return self.typed_list_any(col, spec.sql_type, rest, pred, ctx)

    def json_any(self, v: str, path: list[str], pred: Pred, ctx: Ctx, positional: bool = False) -> str:
        """Candidates of a free-form JSON value ``v`` (SQL NULL = missing) along ``path``. ``positional``:
        ``v`` was reached by an array position (then a leaf array is not expanded, and a scalar met
        before the end of the path yields no candidate rather than a missing one)."""
        self.json_reads += 1
        if not path:
            return self._json_leaf(v, pred, ctx, None if positional else TRUE)
        # The candidates are listed once, step by step, and the predicate is written once for all of
        # them: SQL that grows linearly with the path (a branch per step for objects and arrays grew
        # 2-3x per step: a 10-part path compiled to gigabytes; issue 14).
        cands = f"[{{'v': {v}, 'p': {_const(positional)}}}]"
        for part in path:
            cands = self._json_step(cands, part, ctx)
        c = ctx.var("c")
        leaf = self._json_leaf(f"{c}.v", pred, ctx, f"NOT {c}.p")
        if leaf == FALSE:
            return FALSE
        return f"list_bool_or(list_transform({cands}, lambda {c}: {leaf}))"

    @staticmethod
    def _json_leaf(v: str, pred: Pred, ctx: Ctx, expands: str | None) -> str:
        """``pred`` on candidate ``v`` and, where the SQL ``expands`` holds, on its elements when it
        is an array (``None``: never, the value was reached by position)."""
        here = pred.json(ctx, v)
        if not pred.expand or expands is None:
            return here
        e = ctx.var("e")
        elem = pred.json(ctx, e)
        if elem == FALSE:
            return here
        return _or(here, _and(expands, f"json_type({v}) = 'ARRAY'",
                              f"list_bool_or(list_transform(json_extract({v}, '$[*]'), lambda {e}: {elem}))"))

    @staticmethod
    def _json_step(cands: str, part: str, ctx: Ctx) -> str:
        """The candidates one path component below ``cands``, a list of ``{v: JSON, p: reached by
        position}`` (``v`` NULL: missing). MongoDB's traversal: an object gives its field (maybe
        missing); an array gives the field of each element that is a document and, for a numeric
        component, the element at that position when there is one; anything else is missing, or
        nothing at all below a value reached by position."""
        c, e = ctx.var("c"), ctx.var("e")
        ptr = ctx.p(json_pointer(part))
        in_object = f"[{{'v': json_extract({c}.v, {ptr}), 'p': FALSE}}]"
        in_array = (f"list_transform(list_filter(json_extract({c}.v, '$[*]'), lambda {e}: json_type({e}) = 'OBJECT'), "
                    f"lambda {e}: {{'v': json_extract({e}, {ptr}), 'p': FALSE}})")
        if is_index(part):
            # a position past the end yields no candidate at all (not a missing one)
            by_pos = (f"CASE WHEN json_array_length({c}.v) > {int(part)} "
                      f"THEN [{{'v': json_extract({c}.v, {ptr}), 'p': TRUE}}] ELSE {_NO_CANDIDATES} END")
            in_array = f"list_concat({in_array}, {by_pos})"
        missing = f"CASE WHEN {c}.p THEN {_NO_CANDIDATES} ELSE [{{'v': NULL::JSON, 'p': FALSE}}] END"
        return (f"flatten(list_transform({cands}, lambda {c}: CASE json_type({c}.v) WHEN 'OBJECT' THEN {in_object} "
                f"WHEN 'ARRAY' THEN {in_array} ELSE {missing} END))")


class _Never(Pred):
    """``$all: []`` matches nothing."""

    def on_missing(self):
        return False

    def json(self, ctx, c):
        return FALSE

    typed = typed_list = lambda self, ctx, c, t: FALSE
    group = lambda self, ctx, present, path, fields: FALSE
    objects_array = lambda self, ctx, n, objects: FALSE
    object_doc = lambda self, ctx, objects, row: FALSE


def _string_operands(pred: Pred) -> list[str] | None:
    """The strings an equality or $in predicate looks for, when those are all it looks for."""
    if isinstance(pred, Eq) and isinstance(pred.value, str):
        return [pred.value]
    if isinstance(pred, In) and pred.values and all(isinstance(v, str) for v in pred.values):
        return list(pred.values)
    return None


def _with_text_prefilter(column: str, pred: Pred, sql: str, ctx: Ctx) -> str:
    """Equality with strings inside free-form JSON: the JSON text must contain the string, encoded as
    JSON. That necessary condition is a fast substring scan that spares most rows the full traversal."""
    needles = _string_operands(pred)
    if not needles or sql in (TRUE, FALSE):
        return sql
    if len(needles) > MAX_PREFILTER_NEEDLES:
        return sql  # a speed-up only: one substring scan per value would cost more than it saves
    text = f"CAST({column} AS VARCHAR)"
    found = _or(*[f"contains({text}, {ctx.p(orjson.dumps(v).decode())})" for v in needles])
    return _and(found, sql)


def _truthy(v: Any) -> bool:
    if isinstance(v, (bool, int, float)):
        return bool(v)
    if v is None:
        return False
    return True


def _type_names(v: Any, where: str) -> set[str]:
    items = v if isinstance(v, list) else [v]
    if not items:
        raise QueryError(f"{where}: $type needs at least one type")
    names: set[str] = set()
    for item in items:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if isinstance(item, (dict, list)):  # unhashable, and no type name or number either
            raise QueryError(f"{where}: unknown $type {item!r}")
        if item in TYPE_ALIASES and not isinstance(item, bool):
            names |= TYPE_ALIASES[item]
        elif item in NEVER_TYPES or (isinstance(item, int) and not isinstance(item, bool) and item in NEVER_TYPES.values()):
            continue
        else:
            raise QueryError(f"{where}: unknown $type {item!r}")
    return names


# --------------------------------------------------------------------------------------------
# Equality helpers


def json_equals(ctx: Ctx, c: str, v: Any) -> str:
    """Exact MongoDB equality of JSON expression ``c`` (present) with literal ``v``."""
    if v is None:
        return f"(json_type({c}) = 'NULL')"
    if isinstance(v, bool):
        return f"(json_type({c}) = 'BOOLEAN' AND CAST({c} AS VARCHAR) = {ctx.p('true' if v else 'false')})"
    if _is_number(v):
        return _or(
            _and(f"json_type({c}) IN {JSON_INT_TYPES}", _num_compare(ctx, f"TRY_CAST({c} AS HUGEINT)", "int", "=", v)),
            _and(f"json_type({c}) = 'DOUBLE'", _num_compare(ctx, f"TRY_CAST({c} AS DOUBLE)", "double", "=", v)),
        )
    if isinstance(v, str):
        return f"(json_type({c}) = 'VARCHAR' AND ({c} ->> '$') = {ctx.p(v)})"
    if isinstance(v, list):
        parts = [f"json_type({c}) = 'ARRAY'", f"json_array_length({c}) = {len(v)}"]
        for i, x in enumerate(v):
            parts.append(json_equals(ctx, f"json_extract({c}, {ctx.p('/' + str(i))})", x))
        return _and(*parts)
    parts = [f"json_type({c}) = 'OBJECT'", f"json_keys({c}) = {ctx.p(list(v.keys()), 'VARCHAR[]')}"]
    for k, x in v.items():
        parts.append(json_equals(ctx, f"json_extract({c}, {ctx.p(json_pointer(k))})", x))
    return _and(*parts)


def typed_equals(ctx: Ctx, c: str, t: str, v: Any) -> str:
    if v is None or isinstance(v, (list, dict)):
        return FALSE
    if isinstance(v, bool):
        return f"({c} = {ctx.p(v)})" if t == "BOOLEAN" else FALSE
    if _is_number(v):
        if t not in _SQL_NUMERIC:
            return FALSE
        return _num_compare(ctx, c, "bigint" if t == "BIGINT" else "double", "=", v)
    if isinstance(v, str):
        return f"({c} = {ctx.p(v)})" if t == "VARCHAR" else FALSE
    return FALSE


def group_equals(ctx: Ctx, path: str, fields: dict, v: dict, alias: str = "s") -> str:
    """A closed sub-document equals a literal document when exactly the literal's keys are present, in
    declaration order, with equal values."""
    if not v:
        return FALSE  # a present group always holds a field; an absent one is missing, not {}
    kids = schema.children(path, fields)
    names = [k.path[len(path) + 1:] for k in kids]
    keys = list(v)
    if any(k not in names for k in keys):
        return FALSE
    if [n for n in names if n in keys] != keys:
        return FALSE  # Mongo compares sub-documents field by field in order
    parts = []
    for kid, name in zip(kids, names):
        col = f"{alias}.{kid.column}"
        if name not in v:
            if kid.kind == "group":
                parts.append(_not(Compiler(fields).group_present(alias, kid.path)))
            elif kid.kind == "objects":
                parts.append(f"({alias}.{schema.column_name(kid.path + '#n')} IS NULL)")
            else:
                parts.append(f"({col} IS NULL)")
            continue
        x = v[name]
        if kid.kind == "scalar":
            parts.append(typed_equals(ctx, col, kid.sql_type, x) if x is not None else FALSE)
        elif kid.kind == "list":
            parts.append(_and(f"({col} IS NOT NULL)", Eq(x).typed_list(ctx, col, kid.sql_type)))
        elif kid.kind == "group":
            parts.append(group_equals(ctx, kid.path, fields, x, alias) if isinstance(x, dict) else FALSE)
        else:
            if isinstance(x, list) and not x:
                parts.append(f"({alias}.{schema.column_name(kid.path + '#n')} = 0)")
            else:
                raise _unsupported(f"comparing the sub-document '{path}' that holds the list '{kid.path}'")
    return _and(*parts)


# --------------------------------------------------------------------------------------------
# Entry points


def compile_query(query: dict | None, fields: dict | None = None, ctx: Ctx | None = None) -> tuple[str, list]:
    """Compile a MongoDB filter into a SQL boolean over the samples table aliased ``s``; parameters are
    numbered ($1, $2...) and appended to ``ctx`` when one is given."""
    ctx = ctx if ctx is not None else Ctx()
    if not query:
        return TRUE, ctx.params
    sql, _ = _compile_filter(query, fields, ctx)
    # no outer coalesce: WHERE treats NULL as false, and a bare conjunction lets DuckDB filter in steps
    return sql, ctx.params


def _compile_filter(query: dict, fields: dict | None, ctx: Ctx) -> tuple[str, Compiler]:
    budget = QueryBudget.from_env()
    check_query(query, budget)  # before any work: compilation is linear in a query of bounded size
    compiler = Compiler(fields, budget=budget)
    try:
        sql = compiler.compile_doc(query, SampleRoot(), ctx)
    except RecursionError:  # only where a raised max_depth lets a query nest beyond Python's stack
        raise over_budget("the query nests too deeply to compile", "max_depth", budget.max_depth) from None
    check_sql(sql, budget)
    return sql, compiler


@dataclass(frozen=True)
class QueryCost:
    """What running a query will cost, as its compilation shows, before it runs: ``sql_bytes`` of SQL
    (filter and sort), ``json_reads``: traversals of free-form JSON (fields no schema declares, read from
    each row's JSON text: a scan that parses every row, where a declared field is a typed column), and
    whether the sort reads free-form JSON too (a key computed per row)."""

    sql_bytes: int
    json_reads: int
    json_sort: bool

    #: compiled SQL beyond this many bytes is costly to plan, whatever it reads
    LARGE_SQL_BYTES = 8 * 1024

    @property
    def heavy(self) -> bool:
        """A scan of free-form JSON or a large statement: the queries a server runs apart, so that they
        cannot take every request thread from the typed-column ones (``server.admission``)."""
        return self.json_reads > 0 or self.json_sort or self.sql_bytes > self.LARGE_SQL_BYTES


def query_cost(query: dict | None, sort: Any = None, fields: dict | None = None) -> QueryCost:
    """Compile ``query`` (and ``sort``) as a read would, budgets and all, and say what it will cost.
    Raises ``QueryError`` where the read would: a malformed query or one over budget. No schema declares
    ``camera``: it is read from each row's JSON.

    >>> query_cost({"width": {"$gt": 100}}).heavy
    False
    >>> cost = query_cost({"camera.model": "X100"})
    >>> cost.json_reads > 0, cost.heavy
    (True, True)
    """
    ctx = Ctx()
    sql_bytes, json_reads = 0, 0
    if query:
        sql, compiler = _compile_filter(query, fields, ctx)
        sql_bytes, json_reads = len(sql), compiler.json_reads
    terms, _ = compile_sort(sort, fields, ctx)
    return QueryCost(sql_bytes=sql_bytes + sum(map(len, terms)), json_reads=json_reads,
                     json_sort=any("json_extract" in t for t in terms))


def compile_sort(sort: Any, fields: dict | None = None, ctx: Ctx | None = None) -> tuple[list[str], list]:
    """ORDER BY terms for a MongoDB sort: ``[("width", -1), ("_id", 1)]`` or ``{"width": -1}``."""
    fields = fields if fields is not None else schema.FIELDS
    ctx = ctx if ctx is not None else Ctx()
    if sort is None:
        return [], ctx.params
    if isinstance(sort, dict):
        items = list(sort.items())
    elif isinstance(sort, str):
        items = [(sort, 1)]
    else:
        items = []
        for item in sort:
            if isinstance(item, str):
                items.append((item, 1))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                items.append((item[0], item[1]))
            else:
                raise QueryError(f"invalid sort item {item!r}")
    terms = []
    for key, direction in items:
        if direction in (1, "asc", "ascending"):
            desc = False
        elif direction in (-1, "desc", "descending"):
            desc = True
        else:
            raise QueryError(f"sort direction for {key!r} must be 1 or -1")
        path = Compiler.split_path(key)
        terms += _sort_terms(path, desc, fields, ctx)
    return terms, ctx.params


def _sort_terms(path: list[str], desc: bool, fields: dict, ctx: Ctx) -> list[str]:
    d = "DESC" if desc else "ASC"
    nulls = "NULLS LAST" if desc else "NULLS FIRST"
    spec = fields.get(path[0])
    i = 1
    while spec is not None and spec.kind == "group" and i < len(path):
        spec = fields.get(".".join(path[: i + 1]))
        i += 1
    rest = path[i:]
    if spec is None and path[0] not in fields:
        key = (f"vc_sort_key(CAST(json_extract(s.extra, {ctx.p(json_pointer(path[0]))}) AS VARCHAR), "
               f"{ctx.p('.'.join(path[1:]))}, {ctx.p(desc)})")
        return [f"{key} {d}"]
    if spec is None:
        return []  # an undeclared child of a closed group: missing everywhere, no effect on order
    col = f"s.{spec.column}"
    if spec.kind == "scalar":
        if rest:
            return []
        return [f"{col} {d} {nulls}"]
    if spec.kind == "list":
        if rest:
            raise _unsupported(f"sorting by a path inside the list {spec.path!r}")
        rank = f"(CASE WHEN {col} IS NULL THEN 1 WHEN len({col}) = 0 THEN 0 ELSE 2 END)"
        val = f"list_max({col})" if desc else f"list_min({col})"
        return [f"{rank} {d}", f"{val} {d} {nulls}"]
    if spec.kind == "objects" and len(rest) == 1 and rest[0] in schema.OBJECT_ATTRS \
            and schema.OBJECT_ATTRS[rest[0]].kind == "scalar":
        a = schema.column_name(rest[0])
        agg = "max" if desc else "min"
        key = (f"(SELECT CASE WHEN count(*) = 0 THEN NULL WHEN {'FALSE' if desc else f'bool_or(o.{a} IS NULL)'} "
               f"THEN NULL ELSE {agg}(o.{a}) END FROM objects o WHERE o.sample_seq = s._seq AND o.field = {ctx.p(spec.path)})")
        return [f"{key} {d} {nulls}"]
    raise _unsupported(f"sorting by {'.'.join(path)!r} (a whole sub-document or list of documents)")
