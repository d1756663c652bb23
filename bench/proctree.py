"""Run a command and measure it from the outside: wall time and peak memory of its whole process tree.

Standard library only (it is imported by the peer runners, which live in their own venvs).

Peak memory is sampled from /proc every ``interval`` seconds:

* ``peak_rss_mb``: the peak of the SUM of VmRSS over the process and all its live descendants
  (what ``ps``/``top`` would add up; counts pages shared between forked workers once per process,
  so it over-states a fork-based pool);
* ``peak_pss_mb``: the peak of the sum of PSS (``/proc/PID/smaps_rollup``), where shared pages are
  split between the processes that map them: the best single number for "memory this tree used";
* ``max_single_rss_mb``: ``ru_maxrss`` from ``wait4()`` on the child: the largest peak RSS of the
  child or of any descendant it waited for; exact (kernel-tracked), a lower bound for the tree.

A sampler can miss a spike shorter than ``interval``; ``peak_rss_mb`` is therefore reported as
``max(sampled tree sum, max_single_rss_mb)``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children_map() -> dict[int, list[int]]:
    """ppid -> [pid] for every process visible in /proc."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # comm may contain spaces/parens: ppid is the 2nd field after the last ')'
        rest = data[data.rfind(b")") + 2 :].split()
        try:
            ppid = int(rest[1])
        except (IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def descendants(root: int) -> list[int]:
    """root and all its live descendants."""
    kids = _children_map()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(kids.get(pid, ()))
    return out


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


@dataclass
class TreeSampler:
    """Polls the process tree rooted at ``pid`` in a background thread."""

    pid: int
    interval: float = 0.05
    with_pss: bool = True
    peak_rss: int = 0
    peak_pss: int = 0
    peak_procs: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = descendants(self.pid)
        rss = sum(_rss_bytes(p) for p in pids)
        self.peak_rss = max(self.peak_rss, rss)
        if self.with_pss:
            pss = sum(_pss_bytes(p) for p in pids)
            self.peak_pss = max(self.peak_pss, pss)
        if rss:
            self.peak_procs = max(self.peak_procs, len(pids))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> "TreeSampler":
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class Measured:
    returncode: int
    seconds: float
    peak_rss_mb: float
    peak_pss_mb: float
    max_single_rss_mb: float
    peak_procs: int
    stdout: str
    stderr: str
    timed_out: bool = False


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    interval: float = 0.05,
) -> Measured:
    """Run ``cmd`` to completion; wall seconds and peak memory of its process tree.

    stdout/stderr are captured to temporary files (not pipes), so a chatty child can never block.
    On timeout the whole process group is killed.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        sampler = TreeSampler(proc.pid, interval=interval).start()
        timed_out = False
        deadline = None if timeout is None else t0 + timeout
        # os.wait4 (not Popen.wait) so that we get this child's own rusage: on Linux its
        # ru_maxrss is the largest peak RSS of the child and of its waited-for descendants.
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if deadline is not None and time.perf_counter() > deadline and not timed_out:
                timed_out = True
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        # Orphaned grandchildren (daemons) would escape the tree: kill the session's group.
        try:
            os.killpg(proc.pid, 15)
        except (ProcessLookupError, PermissionError):
            pass
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    single = ru.ru_maxrss * 1024  # KiB on Linux
    mb = 1024 * 1024
    return Measured(
        returncode=proc.returncode,
        seconds=seconds,
        peak_rss_mb=max(sampler.peak_rss, single) / mb,
        peak_pss_mb=sampler.peak_pss / mb,
        max_single_rss_mb=single / mb,
        peak_procs=sampler.peak_procs,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
    )


def folder_stats(folder: str, exts: Sequence[str] | None = None) -> tuple[int, int]:
    """(number of files, total bytes) under ``folder``, recursively; optional extension filter."""
    n = total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if exts is not None and os.path.splitext(name)[1].lower() not in exts:
                continue
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
            n += 1
    return n, total
