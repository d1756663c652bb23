"""The DuckDB side of an open catalog: one shared database per file and process, a cursor per reading
thread, the schema made and kept current, and a writer that lets waiting readers in while it is idle.

A writable catalog holds the dataset for as long as it is open, but lets waiting readers in between two
of its calls (a long job's batches): it closes its connection and unlocks, and reopens when it is next
used (docs/decisions.md #22). ``with cat.hold():`` keeps readers out across several calls.

:class:`CatalogConnection` is the part of :class:`viscurate.store.catalog.Catalog` that does this.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterator, TypeVar

import duckdb

from ..errors import QueryError, SchemaVersionError
from . import schema
from .lock import DatasetLock, readers_waiting
from .query import bson_order
from .schema import SCHEMA_VERSION
from .workspace import server_of_dataset

SCHEMA_STAMP = ".schema-stamp"  # signature of the declared fields the catalog has columns for

log = logging.getLogger("viscurate.catalog")
_Open = TypeVar("_Open", bound="CatalogConnection")  # the catalog itself, in the type of `with`


#: A writable catalog looks this often (seconds) whether readers wait, and lets them in when it is idle.
READER_CHECK = 0.02
#: ... but not in its first moments: a short write (a tag, an edit) finishes first.
LET_IN_AFTER = 0.25
#: After letting readers in, a writer waits at most this long for the ones waiting then to get in.
LET_IN_WAIT = 1.0
#: How long a writer that let readers in waits to get the dataset back (a long read may be in progress).
RELOCK_TIMEOUT = 600.0


class SharedDatabase:
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


class NoLock:
    """The mutex of a read-only catalog: its threads read through cursors of their own."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


NO_LOCK = NoLock()


class CatalogConnection:
    """The connection, locking and schema half of a :class:`~viscurate.store.catalog.Catalog` (its
    ``directory``, ``name``, ``path``, ``fields`` and ``object_attrs`` are set before :meth:`_take_dataset`)."""

    directory: Path
    name: str
    path: Path
    write_mode: bool
    fields: dict[str, schema.FieldSpec]
    object_attrs: dict[str, schema.FieldSpec]

    def _take_dataset(self, write: bool, timeout: float, threads: int | None) -> None:
        """Lock the dataset (a writer also takes the writers' session lock), open the catalog and, for a
        writer, start the thread that lets waiting readers in."""
        server = server_of_dataset(self.directory)
        self._timeout = timeout
        self._threads = threads
        self._paused = False  # a writer that let readers in: its next call takes the dataset back
        self.pauses = 0  # how often it did
        self.relock_guard: Callable[[], ContextManager] | None = None
        self._watcher: threading.Thread | None = None
        self._stop_watching = threading.Event()
        self._session = DatasetLock(self.directory, self.name, exclusive=True, timeout=self._timeout,
                                    session=True, server=server).acquire() if write else None
        self._lock = DatasetLock(self.directory, self.name, exclusive=write, timeout=self._timeout,
                                 server=server)
        try:
            self._lock.acquire()
        except BaseException:
            if self._session is not None:
                self._session.release()
            raise
        # A writable catalog is one cursor, its calls serialized by a mutex. A read-only one cannot
        # change while it is open (DuckDB opened it read-only and our shared lock keeps writers out),
        # so each thread gets a cursor of its own and reads of several threads run at once (a server's
        # requests: one DuckDB cursor is not thread-safe, separate cursors are).
        self._thread_cursors: dict[int, duckdb.DuckDBPyConnection] = {}
        self._local = threading.local()
        self._mutex = threading.RLock() if write else NO_LOCK
        try:
            self.con = self._connect(write, threads)
        except BaseException:
            self._lock.release()
            if self._session is not None:
                self._session.release()
            raise
        if write:
            self._let_in_after = time.monotonic() + LET_IN_AFTER
            self._watcher = threading.Thread(target=watch_readers, args=(weakref.ref(self), self._stop_watching),
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
        with SharedDatabase._lock:
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

        con = SharedDatabase.cursor(self.path, not write, setup)
        if resume:
            return con
        try:
            self._check_version(con)
        except BaseException:
            SharedDatabase.release(self.path, con)
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
        if key in SharedDatabase._open:
            return False
        try:
            if (self.directory / SCHEMA_STAMP).read_text() == self._schema_signature():
                return False  # the last writer already had every declared column
        except OSError:
            pass
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            have = set(table_columns(con, "samples"))
            object_cols = set(table_columns(con, "objects"))
            vector_cols = set(table_columns(con, "vectors"))
        finally:
            con.close()
        wanted = {s.path for s in self.fields.values() if s.kind in ("scalar", "list")}
        wanted |= {s.path + "#n" for s in self.fields.values() if s.kind == "objects"}
        # a box attribute declared since (a query on it names its column) counts as much as a sample field
        return bool(wanted - have) or bool(set(self.object_attrs) - object_cols) or "version" not in vector_cols

    def _schema_signature(self) -> str:
        import hashlib
        parts = [f"{f.path}:{f.kind}:{f.sql_type}" for f in list(self.fields.values()) + list(self.object_attrs.values())]
        parts.append("vectors.version")
        return hashlib.sha1("|".join(parts).encode()).hexdigest()

    @staticmethod
    def _add_missing_columns(con: duckdb.DuckDBPyConnection, table: str, column_defs: list[str]) -> None:
        """Additive schema changes: declared fields newer than the catalog become empty columns."""
        have = set(table_columns(con, table))
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
    def hold(self: _Open) -> Iterator[_Open]:
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
                SharedDatabase.release(self.path, con)
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
        with getattr(self, "_mutex", NO_LOCK):
            self._paused = False
            con, self._con = getattr(self, "_con", None), None
            try:
                if con is not None:
                    try:
                        with SharedDatabase._lock:
                            extra = [c for c in self._thread_cursors.values() if c is not con]
                            self._thread_cursors.clear()
                        for cur in extra:
                            cur.close()
                        SharedDatabase.release(self.path, con)
                    finally:
                        self._lock.release()
            finally:
                session = getattr(self, "_session", None)
                if session is not None:
                    session.release()

    def __enter__(self: _Open) -> _Open:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten catalog must not keep the dataset locked
        try:
            self.close()
        except Exception:
            pass


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Every column of ``table``, in table order."""
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
        "ORDER BY column_index", [table]).fetchall()]


@contextmanager
def query_refused() -> Iterator[None]:
    """DuckDB refusing a query's values (e.g. a regular expression that Python accepts and RE2 refuses)
    is the query's fault: a QueryError, not a crash."""
    try:
        yield
    except duckdb.InvalidInputException as e:
        raise QueryError(f"the query could not run: {str(e).splitlines()[0]}") from None


def watch_readers(ref: "weakref.ref[CatalogConnection]", stop: threading.Event) -> None:
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

