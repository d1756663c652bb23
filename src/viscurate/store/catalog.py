"""The catalog of one dataset: a DuckDB file with a samples table and an objects table.

This is the only module that writes SQL against the catalog. Everything above it speaks documents and
the MongoDB query language.

Layout:
- ``samples``: ``_seq`` (insertion order, the stable order of unsorted results), one typed column per
  declared leaf field (named by its dotted path), ``<list>#n`` (length of each box list, NULL when the
  list is missing) and ``extra`` (JSON object of the undeclared fields).
- ``objects``: one row per box: ``sample_seq``, ``field`` (e.g. ``object_analysis``), ``idx`` (position
  in the list), the declared object attributes, and ``attrs`` (JSON object of the others).
- ``meta``: key/value, including ``schema_version``.

Every write is one transaction: a run that dies leaves the catalog as it was before its last batch.

A writable catalog holds the dataset for as long as it is open, but lets waiting readers in between two
of its calls (a long job's batches): it closes its connection and unlocks, and reopens when it is next
used (docs/decisions.md #22). ``with cat.hold():`` keeps readers out across several calls.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with Catalog(d, "demo", write=True) as cat:
...     _ = cat.write([{"_id": "a", "width": 10}, {"_id": "b", "width": 20}])
...     cat.find({"width": {"$gt": 15}})["results"][0]["_id"]
'b'
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, Literal, Sequence

import duckdb
import orjson
import pyarrow as pa

from ..errors import DatasetExists, QueryError, SchemaVersionError, ViscurateError
from . import documents, schema
from .lock import DatasetLock, readers_waiting
from .read_cache import ReadCache
from .query import bson_order
from .query.budget import time_limited
from .query.compiler import Ctx, bind, compile_query, compile_sort
from .query.known_fields import KnownPaths, declared_paths, json_paths, query_paths, query_warnings
from .query.projection import project
from .schema import SCHEMA_VERSION, FieldSpec

CATALOG_FILE = "catalog.duckdb"
# meta: the columns of samples and of objects that hold a value in some row, kept by every write (a
# superset: a column emptied later stays listed). A reader fetches only those: each column of a point
# lookup costs the same, and a catalog fills a few dozen of its ~100 declared ones.
FILLED_COLUMNS = {"samples": "filled_columns", "objects": "filled_object_columns"}
# meta: the dotted paths of the free-form JSON (samples' extra, boxes' attrs prefixed by their list) that
# some row holds, kept by every insert like the filled columns: a query's unknown fields are warned about
# (query.known_fields) without reading any document.
FREE_PATHS = "free_paths"
SCHEMA_STAMP = ".schema-stamp"  # signature of the declared fields the catalog has columns for
DEFAULT_PAGE_SIZE = 25
WriteMode = Literal["error", "skip", "replace", "merge"]

log = logging.getLogger("viscurate.catalog")

#: A writable catalog looks this often (seconds) whether readers wait, and lets them in when it is idle.
READER_CHECK = 0.02
#: ... but not in its first moments: a short write (a tag, an edit) finishes first.
LET_IN_AFTER = 0.25
#: After letting readers in, a writer waits at most this long for the ones waiting then to get in.
LET_IN_WAIT = 1.0
#: How long a writer that let readers in waits to get the dataset back (a long read may be in progress).
RELOCK_TIMEOUT = 600.0

_ARROW = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}


class _SharedDatabase:
    """One DuckDB database instance per catalog file per process: DuckDB shares instances within a
    process anyway, and functions registered on one connection are visible to all of them, so every
    Catalog of this process gets a cursor of one root connection that lives while any is open."""

    _lock = threading.Lock()
    _open: dict[str, list] = {}  # path -> [root connection, read_only, users]

    @classmethod
    def cursor(cls, path: Path, read_only: bool, setup) -> duckdb.DuckDBPyConnection:
        key = str(path.resolve())
        with cls._lock:
            entry = cls._open.get(key)
            if entry is not None and entry[1] != read_only:
                raise RuntimeError("this process already holds the catalog in the other mode")
            if entry is None:
                root = duckdb.connect(key, read_only=read_only)
                try:
                    setup(root)
                except BaseException:
                    root.close()
                    raise
                entry = cls._open[key] = [root, read_only, 0]
            entry[2] += 1
            return entry[0].cursor()

    @classmethod
    def release(cls, path: Path, cur: duckdb.DuckDBPyConnection) -> None:
        key = str(path.resolve())
        with cls._lock:
            cur.close()
            entry = cls._open.get(key)
            if entry is None:
                return
            entry[2] -= 1
            if entry[2] <= 0:
                del cls._open[key]
                entry[0].close()


class _NoLock:
    """The mutex of a read-only catalog: its threads read through cursors of their own."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


_NO_LOCK = _NoLock()


def lock_timeout() -> float:
    return float(os.environ.get("VISCURATE_LOCK_TIMEOUT", "10"))


def new_id() -> str:
    """A fresh 24-hex-digit id (the shape of a MongoDB ObjectId)."""
    return uuid.uuid4().hex[:24]


class Catalog:
    """An open catalog. Use as a context manager; ``write=True`` takes the dataset's write lock.

    A writable catalog lets readers that wait for the dataset in between its calls (after
    :data:`LET_IN_AFTER` seconds open): it closes its DuckDB connection and unlocks, and its next call
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
        self._timeout = lock_timeout() if timeout is None else timeout
        self._threads = threads
        self._paused = False  # a writer that let readers in: its next call takes the dataset back
        self.pauses = 0  # how often it did
        self.relock_guard: Callable[[], ContextManager] | None = None
        self._watcher: threading.Thread | None = None
        self._stop_watching = threading.Event()
        self._session = DatasetLock(self.directory, self.name, exclusive=True, timeout=self._timeout,
                                    session=True).acquire() if write else None
        self._lock = DatasetLock(self.directory, self.name, exclusive=write, timeout=self._timeout)
        try:
            self._lock.acquire()
        except BaseException:
            if self._session is not None:
                self._session.release()
            raise
        # A writable catalog is one cursor, its calls serialized by a mutex. A read-only one cannot
        # change while it is open (DuckDB opened it read-only and our shared lock keeps writers out),
        # so each thread gets a cursor of its own and reads of several threads run at once (a server's
        # requests: one DuckDB cursor is not thread-safe, separate cursors are), and counts are cached.
        self._thread_cursors: dict[int, duckdb.DuckDBPyConnection] = {}
        self._local = threading.local()
        self._cache = None if write else ReadCache()  # counts, documents and match lists of a reader
        self._selects: dict[str, str] = {}  # a reader's select lists of document reads (_filled_select)
        self._known: KnownPaths | None = None  # known_paths(), until this catalog's next write
        self._mutex = threading.RLock() if write else _NO_LOCK
        try:
            self.con = self._connect(write, threads)
        except BaseException:
            self._lock.release()
            if self._session is not None:
                self._session.release()
            raise
        if write:
            self._let_in_after = time.monotonic() + LET_IN_AFTER
            self._watcher = threading.Thread(target=_watch_readers, args=(weakref.ref(self), self._stop_watching),
                                             name=f"viscurate-let-readers-in-{self.name}", daemon=True)
            self._watcher.start()

    @property
    def con(self) -> duckdb.DuckDBPyConnection | None:
        """The DuckDB cursor of the calling thread (read-only catalogs) or of the catalog (a writer that
        let readers in takes the dataset back here; its callers hold ``_mutex``)."""
        if self.write_mode:
            if self._con is None and self._paused:
                with self._mutex:
                    if self._con is None and self._paused:
                        self._resume()
            return self._con
        if self._con is None:
            return self._con
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._thread_cursor()
        return cur

    @con.setter
    def con(self, value: duckdb.DuckDBPyConnection | None) -> None:
        self._con = value

    def _thread_cursor(self) -> duckdb.DuckDBPyConnection:
        me = threading.current_thread()
        with _SharedDatabase._lock:
            if not self._thread_cursors:
                cur = self._con  # the opening cursor serves the first thread
            else:
                cur = self._con.cursor()
            alive = {t.ident for t in threading.enumerate()} - {me.ident}  # (an ended thread's ident may be reused)
            for ident in [i for i in self._thread_cursors if i not in alive]:  # threads that ended
                old = self._thread_cursors.pop(ident)
                if old is not self._con:
                    old.close()
            self._thread_cursors[me.ident] = cur
        self._local.cursor = cur
        return cur

    def _count_where(self, where: str, params: list) -> int:
        """``count(*)`` of the rows matching ``where``; remembered while a read-only catalog is open."""
        def count() -> int:
            return self._execute(f"SELECT count(*) FROM samples s WHERE {where}", params).fetchall()[0][0]

        return count() if self._cache is None else self._cache.count((where, repr(params)), count)

    # ---- connection -------------------------------------------------------------------------

    def _connect(self, write: bool, threads: int | None, resume: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the DuckDB file (``resume``: a writer taking the dataset back, whose schema is in place)."""
        fresh = not self.path.exists()
        if not write and fresh:
            # nothing written yet: create the empty schema once, then read it
            self._lock.release()
            self._lock.exclusive = True
            self._lock.acquire()
            con = duckdb.connect(str(self.path))
            self._create_schema(con)
            con.close()
            self._lock.release()
            self._lock.exclusive = False
            self._lock.acquire()
        wal = Path(str(self.path) + ".wal")
        if not write and (wal.exists() or self._behind_schema()):
            # a previous writer died (replaying its log needs a writable open), or the catalog predates
            # fields this version declares (adding their columns does): fix that first, briefly
            self._lock.release()
            self._lock.exclusive = True
            self._lock.acquire()
            con = duckdb.connect(str(self.path))
            try:
                self._check_version(con)
                self._create_schema(con)
            finally:
                con.close()
            self._lock.release()
            self._lock.exclusive = False
            self._lock.acquire()
        def setup(root: duckdb.DuckDBPyConnection) -> None:
            root.execute(f"SET threads = {int(threads or os.cpu_count() or 1)}")
            if write and not resume:
                self._create_schema(root)
            self._register_functions(root)

        con = _SharedDatabase.cursor(self.path, not write, setup)
        if resume:
            return con
        try:
            self._check_version(con)
        except BaseException:
            _SharedDatabase.release(self.path, con)
            raise
        return con

    def _create_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        cols = ["_seq BIGINT NOT NULL"]
        for spec in self.fields.values():
            if spec.kind == "scalar":
                extra = " PRIMARY KEY" if spec.path == "_id" else ""
                cols.append(f"{spec.column} {spec.sql_type}{extra}")
            elif spec.kind == "list":
                cols.append(f"{spec.column} {spec.sql_type}[]")
            elif spec.kind == "objects":
                cols.append(f"{schema.column_name(spec.path + '#n')} INTEGER")
        cols.append("extra JSON")
        con.execute(f"CREATE TABLE IF NOT EXISTS samples ({', '.join(cols)})")
        self._add_missing_columns(con, "samples", cols)
        ocols = ["sample_seq BIGINT NOT NULL", "field VARCHAR NOT NULL", "idx INTEGER NOT NULL"]
        for spec in self.object_attrs.values():
            t = spec.sql_type + ("[]" if spec.kind == "list" else "")
            ocols.append(f"{spec.column} {t}")
        ocols.append("attrs JSON")
        con.execute(f"CREATE TABLE IF NOT EXISTS objects ({', '.join(ocols)})")
        self._add_missing_columns(con, "objects", ocols)
        con.execute("CREATE TABLE IF NOT EXISTS vectors (model VARCHAR NOT NULL, sample_seq BIGINT NOT NULL, "
                    "field VARCHAR, idx INTEGER, vector BLOB NOT NULL, version BIGINT)")
        # version: which write_vectors transaction stored the row (a counter in meta), so that derived
        # indexes (viscurate.brain.index) pick up exactly what changed since they last looked
        self._add_missing_columns(con, "vectors", ["version BIGINT"])
        con.execute('CREATE TABLE IF NOT EXISTS edits ("at" VARCHAR NOT NULL, "by" VARCHAR, "sample_id" VARCHAR NOT NULL, '
                    '"action" VARCHAR NOT NULL, "field" VARCHAR, "idx" INTEGER, "before" JSON, "after" JSON)')
        con.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING", [str(SCHEMA_VERSION)])
        try:
            (self.directory / SCHEMA_STAMP).write_text(self._schema_signature())
        except OSError:
            pass

    def _behind_schema(self) -> bool:
        """True when the catalog file lacks a column for a declared field (cheap: reads the catalog's
        table list only; False when the catalog is held in this process already)."""
        key = str(self.path.resolve())
        if key in _SharedDatabase._open:
            return False
        try:
            if (self.directory / SCHEMA_STAMP).read_text() == self._schema_signature():
                return False  # the last writer already had every declared column
        except OSError:
            pass
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            have = set(_table_columns(con, "samples"))
            vector_cols = set(_table_columns(con, "vectors"))
        finally:
            con.close()
        wanted = {s.path for s in self.fields.values() if s.kind in ("scalar", "list")}
        wanted |= {s.path + "#n" for s in self.fields.values() if s.kind == "objects"}
        return bool(wanted - have) or "version" not in vector_cols

    def _schema_signature(self) -> str:
        import hashlib
        parts = [f"{f.path}:{f.kind}:{f.sql_type}" for f in list(self.fields.values()) + list(self.object_attrs.values())]
        parts.append("vectors.version")
        return hashlib.sha1("|".join(parts).encode()).hexdigest()

    @staticmethod
    def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str, column_defs: list[str]) -> None:
        """Additive schema changes: declared fields newer than the catalog become empty columns."""
        have = set(_table_columns(con, table))
        for definition in column_defs:
            name = definition.split('" ', 1)[0].strip('"') if definition.startswith('"') else definition.split(" ", 1)[0]
            if name not in have and "PRIMARY KEY" not in definition and "NOT NULL" not in definition:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")

    def _check_version(self, con: duckdb.DuckDBPyConnection) -> None:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        row = rows[0] if rows else None
        found = int(row[0]) if row else None
        if found != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"dataset {self.name!r} has catalog schema version {found}, this viscurate reads version "
                f"{SCHEMA_VERSION}; upgrade viscurate (or export with the version that wrote it)")

    @staticmethod
    def _register_functions(con: duckdb.DuckDBPyConnection) -> None:
        con.create_function("vc_order_key", bson_order.order_key_from_json, ["VARCHAR"], "BLOB",
                            null_handling="special", side_effects=False)
        con.create_function("vc_sort_key", bson_order.sort_key_from_json, ["VARCHAR", "VARCHAR", "BOOLEAN"],
                            "BLOB", null_handling="special", side_effects=False)

    # ---- letting readers in (writable catalogs) ----------------------------------------------

    @contextmanager
    def hold(self) -> Iterator["Catalog"]:
        """Keep waiting readers out across the calls in the block: they see all of its writes or none
        (a batch of documents and its vectors)."""
        with self._mutex:
            yield self

    def _let_readers_in(self) -> bool:
        """Called by the watcher thread: when readers wait and no call is in progress, close and
        unlock (the next call takes the dataset back). True when it did."""
        if self._con is None or time.monotonic() < self._let_in_after or not readers_waiting(self.directory):
            return False
        if not self._mutex.acquire(blocking=False):
            return False  # a call (or a held block) is in progress: readers get in after it
        try:
            if self._con is None:
                return False
            con, self._con = self._con, None
            self._paused = True
            self.pauses += 1
            try:
                _SharedDatabase.release(self.path, con)
            finally:
                self._lock.release()
            return True
        finally:
            self._mutex.release()

    def _resume(self) -> None:
        """Take the dataset back after letting readers in: first let the readers that wait now get in
        (for at most :data:`LET_IN_WAIT`), then lock, announcing it (readers that come later wait for
        this writer), and reconnect."""
        deadline = time.monotonic() + LET_IN_WAIT
        while readers_waiting(self.directory) and time.monotonic() < deadline:
            time.sleep(0.005)
        self._lock.timeout = max(self._timeout, RELOCK_TIMEOUT)
        with (self.relock_guard() if self.relock_guard is not None else nullcontext()):
            self._lock.acquire()
        try:
            self._con = self._connect(True, self._threads, resume=True)
        except BaseException:
            self._lock.release()
            raise
        self._paused = False

    def close(self) -> None:
        stop = getattr(self, "_stop_watching", None)
        if stop is not None:
            stop.set()
        watcher = getattr(self, "_watcher", None)
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
        with getattr(self, "_mutex", _NO_LOCK):
            self._paused = False
            con, self._con = getattr(self, "_con", None), None
            try:
                if con is not None:
                    try:
                        with _SharedDatabase._lock:
                            extra = [c for c in self._thread_cursors.values() if c is not con]
                            self._thread_cursors.clear()
                        for cur in extra:
                            cur.close()
                        _SharedDatabase.release(self.path, con)
                    finally:
                        self._lock.release()
            finally:
                session = getattr(self, "_session", None)
                if session is not None:
                    session.release()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten catalog must not keep the dataset locked
        try:
            self.close()
        except Exception:
            pass

    # ---- writing ----------------------------------------------------------------------------

    def write(self, docs: Iterable[dict], mode: WriteMode = "error", merge_keys: Iterable[str] | None = None) -> dict:
        """Write sample documents in one transaction. Returns counts {"inserted", "updated", "skipped"}.

        ``mode`` decides what happens to a document whose ``_id`` exists: ``error`` (raise, write
        nothing), ``skip``, ``replace`` (the new document replaces the old one), ``merge`` (its top-level
        fields replace the old ones; with ``merge_keys``, exactly those keys are replaced or removed)."""
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
        with self._mutex:
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
                if existing and mode in ("replace", "merge"):
                    self._delete_seqs(list(existing.values()), vectors=False)
                    self._drop_stale_vectors(existing, new_bytes, written, replace=mode == "replace",
                                             old=old, new={d["_id"]: d for d in docs})
                next_seq = self.con.execute("SELECT coalesce(max(_seq), -1) + 1 FROM samples").fetchall()[0][0]
                seqs = []
                for d in docs:
                    if d["_id"] in existing:
                        seqs.append(existing[d["_id"]])
                    else:
                        seqs.append(next_seq)
                        next_seq += 1
                self._insert(docs, seqs)
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        updated = sum(1 for d in docs if d["_id"] in existing)
        return {"inserted": len(docs) - updated, "updated": updated, "skipped": len(ids) - len(docs)}

    def _drop_stale_vectors(self, existing: dict[str, int], new_bytes: set[str], written: dict[str, set],
                            replace: bool, old: dict[str, dict] | None = None,
                            new: dict[str, dict] | None = None) -> None:
        """A rewritten sample keeps its vectors, except the ones its rewrite makes stale: all of them when
        its bytes changed, and those of every box list the rewrite replaced with other boxes (box ``i`` may
        be another box). A merge that keeps a list's boxes where they were (new attributes, same
        geometry, e.g. an evaluation marking them) keeps their vectors."""
        box_fields = [s.path for s in self.fields.values() if s.kind == "objects"]
        every, by_field = [], []
        for sid, seq in existing.items():
            if sid not in written:
                continue
            if sid in new_bytes:
                every.append(seq)
                continue
            for f in box_fields:
                top = f.split(".")[0]
                if replace or f in written[sid] or top in written[sid]:
                    if (not replace and old is not None and new is not None and sid in old and sid in new
                            and _box_geometry(old[sid], f) == _box_geometry(new[sid], f)):
                        continue
                    by_field.append((seq, f))
        if every:
            self.con.execute("DELETE FROM vectors WHERE sample_seq IN (SELECT unnest(?))", [every])
        if by_field:
            self.con.execute("DELETE FROM vectors WHERE (sample_seq, field) IN (SELECT unnest(?), unnest(?))",
                             [[s for s, _ in by_field], [f for _, f in by_field]])

    def _require_write(self) -> None:
        if not self.write_mode:
            raise RuntimeError("this catalog was opened for reading")

    def _delete_seqs(self, seqs: list[int], vectors: bool = True) -> None:
        if vectors:
            self.con.execute("DELETE FROM vectors WHERE sample_seq IN (SELECT unnest(?))", [seqs])
        self.con.execute("DELETE FROM objects WHERE sample_seq IN (SELECT unnest(?))", [seqs])
        self.con.execute("DELETE FROM samples WHERE _seq IN (SELECT unnest(?))", [seqs])

    def _insert(self, docs: list[dict], seqs: list[int]) -> None:
        if not docs:
            return
        leaves = [s for s in self.fields.values() if s.kind in ("scalar", "list")]
        lists = [s for s in self.fields.values() if s.kind == "objects"]
        columns: dict[str, list] = {"_seq": seqs}
        for spec in leaves:
            columns[spec.path] = []
        for spec in lists:
            columns[spec.path + "#n"] = []
        columns["extra"] = []
        ocols: dict[str, list] = {"sample_seq": [], "field": [], "idx": []}
        for spec in self.object_attrs.values():
            ocols[spec.path] = []
        ocols["attrs"] = []
        free: set[str] = set()
        for doc, seq in zip(docs, seqs):
            row, objects, extra = documents.split(doc, self.fields, self.object_attrs)
            free.update(json_paths(extra))
            for spec in leaves:
                columns[spec.path].append(row.get(spec.path))
            for spec in lists:
                items = objects.get(spec.path)
                columns[spec.path + "#n"].append(None if items is None else len(items))
                for i, obj in enumerate(items or ()):
                    ocols["sample_seq"].append(seq)
                    ocols["field"].append(spec.path)
                    ocols["idx"].append(i)
                    for a in self.object_attrs:
                        ocols[a].append(obj.get(a))
                    ocols["attrs"].append(orjson.dumps(obj["attrs"]).decode() if obj["attrs"] else None)
                    free.update(json_paths(obj["attrs"], spec.path))
            columns["extra"].append(orjson.dumps(extra).decode() if extra else None)
        arrays, names = [pa.array(seqs, pa.int64())], ["_seq"]
        for spec in leaves:
            t = _ARROW[spec.sql_type]
            arrays.append(pa.array(columns[spec.path], pa.list_(t) if spec.kind == "list" else t))
            names.append(spec.path)
        for spec in lists:
            arrays.append(pa.array(columns[spec.path + "#n"], pa.int32()))
            names.append(spec.path + "#n")
        arrays.append(pa.array(columns["extra"], pa.string()))
        names.append("extra")
        self._note_filled("samples", {n for n, a in zip(names, arrays) if a.null_count < len(a)})
        self._note_free_paths(free)
        batch = pa.Table.from_arrays(arrays, names=names)
        self.con.register("_vc_batch", batch)
        try:
            self.con.execute("INSERT INTO samples BY NAME SELECT * FROM _vc_batch")
        finally:
            self.con.unregister("_vc_batch")
        if ocols["sample_seq"]:
            oarrays = [pa.array(ocols["sample_seq"], pa.int64()), pa.array(ocols["field"], pa.string()),
                       pa.array(ocols["idx"], pa.int32())]
            onames = ["sample_seq", "field", "idx"]
            for a, spec in self.object_attrs.items():
                t = _ARROW[spec.sql_type]
                oarrays.append(pa.array(ocols[a], pa.list_(t) if spec.kind == "list" else t))
                onames.append(a)
            oarrays.append(pa.array(ocols["attrs"], pa.string()))
            onames.append("attrs")
            self._note_filled("objects", {n for n, a in zip(onames, oarrays) if a.null_count < len(a)})
            self.con.register("_vc_objects", pa.Table.from_arrays(oarrays, names=onames))
            try:
                self.con.execute("INSERT INTO objects BY NAME SELECT * FROM _vc_objects")
            finally:
                self.con.unregister("_vc_objects")

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
        ops = _validate_update(changes)
        ctx = Ctx()
        where, params = self._where(query, ids, ctx)
        fast = _fast_update_sql(ops, self.fields, ctx)
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
                        new_docs = [_apply_update(d, ops) for d in docs]
                        changed = [(nd, d["_seq_"]) for nd, d in zip(new_docs, docs) if nd is not None]
                        if changed:
                            self._delete_seqs([s for _, s in changed], vectors=False)
                            self._insert([nd for nd, _ in changed], [s for _, s in changed])
                        n += len(changed)
                if audit:
                    self.con.executemany(
                        f"INSERT INTO edits ({_EDIT_COLS}) VALUES ({', '.join('?' * len(EDIT_COLUMNS))})",
                        [_edit_row(r) for r in audit])
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
                with _query_refused(), time_limited(con):
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
            marks = ", ".join(f"${k + 1}" for k in range(len(chunk)))
            cur = self.con.execute(f"SELECT {select} FROM samples WHERE _id IN ({marks})", chunk)
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
        offset = 0
        while True:
            with self._mutex:
                ids, _ = self._page_ids(where, params, order, batch_size, offset)
                batch = self._docs_by_ids(ids)
            yield from batch
            if len(ids) < batch_size:
                return
            offset += batch_size

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
        with _query_refused(), (nullcontext() if self.write_mode else time_limited(con)):
            return con.execute(sql, params)

    def _objects_for(self, seqs: list[int]) -> dict[int, dict[str, list[dict]]]:
        cur = self.con.execute(f"SELECT {self._filled_select('objects')} FROM objects WHERE sample_seq IN "
                               "(SELECT unnest(?)) ORDER BY sample_seq, field, idx", [seqs])
        names = [c[0] for c in cur.description]
        out: dict[int, dict[str, list[dict]]] = {}
        for r in cur.fetchall():
            row = dict(zip(names, r))
            attrs = row.pop("attrs", None)
            row["attrs"] = orjson.loads(attrs) if attrs else {}
            out.setdefault(row.pop("sample_seq"), {}).setdefault(row.pop("field"), []).append(row)
        return out

    # ---- vectors ------------------------------------------------------------------------------

    def write_vectors(self, model: str, sample_ids: list[str], vectors, field: str | None = None,
                      idxs: list[int] | None = None) -> int:
        """Store embeddings (float16 on disk) of samples, or of their boxes (``field`` + ``idxs``), for
        ``model``, replacing what that model stored for them before. One transaction."""
        import numpy as np
        self._require_write()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(sample_ids):
            raise ValueError("vectors must be a (n, d) array with one row per sample id")
        if idxs is not None and len(idxs) != len(sample_ids):
            raise ValueError("idxs must have one entry per sample id")
        with self._mutex:
            self.con.execute("BEGIN TRANSACTION")
            try:
                seqs = dict(self.con.execute(
                    "SELECT _id, _seq FROM samples WHERE _id IN (SELECT unnest(?))", [list(set(sample_ids))]).fetchall())
                missing = [i for i in sample_ids if i not in seqs]
                if missing:
                    raise ViscurateError(f"no sample with _id {missing[0]!r}")
                seq_col = [seqs[i] for i in sample_ids]
                idx_col = list(idxs) if idxs is not None else [None] * len(sample_ids)
                version = int(self.con.execute(
                    "SELECT coalesce(max(CAST(value AS BIGINT)), 0) + 1 FROM meta WHERE key = 'vectors_version'"
                ).fetchall()[0][0])
                self.con.execute("INSERT OR REPLACE INTO meta VALUES ('vectors_version', ?)", [str(version)])
                table = pa.table({
                    "model": pa.array([model] * len(seq_col), pa.string()),
                    "sample_seq": pa.array(seq_col, pa.int64()),
                    "field": pa.array([field] * len(seq_col), pa.string()),
                    "idx": pa.array(idx_col, pa.int32()),
                    "vector": pa.array([v.astype("<f2").tobytes() for v in vectors], pa.binary()),
                    "version": pa.array([version] * len(seq_col), pa.int64()),
                })
                self.con.register("_vc_vectors", table)
                try:
                    self.con.execute(
                        "DELETE FROM vectors v USING _vc_vectors n WHERE v.model = n.model AND v.sample_seq = n.sample_seq "
                        "AND v.field IS NOT DISTINCT FROM n.field AND v.idx IS NOT DISTINCT FROM n.idx")
                    self.con.execute("INSERT INTO vectors BY NAME SELECT * FROM _vc_vectors")
                finally:
                    self.con.unregister("_vc_vectors")
                self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"vector_dim:{model}", str(vectors.shape[1])])
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        return len(sample_ids)

    def read_vectors(self, model: str, field: str | None = None, query: dict | None = None):
        """(sample ids, box indexes or None, float32 matrix) of what ``model`` stored: image vectors, or
        the vectors of the boxes of ``field``; optionally only for samples matching ``query``."""
        import numpy as np
        ctx = Ctx()
        where, _ = self._where(query, ctx=ctx)
        field_cond = f"v.field = {ctx.p(field)}" if field is not None else "v.field IS NULL"
        sql = (f"SELECT s._id, v.idx, v.vector FROM vectors v JOIN samples s ON s._seq = v.sample_seq "
               f"WHERE v.model = {ctx.p(model)} AND {field_cond} AND ({where}) ORDER BY v.sample_seq, v.idx")
        with self._mutex:
            rows = self._execute(sql, ctx.params).fetchall()
        if not rows:
            return [], [], np.zeros((0, 0), dtype=np.float32)
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f2").reshape(len(rows), -1).astype(np.float32)
        return [r[0] for r in rows], [r[1] for r in rows], matrix

    def vector_changes(self, model: str, field: str | None = None, since: int = 0):
        """What ``model`` stored (image vectors, or the boxes of ``field``) in ``write_vectors`` transactions
        after version ``since``: ``(ids, idxs, float32 matrix, current version, every stored key)``, the last
        a set of ``(id, idx)`` so that a caller can also tell what was deleted. For incremental indexes."""
        import numpy as np
        field_cond = "v.field = ?" if field is not None else "v.field IS NULL"
        params: list = [model] + ([field] if field is not None else [])
        with self._mutex:
            current = int(self.con.execute(
                "SELECT coalesce(max(CAST(value AS BIGINT)), 0) FROM meta WHERE key = 'vectors_version'").fetchall()[0][0])
            keys = self.con.execute(
                f"SELECT s._id, v.idx FROM vectors v JOIN samples s ON s._seq = v.sample_seq "
                f"WHERE v.model = ? AND {field_cond}", params).fetchall()
            rows = self.con.execute(
                f"SELECT s._id, v.idx, v.vector FROM vectors v JOIN samples s ON s._seq = v.sample_seq "
                f"WHERE v.model = ? AND {field_cond} AND coalesce(v.version, 0) > ? ORDER BY v.sample_seq, v.idx",
                params + [int(since)]).fetchall()
        matrix = (np.frombuffer(b"".join(r[2] for r in rows), dtype="<f2").reshape(len(rows), -1).astype(np.float32)
                  if rows else np.zeros((0, 0), np.float32))
        return [r[0] for r in rows], [r[1] for r in rows], matrix, current, {(k[0], k[1]) for k in keys}

    def vector_models(self, field: str | None | Literal["any"] = "any") -> dict[str, int]:
        """model -> number of stored vectors (of ``field``'s boxes; ``None``: image vectors only; ``"any"``:
        all), by model name."""
        where, params = ("", []) if field == "any" else (
            ("WHERE field IS NULL", []) if field is None else ("WHERE field = ?", [field]))
        with self._mutex:
            return dict(self.con.execute(f"SELECT model, count(*) FROM vectors {where} GROUP BY 1 ORDER BY 1",
                                         params).fetchall())

    def box_vector_count(self, field: str) -> tuple[int, int]:
        """(vectors, samples with one) of the boxes of ``field``, every model together."""
        with self._mutex:
            return tuple(self.con.execute("SELECT count(*), count(DISTINCT sample_seq) FROM vectors WHERE field = ?",
                                          [field]).fetchall()[0])  # type: ignore[return-value]

    def ids_with_image_vector(self, model: str) -> set[str]:
        """The samples that have an image vector of ``model``."""
        with self._mutex:
            rows = self.con.execute("SELECT s._id FROM vectors v JOIN samples s ON s._seq = v.sample_seq "
                                    "WHERE v.model = ? AND v.field IS NULL", [model]).fetchall()
        return {r[0] for r in rows}

    def ids_missing_box_vectors(self, model: str, field: str) -> set[str]:
        """The samples whose box list ``field`` has a box without a ``model`` vector."""
        n = schema.column_name(field + "#n")
        with self._mutex:
            rows = self.con.execute(
                f"SELECT s._id FROM samples s WHERE coalesce(s.{n}, 0) > (SELECT count(*) FROM vectors v "
                f"WHERE v.sample_seq = s._seq AND v.model = ? AND v.field = ?)", [model, field]).fetchall()
        return {r[0] for r in rows}

    def distinct_values(self, path: str) -> int:
        """How many distinct values the declared scalar field ``path`` has (missing not counted)."""
        spec = self.fields.get(path)
        if spec is None or spec.kind != "scalar":
            raise QueryError(f"{path!r} is not a declared scalar field")
        with self._mutex:
            return self.con.execute(f"SELECT count(DISTINCT {spec.column}) FROM samples").fetchall()[0][0]

    # ---- ingest support ---------------------------------------------------------------------

    def file_index(self) -> dict[str, tuple[int | None, float | None, str | None, str]]:
        """origin -> (size_bytes, mtime, hash, _id) for every sample that came from a file."""
        with self._mutex:
            rows = self.con.execute(
                "SELECT origin, size_bytes, mtime, hash, _id FROM samples WHERE origin IS NOT NULL").fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

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
            rows = self.con.execute(f'SELECT {_EDIT_COLS} FROM edits {where} ORDER BY "at" DESC, rowid DESC '
                                    
                                    "LIMIT ? OFFSET ?", params + [int(limit), int(offset)]).fetchall()
        out = []
        for row in rows:
            rec = dict(zip(EDIT_COLUMNS, row))
            for k in ("before", "after"):
                rec[k] = orjson.loads(rec[k]) if rec[k] is not None else None
            out.append(rec)
        return total, out

    def list_value_counts(self, field: str, top: int | None = None) -> dict[str, int]:
        """value -> samples holding it, of a declared list field (``tags``, ``issues``, ``slices``), most
        common first."""
        spec = self.fields.get(field)
        if spec is None or spec.kind != "list":
            raise QueryError(f"{field!r} is not a declared list field")
        limit = f" LIMIT {int(top)}" if top is not None else ""
        with self._mutex:
            return dict(self.con.execute(f"SELECT v, count(*) FROM (SELECT unnest({spec.column}) AS v FROM samples) "
                                         f"GROUP BY v ORDER BY 2 DESC, 1{limit}").fetchall())

    def object_classes(self, field: str, top: int = 200) -> dict[str, int]:
        """class name -> samples with at least one such box in ``field``, most common first."""
        with self._mutex:
            return dict(self.con.execute(
                "SELECT name, count(DISTINCT sample_seq) FROM objects WHERE field = ? AND name IS NOT NULL "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?", [field, int(top)]).fetchall())

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
                select = ", ".join(schema.column_name(c) for c in _table_columns(self.con, table) if c in filled)
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
            every = _table_columns(self.con, table)
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

    def meta_get(self, key: str) -> str | None:
        with self._mutex:
            rows = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        row = rows[0] if rows else None
        return row[0] if row else None

    def meta_set(self, key: str, value: str) -> None:
        self._require_write()
        with self._mutex:
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


# ---- updates ------------------------------------------------------------------------------------

#: The audit trail of hand edits (curate.edits): who changed what, when, and the value before and after.
EDIT_COLUMNS = ("at", "by", "sample_id", "action", "field", "idx", "before", "after")
_EDIT_COLS = ", ".join(f'"{c}"' for c in EDIT_COLUMNS)




def _watch_readers(ref: "weakref.ref[Catalog]", stop: threading.Event) -> None:
    """The thread of a writable catalog that lets waiting readers in while the catalog is idle (it holds
    the catalog weakly: a forgotten catalog still closes)."""
    while not stop.wait(READER_CHECK):
        cat = ref()
        if cat is None:
            return
        try:
            cat._let_readers_in()
        except Exception:  # noqa: BLE001 - the writer's next call reports a real problem itself
            log.debug("letting readers in failed", exc_info=True)
        del cat


def _edit_row(record: dict) -> list:
    return [orjson.dumps(record[c]).decode() if c in ("before", "after") and record.get(c) is not None
            else record.get(c) for c in EDIT_COLUMNS]

_UPDATE_OPS = ("$set", "$unset", "$addToSet", "$pull")


def _validate_update(changes: dict) -> dict:
    if not isinstance(changes, dict) or not changes:
        raise QueryError("an update needs operators, e.g. {'$set': {'split': 'val'}}")
    for op, body in changes.items():
        if op not in _UPDATE_OPS:
            raise QueryError(f"unsupported update operator {op} (supported: {', '.join(_UPDATE_OPS)})")
        if not isinstance(body, dict) or not body:
            raise QueryError(f"{op} needs an object of field paths")
        for path in body:
            if not isinstance(path, str) or not path or any(p == "" or p.startswith("$") for p in path.split(".")):
                raise QueryError(f"{op}: invalid field path {path!r}")
            if path == "_id" or path.startswith("_id."):
                raise QueryError("_id cannot be changed")
    return changes


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Every column of ``table``, in table order."""
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
        "ORDER BY column_index", [table]).fetchall()]


@contextmanager
def _query_refused() -> Iterator[None]:
    """DuckDB refusing a query's values (e.g. a regular expression that Python accepts and RE2 refuses)
    is the query's fault: a QueryError, not a crash."""
    try:
        yield
    except duckdb.InvalidInputException as e:
        raise QueryError(f"the query could not run: {str(e).splitlines()[0]}") from None


def _fast_update_sql(ops: dict, fields: dict, ctx: Ctx) -> tuple[str, str] | None:
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


def _apply_update(doc: dict, ops: dict) -> dict | None:
    """The updated document, or None when nothing changed."""
    import copy
    new = copy.deepcopy({k: v for k, v in doc.items() if k != "_seq_"})
    for op, body in ops.items():
        for path, value in body.items():
            parts = path.split(".")
            if op == "$set":
                _set_path(new, parts, value)
            elif op == "$unset":
                _unset_path(new, parts)
            elif op == "$addToSet":
                values = value["$each"] if isinstance(value, dict) and list(value) == ["$each"] else [value]
                current = _get_path(new, parts)
                if current is None:
                    current = []
                if not isinstance(current, list):
                    raise QueryError(f"$addToSet: {path} is not an array")
                for v in values:
                    if v not in current:
                        current = current + [v]
                _set_path(new, parts, current)
            elif op == "$pull":
                current = _get_path(new, parts)
                drop = value["$in"] if isinstance(value, dict) and list(value) == ["$in"] else [value]
                if isinstance(current, list):
                    _set_path(new, parts, [v for v in current if v not in drop])
    old = {k: v for k, v in doc.items() if k != "_seq_"}
    return None if new == old else new


def _get_path(doc: dict, parts: list[str]) -> Any:
    cur: Any = doc
    for p in parts:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _set_path(doc: dict, parts: list[str], value: Any) -> None:
    cur = doc
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise QueryError(f"cannot set {'.'.join(parts)}: {p} is not an object")
        cur = nxt
    cur[parts[-1]] = value


def _unset_path(doc: dict, parts: list[str]) -> None:
    cur: Any = doc
    for p in parts[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return
        cur = cur[p]
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)


# ---- summaries ----------------------------------------------------------------------------------

def _box_geometry(doc: dict, path: str) -> list | None:
    """The boxes of the list at ``path`` of a document, in order (what box vectors are made from)."""
    cur = documents.get_path(doc, path)
    if not isinstance(cur, list):
        return None
    return [o.get("bbox") if isinstance(o, dict) else None for o in cur]


def summarize(cat: Catalog, top: int = 20) -> dict:
    """Counts and distributions of a catalog: what ``viscurate info`` shows."""
    q = cat._sql
    total, n_bytes = q("SELECT count(*), coalesce(sum(size_bytes), 0) FROM samples")[0]

    def counts(sql: str) -> dict:
        return {k if k is not None else "(none)": n for k, n in q(sql)}

    def quantiles(col: str) -> dict | None:
        row = q(f"SELECT min({col}), quantile_cont({col}, 0.05), median({col}), quantile_cont({col}, 0.95), "
                f"max({col}), avg({col}) FROM samples WHERE {col} IS NOT NULL")[0]
        if row[0] is None:
            return None
        return dict(zip(["min", "p5", "median", "p95", "max", "mean"], [float(x) for x in row]))

    out = {
        "samples": total,
        "bytes": int(n_bytes),
        "issues": cat.list_value_counts("issues"),
        "samples_with_issues": q("SELECT count(*) FROM samples WHERE len(issues) > 0")[0][0],
        "duplicates": dict(zip(("groups", "in_groups"), q(
            'SELECT count(DISTINCT "duplicates.group"), count("duplicates.group") FROM samples')[0])),
        "clusters": q('SELECT count(DISTINCT "cluster.id") FROM samples')[0][0],
        "evaluation": _evaluation_summary(q(
            'SELECT count("eval.tp"), coalesce(sum("eval.tp"), 0), coalesce(sum("eval.fp"), 0), '
            'coalesce(sum("eval.fn"), 0), coalesce(sum("eval.duplicate"), 0), coalesce(sum("eval.wrong_class"), 0), '
            'coalesce(sum("eval.badly_placed"), 0), coalesce(sum("eval.spurious"), 0) FROM samples')[0]),
        "formats": counts('SELECT format, count(*) FROM samples GROUP BY 1 ORDER BY 2 DESC, 1'),
        "modes": counts('SELECT mode, count(*) FROM samples GROUP BY 1 ORDER BY 2 DESC, 1'),
        "sources": counts('SELECT source, count(*) FROM samples GROUP BY 1 ORDER BY 2 DESC, 1'),
        "splits": counts('SELECT split, count(*) FROM samples WHERE split IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1'),
        "tags": cat.list_value_counts("tags", top),
        "slices": cat.list_value_counts("slices"),
        "width": quantiles('"width"'),
        "height": quantiles('"height"'),
        "size_bytes": quantiles('"size_bytes"'),
        "quality": {k: quantiles(f'"quality.{k}"') for k in ("blur", "brightness", "contrast", "entropy")},
        "size_histogram": counts(
            "SELECT CASE WHEN greatest(width, height) < 64 THEN '< 64 px' WHEN greatest(width, height) < 256 THEN '64-255 px' "
            "WHEN greatest(width, height) < 1024 THEN '256-1023 px' WHEN greatest(width, height) < 4096 THEN '1024-4095 px' "
            "ELSE '>= 4096 px' END AS bucket, count(*) FROM samples WHERE width IS NOT NULL GROUP BY 1 ORDER BY min(greatest(width, height))"),
        "labels": {},
    }
    for spec in cat.fields.values():
        if spec.kind == "objects":
            rows = q("SELECT name, count(*) FROM objects WHERE field = ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
                     [spec.path, int(top)])
            if rows:
                n = q("SELECT count(*) FROM objects WHERE field = ?", [spec.path])[0][0]
                out["labels"][spec.path] = {"objects": n, "classes": {k or "(none)": v for k, v in rows}}
    gt = counts('SELECT "ground_truth.label", count(*) FROM samples WHERE "ground_truth.label" IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ' + str(int(top)))
    if gt:
        out["labels"]["ground_truth.label"] = {"classes": gt}
    return out


def _evaluation_summary(row: Sequence[Any]) -> dict[str, Any]:
    """``viscurate info``'s evaluation line: samples evaluated, tp/fp/fn, and the false positives by kind."""
    out: dict[str, Any] = dict(zip(("samples", "tp", "fp", "fn"), (int(v) for v in row[:4])))
    if out["fp"]:
        out["errors"] = dict(zip(("duplicate", "wrong_class", "badly_placed", "spurious"), (int(v) for v in row[4:])))
    return out
