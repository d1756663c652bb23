"""Arrow data straight into the catalog: tables, record batches, streams and Parquet files, without a
Python dict per document.

DuckDB reads a registered Arrow table without copying it, so a batch of documents in Arrow form is
inserted with one ``INSERT ... SELECT`` per table: the declared fields are checked and converted with
pyarrow compute kernels (``quality`` as a struct becomes the ``quality.blur``... columns, a box list
becomes rows of ``objects``), and the free-form fields become the JSON column in SQL, from the Arrow
types. Only the odd types (timestamps, decimals, maps...) go through the document path's per-value
conversion, one column at a time.

The semantics are :meth:`Catalog.write`'s, batch by batch (one transaction each): ``_id`` generated when
null or absent, the modes ``error``/``skip``/``replace``/``merge`` (existing samples in the last two go
through the document path, which knows how to merge and what goes stale), typed values checked with
the document path's own messages, filled columns and free-form paths recorded in the same transaction.
What Arrow adds: **a null is a missing field**, at every level of a struct (``Table.from_pylist`` and
``pa.array`` fill the keys a row lacks with nulls, so a null cannot mean more); inside a list it stays a
null element.

>>> import pyarrow as pa, tempfile
>>> from viscurate.store.catalog import Catalog
>>> table = pa.table({"_id": ["a", "b"], "width": [640, 800], "metadata": [{"k": 1}, None]})
>>> with Catalog(tempfile.mkdtemp(), "demo", write=True) as cat:
...     cat.write_arrow(table)
...     cat.get("b")
{'inserted': 2, 'updated': 0, 'skipped': 0}
{'_id': 'b', 'width': 800}
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, NoReturn

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DatasetExists, FieldTypeError, ViscurateError
from . import documents
from .query.known_fields import MAX_DEPTH, OPEN, json_paths
from .schema import FieldSpec, column_name

if TYPE_CHECKING:
    from .catalog import Catalog

__all__ = ["ARROW_ROWS", "arrow_batches", "is_arrow_data", "write_arrow"]

#: Rows per transaction of an Arrow load: two of DuckDB's row groups (122,880 rows). From one row group up,
#: DuckDB writes an insert's rows straight to the database file and its log holds only where they are;
#: below, every row goes through the log and again into the file at the checkpoint (100,000-row batches
#: loaded 1.5x slower, measured in docs/decisions.md, bulk loads). About 150 MB of Arrow per batch of
#: detection documents.
ARROW_ROWS = 2 * 122_880

MODES = ("error", "skip", "replace", "merge")
_TARGET = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}
_INT64_MAX = 2**63 - 1


# ---- inputs ---------------------------------------------------------------------------------------

def is_arrow_data(data: Any) -> bool:
    """True for what :func:`arrow_batches` reads: pyarrow tables, batches and readers, anything with the
    Arrow C stream interface (pandas >= 2.2 and polars DataFrames, DuckDB relations), a Parquet path."""
    return isinstance(data, (pa.Table, pa.RecordBatch, pa.RecordBatchReader, str, os.PathLike)) or hasattr(
        data, "__arrow_c_stream__")


def arrow_batches(data: Any, rows: int = ARROW_ROWS) -> Iterator[pa.RecordBatch]:
    """The record batches of ``data`` (see :func:`is_arrow_data`), regrouped to about ``rows`` rows each.
    A path is a Parquet file or a folder of them, read a batch at a time (memory stays flat).

    >>> [len(b) for b in arrow_batches(pa.table({"width": range(5)}), rows=2)]
    [2, 2, 1]
    """
    if isinstance(data, (str, os.PathLike)):
        batches: Iterable[pa.RecordBatch] = _parquet_batches(Path(data).expanduser(), rows)
    elif isinstance(data, pa.RecordBatch):
        batches = [data]
    elif isinstance(data, pa.Table):
        batches = data.to_batches(max_chunksize=rows)
    elif isinstance(data, pa.RecordBatchReader):
        batches = data
    else:
        batches = pa.RecordBatchReader.from_stream(data)
    yield from _regroup(batches, rows)


def _parquet_batches(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow.dataset as pds

    if not path.exists():
        raise ViscurateError(f"{path}: no such file or folder; give a Parquet file, a folder of Parquet files, "
                             f"an Arrow table or the documents themselves")
    try:
        found = pds.dataset(path, format="parquet")
        yield from found.to_batches(batch_size=rows)
    except (pa.ArrowInvalid, OSError) as e:
        raise ViscurateError(f"{path}: cannot be read as Parquet ({str(e).splitlines()[0]}); the batches "
                             f"before it are stored, load again with mode='skip' once the file is fixed") from None


def _regroup(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of ``rows`` rows (the last one shorter): a Parquet row group or a stream's chunk may be any
    size, and each batch is one transaction."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while len(batch):
            take = batch.slice(0, rows - count)
            batch = batch.slice(len(take))
            held.append(take)
            count += len(take)
            if count >= rows:
                yield _combined(held)
                held, count = [], 0
    if count:
        yield _combined(held)


def _combined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


# ---- one batch into the catalog -------------------------------------------------------------------

def write_arrow(cat: "Catalog", batch: pa.RecordBatch, mode: str = "error", first_row: int = 0) -> dict:
    """Write one record batch of documents in one transaction; ``{"inserted", "updated", "skipped"}``.
    ``first_row``: the position of its first row in the whole input (for error messages)."""
    if mode not in MODES:
        raise ViscurateError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    where = f" (in the documents {first_row + 1:,}-{first_row + len(batch):,} of the input; nothing of them was written)"
    if isinstance(batch, pa.Table):
        batch = _combined(batch.combine_chunks().to_batches() or [pa.RecordBatch.from_pylist([], schema=batch.schema)])
    try:
        batch = _with_ids(batch)
        prepared = _prepare(batch, cat)  # checks every value before the transaction starts
    except FieldTypeError as e:
        raise FieldTypeError(f"{e}{where}") from None
    if not len(batch):
        return {"inserted": 0, "updated": 0, "skipped": 0}
    ids = batch.column("_id")
    with cat._mutex:
        con = cat.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.register("_vc_bulk_ids", pa.table({"_id": ids}))
            try:
                existing = con.sql("SELECT _id FROM samples WHERE _id IN (SELECT _id FROM _vc_bulk_ids)"
                                   ).to_arrow_table().column("_id")
            finally:
                con.unregister("_vc_bulk_ids")
            counts = {"inserted": 0, "updated": 0, "skipped": 0}
            if len(existing):
                if mode == "error":
                    some = ", ".join(existing.slice(0, 3).to_pylist())
                    raise DatasetExists(f"{len(existing)} sample(s) already exist (e.g. {some})")
                old = pc.is_in(ids, value_set=existing.combine_chunks())
                if mode == "skip":
                    counts["skipped"] = len(existing)
                else:  # merging and replacing know what goes stale (vectors, labels): the document path
                    docs = [_without_nulls(d) for d in batch.filter(old).to_pylist()]
                    cat._joined_transaction = True  # its write joins this transaction
                    try:
                        counts["updated"] = cat.write(docs, mode)["updated"]
                    finally:
                        cat._joined_transaction = False
                batch = batch.filter(pc.invert(old))
                prepared = _prepare(batch, cat)
            counts["inserted"] = _insert(cat, prepared)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return counts


def _with_ids(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with an ``_id`` for every row (a null or absent one generated, as :func:`.catalog.new_id`
    does), checked: strings, not empty, none twice."""
    n = len(batch)
    names = batch.schema.names
    ids = batch.column(names.index("_id")) if "_id" in names else pa.nulls(n, pa.string())
    ids = _scalar(ids, "VARCHAR", "_id")
    if ids.null_count:
        fresh = os.urandom(12 * n).hex()
        ids = pc.if_else(ids.is_null(), pa.array([fresh[i:i + 24] for i in range(0, 24 * n, 24)]), ids)
    empty = pc.equal(pc.utf8_length(ids), 0)
    if pc.any(empty).as_py():
        raise FieldTypeError("_id must be a non-empty string, got ''")
    if pc.count_distinct(ids).as_py() != n:
        counts = pc.value_counts(ids)
        twice = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")[0].as_py()
        raise DatasetExists(f"the batch holds the same _id twice ({twice!r})")
    if "_id" in names:
        return batch.set_column(names.index("_id"), "_id", ids)
    return batch.add_column(0, "_id", ids)


def _without_nulls(value: Any) -> Any:
    """A document from Arrow as the bulk path reads it: a null field of an object is a missing one
    (elements of lists stay, nulls included)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


# ---- checking and converting ----------------------------------------------------------------------

@dataclass
class FreeForm:
    """The free-form fields of one table (the samples' ``extra``, a box list's ``attrs``): their keys and
    values, the JSON the SQL makes of them."""

    keys: list[str] = field(default_factory=list)
    arrays: list[pa.Array] = field(default_factory=list)
    serialized: list[bool] = field(default_factory=list)  # True: the values are JSON text already

    def add(self, key: str, array: pa.Array, serialized: bool = False) -> None:
        self.keys.append(key)
        self.arrays.append(array)
        self.serialized.append(serialized)

    def columns(self, prefix: str) -> dict[str, pa.Array]:
        """The values under names of ours (the user's field names reach SQL as parameters, never as text)."""
        return {f"{prefix}{i}": a for i, a in enumerate(self.arrays)}

    def json_sql(self, prefix: str, params: list) -> str:
        """SQL for the JSON object of each row, NULL when it has no field (no column name or key of the
        user's in the text: keys are parameters)."""
        parts = []
        for i, (key, array, done) in enumerate(zip(self.keys, self.arrays, self.serialized)):
            params.append(orjson.dumps(key).decode() + ":")
            mark = f"${len(params)}"
            value = f"{prefix}{i}" if done else _json_sql(f"{prefix}{i}", array.type, params)
            parts.append(f"({mark} || {value})")
        if not parts:
            return "NULL"
        return f"nullif('{{' || concat_ws(',', {', '.join(parts)}) || '}}', '{{}}')"


@dataclass
class Boxes:
    """One box list of a batch: its boxes as rows of ``objects``, by their sample's row in the batch."""

    path: str
    parents: pa.Array  # the batch row of each box
    idx: pa.Array  # its position in its list
    typed: dict[str, pa.Array]
    free: FreeForm


@dataclass
class Prepared:
    """A batch checked and converted: the typed columns of ``samples`` (declared paths, ``<list>#n``),
    its free-form fields, its box lists, and what it fills (#21, #24)."""

    rows: int
    typed: dict[str, pa.Array]
    free: FreeForm
    boxes: list[Boxes]
    free_paths: set[str]


def _prepare(batch: pa.RecordBatch, cat: "Catalog") -> Prepared:
    out = Prepared(len(batch), {}, FreeForm(), [], set())
    for name, array in zip(batch.schema.names, batch.columns):
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()  # a pandas category is its values
        spec = cat.fields.get(name)
        if spec is None:
            if array.null_count < len(array):  # a column no row holds is no field
                _check_name(name, name)
                _add_free(out.free, name, array, "", out.free_paths)
        else:
            _declared(spec, array, out, cat)
    return out


def _declared(spec: FieldSpec, array: pa.Array, out: Prepared, cat: "Catalog") -> None:
    if pa.types.is_null(array.type):
        return  # every row lacks it
    if spec.kind == "scalar":
        out.typed[spec.path] = _scalar(array, spec.sql_type, spec.path)
    elif spec.kind == "list":
        out.typed[spec.path] = _list(array, spec.sql_type, spec.path)
    elif spec.kind == "group":
        if not pa.types.is_struct(array.type):
            _fail_shape(array, f"{spec.path}: expected an object")
        for child_type, child in zip(array.type, array.flatten()):  # flatten: a null group has null children
            if child.null_count == len(child):
                continue
            child_spec = cat.fields.get(f"{spec.path}.{child_type.name}")
            if child_spec is None:
                known = ", ".join(p.rsplit(".", 1)[1] for p in cat.fields if p.startswith(spec.path + ".")
                                  and "." not in p[len(spec.path) + 1:])
                raise FieldTypeError(f"{spec.path}.{child_type.name} is not a field of {spec.path} (its fields: "
                                     f"{known}); put free-form data under 'metadata'")
            _declared(child_spec, child, out, cat)
    else:
        boxes = _boxes(spec.path, array, cat.object_attrs, out.free_paths)
        out.typed[spec.path + "#n"] = pc.list_value_length(array).cast(pa.int32())
        if boxes is not None:
            out.boxes.append(boxes)


def _boxes(path: str, array: pa.Array, object_attrs: dict[str, FieldSpec], paths: set[str]) -> Boxes | None:
    if not _is_list(array.type):
        _fail_shape(array, f"{path}: expected a list of objects")
    items = array.flatten()
    if not len(items):
        return None
    if items.null_count:
        raise FieldTypeError(f"{path}[]: expected an object, got None")
    if not pa.types.is_struct(items.type):
        _fail_shape(items, f"{path}[]: expected an object")
    parents = pc.list_parent_indices(array)
    lengths = pc.list_value_length(array).fill_null(0).to_numpy()
    starts = np.cumsum(lengths) - lengths
    idx = np.arange(len(items), dtype=np.int64) - np.repeat(starts, lengths)
    typed: dict[str, pa.Array] = {}
    free = FreeForm()
    for child_type, child in zip(items.type, items.flatten()):
        name = child_type.name
        spec = object_attrs.get(name)
        if spec is None:
            _check_name(name, f"{path}[]")
            if pa.types.is_dictionary(child.type):
                child = child.dictionary_decode()
            _add_free(free, name, child, path, paths)
        elif not pa.types.is_null(child.type):
            where = f"{path}[].{name}"
            typed[name] = (_scalar if spec.kind == "scalar" else _list)(child, spec.sql_type, where)
    return Boxes(path, parents, pa.array(idx.astype(np.int32)), typed, free)


def _scalar(array: pa.Array, sql_type: str, where: str) -> pa.Array:
    """``array`` as the column type of a declared scalar; a value the document path would refuse raises
    the document path's own message."""
    t = array.type
    target = _TARGET[sql_type]
    if pa.types.is_null(t):
        return pa.nulls(len(array), target)
    if pa.types.is_dictionary(t):
        array, t = array.dictionary_decode(), t.value_type
    if sql_type == "VARCHAR" and (pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t)):
        return array.cast(target)
    if sql_type == "BOOLEAN" and pa.types.is_boolean(t):
        return array
    if sql_type == "BIGINT" and pa.types.is_integer(t):
        if t == pa.uint64():
            _refuse(array, pc.greater(array, _INT64_MAX), sql_type, where)
        return array.cast(target)
    if sql_type == "BIGINT" and pa.types.is_floating(t) and t != pa.float16():
        whole = pc.and_(pc.is_finite(array), pc.equal(pc.floor(array), array))
        _refuse(array, pc.invert(pc.and_(whole, pc.less(pc.abs(array), 2.0**63))), sql_type, where)
        return array.cast(target)
    if sql_type == "DOUBLE" and pa.types.is_floating(t) and t != pa.float16():
        _refuse(array, pc.invert(pc.is_finite(array)), sql_type, where)
        return array.cast(target)
    if sql_type == "DOUBLE" and pa.types.is_integer(t):
        return array.cast(target, safe=False)  # past 2**53 a number rounds, as float() rounds it
    # anything else (a timestamp for a string field, a string for a number...): value by value, as the
    # document path converts (a datetime becomes its ISO text) or refuses (with its message)
    return pa.array([None if v is None else documents.coerce_scalar(v, sql_type, where) for v in array.to_pylist()],
                    target)


def _list(array: pa.Array, sql_type: str, where: str) -> pa.Array:
    """``array`` as the column type of a declared list (elements never null)."""
    target = pa.list_(_TARGET[sql_type])
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), target)
    if not _is_list(array.type):
        return pa.array([documents.coerce_list(v, sql_type, where) for v in array.to_pylist()], target)
    values = array.flatten()
    if values.null_count:
        raise FieldTypeError(f"{where}: list elements cannot be null")
    values = _scalar(values, sql_type, f"{where}[]")
    lengths = pc.list_value_length(array).fill_null(0).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    mask = array.is_null() if array.null_count else None
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


def _refuse(array: pa.Array, bad: pa.Array, sql_type: str, where: str) -> None:
    """Raise the document path's message for the first value marked ``bad`` (nulls are never bad)."""
    bad = bad.fill_null(False)
    if not pc.any(bad).as_py():
        return
    value = array[pc.index(bad, True).as_py()].as_py()
    documents.coerce_scalar(value, sql_type, where)  # raises its own message for this value
    raise FieldTypeError(f"{where}: cannot store {value!r} as {sql_type.lower()}")


def _fail_shape(array: pa.Array, message: str) -> NoReturn:
    first = array.drop_null()
    value = first[0].as_py() if len(first) else None
    raise FieldTypeError(f"{message}, got {value!r}")


def _check_name(name: str, where: str) -> None:
    if not name or name.startswith("$") or "." in name:
        raise FieldTypeError(f"{where}: invalid field name {name!r} (no '$' prefix, no dots, not empty); "
                             f"nest dotted columns as structs")


def _add_free(free: FreeForm, key: str, array: pa.Array, prefix: str, paths: set[str]) -> None:
    """A free-form field: checked and its paths noted (from the Arrow arrays where the SQL can make its
    JSON, else value by value with the document path's conversion)."""
    if array.null_count == len(array):
        return  # no row holds it
    if _sql_json_ok(array.type):
        path = f"{prefix}.{key}" if prefix else key
        paths.add(path)
        _walk_free(array, path, 1, paths)
        free.add(key, array)
        return
    texts = []
    for value in array.to_pylist():
        if value is None:
            texts.append(None)
            continue
        value = documents.to_json_value(_without_nulls(value), f"{prefix}.{key}" if prefix else key)
        paths.update(json_paths({key: value}, prefix))
        texts.append(orjson.dumps(value).decode())
    free.add(key, pa.array(texts, pa.string()), serialized=True)


def _walk_free(array: pa.Array, path: str, depth: int, paths: set[str]) -> None:
    """Check the values under a free-form ``path`` (names, NaN, 64 bits) and note the paths some row
    holds, as :func:`.query.known_fields.json_paths` walks a document."""
    t = array.type
    if pa.types.is_struct(t):
        for child_type, child in zip(t, array.flatten()):
            if child.null_count == len(child):
                continue
            _check_name(child_type.name, path)
            sub = f"{path}.{child_type.name}"
            if depth >= MAX_DEPTH:
                paths.add(sub + OPEN)
                _walk_free(child, sub, depth + 1, set())
            else:
                paths.add(sub)
                _walk_free(child, sub, depth + 1, paths)
    elif _is_list(t):
        _walk_free(array.flatten(), path, depth, paths)
    elif pa.types.is_floating(t):
        _refuse(array, pc.invert(pc.is_finite(array)), "DOUBLE", path)
    elif t == pa.uint64():
        if pc.any(pc.greater(array, _INT64_MAX)).as_py():
            raise FieldTypeError(f"{path}: integer {pc.max(array).as_py()} does not fit in 64 bits")


def _sql_json_ok(t: pa.DataType) -> bool:
    """Whether DuckDB's ``to_json`` writes values of type ``t`` as the document path would."""
    if pa.types.is_struct(t):
        return all(_sql_json_ok(f.type) for f in t)
    if _is_list(t):
        return _sql_json_ok(t.value_type)
    return (pa.types.is_null(t) or pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_string(t)
            or pa.types.is_large_string(t) or t in (pa.float32(), pa.float64()))


def _json_sql(expr: str, t: pa.DataType, params: list, depth: int = 0) -> str:
    """SQL for the JSON text of a value of Arrow type ``t`` at ``expr`` (NULL for a null), a struct's null
    fields left out. Struct fields are taken by position and named by parameters."""
    if pa.types.is_struct(t):
        parts = []
        for i, f in enumerate(t):
            params.append(orjson.dumps(f.name).decode() + ":")
            mark = f"${len(params)}"
            parts.append(f"({mark} || {_json_sql(f'struct_extract_at({expr}, {i + 1})', f.type, params, depth)})")
        body = f"'{{' || concat_ws(',', {', '.join(parts)}) || '}}'" if parts else "'{}'"
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE {body} END"
    if _is_list(t):
        x = f"x{depth}"
        inner = _json_sql(x, t.value_type, params, depth + 1)
        return (f"CASE WHEN {expr} IS NULL THEN NULL ELSE '[' || array_to_string(list_transform({expr}, "
                f"lambda {x}: coalesce({inner}, 'null')), ',') || ']' END")
    if pa.types.is_null(t):
        return "NULL"
    return f"to_json({expr})"


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_string_view(t: pa.DataType) -> bool:
    check = getattr(pa.types, "is_string_view", None)
    return bool(check and check(t))


# ---- inserting --------------------------------------------------------------------------------------

def _insert(cat: "Catalog", prepared: Prepared) -> int:
    """Insert a prepared batch as new samples (inside the caller's transaction); how many."""
    n = prepared.rows
    if not n:
        return 0
    con = cat.con
    first = con.execute("SELECT coalesce(max(_seq), -1) + 1 FROM samples").fetchall()[0][0]
    seqs = pa.array(np.arange(first, first + n, dtype=np.int64))
    columns = {"_seq": seqs, **prepared.typed}
    # noted before the rows go in: a catalog from before these notes reads its rows for them (#21, #24)
    filled = {name for name, a in columns.items() if a.null_count < len(a)}
    cat._note_filled("samples", filled | ({"extra"} if prepared.free.arrays else set()))
    if prepared.boxes:
        object_filled = {"sample_seq", "field", "idx"}
        for boxes in prepared.boxes:
            object_filled |= {name for name, a in boxes.typed.items() if a.null_count < len(a)}
            object_filled |= {"attrs"} if boxes.free.arrays else set()
        cat._note_filled("objects", object_filled)
    cat._note_free_paths(prepared.free_paths)
    params: list = []
    extra = prepared.free.json_sql("__free", params)
    select = ", ".join(column_name(name) for name in columns)
    table = pa.Table.from_pydict({**columns, **prepared.free.columns("__free")})
    _run_insert(con, "samples", table, f"{select}, ({extra})::JSON AS extra", params)
    for boxes in prepared.boxes:
        ocolumns = {"sample_seq": pc.take(seqs, boxes.parents), "idx": boxes.idx, **boxes.typed}
        params = [boxes.path]
        attrs = boxes.free.json_sql("__attr", params)
        select = ", ".join(column_name(name) for name in ocolumns)
        table = pa.Table.from_pydict({**ocolumns, **boxes.free.columns("__attr")})
        _run_insert(con, "objects", table, f"{select}, $1 AS field, ({attrs})::JSON AS attrs", params)
    return n


def _run_insert(con: Any, table_name: str, data: pa.Table, select: str, params: list) -> None:
    con.register("_vc_bulk", data)
    try:
        con.execute(f"INSERT INTO {table_name} BY NAME SELECT {select} FROM _vc_bulk", params)
    finally:
        con.unregister("_vc_bulk")
