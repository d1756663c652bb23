"""How the calls of one ``Dataset`` object get its catalog, so that readers and writers, threads and
processes, take turns on one dataset.

- Reads share one read-only catalog, kept open (and DuckDB's caches warm) for ``idle_release()`` seconds
  after the last read, and let go at once when another process asks to write.
- A write opens a writable catalog for the call. It first holds this object's new reads back and waits
  for those in flight: other threads' reads (a server's requests) would otherwise keep the shared lock
  forever. While it runs, the catalog lets waiting reads in between its batches.
- ``session()`` keeps one catalog open (read or write) for a whole block of calls.

>>> access = CatalogAccess(ds)                                                     # doctest: +SKIP
>>> with access.catalog() as cat:                                                  # doctest: +SKIP
...     cat.count()
"""
from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Iterator, Protocol

from .store.catalog import Catalog, lock_timeout
from .store.lock import write_wanted

__all__ = ["CatalogAccess", "CatalogPlace", "idle_release"]


def idle_release() -> float:
    """Seconds a dataset keeps its catalog open for reading after a call (VISCURATE_IDLE_RELEASE)."""
    return float(os.environ.get("VISCURATE_IDLE_RELEASE", "2"))


class CatalogPlace(Protocol):
    """Where a catalog lives and how long opening it may wait (a ``Dataset``; read at each opening, so a
    rename or a new ``lock_timeout`` takes effect at once)."""

    directory: Path
    name: str
    lock_timeout: float | None


_OPEN_READERS: "weakref.WeakSet[CatalogAccess]" = weakref.WeakSet()


@atexit.register
def _close_readers() -> None:
    # close cached catalogs before the interpreter tears DuckDB down
    for access in list(_OPEN_READERS):
        access.release()


class CatalogAccess:
    """The catalogs of one dataset object: a shared reader, per-call writers and a held session."""

    def __init__(self, place: CatalogPlace):
        self.place = place
        self._held: Catalog | None = None  # the catalog of a session() block
        self._reader: Catalog | None = None  # kept open between read calls, see _read_catalog
        self._reader_users = 0
        self._reader_last = 0.0
        self._reader_lock = threading.RLock()
        # a write from this process waits for this object's reads in flight and holds new ones back: the
        # other threads' reads (a server's requests) would otherwise keep the shared lock forever
        self._reader_idle = threading.Condition(self._reader_lock)
        self._writers_waiting = 0
        self._reading = threading.local()  # .depth: this thread's reads in flight
        self._reaper: threading.Thread | None = None

    @property
    def reader(self) -> Catalog | None:
        """The shared read-only catalog while it is open, else ``None``."""
        return self._reader

    def lock_wait(self) -> float:
        """Seconds a call waits for another process's lock: the place's ``lock_timeout``, else
        :func:`~viscurate.store.catalog.lock_timeout`."""
        return lock_timeout() if self.place.lock_timeout is None else self.place.lock_timeout

    def _open(self, write: bool) -> Catalog:
        return Catalog(self.place.directory, self.place.name, write=write, timeout=self.lock_wait())

    @contextlib.contextmanager
    def catalog(self, write: bool = False) -> Iterator[Catalog]:
        """The catalog for one call: the session's when one is held (and can do the job), else the shared
        reader (``write=False``) or a writable catalog of its own, closed afterwards."""
        held = self._held
        if held is not None and (held.write_mode or not write):
            yield held
            return
        if held is None and not write:
            with self._read_catalog() as cat:
                yield cat
            return
        with self._reads_held_back():  # our own shared lock would block our write lock
            if held is not None:  # upgrade a read session to a write session
                held.close()
                self._held = None
            cat = self._open(write)
        # from here on this object's reads wait at the dataset's lock like any other process's: the catalog
        # lets them in between its calls, and holds them back again while it takes the dataset back
        cat.relock_guard = self._reads_held_back
        try:
            if held is not None:
                self._held = cat
            yield cat
        finally:
            if self._held is not cat:
                cat.close()

    @contextlib.contextmanager
    def session(self, write: bool = False) -> Iterator[None]:
        """Keep one catalog open for the block (``write=True`` holds the write lock throughout); a session
        inside a session is the outer one."""
        if self._held is not None:
            yield
            return
        self.release()
        self._held = self._open(write)
        self._held.relock_guard = self._reads_held_back
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held is not None:
                held.close()

    def release(self) -> None:
        """Close the shared reader now, unless a read is using it."""
        with self._reader_lock:
            if self._reader is not None and self._reader_users == 0:
                self._reader.close()
                self._reader = None

    @contextlib.contextmanager
    def _read_catalog(self) -> Iterator[Catalog]:
        """The cached read-only catalog: opened on first use, reused by later calls, closed after
        ``idle_release()`` seconds without use or as soon as another process wants to write."""
        with self._reader_lock:
            nested = getattr(self._reading, "depth", 0) > 0  # (a nested read never waits)
            if self._writers_waiting and not nested:
                self._reader_idle.wait_for(lambda: not self._writers_waiting, timeout=self.lock_wait())
            cat = self._reader
            if cat is not None and not nested and write_wanted(self.place.directory):
                # a writer waits: let the reads in flight finish, then let go (new reads would keep the
                # shared lock forever under a steady load); this read waits for the writer's batch. A
                # long read in flight (an export) keeps the reader: waiting for it would stall every request
                self._reader_idle.wait_for(lambda: self._reader_users == 0, timeout=min(1.0, self.lock_wait()))
                self.release()
                cat = self._reader
            if cat is None:
                cat = self._reader = self._open(write=False)
                _OPEN_READERS.add(self)
            self._reader_users += 1
            self._reading.depth = getattr(self._reading, "depth", 0) + 1
        try:
            yield cat
        finally:
            with self._reader_lock:
                self._reading.depth -= 1
                self._reader_users -= 1
                self._reader_last = time.monotonic()
                if not self._reader_users:
                    self._reader_idle.notify_all()
                self._start_reaper()

    @contextlib.contextmanager
    def _reads_held_back(self) -> Iterator[None]:
        """Around a write: hold this object's new reads back (other threads', e.g. a server's requests,
        which would otherwise keep the shared lock forever), wait up to the lock timeout for those in
        flight, and close the shared catalog. A thread that is itself reading (a write inside ``iter``)
        gets ``DatasetBusy`` from the lock, as before."""
        with self._reader_lock:
            self._writers_waiting += 1
            mine = getattr(self._reading, "depth", 0)
            self._reader_idle.wait_for(lambda: self._reader_users <= mine, timeout=self.lock_wait())
            self.release()
        try:
            yield
        finally:
            with self._reader_lock:
                self._writers_waiting -= 1
                self._reader_idle.notify_all()

    def _start_reaper(self) -> None:
        if self._reaper is not None and self._reaper.is_alive():
            return

        def reap() -> None:
            while True:
                time.sleep(min(0.05, idle_release()))  # a writer waiting for this reader waits this long
                with self._reader_lock:
                    if self._reader is None:
                        self._reaper = None
                        return
                    idle = time.monotonic() - self._reader_last
                    if self._reader_users == 0 and (idle >= idle_release() or write_wanted(self.place.directory)):
                        self.release()
                        self._reaper = None
                        return

        self._reaper = threading.Thread(target=reap, name=f"viscurate-release-{self.place.name}", daemon=True)
        self._reaper.start()
