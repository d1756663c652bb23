"""Inter-process access to a dataset: many readers or one writer, with a timeout and a clear message.

DuckDB lets one process write a database file, and it refuses other processes while that one holds it.
We put an advisory ``flock`` in front of it so that a second process waits (up to a timeout) instead
of failing at once, and so that the message names who holds the dataset. The kernel drops the lock
when its process dies, even by SIGKILL, so a crashed run never leaves a stale lock behind.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with DatasetLock(d, "demo", exclusive=True, timeout=1):
...     pass
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from ..errors import DatasetBusy

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock-holder.json"
WANTED_FILE = ".write-wanted"
SERVER_FILE = "server/running.json"  # relative to the workspace: the live server, see running_server


def write_wanted(directory: Path) -> bool:
    """True while a live process waits to write this dataset: readers that keep the catalog open
    between calls check it and let go."""
    try:
        pid = int((Path(directory) / WANTED_FILE).read_text() or 0)
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def running_server(home: Path) -> dict | None:
    """``{"pid", "url", "since"}`` of the live ``viscurate serve`` of the workspace at ``home``, if any
    (it announces itself in :data:`SERVER_FILE` while it runs)."""
    try:
        info = json.loads((Path(home) / SERVER_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


class DatasetLock:
    def __init__(self, directory: Path, name: str, *, exclusive: bool, timeout: float):
        self.directory = Path(directory)
        self.name = name
        self.exclusive = exclusive
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> "DatasetLock":
        path = self.directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + max(self.timeout, 0)
        delay = 0.01
        wanted = self.directory / WANTED_FILE
        announced = False
        try:
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        raise DatasetBusy(self._busy_message()) from None
                    if self.exclusive and not announced:
                        wanted.write_text(str(os.getpid()))  # readers holding the catalog let go
                        announced = True
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
        finally:
            if announced:
                try:
                    wanted.unlink()
                except OSError:
                    pass
        self._fd = fd
        if self.exclusive:
            info = {"pid": os.getpid(), "command": " ".join(sys.argv)[:300], "since": time.time()}
            try:
                (self.directory / HOLDER_FILE).write_text(json.dumps(info))
            except OSError:
                pass
        return self

    def _busy_message(self) -> str:
        holder = ""
        try:
            if self.exclusive:
                raise OSError("the holder file names the last writer, not the readers")
            info = json.loads((self.directory / HOLDER_FILE).read_text())
            since = time.strftime("%H:%M:%S", time.localtime(info["since"]))
            holder = f" by process {info['pid']} ({info['command']!r}, since {since})"
        except (OSError, ValueError, KeyError):
            pass
        what = "written" if not self.exclusive else "used"
        server = running_server(self.directory.parent.parent)
        if server is not None:
            return (f"dataset {self.name!r} is busy: the viscurate server at {server['url']} (process {server['pid']}) "
                    f"is working on it; waited {self.timeout:g}s. Send the work to the server (its jobs API, "
                    f"POST /v1/datasets/{self.name}/jobs, or the web app's Jobs tab), wait for its job to finish "
                    f"(GET /v1/jobs), or raise the wait with --wait SECONDS.")
        return (f"dataset {self.name!r} is being {what}{holder}; waited {self.timeout:g}s. "
                f"Try again when it finishes, or raise the wait with --wait SECONDS / "
                f"VISCURATE_LOCK_TIMEOUT.")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DatasetLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
