"""A text file listing media paths, one per line.

Blank lines and lines starting with ``#`` are skipped; surrounding spaces are stripped; a relative
path is relative to the folder of the list file (not the current directory). Each line is taken as
it is (no include/exclude filtering: the list already says which files); a line naming a folder is
walked like a folder input (with the filters), a line naming an archive is read like one, and a line
naming nothing is reported through ``on_warning`` and skipped.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator

from .folder import Warn, _default_warn
from .ref import MediaRef


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


def iter_pathlist(file: str | os.PathLike, include: Iterable[str] | str | None = None,
                  exclude: Iterable[str] | str | None = None, *, on_warning: Warn | None = None) -> Iterator[MediaRef]:
    """The ``MediaRef`` of every path in the list (folders and archives in it are expanded)."""
    from .resolve import _entries_for  # resolve dispatches on what each line names

    warn = on_warning or _default_warn
    for lineno, path in iter_pathlist_entries(file):
        if not os.path.lexists(path):
            warn(f"{os.fspath(file)}:{lineno}: skipped {path}: no such file")
            continue
        for ref, _ in _entries_for(path, include, exclude, warn, from_list=True):
            yield ref
