"""Turn what a user names (folders, archives, path lists, files) into ``MediaRef``s.

>>> list(resolve_inputs(["/no/such/path"]))
Traceback (most recent call last):
...
viscurate.errors.ViscurateError: input not found: /no/such/path
"""
from __future__ import annotations

import os
import re
import tarfile
import zipfile
from typing import Iterable, Iterator

from ..errors import ViscurateError
from .archive import ArchiveMember, archive_kind, iter_archive_members
from .folder import IMAGE_EXTENSIONS, Warn, file_ref, iter_folder, log_warning
from .netguard import FetchError, split_url
from .pathlist import iter_pathlist_entries
from .ref import MediaRef
from .urls import check_url_input, is_url

#: File-name endings of path lists.
PATHLIST_SUFFIXES = (".txt", ".lst")

Entry = tuple[MediaRef, "ArchiveMember | None"]


def input_kind(path: str | os.PathLike) -> str:
    """What an input path is: ``"folder"``, ``"zip"``, ``"tar"``, ``"pathlist"`` or ``"file"``."""
    p = os.fspath(path)
    if os.path.isdir(p):
        return "folder"
    ext = os.path.splitext(p)[1].lower()
    if ext in PATHLIST_SUFFIXES:
        return "pathlist"
    if ext in IMAGE_EXTENSIONS:  # an image is an image, even if it is also a valid zip (polyglot)
        return "file"
    return archive_kind(p) or "file"


def check_inputs(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> list[str]:
    """The absolute paths of the inputs, each checked: it exists, it can be read, it is a folder or a
    regular file, an archive named by its ending opens, and a URL table has a ``url`` column; an
    ``http(s)://`` URL is kept as it is (checked for its form only: ingest downloads it). Raises
    :class:`~viscurate.errors.ViscurateError` naming the first bad one; reads no media.

    Commands that create or change a dataset call it first, so a wrong input writes nothing.

    >>> check_inputs(["/no/such/folder"])
    Traceback (most recent call last):
    ...
    viscurate.errors.ViscurateError: input not found: /no/such/folder
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        if isinstance(p, str) and is_url(p.strip()):  # downloaded by ingest (sources.urls)
            try:
                split_url(p.strip())
            except FetchError as e:
                raise ViscurateError(f"not a URL viscurate can download: {p} ({e})") from None
            out.append(p.strip())
            continue
        s = os.path.abspath(os.path.expanduser(os.fspath(p)))
        if not os.path.exists(s):
            if isinstance(p, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", p):
                raise ViscurateError(f"cannot ingest {p}: only http:// and https:// URLs are downloaded")
            why = "broken symlink" if os.path.lexists(s) else "input not found"
            raise ViscurateError(f"{why}: {os.fspath(p)}")
        if not os.access(s, os.R_OK) or (os.path.isdir(s) and not os.access(s, os.X_OK)):
            raise ViscurateError(f"input not readable (permission denied): {os.fspath(p)}")
        if not (os.path.isdir(s) or os.path.isfile(s)):  # a FIFO or a device would block or never end
            raise ViscurateError(f"input is not a folder or a regular file: {os.fspath(p)}")
        _check_archive(s, os.fspath(p))
        if os.path.isfile(s):
            check_url_input(s)  # a URL table must have a url column
        out.append(s)
    if not out:
        raise ViscurateError("no input given: name at least one folder, archive, path list, file or URL")
    return out


def _check_archive(path: str, shown: str) -> None:
    """An input named like an archive must open as one (its first header, nothing more)."""
    kind = archive_kind(path, sniff=False)
    if kind is None or os.path.isdir(path):
        return
    try:
        if kind == "zip":
            zipfile.ZipFile(path).close()
        else:
            with tarfile.open(path, mode="r|*") as tf:
                next(iter(tf), None)
    except Exception as e:  # noqa: BLE001 - whatever the reason, it is not an archive we can read
        raise ViscurateError(f"input is not a readable {kind} archive: {shown} ({type(e).__name__}: {e})") from None


def _entries_for(path: str, include, exclude, warn: Warn, from_list: bool = False) -> Iterator[Entry]:
    kind = input_kind(path)
    if kind == "pathlist" and from_list:
        kind = "file"  # no lists of lists
    if kind == "folder":
        for ref in iter_folder(path, include, exclude, on_warning=warn):
            yield ref, None
    elif kind in ("zip", "tar"):
        for m in iter_archive_members(path, include, exclude, kind=kind, on_warning=warn):  # type: ignore[arg-type]
            yield m.ref, m
    elif kind == "pathlist":
        for lineno, p in iter_pathlist_entries(path):
            if not os.path.exists(p):
                warn(f"{path}:{lineno}: skipped {p}: no such file")
                continue
            yield from _entries_for(p, include, exclude, warn, from_list=True)
    else:
        try:
            yield file_ref(path), None
        except OSError as e:
            warn(f"skipped {path}: {e.strerror or e}")


def iter_pathlist(file: str | os.PathLike, include: Iterable[str] | str | None = None,
                  exclude: Iterable[str] | str | None = None, *, on_warning: Warn | None = None) -> Iterator[MediaRef]:
    """The ``MediaRef`` of every path in a path list (:mod:`~viscurate.sources.pathlist`). Each line is taken
    as it is (no include/exclude filtering: the list already says which files); a line naming a folder is
    walked like a folder input (with the filters), a line naming an archive is read like one, and a line
    naming nothing is reported through ``on_warning`` and skipped."""
    warn = on_warning or log_warning
    for lineno, path in iter_pathlist_entries(file):
        if not os.path.lexists(path):
            warn(f"{os.fspath(file)}:{lineno}: skipped {path}: no such file")
            continue
        for ref, _ in _entries_for(path, include, exclude, warn, from_list=True):
            yield ref


def resolve_entries(paths: Iterable[str | os.PathLike] | str | os.PathLike, include: Iterable[str] | str | None = None,
                    exclude: Iterable[str] | str | None = None, *, on_warning: Warn | None = None) -> Iterator[Entry]:
    """Like :func:`resolve_inputs`, with each archive member's reader (``None`` for files).

    Checks every input path first, so a missing one raises before any work starts."""
    checked = check_inputs(paths)
    warn = on_warning or log_warning

    def gen() -> Iterator[Entry]:
        for p in checked:
            yield from _entries_for(p, include, exclude, warn)

    return gen()


def resolve_inputs(paths: Iterable[str | os.PathLike] | str | os.PathLike, include: Iterable[str] | str | None = None,
                   exclude: Iterable[str] | str | None = None, *, on_warning: Warn | None = None) -> Iterator[MediaRef]:
    """Every ``MediaRef`` under the inputs, dispatching on what each path is:

    - a folder: walked recursively (:func:`~viscurate.sources.folder.iter_folder`, with the filters);
    - an archive (by its name's ending, else by its content): zip or tar members, with the filters;
    - a ``.txt`` / ``.lst`` file: a path list (:mod:`~viscurate.sources.pathlist`);
    - any other file: taken as it is (no filtering: you named it).

    A path that does not exist raises :class:`~viscurate.errors.ViscurateError` at once, before
    anything is read. Problems found later (unreadable folders, damaged archives) are reported
    through ``on_warning`` (default: a ``logging`` warning) and skipped."""
    entries = resolve_entries(paths, include, exclude, on_warning=on_warning)
    return (ref for ref, _ in entries)
