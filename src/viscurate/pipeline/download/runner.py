"""The download thread: an asyncio event loop fetching URLs while ingest's worker processes profile.

Ingest hands it a *plan* (an iterator of ``(item, url)``; ``url`` ``None`` for an item that needs no
download, passed through in order with the others) and reads ``(item, Download | None)`` back as they
finish. The two sides meet in a bounded queue: the downloads never wait for the profile unless the
queue is full (``queue_size`` finished downloads: bytes are already on disk, an entry is small), and
the profile takes each download the moment it lands.

>>> from viscurate.pipeline.download import DownloadOptions
>>> with DownloadThread(iter([("a", None)]), DownloadOptions(), media_dir=".") as thread:
...     list(thread.results())
[('a', None)]
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from typing import Any, Iterator

from .client import DownloadOptions, download, open_session
from .result import Download
from .store import store_bytes

#: Finished downloads the queue holds before the download side waits for ingest.
DEFAULT_QUEUE = 4096
_DONE = object()


class DownloadThread:
    """``with DownloadThread(plan, options, media_dir) as t: for item, got in t.results(): ...``.

    An exception raised by the plan (a bad URL table) or by the loop is raised again by
    :meth:`results`; leaving the ``with`` block early stops the downloads in flight."""

    def __init__(self, plan: Iterator[tuple[Any, str | None]], options: DownloadOptions, media_dir: str,
                 queue_size: int = DEFAULT_QUEUE):
        self.plan = plan
        self.options = options
        self.media_dir = media_dir
        self.out: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="viscurate-download", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> "DownloadThread":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        while self._thread.is_alive():  # let a put blocked on a full queue through
            try:
                self.out.get(timeout=0.05)
            except queue.Empty:
                pass

    def results(self) -> Iterator[tuple[Any, Download | None]]:
        """Finished items, as they finish; ends when the plan is done and every download with it."""
        while True:
            got = self.out.get()
            if got is _DONE:
                if self._error is not None:
                    raise self._error
                return
            yield got

    # ---- the loop's side

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # noqa: BLE001 - handed to the reader, raised there
            self._error = e
        finally:
            self.out.put(_DONE)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # hashing and writing files off the loop: the loop keeps every connection moving meanwhile
        disk = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="viscurate-store")
        loop.set_default_executor(disk)
        opts = self.options

        async def store(data: bytes, ext: str) -> tuple[str, str, int]:
            return await loop.run_in_executor(disk, store_bytes, data, ext, self.media_dir, opts.resize)

        plan = iter(self.plan)

        async def worker(session: Any) -> None:
            while not self.stopping.is_set():
                try:
                    item, url = next(plan)
                except StopIteration:
                    return
                got = None if url is None else await download(session, url, opts, store)
                await self._put((item, got))

        try:
            async with open_session(opts) as session:
                work = asyncio.gather(*(worker(session) for _ in range(max(1, opts.concurrency))))
                watch = asyncio.create_task(self._cancel_on_stop(work))
                try:
                    await work
                except asyncio.CancelledError:
                    if not self.stopping.is_set():
                        raise
                finally:
                    watch.cancel()
        finally:
            disk.shutdown(wait=True)

    async def _cancel_on_stop(self, work: "asyncio.Future[Any]") -> None:
        """Ingest stopped (Ctrl-C, an error): drop the downloads in flight rather than wait out their timeouts."""
        while not self.stopping.is_set():
            await asyncio.sleep(0.05)
        work.cancel()

    async def _put(self, event: tuple) -> None:
        while not self.stopping.is_set():
            try:
                self.out.put_nowait(event)
                return
            except queue.Full:
                await asyncio.sleep(0.02)
