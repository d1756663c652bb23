"""What C libraries write on the process's stderr (file descriptor 2), caught instead of shown.

libtiff ("tempfile.tif: WEBP compression support is not configured."), TensorFlow Lite's start-up lines
and other native code write straight to fd 2, past Python's ``sys.stderr``: in a worker process they
would break the progress bar and say nothing about which file they concern. :func:`captured_stderr`
points fd 2 at a private temporary file for the length of a block and hands back what was written.

Only for worker processes: fd 2 is the whole process's, so in a process with other threads writing to
the terminal (the parent's progress bar) their output would be caught too.

>>> import os
>>> with captured_stderr() as said:
...     _ = os.write(2, b"tempfile.tif: WEBP compression support is not configured.\\n")
>>> said()
'tempfile.tif: WEBP compression support is not configured.\\n'
>>> warning_lines(said())
['WEBP compression support is not configured.']
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import IO, Callable, Iterator

#: At most this many lines of one block are kept, each cut to :data:`MAX_LINE` characters.
MAX_LINES = 20
MAX_LINE = 300

# One sink per process (a forked child opens its own), reused by every block: a file per block would
# cost a create and an unlink per image.
_sink: dict[int, IO[bytes]] = {}
_depth = 0


def _sink_file() -> IO[bytes]:
    pid = os.getpid()
    f = _sink.get(pid)
    if f is None:
        _sink.clear()
        f = _sink[pid] = tempfile.TemporaryFile()
    return f


@contextlib.contextmanager
def captured_stderr() -> Iterator[Callable[[], str]]:
    """Send fd 2 to a temporary file inside the block; yields a function returning what was written
    there since the block began (decoded as UTF-8, bad bytes replaced). Blocks may nest."""
    global _depth
    sink = _sink_file()
    fd = sink.fileno()
    sys.stderr.flush()
    if _depth == 0:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
    start = os.lseek(fd, 0, os.SEEK_END)
    saved = os.dup(2)
    os.dup2(fd, 2)  # fd 2 now shares the sink's offset: writes land at its end
    _depth += 1

    def said() -> str:
        try:
            sys.stderr.flush()
            end = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, end - start, start).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
    try:
        yield said
    finally:
        _depth -= 1
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)


def warning_lines(text: str) -> list[str]:
    """The distinct non-empty lines of ``text``, in order, without libtiff's made-up file name.

    Pillow hands libtiff the name ``tempfile.tif`` (it decodes from memory), which would only mislead.

    >>> warning_lines("tempfile.tif: A.\\n\\ntempfile.tif: A.\\nTIFFReadDirectory: B\\n")
    ['A.', 'TIFFReadDirectory: B']
    """
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("tempfile.tif: "):
            line = line[len("tempfile.tif: "):]
        line = line[:MAX_LINE]
        if line and line not in out:
            out.append(line)
            if len(out) >= MAX_LINES:
                break
    return out
