"""The catalog of one dataset: a DuckDB file with a samples table and an objects table.

The store package is the only one that writes SQL against the catalog. Everything above it speaks
documents and the MongoDB query language.

Layout:
- ``samples``: ``_seq`` (insertion order, the stable order of unsorted results), one typed column per
  declared leaf field (named by its dotted path), ``<list>#n`` (length of each box list, NULL when the
  list is missing) and ``extra`` (JSON object of the undeclared fields).
- ``objects``: one row per box: ``sample_seq``, ``field`` (e.g. ``object_analysis``), ``idx`` (position
  in the list), the declared object attributes, and ``attrs`` (JSON object of the others).
- ``meta``: key/value, including ``schema_version``.

Every write is one transaction: a run that dies leaves the catalog as it was before its last batch.

Mixins, not functions taking the catalog: the parts share one cursor, mutex and cache per call.
``Catalog`` is the one class callers use, put together from :mod:`.connection` (connection, locks,
schema), :mod:`.vectors` and :mod:`.summaries` (value counts); the update engine (:mod:`.updates`) is
plain functions over documents and operators.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with Catalog(d, "demo", write=True) as cat:
...     _ = cat.write([{"_id": "a", "width": 10}, {"_id": "b", "width": 20}])
...     cat.find({"width": {"$gt": 15}})["results"][0]["_id"]
'b'
"""
from __future__ import annotations

import dataclasses
import os
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

import orjson
import pyarrow as pa

from ..errors import DatasetExists, QueryError
from . import documents, schema
from .connection import CatalogConnection, query_refused, table_columns
from .read_cache import ReadCache
from .query.budget import time_limited
from .query.compiler import Ctx, bind, compile_query, compile_sort
from .query.known_fields import KnownPaths, declared_paths, json_paths, query_paths, query_warnings
from .query.projection import project
from .schema import FieldSpec
from .summaries import CatalogSummaries
from .updates import EDIT_COLUMN_LIST, EDIT_COLUMNS, apply_update, edit_row, fast_update_sql, validate_update
from .vectors import CatalogVectors
from .workspace import CATALOG_FILE

# meta: the columns of samples and of objects that hold a value in some row, kept by every write (a
# superset: a column emptied later stays listed). A reader fetches only those: each column of a point
# lookup costs the same, and a catalog fills a few dozen of its ~100 declared ones.
FILLED_COLUMNS = {"samples": "filled_columns", "objects": "filled_object_columns"}
# meta: the dotted paths of the free-form JSON (samples' extra, boxes' attrs prefixed by their list) that
# some row holds, kept by every insert like the filled columns: a query's unknown fields are warned about
# (query.known_fields) without reading any document.
FREE_PATHS = "free_paths"
DEFAULT_PAGE_SIZE = 25
WriteMode = Literal["error", "skip", "replace", "merge"]

_ARROW = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}


def lock_timeout() -> float:
    """How long (seconds) opening a dataset waits for its lock: ``VISCURATE_LOCK_TIMEOUT``, default 10."""
    return float(os.environ.get("VISCURATE_LOCK_TIMEOUT", "10"))


def new_id() -> str:
    """A fresh 24-hex-digit id (the shape of a MongoDB ObjectId)."""
    return uuid.uuid4().hex[:24]


class Catalog(CatalogConnection, CatalogVectors, CatalogSummaries):
    """An open catalog. Use as a context manager; ``write=True`` takes the dataset's write lock.

    A writable catalog lets readers that wait for the dataset in between its calls (after
    :data:`.connection.LET_IN_AFTER` seconds open): it closes its DuckDB connection and unlocks, and its next call
    takes the dataset back. Other writers stay out throughout (the ``.write-session`` lock).
    ``relock_guard``: a context manager factory wrapped around taking it back (the ``Dataset`` holds
    its own threads' reads back meanwhile)."""

    def __init__(self, directory: str | os.PathLike, name: str = "", *, write: bool = False,
                 timeout: float | None = None, threads: int | None = None):
        self.directory = Path(directory)
        self.name = name or self.directory.name
        self.write_mode = write
        self.path = self.directory / CATALOG_FILE
        self.fields: dict[str, FieldSpec] = schema.FIELDS
        self.object_attrs: dict[str, FieldSpec] = schema.OBJECT_ATTRS
        self.directory.mkdir(parents=True, exist_ok=True)
        # a read-only catalog cannot change while it is open, so it keeps what it read
        self._cache = None if write else ReadCache()  # counts, documents and match lists of a reader
        self._selects: dict[str, str] = {}  # a reader's select lists of document reads (_filled_select)
        self._known: KnownPaths | None = None  # known_paths(), until this catalog's next write
        self._joined_transaction = False  # True while store.bulk holds a transaction that write() joins
        self._take_dataset(write, lock_timeout() if timeout is None else timeout, threads)

    def _count_where(self, where: str, params: list) -> int:
        """``count(*)`` of the rows matching ``where``; remembered while a read-only catalog is open."""
        def count() -> int:
            return self._execute(f"SELECT count(*) FROM samples s WHERE {where}", params).fetchall()[0][0]

        return count() if self._cache is None else self._cache.count((where, repr(params)), count)

    # ---- writing ----------------------------------------------------------------------------

    def write(self, docs: Iterable[dict], mode: WriteMode = "error", merge_keys: Iterable[str] | None = None,
              audit: Sequence[dict] = ()) -> dict:
        """Write sample documents in one transaction. Returns counts {"inserted", "updated", "skipped"}.

        ``mode`` decides what happens to a document whose ``_id`` exists: ``error`` (raise, write
        nothing), ``skip``, ``replace`` (the new document replaces the old one), ``merge`` (its top-level
        fields replace the old ones; with ``merge_keys``, exactly those keys are replaced or removed).
        ``audit``: edit records (:data:`EDIT_COLUMNS`) written in the same transaction."""
        self._require_write()
        docs = list(docs)
        for d in docs:
            if "_id" not in d or d["_id"] is None:
                d["_id"] = new_id()
            elif not isinstance(d["_id"], str) or not d["_id"]:
                raise documents.FieldTypeError(f"_id must be a non-empty string, got {d['_id']!r}")
        ids = [d["_id"] for d in docs]
        if len(set(ids)) != len(ids):
            raise DatasetExists("the batch holds the same _id twice")
        keys = list(merge_keys) if merge_keys is not None else None
        joined = self._joined_transaction  # inside a bulk load's own transaction (store.bulk): part of it
        with self._mutex:
            if not joined:
                self.con.execute("BEGIN TRANSACTION")
            try:
                rows = self.con.execute("SELECT _id, _seq, hash FROM samples WHERE _id IN (SELECT unnest(?))",
                                        [ids]).fetchall() if ids else []
                existing = {r[0]: r[1] for r in rows}
                old_hash = {r[0]: r[2] for r in rows}
                if existing and mode == "error":
                    some = ", ".join(list(existing)[:3])
                    raise DatasetExists(f"{len(existing)} sample(s) already exist (e.g. {some})")
                if mode == "skip":
                    docs = [d for d in docs if d["_id"] not in existing]
                new_bytes = {d["_id"] for d in docs if d["_id"] in existing and "hash" in d
                             and d["hash"] != old_hash[d["_id"]]}
                written = {d["_id"]: set(d) if keys is None or mode == "replace" else set(keys) for d in docs}
                old: dict[str, dict] = {}
                if mode == "merge" and existing:
                    old = {d["_id"]: d for d in self._docs_where("s._id IN (SELECT unnest($1))", [list(existing)])}
                    docs = [documents.merge(old[d["_id"]], d, keys) if d["_id"] in old else d for d in docs]
                    # new bytes make every label and vector of the old ones stale: forget which models
                    # made them, so that the label and embed stages redo the sample
                    docs = [{k: v for k, v in d.items() if k != "models"} if d["_id"] in new_bytes else d for d in docs]
                # before the replaced rows go: a replaced last sample's _seq must not be handed out again
                next_seq = self.con.execute("SELECT coalesce(max(_seq), -1) + 1 FROM samples").fetchall()[0][0]
                if existing and mode in ("replace", "merge"):
                    self._delete_seqs(list(existing.values()), vectors=False)
                    self._drop_stale_vectors(existing, new_bytes, written, replace=mode == "replace",
                                             old=old, new={d["_id"]: d for d in docs})
                seqs = []
                for d in docs:
                    if d["_id"] in existing:
                        seqs.append(existing[d["_id"]])
                    else:
                        seqs.append(next_seq)
                        next_seq += 1
                self._insert(docs, seqs)
                if audit:
                    self.con.executemany(
                        f"INSERT INTO edits ({EDIT_COLUMN_LIST}) VALUES ({', '.join('?' * len(EDIT_COLUMNS))})",
                        [edit_row(r) for r in audit])
                if not joined:
                    self.con.execute("COMMIT")
            except BaseException:
                if not joined:
                    self.con.execute("ROLLBACK")
                raise
        updated = sum(1 for d in docs if d["_id"] in existing)
        return {"inserted": len(docs) - updated, "updated": updated, "skipped": len(ids) - len(docs)}

    def write_arrow(self, batch: pa.RecordBatch, mode: WriteMode = "error", first_row: int = 0) -> dict:
        """Write one Arrow record batch of sample documents in one transaction (:mod:`.bulk`): the
        counts of :meth:`write`, the same modes and checks, no Python dict per document."""
        self._require_write()
        from .bulk import write_arrow
        return write_arrow(self, batch, mode, first_row)

    def _require_write(self) -> None:
        if not self.write_mode:
            raise RuntimeError("this catalog was opened for reading")

    def _delete_seqs(self, seqs: list[int], vectors: bool = True) -> None:
        if vectors:
            self.con.execute("DELETE FROM vectors WHERE sample_seq IN (SELECT unnest(?))", [seqs])
        self.con.execute("DELETE FROM objects WHERE sample_seq IN (SELECT unnest(?))", [seqs])
        self.con.execute("DELETE FROM samples WHERE _seq IN (SELECT unnest(?))", [seqs])

    def _insert(self, docs: list[dict], seqs: list[int]) -> None:
        """Insert documents as the rows ``seqs``. Each document becomes a flat row of the columns it
        fills and pyarrow builds the columns from the rows at once (a Python append per declared column
        and row cost half of a load: measured in docs/decisions.md, bulk loads)."""
        if not docs:
            return
        rows: list[dict] = []
        boxes: list[dict] = []
        free: set[str] = set()
        for doc, seq in zip(docs, seqs):
            row, objects, extra = documents.split(doc, self.fields, self.object_attrs)
            row["_seq"] = seq
            if extra:
                free.update(json_paths(extra))
                row["extra"] = orjson.dumps(extra).decode()
            for path, items in objects.items():
                row[path + "#n"] = len(items)
                for i, obj in enumerate(items):
                    attrs = obj.pop("attrs")
                    if attrs:
                        obj["attrs"] = orjson.dumps(attrs).decode()
                        free.update(json_paths(attrs, path))
                    obj["sample_seq"], obj["field"], obj["idx"] = seq, path, i
                    boxes.append(obj)
            rows.append(row)
        self._note_free_paths(free)
        self._insert_rows("samples", rows)
        if boxes:
            self._insert_rows("objects", boxes)

    def _insert_rows(self, table: str, rows: list[dict]) -> None:
        """Insert flat rows (column name -> value, a column left out is NULL) into ``table``, noting the
        columns they fill."""
        present: set[str] = set().union(*rows)
        batch = pa.Table.from_pylist(rows, schema=pa.schema(
            [c for c in self._row_columns(table) if c.name in present]))
        self._note_filled(table, {n for n, a in zip(batch.column_names, batch.columns) if a.null_count < len(a)})
        self.con.register("_vc_batch", batch)
        try:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _vc_batch")
        finally:
            self.con.unregister("_vc_batch")

    def _row_columns(self, table: str) -> list[pa.Field]:
        """The Arrow fields of the columns of ``samples`` or ``objects`` that writes fill."""
        if table == "samples":
            fields = [pa.field("_seq", pa.int64())]
            for spec in self.fields.values():
                if spec.kind in ("scalar", "list"):
                    t = _ARROW[spec.sql_type]
                    fields.append(pa.field(spec.path, pa.list_(t) if spec.kind == "list" else t))
                elif spec.kind == "objects":
                    fields.append(pa.field(spec.path + "#n", pa.int32()))
            return fields + [pa.field("extra", pa.string())]
        fields = [pa.field("sample_seq", pa.int64()), pa.field("field", pa.string()), pa.field("idx", pa.int32())]
        for spec in self.object_attrs.values():
            t = _ARROW[spec.sql_type]
            fields.append(pa.field(spec.path, pa.list_(t) if spec.kind == "list" else t))
        return fields + [pa.field("attrs", pa.string())]

    def delete(self, query: dict | None = None, ids: list[str] | None = None) -> int:
        """Delete the samples matching ``query`` (or with these ``ids``); returns how many."""
        self._require_write()
        where, params = self._where(query, ids)
        with self._mutex:
            self.con.execute("BEGIN TRANSACTION")
            try:
                seqs = [r[0] for r in self._execute(f"SELECT _seq FROM samples s WHERE {where}", params).fetchall()]
                self._delete_seqs(seqs)
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        return len(seqs)

    def update(self, query: dict | None, changes: dict, ids: list[str] | None = None, batch_size: int = 2000,
               audit: Sequence[dict] = ()) -> int:
        """Apply MongoDB update operators (``$set``, ``$unset``, ``$addToSet``, ``$pull``) to the matching
        samples, in one transaction. Returns the number of samples changed. ``audit``: edit records
        (:data:`EDIT_COLUMNS`) written in the same transaction, so an edit and its record land together."""
        self._require_write()
        ops = validate_update(changes)
        ctx = Ctx()
        where, params = self._where(query, ids, ctx)
        fast = fast_update_sql(ops, self.fields, ctx)
        with self._mutex:
            self.con.execute("BEGIN TRANSACTION")
            try:
                if fast is not None:
                    sets, changed_where = fast
                    self._note_filled("samples", {path for op, body in ops.items() if op != "$unset" for path in body})
                    n = self._execute(f"SELECT count(*) FROM samples s WHERE ({where}) AND ({changed_where})",
                                      ctx.params).fetchall()[0][0]
                    self._execute(f"UPDATE samples AS s SET {sets} WHERE ({where})", ctx.params)
                else:
                    n = 0
                    seqs = [r[0] for r in self._execute(
                        f"SELECT _seq FROM samples s WHERE {where} ORDER BY _seq", params).fetchall()]
                    for i in range(0, len(seqs), batch_size):
                        chunk = seqs[i:i + batch_size]
                        docs = self._docs_where("s._seq IN (SELECT unnest($1))", [chunk], with_seq=True)
                        new_docs = [apply_update(d, ops) for d in docs]
                        changed = [(nd, d["_seq_"]) for nd, d in zip(new_docs, docs) if nd is not None]
                        if changed:
                            self._delete_seqs([s for _, s in changed], vectors=False)
                            self._insert([nd for nd, _ in changed], [s for _, s in changed])
                        n += len(changed)
                if audit:
                    self.con.executemany(
                        f"INSERT INTO edits ({EDIT_COLUMN_LIST}) VALUES ({', '.join('?' * len(EDIT_COLUMNS))})",
                        [edit_row(r) for r in audit])
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        return n

    # ---- reading ----------------------------------------------------------------------------

    def _where(self, query: dict | None, ids: list[str] | None = None, ctx: Ctx | None = None) -> tuple[str, list]:
        ctx = ctx if ctx is not None else Ctx()
        sql, params = compile_query(query or {}, self.fields, ctx)
        if ids is not None:
            sql = f"({sql}) AND s._id IN (SELECT unnest({ctx.p(list(ids))}))"
        return sql, ctx.params

    def count(self, query: dict | None = None) -> int:
        where, params = self._where(query)
        with self._mutex:
            return self._count_where(where, params)

    def find(self, query: dict | None = None, *, sort: Any = None, projection: dict | None = None,
             page: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> dict:
        """One page of matches: ``{"length": total, "page": page, "page_size": n, "results": [docs]}``."""
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise QueryError(f"page must be an integer >= 1, got {page!r}")
        if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= 10_000:
            raise QueryError(f"page_size must be an integer between 1 and 10000, got {page_size!r}")
        ctx = Ctx()
        where, _ = self._where(query, ctx=ctx)
        order, params = compile_sort(sort, self.fields, ctx)
        with self._mutex:
            ids, length = self._page_ids(where, params, order, page_size, (page - 1) * page_size, count=True)
            results = self._docs_by_ids(ids, cache=True)
        if projection:
            results = [project(d, projection) for d in results]
        found: dict[str, Any] = {"length": length, "page": page, "page_size": page_size, "results": results}
        warnings = self.query_warnings(query)
        if warnings:
            found["warnings"] = warnings
        return found

    def _page_ids(self, where: str, params: list, order: list[str], limit: int, offset: int,
                  count: bool = False) -> tuple[list[str], int | None]:
        """The ids of one page of matches (and the total when ``count``). Only the narrow columns the
        filter and the sort need are scanned; whole documents are then fetched by primary key. The
        count and the top-N are two statements: measured at 1M samples, that is 2-4x faster than one
        statement with a window count, which must materialize every match."""
        order_sql = ", ".join(order + ["s._seq"])
        if count and self._cache is not None:  # a search's page: a slice of the whole list, if it is kept
            def every_match() -> pa.Array:
                sql, args = bind(f"SELECT s._id FROM samples s WHERE {where} ORDER BY {order_sql}", params)
                con = self.con
                with query_refused(), time_limited(con):
                    return con.sql(sql, params=args).to_arrow_table().column(0).combine_chunks()

            listed = self._cache.page((where, repr(params), order_sql), every_match, offset, limit)
            if listed is not None:
                return listed
        n = len(params)
        # on a first page, one row more than the page tells whether the page holds every match (then no
        # count is needed: a sample looked up by _id, a short result)
        probe = 1 if count and offset == 0 else 0
        sql = f"SELECT s._id FROM samples s WHERE {where} ORDER BY {order_sql} LIMIT ${n + 1} OFFSET ${n + 2}"
        ids = [r[0] for r in self._execute(sql, list(params) + [limit + probe, offset]).fetchall()]
        total = None
        if count:
            if offset == 0 and len(ids) <= limit:
                total = len(ids)
            else:
                total = self._count_where(where, params)
        return ids[:limit], total

    def _docs_by_ids(self, ids: list[str], with_seq: bool = False, cache: bool = False) -> list[dict]:
        """Whole documents for ``ids``, in that order (point lookups on the primary key); with
        ``with_seq`` each also carries its insertion sequence as ``_seq_``. ``cache``: a page (of at
        most 100) or a lookup, which a read-only catalog answers from and adds to its document cache (not
        the batches of a scan over everything, where keeping each document would cost more than it saves)."""
        if not ids:
            return []
        out: dict[str, dict] = {}
        cache = self._cache if cache and len(ids) <= 100 and not with_seq else None
        todo = ids
        if cache is not None:  # a read-only catalog cannot change while open: documents read once are kept
            todo = []
            for i in ids:
                doc = cache.document(i)
                if doc is None:
                    todo.append(i)
                else:
                    out[i] = doc
        box_counts = [s.path + "#n" for s in self.fields.values() if s.kind == "objects"]
        select = self._filled_select("samples")
        for i in range(0, len(todo), 1000):
            chunk = todo[i:i + 1000]
            if len(chunk) <= 100:  # a page, a lookup
                marks = ", ".join(f"${k + 1}" for k in range(len(chunk)))
                cur = self.con.execute(f"SELECT {select} FROM samples WHERE _id IN ({marks})", chunk)
            else:  # a batch of a scan: a thousand constants cost ten times a list joined (measured)
                cur = self.con.execute(f"SELECT {select} FROM samples WHERE _id IN (SELECT unnest($1::VARCHAR[]))",
                                       [chunk])
            names = [c[0] for c in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
            # only samples with a box in some list have rows in objects (the lists' lengths are columns)
            boxed = [r["_seq"] for r in rows if any(r.get(n) for n in box_counts)]
            objects = self._objects_for(boxed) if boxed else {}
            for row in rows:
                extra = row.pop("extra")
                seq = row.pop("_seq")
                doc = documents.assemble(row, objects.get(seq, {}), orjson.loads(extra) if extra else None,
                                         self.fields, self.object_attrs)
                if with_seq:
                    doc["_seq_"] = seq
                elif cache is not None:
                    cache.remember(doc)
                out[doc["_id"]] = doc
        return [out[i] for i in ids if i in out]

    def iter_docs(self, query: dict | None = None, *, sort: Any = None, batch_size: int = 1000) -> Iterator[dict]:
        """Every matching document, in batches (stable order)."""
        ctx = Ctx()
        where, _ = self._where(query, ctx=ctx)
        order, params = compile_sort(sort, self.fields, ctx)
        if not order:
            yield from self._iter_in_order(where, params, batch_size)
            return
        offset = 0
        while True:
            with self._mutex:
                ids, _ = self._page_ids(where, params, order, batch_size, offset)
                batch = self._docs_by_ids(ids)
            yield from batch
            if len(ids) < batch_size:
                return
            offset += batch_size

    def _iter_in_order(self, where: str, params: list, batch_size: int) -> Iterator[dict]:
        """Every matching document in insertion order, each batch the rows after the last one's ``_seq``:
        DuckDB skips the row groups before it by their min/max (an OFFSET makes every batch sort all the
        rows before it again: an export of 1M samples spent minutes there)."""
        last, n = -1, len(params)
        while True:
            with self._mutex:
                rows = self._execute(f"SELECT s._id, s._seq FROM samples s WHERE ({where}) AND s._seq > ${n + 1} "
                                     f"ORDER BY s._seq LIMIT ${n + 2}", list(params) + [last, batch_size]).fetchall()
                batch = self._docs_by_ids([r[0] for r in rows])
            yield from batch
            if len(rows) < batch_size:
                return
            last = rows[-1][1]

    def get(self, sample_id: str) -> dict | None:
        with self._mutex:
            docs = self._docs_by_ids([sample_id], cache=True)
        return docs[0] if docs else None

    def _docs_where(self, where: str, params: list, with_seq: bool = False) -> list[dict]:
        """Documents of every row matching ``where`` (SQL with numbered parameters), in insertion order."""
        ids, _ = self._page_ids(where, params, [], 2**62, 0)
        return self._docs_by_ids(ids, with_seq=with_seq)

    def ids(self, query: dict | None = None) -> list[str]:
        where, params = self._where(query)
        with self._mutex:
            return [r[0] for r in self._execute(
                f"SELECT _id FROM samples s WHERE {where} ORDER BY _seq", params).fetchall()]

    def columns(self, paths: Iterable[str], query: dict | None = None) -> dict[str, list]:
        """Declared scalar fields of every sample matching ``query``, column-wise, in catalog order:
        ``{"_id": [...], path: [...]}`` (``None`` where missing). One scan, for whole-dataset analyses
        that need a few fields of every sample (duplicates, statistics) without assembling documents.

        >>> cat.columns(["hash", "width"], {"issues": {"$ne": "corrupt"}})          # doctest: +SKIP
        {'_id': ['a1...', ...], 'hash': ['0a42...', ...], 'width': [128, ...]}
        """
        paths = [p for p in paths if p != "_id"]
        for p in paths:
            spec = self.fields.get(p)
            if spec is None or spec.kind != "scalar":
                raise QueryError(f"columns() reads declared scalar fields; {p!r} is not one")
        where, params = self._where(query)
        cols = ", ".join(["_id"] + [self.fields[p].column for p in paths])
        with self._mutex:
            rows = self._execute(f"SELECT {cols} FROM samples s WHERE {where} ORDER BY _seq", params).fetchall()
        out: dict[str, list] = {"_id": [r[0] for r in rows]}
        for n, p in enumerate(paths, start=1):
            out[p] = [r[n] for r in rows]
        return out

    def _execute(self, sql: str, params: list):
        sql, params = bind(sql, params)
        con = self.con
        # a reader's query runs at most the query time limit (a server thread is never held for good);
        # a writer's statements are the user's own long work
        with query_refused(), (nullcontext() if self.write_mode else time_limited(con)):
            return con.execute(sql, params)

    def _objects_for(self, seqs: list[int]) -> dict[int, dict[str, list[dict]]]:
        # the range first: boxes are stored in their samples' order, so DuckDB skips row groups outside it
        cur = self.con.execute(f"SELECT {self._filled_select('objects')} FROM objects WHERE sample_seq BETWEEN ? AND ? "
                               "AND sample_seq IN (SELECT unnest(?)) ORDER BY sample_seq, field, idx",
                               [min(seqs), max(seqs), seqs])
        names = [c[0] for c in cur.description]
        out: dict[int, dict[str, list[dict]]] = {}
        for r in cur.fetchall():
            row = dict(zip(names, r))
            attrs = row.pop("attrs", None)
            row["attrs"] = orjson.loads(attrs) if attrs else {}
            out.setdefault(row.pop("sample_seq"), {}).setdefault(row.pop("field"), []).append(row)
        return out

    # ---- ingest support ---------------------------------------------------------------------

    def file_index(self) -> dict[str, tuple[int | None, float | None, str | None, str]]:
        """origin -> (size_bytes, mtime, hash, _id) for every sample that came from a file."""
        with self._mutex:
            rows = self.con.execute(
                "SELECT origin, size_bytes, mtime, hash, _id FROM samples WHERE origin IS NOT NULL").fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def ids_of_origins(self, origins: Sequence[str]) -> dict[str, str]:
        """origin -> _id of the samples that came from these files (the others are left out)."""
        if not origins:
            return {}
        with self._mutex:
            rows = self.con.execute("SELECT origin, _id FROM samples WHERE origin IN (SELECT unnest(?))",
                                    [list(origins)]).fetchall()
        return {r[0]: r[1] for r in rows}

    def origins_with_issue(self, issue: str) -> dict[str, str]:
        """origin -> _id of every sample from a file that carries ``issue``."""
        with self._mutex:
            rows = self.con.execute("SELECT origin, _id FROM samples WHERE origin IS NOT NULL AND "
                                    "list_contains(issues, ?)", [issue]).fetchall()
        return {r[0]: r[1] for r in rows}

    def samples_from(self, files: Iterable[str], prefixes: Iterable[str], issue: str) -> list[tuple[str, str, str, bool]]:
        """(_id, origin, source, whether it carries ``issue``) of every sample whose origin is one of
        ``files`` or starts with one of ``prefixes``."""
        with self._mutex:
            return self.con.execute(
                "SELECT _id, origin, source, coalesce(list_contains(issues, ?), false) FROM samples "
                "WHERE origin IN (SELECT unnest(?::VARCHAR[])) "
                "OR len(list_filter(?::VARCHAR[], lambda p: starts_with(origin, p))) > 0",
                [issue, sorted(files), list(prefixes)]).fetchall()

    def _sql(self, sql: str, params: list | None = None) -> list[tuple]:
        """Run read-only SQL over the catalog: for tests and debugging only; the library's own reads
        are the named methods above."""
        with self._mutex:
            return self.con.execute(sql, params or []).fetchall()

    def edits(self, sample_id: str | None = None, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        """(how many, the newest ``limit`` edit records after ``offset``), of one sample or all."""
        with self._mutex:
            if not self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'edits'").fetchall()[0][0]:
                return 0, []  # a catalog nobody has edited through this version yet
            where, params = ("WHERE sample_id = ?", [sample_id]) if sample_id is not None else ("", [])
            total = self.con.execute(f"SELECT count(*) FROM edits {where}", params).fetchall()[0][0]
            rows = self.con.execute(f'SELECT {EDIT_COLUMN_LIST} FROM edits {where} ORDER BY "at" DESC, rowid DESC '
                                    
                                    "LIMIT ? OFFSET ?", params + [int(limit), int(offset)]).fetchall()
        out = []
        for row in rows:
            rec = dict(zip(EDIT_COLUMNS, row))
            for k in ("before", "after"):
                rec[k] = orjson.loads(rec[k]) if rec[k] is not None else None
            out.append(rec)
        return total, out

    def _filled_select(self, table: str) -> str:
        """The select list of a document read from ``table``: on a read-only catalog that lists its filled
        columns, only those (worked out once: it cannot change while open); else every column."""
        if self.write_mode:
            return "*"
        select = self._selects.get(table)
        if select is None:
            stored = self.meta_get(FILLED_COLUMNS[table])
            if stored is None:
                select = "*"
            else:
                filled = set(orjson.loads(stored)) | {"_seq", "_id", "extra", "sample_seq", "field", "idx"}
                select = ", ".join(schema.column_name(c) for c in table_columns(self.con, table) if c in filled)
            self._selects[table] = select
        return select

    def _note_filled(self, table: str, columns: set[str]) -> None:
        """Add ``columns`` to ``table``'s filled list in ``meta``, inside the caller's transaction (so a
        write that rolls back leaves no trace). A catalog from before the list gets it whole on its first
        write."""
        key = FILLED_COLUMNS[table]
        self._known = None
        stored = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        if stored:
            filled = set(orjson.loads(stored[0][0]))
        else:
            every = table_columns(self.con, table)
            counts = self.con.execute("SELECT " + ", ".join(f"count({schema.column_name(c)})" for c in every)
                                      + f" FROM {table}").fetchall()[0]
            filled = {c for c, n in zip(every, counts) if n}
        if stored and columns <= filled:
            return
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         [key, orjson.dumps(sorted(filled | columns)).decode()])

    def _note_free_paths(self, paths: set[str]) -> None:
        """Add free-form JSON paths to :data:`FREE_PATHS` in ``meta``, inside the caller's transaction. A
        catalog from before the list gets the top-level keys its rows hold, each open below (``key.*``)."""
        self._known = None
        stored = self.con.execute("SELECT value FROM meta WHERE key = ?", [FREE_PATHS]).fetchall()
        if stored:
            noted = set(orjson.loads(stored[0][0]))
            if paths <= noted:
                return
        else:
            noted = {f"{k}.*" for k in self._legacy_free_keys()}
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         [FREE_PATHS, orjson.dumps(sorted(noted | paths)).decode()])

    def _legacy_free_keys(self) -> set[str]:
        """The top-level keys of the free-form JSON the rows hold (one scan; only for a catalog from
        before :data:`FREE_PATHS`), box attributes prefixed by their list."""
        keys = {r[0] for r in self.con.execute(
            "SELECT DISTINCT unnest(json_keys(extra)) FROM samples WHERE extra IS NOT NULL").fetchall()}
        keys |= {f"{r[0]}.{r[1]}" for r in self.con.execute(
            "SELECT DISTINCT field, unnest(json_keys(attrs)) FROM objects WHERE attrs IS NOT NULL").fetchall()}
        return keys

    def known_paths(self) -> KnownPaths | None:
        """The field paths some sample holds (a superset: a value removed later stays known), from
        ``meta`` alone; None for an empty catalog or one written before the filled columns were kept. A
        catalog written before :data:`FREE_PATHS` knows its free-form paths only once
        :meth:`query_warnings` needs them (``complete`` is False until then)."""
        known = self._known
        if known is not None:
            return known
        with self._mutex:
            filled, attrs, free = (self.meta_get(k) for k in (FILLED_COLUMNS["samples"],
                                                              FILLED_COLUMNS["objects"], FREE_PATHS))
        if filled is None:
            return None
        boxes = [s.path for s in self.fields.values() if s.kind == "objects"]
        box_attrs = [a for a in (orjson.loads(attrs) if attrs else ()) if a in self.object_attrs]
        paths = declared_paths(orjson.loads(filled), boxes, box_attrs)
        paths |= set(orjson.loads(free)) if free is not None else set()
        if not paths and free is not None:
            return None
        paths.add("_id")
        declared = set(self.fields) | {f"{b}.{a}" for b in boxes for a in self.object_attrs}
        known = self._known = KnownPaths(frozenset(paths), frozenset(declared), complete=free is not None)
        return known

    def query_warnings(self, query: dict | None) -> list[str]:
        """A warning for each field ``query`` names that no sample has (``isues``: did you mean
        ``issues``?), from ``meta`` alone (see :mod:`.query.known_fields`); on a catalog written before
        :data:`FREE_PATHS`, the first query naming an undeclared field reads its free-form keys once."""
        if not query:
            return []
        known = self.known_paths()
        if known is not None and not known.complete and any(
                p.split(".")[0] not in self.fields for p in query_paths(query)):
            with self._mutex:
                legacy = {f"{k}.*" for k in self._legacy_free_keys()}
            known = self._known = dataclasses.replace(known, paths=known.paths | legacy, complete=True)
        return query_warnings(query, known)

    def check_query(self, query: dict | None) -> list[str]:
        """:meth:`query_warnings` of a query that compiles: a malformed one raises ``QueryError`` here, as
        in :meth:`find`."""
        self._where(query)
        return self.query_warnings(query)

    def meta_get(self, key: str) -> str | None:
        with self._mutex:
            rows = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        row = rows[0] if rows else None
        return row[0] if row else None

    def meta_set(self, key: str, value: str) -> None:
        self._require_write()
        with self._mutex:
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])
