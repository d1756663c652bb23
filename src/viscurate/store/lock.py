"""Inter-process access to a dataset: many readers or one writer, with a timeout and a clear message.

DuckDB lets one process write a database file, and it refuses other processes while that one holds it.
We put an advisory ``flock`` in front of it so that a second process waits (up to a timeout) instead
of failing at once, and so that the message names who holds the dataset. The kernel drops the lock
when its process dies, even by SIGKILL, so a crashed run never leaves a stale lock behind.

Long writes and reads take turns (docs/decisions.md #22). Two flocks: ``.write-session``, which a writer
holds for its whole life and which only writers take (so writers never interleave), and ``.lock``, shared
by readers and taken exclusively by the writer only while it uses the catalog. Each side announces that
it waits: a writer in ``.write-wanted`` (readers holding the catalog let go, new readers hold off until
it got in), a reader by a file in ``.read-wanted/`` (a long writer lets go between two catalog calls,
see ``Catalog``). So neither side starves the other.

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
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from ..errors import DatasetBusy

LOCK_FILE = ".lock"
WRITER_FILE = ".write-session"  # held by a writer for its whole life; readers never take it
HOLDER_FILE = ".lock-holder.json"
WANTED_FILE = ".write-wanted"
READERS_DIR = ".read-wanted"  # one file per waiting reader: <pid>-<thread>-<random>
#: Longest sleep between two tries of a waiting reader (a writer that let go takes the dataset back soon).
READER_POLL = 0.02
WRITER_POLL = 0.05


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _me() -> str:
    return f"{os.getpid()}:{threading.get_ident()}"


def write_wanted(directory: Path) -> bool:
    """True while a live process, or another thread of this one, waits to write this dataset: readers
    that keep the catalog open between calls check it and let go, and new readers wait for it."""
    try:
        who = (Path(directory) / WANTED_FILE).read_text().strip()
        pid = int(who.split(":", 1)[0] or 0)
    except (OSError, ValueError):
        return False
    if who == _me() or who == str(os.getpid()):  # our own announcement (the old form names no thread)
        return False
    return pid > 0 and _alive(pid)


def readers_waiting(directory: Path) -> bool:
    """True while a live reader (of any process, this one included) waits for this dataset's lock.
    Announcements of dead processes are removed on the way."""
    try:
        names = os.listdir(Path(directory) / READERS_DIR)
    except OSError:
        return False
    for name in names:
        try:
            pid = int(name.split("-", 1)[0])
        except ValueError:
            continue
        if _alive(pid):
            return True
        try:
            os.unlink(Path(directory) / READERS_DIR / name)
        except OSError:
            pass
    return False


class _ReadWanted:
    """This reader's announcement that it waits (made on the first wait, removed when it gets in or
    gives up)."""

    def __init__(self, directory: Path):
        self.path = directory / READERS_DIR / f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
        self.made = False

    def announce(self) -> None:
        if self.made:
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            self.path.touch()
            self.made = True
        except OSError:
            pass  # a read-only dataset folder: the writer lets readers in at its next batch anyway

    def withdraw(self) -> None:
        if self.made:
            try:
                self.path.unlink()
            except OSError:
                pass
            self.made = False


def flock_exclusive(fd: int, *, timeout: float, busy: str) -> None:
    """Take an exclusive ``flock`` on ``fd``, waiting at most ``timeout`` seconds, then ``DatasetBusy(busy)``:
    no lock in viscurate is waited for without a limit (a lock that can never come, such as one this process
    already holds through another file descriptor, becomes an error instead of a thread stuck for good).

    >>> import tempfile
    >>> with tempfile.TemporaryFile() as a, open(f"/proc/self/fd/{a.fileno()}", "rb") as b:
    ...     flock_exclusive(a.fileno(), timeout=1, busy="a")
    ...     flock_exclusive(b.fileno(), timeout=0.05, busy="held by a")
    Traceback (most recent call last):
    ...
    viscurate.errors.DatasetBusy: held by a
    """
    deadline = time.monotonic() + max(timeout, 0)
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise DatasetBusy(busy) from None
            time.sleep(delay)
            delay = min(delay * 2, WRITER_POLL)


class DatasetLock:
    """The dataset's ``.lock``: shared by readers, exclusive for a writer while it uses the catalog.

    A reader waits while a writer announces that it wants in (``.write-wanted``), so a stream of readers
    cannot starve a writer, and announces itself in ``.read-wanted/`` while it waits, so a long writer
    lets it in at its next pause. ``session=True`` is the writers' own lock (``.write-session``) instead:
    exclusive, no announcements, and its busy message names the writer. ``server``: looks up the live
    server that may hold the dataset (``{"pid", "url"}`` or None), so that the busy message can name it
    (the workspace knows where a server announces itself: ``workspace.server_of_dataset``)."""

    def __init__(self, directory: Path, name: str, *, exclusive: bool, timeout: float, session: bool = False,
                 server: Callable[[], dict | None] | None = None):
        self.directory = Path(directory)
        self.name = name
        self.exclusive = exclusive or session
        self.session = session
        self.timeout = timeout
        self.server = server
        self._fd: int | None = None

    def acquire(self) -> "DatasetLock":
        path = self.directory / (WRITER_FILE if self.session else LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + max(self.timeout, 0)
        delay = 0.005
        wanted = self.directory / WANTED_FILE
        announced = False
        reader = None if self.exclusive else _ReadWanted(self.directory)
        try:
            while True:
                # a reader lets a waiting writer go first (it waits at most for the readers already in)
                if reader is None or not write_wanted(self.directory):
                    try:
                        fcntl.flock(fd, mode | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        pass
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise DatasetBusy(self._busy_message()) from None
                if reader is not None:
                    reader.announce()
                elif not self.session and not announced:
                    wanted.write_text(_me())  # readers holding the catalog let go, new ones wait
                    announced = True
                time.sleep(delay)
                delay = min(delay * 2, READER_POLL if reader is not None else WRITER_POLL)
        finally:
            if reader is not None:
                reader.withdraw()
            if announced:
                try:
                    if wanted.read_text().strip() == _me():  # (another writer may have announced since)
                        wanted.unlink()
                except OSError:
                    pass
        self._fd = fd
        if self.exclusive and not self.session:
            info = {"pid": os.getpid(), "command": " ".join(sys.argv)[:300], "since": time.time()}
            try:
                (self.directory / HOLDER_FILE).write_text(json.dumps(info))
            except OSError:
                pass
        return self

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _busy_message(self) -> str:
        holder = ""
        try:
            if self.exclusive and not self.session:
                raise OSError("the holder file names the last writer, not the readers")
            info = json.loads((self.directory / HOLDER_FILE).read_text())
            since = time.strftime("%H:%M:%S", time.localtime(info["since"]))
            holder = f" by process {info['pid']} ({info['command']!r}, since {since})"
        except (OSError, ValueError, KeyError):
            pass
        what = "written" if self.session or not self.exclusive else "used"
        server = self.server() if self.server is not None else None
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
