"""Walk a folder for media files, with include/exclude globs.

Matching rule (also in ``docs/ingest.md``): patterns are matched, case-insensitively, against the
path *relative to the root*, with ``/`` separators.

- a pattern without ``/`` matches the file's (or a folder's) name at any depth: ``*.jpg``, ``cache``;
- a pattern with ``/`` matches the whole relative path: ``*`` and ``?`` stay within one path segment,
  ``**`` spans any number of segments (``**/train/*``, ``train/**``, ``a/*/b.png``); a leading ``/``
  only anchors (``/top.jpg``);
- ``[abc]`` / ``[!abc]`` are character classes.

A file is taken when it matches an ``include`` pattern (by default: its extension is in
:data:`IMAGE_EXTENSIONS`) and neither it nor any folder above it matches an ``exclude`` pattern
(so ``--exclude cache`` drops every folder named ``cache``, which is then not even walked).
A user ``include`` replaces the default: ``--include '*'`` takes every file, images or not.

>>> f = PathFilter(include=["**/train/*"], exclude=["*_bad.jpg"])
>>> f.take_file("a/train/x.jpg"), f.take_file("a/train/x_bad.jpg"), f.take_file("a/val/x.jpg")
(True, False, False)
>>> PathFilter().take_file("deep/dir/IMG_1.JPG"), PathFilter().take_file("notes.txt")
(True, False)
"""
from __future__ import annotations

import logging
import os
import re
import stat
from typing import Callable, Iterable, Iterator

from .ref import MediaRef

log = logging.getLogger("viscurate.sources")

#: Extensions (lower case, with the dot) taken by default: every still-image format Pillow reads.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".pfm", ".tga", ".ico", ".cur", ".jp2", ".j2k", ".jpx", ".jpf", ".j2c",
    ".heic", ".heif", ".avif", ".dds", ".pcx", ".psd", ".sgi", ".rgb", ".rgba", ".bw", ".ras", ".icns",
    ".im", ".msp", ".xbm", ".qoi", ".dcx", ".fits", ".fit", ".blp", ".ftc", ".ftu", ".mpo", ".sun",
})

#: Extensions (lower case, with the dot) of video files: each becomes frames (:mod:`viscurate.sources.video`).
#: GIFs and other animated images stay images.
VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".m2v", ".wmv", ".asf", ".flv",
    ".3gp", ".3g2", ".mts", ".m2ts", ".ogv", ".vob", ".mxf", ".y4m",
})  # (not ".ts": more TypeScript files than MPEG transport streams lie in folders; name one to take it)

#: What a folder walk takes by default: images and videos.
MEDIA_EXTENSIONS: frozenset[str] = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS

Warn = Callable[[str], None]


def log_warning(message: str) -> None:
    """Where a source's warnings go when its caller gives no ``on_warning``: a ``logging`` warning."""
    log.warning(message)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile one glob (see the module doc) into a regex matched against a whole relative path."""
    p = pattern.replace("\\", "/").strip()
    anchored = "/" in p.rstrip("/")
    p = p.strip("/") if anchored else p.rstrip("/")
    out: list[str] = []
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == "*":
            if p.startswith("**", i):
                j = i + 2
                before_ok = i == 0 or p[i - 1] == "/"
                if before_ok and j < n and p[j] == "/":  # "**/": zero or more whole segments
                    out.append("(?:.*/)?")
                    i = j + 1
                    continue
                if before_ok and j == n and i > 0:  # trailing "/**": everything below
                    out.pop()  # the "/" already emitted
                    out.append("(?:/.*)?")
                    i = j
                    continue
                out.append(".*")
                i = j
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = p.find("]", i + 2 if i + 1 < n and p[i + 1] in "!^" else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = p[i + 1:j]
                neg = body[:1] in ("!", "^")
                if neg:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append(f"[^/{body}]" if neg else f"[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    rx = "".join(out)
    if not anchored:
        rx = f"(?:.*/)?{rx}"  # a name pattern matches at any depth
    return re.compile(rx, re.IGNORECASE | re.DOTALL)


class PathFilter:
    """Decides which relative paths a source takes (see the module doc for the rule)."""

    def __init__(self, include: Iterable[str] | str | None = None, exclude: Iterable[str] | str | None = None,
                 extensions: frozenset[str] = IMAGE_EXTENSIONS):
        include = [include] if isinstance(include, str) else list(include or [])
        exclude = [exclude] if isinstance(exclude, str) else list(exclude or [])
        self.include = [glob_to_regex(g) for g in include if g.strip()]
        self.exclude = [glob_to_regex(g) for g in exclude if g.strip()]
        self.extensions = extensions

    def excluded(self, rel: str) -> bool:
        """Whether ``rel`` (a file or folder) matches an exclude pattern."""
        return any(rx.fullmatch(rel) for rx in self.exclude)

    def included(self, rel: str) -> bool:
        if self.include:
            return any(rx.fullmatch(rel) for rx in self.include)
        return os.path.splitext(rel)[1].lower() in self.extensions

    def take_file(self, rel: str) -> bool:
        """Whether the file at relative path ``rel`` is taken (checks its parent folders too)."""
        rel = rel.replace("\\", "/").lstrip("/")
        if not self.included(rel):
            return False
        if self.exclude:
            if self.excluded(rel):
                return False
            parts = rel.split("/")
            for k in range(1, len(parts)):
                if self.excluded("/".join(parts[:k])):
                    return False
        return True


def iter_folder(root: str | os.PathLike, include: Iterable[str] | str | None = None,
                exclude: Iterable[str] | str | None = None, *, on_warning: Warn | None = None) -> Iterator[MediaRef]:
    """Every media file under ``root`` (recursive, sorted, symlinks followed), as ``MediaRef``: by
    default images and videos (:data:`MEDIA_EXTENSIONS`).

    Survives symlink loops (a folder already walked is not walked again), broken symlinks, files
    that vanish, and unreadable folders (each is reported through ``on_warning``, by default a
    ``logging`` warning). Only regular files are taken (no FIFOs, sockets or devices)."""
    warn = on_warning or log_warning
    flt = PathFilter(include, exclude, MEDIA_EXTENSIONS)
    top = os.path.abspath(os.fspath(root))
    try:
        st = os.stat(top)
    except OSError as e:
        warn(f"cannot read folder {top}: {e.strerror or e}")
        return
    visited = {(st.st_dev, st.st_ino)}
    # depth-first, in sorted order of path components: a stack of (sorted entries, next index, rel folder)
    stack: list[tuple[list[os.DirEntry], list[int], str]] = []

    def push(folder: str, rel_folder: str) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            warn(f"skipped unreadable folder {folder}: {e.strerror or e}")
            return
        stack.append((entries, [0], rel_folder))

    push(top, "")
    while stack:
        entries, pos, rel_folder = stack[-1]
        if pos[0] >= len(entries):
            stack.pop()
            continue
        entry = entries[pos[0]]
        pos[0] += 1
        rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if is_dir:
            if flt.exclude and flt.excluded(rel):
                continue
            try:
                dst = entry.stat()
            except OSError as e:
                warn(f"skipped unreadable folder {entry.path}: {e.strerror or e}")
                continue
            key = (dst.st_dev, dst.st_ino)
            if key in visited:
                if entry.is_symlink():
                    warn(f"skipped symlink to a folder already walked (loop?): {entry.path}")
                continue
            visited.add(key)
            push(entry.path, rel)
            continue
        if not flt.included(rel) or (flt.exclude and flt.excluded(rel)):
            continue
        try:
            fst = entry.stat()
        except OSError as e:
            if entry.is_symlink():
                warn(f"skipped broken symlink {entry.path}")
            else:
                warn(f"skipped {entry.path}: {e.strerror or e}")
            continue
        if not stat.S_ISREG(fst.st_mode):
            continue
        yield MediaRef(entry.path, entry.path, "local", fst.st_size, fst.st_mtime)


def file_ref(path: str | os.PathLike) -> MediaRef:
    """The ``MediaRef`` of one file (raises ``OSError`` when it cannot be stat'ed)."""
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    return MediaRef(p, p, "local", st.st_size, st.st_mtime)
