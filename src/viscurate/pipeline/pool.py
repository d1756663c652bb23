"""The local engine: a pool of worker processes that applies one function to items, in chunks.

What it guarantees (and ``concurrent.futures`` does not):

- **a crash costs one item, not the run**: each worker has its own pipe, so the parent knows which
  chunk a worker held when it died (segfault in a decoder, the OOM killer, ``kill -9``). That chunk is
  retried item by item on a fresh worker; an item that kills its worker again comes back as an
  :class:`ItemError` with ``killed=True``. Chunks queued behind it are resent untouched;
- **an exception costs one item**: every item runs in its own ``try``; its exception comes back as an
  :class:`ItemError` with the error text;
- **bounded memory**: items are pulled from the input iterator only as workers free up
  (``chunk_size * in_flight`` items per worker at most), and results stream back as they finish;
- **no fork of the parent**: workers start from ``forkserver`` (Linux) or ``spawn``, so they never
  inherit the parent's DuckDB connection, locks or threads. A worker whose parent dies exits on its own.

>>> with ProcessPool(len, workers=1, chunk_size=2) as pool:
...     sorted(r for chunk in pool.imap_unordered(["a", "bb", "ccc"]) for _, r in chunk)
[1, 2, 3]
"""
from __future__ import annotations

import collections
import contextlib
import heapq
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from ..common.cores import cpu_count

T = TypeVar("T")
R = TypeVar("R")

#: Results :meth:`ProcessPool.imap` holds back while an earlier item is still being worked on.
MAX_WAITING = 10_000
#: How many times in a row a fresh worker may die before finishing anything before we give up.
MAX_STARTUP_FAILURES = 3


@dataclass(frozen=True)
class ItemError:
    """The item could not be processed: ``error`` says why; ``killed`` when its worker process died."""

    error: str
    killed: bool = False


def default_context() -> mp.context.BaseContext:
    """``forkserver`` where available (fast starts, nothing inherited), else ``spawn``."""
    if sys.platform.startswith("linux"):
        return mp.get_context("forkserver")
    return mp.get_context("spawn")


# ---- worker side --------------------------------------------------------------------------------

_READY = "ready"


def _worker_main(conn: mpc.Connection, fn: Callable, initializer: Callable | None, initargs: tuple) -> None:
    # the parent handles Ctrl-C; a worker ends when its pipe does
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass
    if initializer is not None:
        initializer(*initargs)
    try:
        conn.send(_READY)
    except (EOFError, OSError):
        return
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if task is None:
            return
        task_id, items = task
        out = []
        for item in items:
            try:
                out.append(fn(item))
            except Exception as e:  # noqa: BLE001 - one item's bug must not stop the others
                tb = traceback.extract_tb(e.__traceback__)
                where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
                out.append(ItemError(f"worker_error: {type(e).__name__}: {e}{where}"))
        try:
            conn.send((task_id, out))
        except (EOFError, OSError):
            return
        except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be pickled
            try:
                conn.send((task_id, [ItemError(f"worker_error: cannot send the result: {type(e).__name__}: {e}")]
                           * len(items)))
            except (EOFError, OSError):
                return


# ---- parent side --------------------------------------------------------------------------------


class _Task:
    __slots__ = ("id", "items", "single")

    def __init__(self, task_id: int, items: list, single: bool):
        self.id = task_id
        self.items = items
        self.single = single


@contextlib.contextmanager
def _main_hidden(hide: bool) -> Iterator[None]:
    """Start processes without re-importing the parent's ``__main__`` in them (``spawn`` and
    ``forkserver`` would run an unguarded script, a notebook's or stdin's code again in every worker)."""
    main = sys.modules.get("__main__")
    if not hide or main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class _Worker:
    def __init__(self, ctx, fn, initializer, initargs, hide_main: bool = True):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, initializer, initargs), daemon=True,
                                name="viscurate-worker")
        with _main_hidden(hide_main):
            self.proc.start()
        child.close()
        self.tasks: collections.deque[_Task] = collections.deque()
        self.ready = False
        self.since = time.monotonic()  # when its current (first queued) task started, at the latest
        self.timed_out = False

    def close(self, kill: bool = False) -> None:
        if kill and self.proc.is_alive():
            self.proc.kill()
        try:
            self.conn.close()
        except OSError:
            pass


def _death_text(exitcode: int | None, timed_out: float | None = None) -> str:
    if timed_out:
        return f"worker_timeout: the file took more than {timed_out:g} s and its worker process was stopped"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker_killed: the worker process was killed by {name} while reading this file"
    return f"worker_killed: the worker process exited (code {exitcode}) while reading this file"


class ProcessPool(Generic[T, R]):
    """Apply ``fn`` (a module-level function, so that it pickles) to items in worker processes.

    ``item_timeout``: seconds one item may take (a chunk gets that times its length); a worker past it
    is killed and handled as a crash, so a file that hangs its decoder becomes an :class:`ItemError`.
    ``import_main``: let workers import the parent's ``__main__`` (needed only when ``fn`` lives there).
    ``cost`` / ``max_chunk_cost``: a chunk closes early once its items' cost reaches the cap (e.g. file
    sizes), so that one chunk of big files does not leave the other workers idle at the end of a run."""

    def __init__(self, fn: Callable[[T], R], workers: int | None = None, *, chunk_size: int = 8, in_flight: int = 2,
                 initializer: Callable | None = None, initargs: tuple = (), context: Any = None,
                 preload: Iterable[str] = (), item_timeout: float | None = None, import_main: bool = False,
                 cost: Callable[[T], float] | None = None, max_chunk_cost: float | None = None):
        self.fn = fn
        self.cost = cost
        self.max_chunk_cost = max_chunk_cost
        self.import_main = import_main
        self.workers = max(1, int(workers or cpu_count()))
        self.chunk_size = max(1, int(chunk_size))
        self.in_flight = max(1, int(in_flight))
        self.initializer = initializer
        self.initargs = initargs
        self.item_timeout = item_timeout
        self.ctx = context or default_context()
        if preload and self.ctx.get_start_method() == "forkserver":
            # modules imported once by the fork server, so every (re)started worker has them already
            self.ctx.set_forkserver_preload(list(preload))
        self._pool: list[_Worker] = []
        self._startup_failures = 0
        self._next_id = 0
        self.restarts = 0

    # -- lifecycle

    def __enter__(self) -> "ProcessPool[T, R]":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(kill=exc_type is not None)

    def _spawn(self) -> _Worker:
        return _Worker(self.ctx, self.fn, self.initializer, self.initargs, hide_main=not self.import_main)

    def close(self, kill: bool = False) -> None:
        """Stop the workers (politely, or at once with ``kill``)."""
        pool, self._pool = self._pool, []
        if not kill:
            for w in pool:
                try:
                    w.conn.send(None)
                except (OSError, ValueError):
                    pass
            for w in pool:
                w.proc.join(timeout=10)
        for w in pool:
            w.close(kill=True)
            w.proc.join(timeout=5)

    # -- running

    def imap(self, items: Iterable[T], *, max_waiting: int = MAX_WAITING) -> Iterator[list[tuple[T, R | ItemError]]]:
        """Results in the order of ``items`` (a list of ``(item, result)`` at a time), so that what is written
        from them comes out the same on every run: a result that finishes ahead of an earlier, slower item
        waits for it. At most ``max_waiting`` results wait; past that the earliest are let through, so an
        item that hangs until its timeout does not hold a run's results in memory (its own result then
        comes after them). On Ctrl-C while it waits for results, those it holds come out first (in order),
        then the ``KeyboardInterrupt`` goes on: the work already done is the caller's to keep.

        >>> with ProcessPool(abs, workers=2, chunk_size=1) as pool:
        ...     [r for chunk in pool.imap([-3, 2, -1, 5]) for _, r in chunk]
        [3, 2, 1, 5]
        """
        positions: dict[int, collections.deque[int]] = {}  # id(item) -> its positions (an object may come twice)

        def numbered() -> Iterator[T]:
            for k, item in enumerate(items):
                positions.setdefault(id(item), collections.deque()).append(k)
                yield item

        waiting: list[int] = []  # a heap of the positions held
        held: dict[int, tuple[T, R | ItemError]] = {}
        expected = 0
        try:
            for chunk in self.imap_unordered(numbered()):
                for item, result in chunk:
                    queue = positions[id(item)]
                    k = queue.popleft()
                    if not queue:
                        del positions[id(item)]
                    held[k] = (item, result)
                    heapq.heappush(waiting, k)
                out = []
                while waiting and (waiting[0] <= expected or len(waiting) > max_waiting):
                    k = heapq.heappop(waiting)
                    out.append(held.pop(k))
                    expected = max(expected, k + 1)
                if out:
                    yield out
        except KeyboardInterrupt:
            # what was done is the caller's to keep (ingest commits it): hand it over, then stop
            if held:
                yield [held[k] for k in sorted(held)]
            raise
        if held:  # every item comes back, so nothing waits at the end; were one lost, the rest still go out
            yield [held[k] for k in sorted(held)]

    def imap_unordered(self, items: Iterable[T]) -> Iterator[list[tuple[T, R | ItemError]]]:
        """Results as they finish, one list of ``(item, result)`` per chunk; every item comes back once.

        ``items`` is consumed lazily, as workers free up."""
        source = iter(items)
        exhausted = False
        retry: collections.deque[_Task] = collections.deque()  # tasks to (re)send before new ones
        if not self._pool:
            self._pool = [self._spawn() for _ in range(self.workers)]

        def next_task() -> _Task | None:
            nonlocal exhausted
            if retry:
                return retry.popleft()
            if exhausted:
                return None
            chunk = []
            weight = 0.0
            cost, cap = self.cost, self.max_chunk_cost
            for item in source:
                chunk.append(item)
                if len(chunk) >= self.chunk_size:
                    break
                if cap is not None and cost is not None:
                    weight += cost(item) or 0
                    if weight >= cap:
                        break
            else:
                exhausted = True
            if not chunk:
                return None
            self._next_id += 1
            return _Task(self._next_id, chunk, False)

        while True:
            # fill every worker up to its in-flight limit
            for i in range(len(self._pool)):
                w = self._pool[i]
                while len(w.tasks) < self.in_flight:
                    task = next_task()
                    if task is None:
                        break
                    if not w.tasks:
                        w.since = time.monotonic()
                    w.tasks.append(task)
                    try:
                        w.conn.send((task.id, task.items))
                    except (OSError, ValueError):
                        w.tasks.pop()
                        retry.appendleft(task)
                        yield from self._replace(w, retry)
                        break
            if not any(w.tasks for w in self._pool) and exhausted and not retry:
                return
            busy = [w for w in self._pool if w.tasks or not w.ready]
            if not busy:
                continue
            timeout = None
            if self.item_timeout:
                now = time.monotonic()
                deadlines = [w.since + self.item_timeout * len(w.tasks[0].items) for w in busy if w.tasks and w.ready]
                timeout = max(0.0, min(deadlines) - now) if deadlines else None
            ready = set(mpc.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout))
            now = time.monotonic()
            for w in busy:
                results = []
                dead = False
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        while w.conn.poll():
                            msg = w.conn.recv()
                            if msg == _READY:
                                w.ready = True
                                w.since = time.monotonic()  # the clock of its first task starts now
                                self._startup_failures = 0
                            else:
                                results.append(msg)
                    except (EOFError, OSError):
                        dead = True
                    if w.proc.sentinel in ready:
                        dead = True
                elif (self.item_timeout and w.ready and w.tasks
                      and now > w.since + self.item_timeout * len(w.tasks[0].items)):
                    w.timed_out = True
                    dead = True
                for task_id, out in results:
                    task = w.tasks.popleft()
                    assert task.id == task_id, "worker answered out of order"
                    w.since = now
                    yield list(zip(task.items, out))
                if dead:
                    yield from self._replace(w, retry)

    def _replace(self, w: _Worker, retry: collections.deque[_Task]) -> Iterator[list[tuple[T, R | ItemError]]]:
        """A worker died (or overran its time): retry what it held and start another in its place."""
        w.close(kill=True)
        w.proc.join(timeout=10)
        exitcode = w.proc.exitcode
        tasks = list(w.tasks)
        w.tasks.clear()
        if not w.ready:
            # it died while starting: no item is to blame
            self._startup_failures += 1
            if self._startup_failures >= MAX_STARTUP_FAILURES:
                raise RuntimeError(f"worker processes die while starting (exit code {exitcode}); "
                                   "see the messages above")
            retry.extendleft(reversed(tasks))
        elif tasks:
            culprit, rest = tasks[0], tasks[1:]
            retry.extendleft(reversed(rest))  # never started: resend as they were
            if culprit.single:
                timed = self.item_timeout if w.timed_out else None
                yield [(culprit.items[0], ItemError(_death_text(exitcode, timed), killed=True))]
            else:
                singles = []
                for item in culprit.items:
                    self._next_id += 1
                    singles.append(_Task(self._next_id, [item], True))
                retry.extendleft(reversed(singles))
        self.restarts += 1
        self._pool[self._pool.index(w)] = self._spawn()
