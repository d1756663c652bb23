"""A rich progress bar for ingest: files done (of files found so far), images/s and MB/s.

Rates count the files whose bytes were read and profiled (not the unchanged ones skipped by an
incremental run); 1 MB = 2**20 bytes. On a terminal the bar is drawn live on stderr and stays
as a summary line; elsewhere (logs, CI) it is transient and prints nothing.
"""
from __future__ import annotations

import sys
import time
from typing import Any

MIB = 2**20


class IngestProgress:
    """``with IngestProgress(enabled) as p: p.update(done=..., found=..., profiled=..., bytes=...)``."""

    def __init__(self, enabled: bool = True, description: str = "ingest", min_interval: float = 0.1):
        self.enabled = enabled
        self.description = description
        self.min_interval = min_interval
        self._progress: Any = None
        self._task: Any = None
        self._t0 = time.monotonic()
        self._last = 0.0
        self._state: dict[str, Any] = {}

    def __enter__(self) -> "IngestProgress":
        self._t0 = time.monotonic()
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.fields[found]:,}{task.fields[more]} files"),
            TextColumn("[cyan]{task.fields[ips]:,.1f} img/s"),
            TextColumn("[magenta]{task.fields[mbps]:,.1f} MB/s"),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=console,
            transient=not console.is_terminal,
            refresh_per_second=8,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(self.description, total=None, found=0, more="+", ips=0.0, mbps=0.0,
                                             failed="")
        return self

    def update(self, *, done: int, found: int, profiled: int, bytes: int, failed: int = 0,
               planning_done: bool = False, force: bool = False) -> None:
        """Report the counts so far (cheap: redraws are throttled)."""
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        elapsed = max(now - self._t0, 1e-9)
        self._progress.update(
            self._task, completed=done, total=found if planning_done else None, found=found,
            more="" if planning_done else "+", ips=profiled / elapsed, mbps=bytes / MIB / elapsed,
            failed=f"[yellow]{failed:,} failed" if failed else "")

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None
