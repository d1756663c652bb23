"""A text file listing media paths, one per line: its lines, as paths.

Blank lines and lines starting with ``#`` are skipped; surrounding spaces are stripped; a relative
path is relative to the folder of the list file (not the current directory). What each path names is
read by :func:`viscurate.sources.resolve.iter_pathlist`.
"""
from __future__ import annotations

import os
from typing import Iterator


def iter_pathlist_entries(file: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, absolute path)`` for every path line of the list."""
    listfile = os.path.abspath(os.fspath(file))
    base = os.path.dirname(listfile)
    with open(listfile, "r", encoding="utf-8", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            p = os.path.expanduser(s)
            yield lineno, os.path.normpath(os.path.join(base, p))

