"""The progress bar of the pipeline stages: items done (of the total, or of those found so far), a rate,
failures, elapsed time; for ingest also MB/s.

>>> with ProgressBar(False, "label", total=3) as bar:      # False: draws nothing (``--no-progress``)
...     bar.update(done=1, failed=0)
>>> seen = []
>>> with ProgressBar(lambda done, total: seen.append((done, total)), "label", total=3) as bar:
...     bar.update(done=2)        # a callable is told every count instead (the server's jobs)
>>> seen
[(2, 3)]

Rates count what the caller says was worked on (``rated``: ingest does not count the unchanged files an
incremental run skips); 1 MB = 2**20 bytes. On a terminal the bar is drawn live on stderr and stays as a
summary line; elsewhere (logs, CI) it is transient and prints nothing.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Union

MIB = 2**20

#: What a stage's ``progress`` argument may be: draw a bar or not, or a function told ``(done, total)``.
ProgressOption = Union[bool, Callable[[int, int], None]]


@dataclass(frozen=True)
class BarLook:
    """How a bar looks: what it counts (``unit``), whether it shows MB/s, the decimals of its rate, whether
    it estimates the time left; redraws at most one per ``min_interval`` seconds."""

    unit: str = "images"
    show_bytes: bool = False
    rate_digits: int = 1
    remaining: bool = False
    min_interval: float = 0.1
    refresh_per_second: float = 8


#: Ingest: files found as it goes, images/s and MB/s of the profiled ones.
FILES = BarLook(unit="files", show_bytes=True)
#: The model stages: images of a known total, images/s to two decimals, the time left.
IMAGES = BarLook(rate_digits=2, remaining=True, min_interval=0.2, refresh_per_second=4)


class ProgressBar:
    """``with ProgressBar(enabled, "ingest", look=FILES) as bar: bar.update(done=..., ...)``.

    ``total``: the items to do, or ``None`` while they are still being found (then each update says the
    count found so far, shown with a ``+`` until ``planning_done``). Redraws are throttled (``force``
    draws anyway)."""

    def __init__(self, enabled: ProgressOption = True, description: str = "", *, total: int | None = None,
                 look: BarLook = IMAGES):
        self.callback = enabled if callable(enabled) else None
        self.enabled = bool(enabled) and self.callback is None and (total is None or total > 0)
        self.description, self.total, self.look = description, total, look
        self._progress: Any = None
        self._task: Any = None
        self._t0 = self._last = 0.0

    def __enter__(self) -> "ProgressBar":
        self._t0 = time.monotonic()
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(file=sys.stderr)
        look = self.look
        of = "{task.total:,.0f}" if self.total is not None else "{task.fields[found]:,}{task.fields[more]}"
        columns: list[Any] = [
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/" + of + " " + look.unit),
            TextColumn("[cyan]{task.fields[ips]:,.%df} img/s" % look.rate_digits),
        ]
        if look.show_bytes:
            columns.append(TextColumn("[magenta]{task.fields[mbps]:,.1f} MB/s"))
        columns += [TextColumn("{task.fields[frames]}"), TextColumn("{task.fields[failed]}"), TimeElapsedColumn()]
        if look.remaining:
            columns.append(TimeRemainingColumn())
        self._progress = Progress(*columns, console=console, transient=not console.is_terminal,
                                  refresh_per_second=look.refresh_per_second)
        self._progress.__enter__()
        self._task = self._progress.add_task(self.description, total=self.total, found=0, more="+", ips=0.0,
                                             mbps=0.0, failed="", frames="")
        return self

    def update(self, *, done: int, failed: int = 0, found: int | None = None, planning_done: bool = False,
               rated: int | None = None, bytes: int = 0, force: bool = False, frames: int = 0) -> None:
        """Report the counts so far (cheap: redraws are throttled). ``found``: items found so far when the
        bar has no ``total``; ``rated``: the items the rate counts (default ``done``); ``bytes``: read so far;
        ``frames``: video frames taken so far (shown with their rate once there are some)."""
        if self.callback is not None:
            self.callback(done, self.total)
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.look.min_interval:
            return
        self._last = now
        elapsed = max(now - self._t0, 1e-9)
        fields: dict[str, Any] = {}
        if self.total is None:
            fields.update(total=found if planning_done else None, found=found or 0,
                          more="" if planning_done else "+")
        self._progress.update(self._task, completed=done, ips=(done if rated is None else rated) / elapsed,
                              mbps=bytes / MIB / elapsed, failed=f"[yellow]{failed:,} failed" if failed else "",
                              frames=f"[green]{frames:,} frames, {frames / elapsed:,.1f} frames/s" if frames else "",
                              **fields)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None
