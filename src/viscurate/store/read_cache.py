"""What a read-only catalog remembers while it is open: its data cannot change meanwhile (DuckDB opened
it read-only and the dataset's shared lock keeps writers out), so nothing here is ever stale, and all
of it goes when the catalog closes.

Three caches, each bounded and safe under a server's concurrent requests:

- **documents** (``VISCURATE_DOC_CACHE_MB``, 32 MB): assembled documents as JSON, so a sample, its
  thumbnail and its media requested right after a search that listed it need no read;
- **counts**: the number of matches of a compiled filter (a search's ``length``);
- **match lists** (``VISCURATE_MATCH_CACHE_MB``, 64 MB): the whole ordered ``_id`` list of a
  (filter, sort) asked for again and again (a UI paging through a query, a dashboard). One sorted read
  costs about as much as ten pages, so a list is built only on its third asking, by one thread while
  the others go on with their own page query (no stampede); it is kept as an Arrow array (no Python
  strings, built without the GIL), and every later page of that query is a slice of it.

>>> cache = ReadCache()
>>> key = ("s.width > $1", "[5]", "s._seq")
>>> [cache.page(key, lambda: pa.array(["a", "b", "c"]), 0, 2) for _ in range(3)]
[None, None, (['a', 'b'], 3)]
>>> cache.page(key, lambda: pa.array([]), 2, 2)   # built once: later pages are slices
(['c'], 3)
"""
from __future__ import annotations

import os
import threading
from typing import Callable

import orjson
import pyarrow as pa

__all__ = ["ReadCache", "DOC_CACHE_BYTES", "MATCH_CACHE_BYTES", "MATCH_LIST_AFTER"]

DOC_CACHE_BYTES = int(float(os.environ.get("VISCURATE_DOC_CACHE_MB", "32")) * 1024 * 1024)
MATCH_CACHE_BYTES = int(float(os.environ.get("VISCURATE_MATCH_CACHE_MB", "64")) * 1024 * 1024)
MATCH_LIST_AFTER = 3  # askings of one (filter, sort) before its whole list is built
_MAX_COUNTS = 4096
_MAX_SEEN = 4096

MatchKey = tuple[str, str, str]  # (compiled filter, repr of its parameters, ORDER BY)


class ReadCache:
    """The caches of one open read-only catalog (see the module's docstring). Thread-safe."""

    def __init__(self, doc_bytes: int | None = None, match_bytes: int | None = None):
        self.doc_budget = DOC_CACHE_BYTES if doc_bytes is None else doc_bytes
        self.match_budget = MATCH_CACHE_BYTES if match_bytes is None else match_bytes
        self._lock = threading.Lock()
        self.docs: dict[str, bytes] = {}  # insertion order = age: the oldest go first
        self._docs_bytes = 0
        self.counts: dict[tuple[str, str], int] = {}
        self.lists: dict[MatchKey, pa.Array] = {}  # most recently used last
        self._lists_bytes = 0
        self._seen: dict[MatchKey, int] = {}
        self._building: set[MatchKey] = set()
        self._unlisted: set[MatchKey] = set()  # too large to keep: asked for by top-N pages from now on

    # ---- documents --------------------------------------------------------------------------
    def document(self, sample_id: str) -> dict | None:
        """A fresh copy of a remembered document (callers may change it), or ``None``."""
        blob = self.docs.get(sample_id)
        return None if blob is None else orjson.loads(blob)

    def remember(self, doc: dict) -> None:
        """Keep a document, as JSON that reads back to an equal document (so never one with NaN, an
        integer past 64 bits, ...); the oldest go first past the budget."""
        if self.doc_budget <= 0:
            return
        try:
            blob = orjson.dumps(doc)
            if orjson.loads(blob) != doc:
                return
        except (TypeError, ValueError):
            return
        if len(blob) > self.doc_budget:
            return
        with self._lock:
            if doc["_id"] in self.docs:
                return
            while self.docs and self._docs_bytes + len(blob) > self.doc_budget:
                self._docs_bytes -= len(self.docs.pop(next(iter(self.docs))))
            self.docs[doc["_id"]] = blob
            self._docs_bytes += len(blob)

    # ---- counts -----------------------------------------------------------------------------
    def count(self, key: tuple[str, str], compute: Callable[[], int]) -> int:
        hit = self.counts.get(key)
        if hit is not None:
            return hit
        n = compute()
        with self._lock:
            while len(self.counts) >= _MAX_COUNTS:  # forget the oldest
                self.counts.pop(next(iter(self.counts)))
            self.counts[key] = n
        return n

    # ---- match lists ------------------------------------------------------------------------
    def page(self, key: MatchKey, build: Callable[[], pa.Array], offset: int,
             limit: int) -> tuple[list[str], int] | None:
        """``(ids of the page, total)`` from the whole list of ``key``'s matches, or ``None`` when the
        caller should ask for its page alone: the list is not asked for often enough yet, another
        thread is building it, or it is too large to keep. ``build`` returns every matching ``_id`` in
        order."""
        with self._lock:
            ids = self.lists.get(key)
            if ids is not None:
                self.lists[key] = self.lists.pop(key)  # most recently used
            elif key in self._building or key in self._unlisted or self.match_budget <= 0:
                return None
            else:
                seen = self._seen.pop(key, 0) + 1
                if seen < MATCH_LIST_AFTER:
                    while len(self._seen) >= _MAX_SEEN:
                        self._seen.pop(next(iter(self._seen)))
                    self._seen[key] = seen
                    return None
                self._building.add(key)
        if ids is None:
            try:
                ids = build()
            finally:
                with self._lock:
                    self._building.discard(key)
            self._keep(key, ids)
        return ids.slice(offset, limit).to_pylist(), len(ids)

    def _keep(self, key: MatchKey, ids: pa.Array) -> None:
        size = ids.nbytes
        with self._lock:
            if size > self.match_budget // 4:  # one huge list would push out every other
                self._unlisted.add(key)
                return
            while self.lists and self._lists_bytes + size > self.match_budget:
                self._lists_bytes -= self.lists.pop(next(iter(self.lists))).nbytes
            self.lists[key] = ids
            self._lists_bytes += size
