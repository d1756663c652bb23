"""Admission: the lane a request's work runs in, chosen in the event loop before any thread is taken.

A server on 2 cores runs 8 requests at once. A query that scans the free-form JSON of every sample
takes 0.1-0.5 s; 32 clients sending such queries held all 8 threads, and the searches on typed columns
that people page through waited behind them (``bench/hostile.py``: their p99 went from 77 to 653 ms).
So each request's work goes to one of three lanes:

- **requests**: every route, and searches on typed columns (what the web app sends), in the server's
  request threads (``serve --threads``);
- **heavy queries**: a query that reads free-form JSON (fields no schema declares), compiles to a large
  statement, or comes in a body over 16 KiB (compiling it alone takes milliseconds). ``threads`` of them
  (1) run at once, in threads of their own. On an idle server they start at once; while other requests
  are in flight they get ``share`` of the time (a quarter): after one ran t seconds, the next starts 3t
  later. A query too big to weigh in the event loop is weighed in the lane;
- **analyses** (``/v1/analyze``: a fetch and the models), 2 at once.

A request that the lane's queue cannot take (``max_waiting`` already wait) or that waited ``max_wait_s``
is answered 429 with ``Retry-After``; the queue holds requests, never threads. A query over a budget
(:mod:`viscurate.store.query.budget`) is refused in the event loop, without a thread, and so is a
malformed one small enough to weigh there.

>>> admission = Admission()                                                      # doctest: +SKIP
>>> lane = admission.for_query({"camera.model": "X100"}, body_bytes=40)          # doctest: +SKIP
>>> lane.name                                                                     # doctest: +SKIP
'heavy queries'
>>> result = await lane.run(dataset.find, {"camera.model": "X100"})               # doctest: +SKIP
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from ..errors import ViscurateError
from . import defaults

__all__ = ["Admission", "Lane", "LaneSettings", "Overloaded", "RequestThreads", "WEIGH_IN_LOOP_BYTES", "HEAVY_QUERIES",
           "ANALYSES"]

T = TypeVar("T")

#: the largest query body weighed (compiled) in the event loop; a larger one is heavy unweighed
WEIGH_IN_LOOP_BYTES = 16 * 1024


class Overloaded(ViscurateError):
    """A lane's queue is full, or a request waited in it too long (429, with ``Retry-After``)."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LaneSettings:
    """How a lane admits work: ``threads`` at once; ``share``: the most of the time it may be busy while
    other requests are in flight (1: always); ``max_waiting`` requests in its queue, each for at most
    ``max_wait_s`` seconds."""

    threads: int = 1
    share: float = 1.0
    max_waiting: int = 64
    max_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"a lane needs at least one thread, got {self.threads}")
        if not 0 < self.share <= 1:
            raise ValueError(f"a lane's share of the time is in (0, 1], got {self.share}")
        if self.max_waiting < 0 or self.max_wait_s <= 0:
            raise ValueError("max_waiting must be >= 0 and max_wait_s > 0")


#: the defaults: one heavy query at a time, a quarter of the time while others wait; two analyses
HEAVY_QUERIES = LaneSettings(threads=defaults.HEAVY_THREADS, share=defaults.HEAVY_SHARE,
                             max_waiting=defaults.HEAVY_QUEUE, max_wait_s=defaults.LANE_WAIT_S)
ANALYSES = LaneSettings(threads=defaults.ANALYSIS_THREADS, max_wait_s=defaults.LANE_WAIT_S)


class Lane:
    """Work of one kind: at most ``settings.threads`` at once, in arrival order, paced to its share of
    the time while ``others_busy()`` says other requests are in flight."""

    def __init__(self, name: str, settings: LaneSettings, others_busy: Callable[["Lane"], bool] = lambda _: False):
        import anyio

        self.name, self.settings, self._others_busy = name, settings, others_busy
        self._slots = anyio.CapacityLimiter(settings.threads)
        self._unbounded = anyio.CapacityLimiter(math.inf)  # for to_thread: the slot is taken already
        self._gate = anyio.Lock()  # one waiter at a time is paced, so that they start in arrival order
        self._next_start = 0.0  # time.monotonic() before which a paced start waits
        self._last_run_s = 0.0
        self.waiting = 0
        self.running = 0

    def _retry_after(self) -> float:
        return max(1.0, (self.waiting + 1) * max(self._last_run_s, 0.1) / (self.settings.threads * self.settings.share))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread, once the lane admits it."""
        import anyio
        import anyio.to_thread

        s = self.settings
        if self.waiting >= s.max_waiting and (self.waiting or self.running >= s.threads):  # it would wait
            raise Overloaded(f"the server is busy with {self.name} ({self.waiting} waiting); retry later",
                             self._retry_after())
        self.waiting += 1
        admitted = False
        try:
            with anyio.fail_after(s.max_wait_s):
                async with self._gate:
                    delay = self._next_start - time.monotonic()
                    if delay > 0 and self._others_busy(self):
                        await anyio.sleep(delay)
                    await self._slots.acquire()
                    admitted = True
        except TimeoutError:
            if not admitted:  # (the deadline may also pass just after the slot was taken: then run)
                raise Overloaded(f"the server is busy with {self.name}: waited {s.max_wait_s:g} s; retry later",
                                 self._retry_after()) from None
        finally:
            self.waiting -= 1
        self.running += 1
        start = time.monotonic()
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._unbounded)
        finally:
            end = time.monotonic()
            self.running -= 1
            self._slots.release()
            self._last_run_s = end - start
            if s.share < 1:
                self._next_start = max(self._next_start, end + self._last_run_s * (1 / s.share - 1))


class Admission:
    """The server's lanes and the count of requests in flight (an ASGI middleware keeps it:
    :meth:`middleware`). ``heavy``: the lane of heavy queries; ``analysis``: of ``/v1/analyze``."""

    def __init__(self, heavy: LaneSettings = HEAVY_QUERIES, analysis: LaneSettings = ANALYSES):
        self.in_flight = 0
        self.heavy = Lane("heavy queries", heavy, self._others_busy)
        self.analysis = Lane("analyses", analysis, self._others_busy)
        self.requests = RequestThreads()

    def _others_busy(self, lane: Lane) -> bool:
        return self.in_flight - lane.waiting - lane.running > 0

    def for_query(self, query: dict | None, sort: Any = None, body_bytes: float | None = None) -> "Lane | RequestThreads":
        """The lane for a read of ``query`` (and ``sort``): the heavy one for a query that reads free-form
        JSON, compiles to a large statement or came in a body over :data:`WEIGH_IN_LOOP_BYTES`, else
        the request threads. Raises ``QueryError`` (a 400) for a query the read would refuse."""
        from ..store.query.budget import check_query
        from ..store.query.compiler import query_cost

        if not query and not sort:
            return self.requests
        if body_bytes is not None and body_bytes > WEIGH_IN_LOOP_BYTES:
            # not compiled here, but held to the budgets: their walk stops at the first one exceeded, and
            # costs less than parsing the body did
            check_query(query)
            return self.heavy
        return self.heavy if query_cost(query, sort).heavy else self.requests

    def middleware(self, inner: Any) -> Any:
        """An ASGI app that counts the HTTP requests in flight through ``inner``."""
        admission = self

        async def counted(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await inner(scope, receive, send)
            admission.in_flight += 1
            try:
                await inner(scope, receive, send)
            finally:
                admission.in_flight -= 1
        return counted


class RequestThreads:
    """The server's own request threads (the thread pool's default limiter), as a lane."""

    name = "requests"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        import anyio.to_thread
        return await anyio.to_thread.run_sync(fn, *args)
