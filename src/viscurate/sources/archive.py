"""Media inside zip and tar archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``).

Members are filtered like the files of a folder (see :mod:`viscurate.sources.folder`; the relative path
is the member's name). Directories, links, devices and FIFOs inside the archive are skipped.

Member names are never used as file-system paths: a member is copied out of its archive only by
:func:`extract_member`, into a content-addressed folder (``<media_dir>/<sha[:2]>/<sha><ext>``), so a
name such as ``../../evil.jpg`` cannot write anywhere else. Reading a member is bounded: at most
``max_bytes`` are decompressed, whatever the archive declares (zip bombs), and a member that declares
more is not read at all.

Archives are read in one pass, in their own order (a tar stream cannot be sorted); a member's reader
is valid until the iterator moves on.
"""
from __future__ import annotations

import calendar
import hashlib
import os
import re
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from typing import IO, Callable, Iterable, Iterator, Literal

from .folder import PathFilter, Warn, log_warning
from .ref import ARCHIVE_SEP, MediaRef

ArchiveKind = Literal["zip", "tar"]

#: File-name endings recognised as archives without looking at the content.
ARCHIVE_SUFFIXES: dict[str, ArchiveKind] = {
    ".zip": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar", ".tar.bz2": "tar", ".tbz2": "tar",
    ".tbz": "tar", ".tar.xz": "tar", ".txz": "tar",
}

_READ_CHUNK = 1 << 20


class MemberError(Exception):
    """A member could not be copied out; ``reason`` is a profile failure flag (``too_large``...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def archive_kind(path: str | os.PathLike, sniff: bool = True) -> ArchiveKind | None:
    """``"zip"``, ``"tar"`` or ``None``: by the name's ending, else (``sniff``) by the content."""
    name = os.fspath(path).lower()
    for suffix, kind in ARCHIVE_SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    if not sniff:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    signature = archive_signature(head)
    if signature == "zip":
        return "zip" if zipfile.is_zipfile(path) else None
    if signature == "tar":
        return "tar"
    if signature is not None:  # a compressed stream: a tar inside it?
        try:
            return "tar" if tarfile.is_tarfile(path) else None
        except Exception:  # noqa: BLE001 - a damaged stream is simply not an archive we can read
            return None
    return None


def archive_signature(head: bytes) -> str | None:
    """What the first 512 bytes of a file say it is: ``"zip"``, ``"tar"``, or a compressed stream
    (``"gzip"``, ``"bzip2"``, ``"xz"``) that may hold a tar; ``None`` for anything else (no image
    format starts with one of these).

    >>> archive_signature(b"PK\\x03\\x04" + bytes(26)), archive_signature(bytes.fromhex("89504e470d0a1a0a"))
    ('zip', None)
    """
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    for signature, kind in ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz")):
        if head.startswith(signature):
            return kind
    return None


@dataclass
class ArchiveMember:
    """One member of an archive: its ``MediaRef`` and a way to read it (until the iterator moves on)."""

    ref: MediaRef
    _open: Callable[[], IO[bytes]]

    def open(self) -> IO[bytes]:
        return self._open()

    def read(self, max_bytes: int) -> bytes:
        """The member's bytes; :class:`MemberError` when it is larger than ``max_bytes`` or unreadable."""
        chunks = []
        for chunk in _read_bounded(self, max_bytes):
            chunks.append(chunk)
        return b"".join(chunks)


def _normalize(name: str, zip_name: bool) -> str:
    if zip_name:
        name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def iter_archive_members(path: str | os.PathLike, include: Iterable[str] | str | None = None,
                         exclude: Iterable[str] | str | None = None, *, kind: ArchiveKind | None = None,
                         on_warning: Warn | None = None) -> Iterator[ArchiveMember]:
    """Every regular-file member of the archive that passes the filter, in archive order."""
    warn = on_warning or log_warning
    arc = os.path.abspath(os.fspath(path))
    kind = kind or archive_kind(arc)
    flt = PathFilter(include, exclude)
    if kind == "zip":
        yield from _iter_zip(arc, flt, warn)
    elif kind == "tar":
        yield from _iter_tar(arc, flt, warn)
    else:
        warn(f"skipped {arc}: not a zip or tar archive")


def iter_archive(path: str | os.PathLike, include: Iterable[str] | str | None = None,
                 exclude: Iterable[str] | str | None = None, *, on_warning: Warn | None = None) -> Iterator[MediaRef]:
    """The ``MediaRef`` of every member taken from a zip or tar archive (``filepath`` is ``None``)."""
    for m in iter_archive_members(path, include, exclude, on_warning=on_warning):
        yield m.ref


def _iter_zip(arc: str, flt: PathFilter, warn: Warn) -> Iterator[ArchiveMember]:
    try:
        zf = zipfile.ZipFile(arc)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        warn(f"skipped archive {arc}: cannot read it as zip ({type(e).__name__}: {e})")
        return
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            ftype = stat.S_IFMT(info.external_attr >> 16)
            if ftype and ftype != stat.S_IFREG:  # symlinks, devices... stored with unix modes
                continue
            name = _normalize(info.filename, True)
            if not name or not flt.take_file(name):
                continue
            try:
                mtime = float(calendar.timegm((*info.date_time, 0, 0, 0)))
            except (TypeError, ValueError, OverflowError):
                mtime = None
            ref = MediaRef(f"{arc}{ARCHIVE_SEP}{name}", None, "zip", info.file_size, mtime, arc, name)
            yield ArchiveMember(ref, lambda info=info: zf.open(info))


def archive_member_names(path: str | os.PathLike, kind: ArchiveKind | None = None) -> set[str] | None:
    """The names of every regular-file member, whatever the filters (as they appear in origins), or
    ``None`` when the archive cannot be read to its end: then nobody knows what it holds.

    Used to tell a member that left its archive from one the filters now skip. A zip's names come from
    its central directory; a tar (compressed or not) is read through once."""
    arc = os.path.abspath(os.fspath(path))
    kind = kind or archive_kind(arc)
    names: set[str] = set()
    try:
        if kind == "zip":
            with zipfile.ZipFile(arc) as zf:
                for info in zf.infolist():
                    ftype = stat.S_IFMT(info.external_attr >> 16)
                    if not info.is_dir() and (not ftype or ftype == stat.S_IFREG):
                        names.add(_normalize(info.filename, True))
        elif kind == "tar":
            with tarfile.open(arc, mode="r|*", errors="replace") as tf:
                for m in tf:
                    if m.isreg():
                        names.add(_normalize(m.name, False))
        else:
            return None
    except Exception:  # noqa: BLE001 - damaged, truncated, gone: what it holds is unknown
        return None
    names.discard("")
    return names


def _iter_tar(arc: str, flt: PathFilter, warn: Warn) -> Iterator[ArchiveMember]:
    try:
        tf = tarfile.open(arc, mode="r|*", errors="replace")
    except (OSError, tarfile.TarError, EOFError, ValueError) as e:
        warn(f"skipped archive {arc}: cannot read it as tar ({type(e).__name__}: {e})")
        return
    with tf:
        it = iter(tf)
        while True:
            try:
                m = next(it)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 - truncated or damaged stream: keep what was read
                warn(f"stopped reading archive {arc} early: {type(e).__name__}: {e}")
                return
            if not m.isreg():
                continue
            name = _normalize(m.name, False)
            if not name or not flt.take_file(name):
                continue
            ref = MediaRef(f"{arc}{ARCHIVE_SEP}{name}", None, "tar", m.size, float(m.mtime), arc, name)
            yield ArchiveMember(ref, lambda m=m: _tar_extract(tf, m))


def _tar_extract(tf: tarfile.TarFile, m: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(m)
    if f is None:
        raise MemberError("unreadable", "not a regular file")
    return f


def _read_bounded(member: ArchiveMember, max_bytes: int) -> Iterator[bytes]:
    """The member's bytes in chunks, never more than ``max_bytes`` decompressed."""
    declared = member.ref.size
    if declared is not None and declared > max_bytes:
        raise MemberError("too_large", f"too_large: the member has {declared} bytes, more than max_bytes={max_bytes}")
    try:
        got = 0
        with member.open() as f:
            while True:
                chunk = f.read(min(_READ_CHUNK, max_bytes + 1 - got))
                if not chunk:
                    break
                got += len(chunk)
                if got > max_bytes:
                    raise MemberError("too_large", f"too_large: the member inflates past max_bytes={max_bytes} "
                                      f"(it declares {declared} bytes)")
                yield chunk
    except MemberError:
        raise
    except Exception as e:  # noqa: BLE001 - CRC errors, truncated streams, encryption, unknown methods
        raise MemberError("unreadable", f"unreadable: the archive member could not be read "
                          f"({type(e).__name__}: {e})") from None
    if declared is not None and got != declared:
        raise MemberError("unreadable", f"unreadable: the member declares {declared} bytes but holds {got}")


_EXT_RE = re.compile(r"^\.[a-z0-9]{1,8}$")


def media_path(media_dir: str | os.PathLike, sha256_hex: str, name: str) -> str:
    """``<media_dir>/<sha[:2]>/<sha><ext>``; the extension is kept only when it is short and plain."""
    ext = os.path.splitext(name.rsplit("/", 1)[-1])[1].lower()
    if not _EXT_RE.match(ext):
        ext = ""
    return os.path.join(os.fspath(media_dir), sha256_hex[:2], sha256_hex + ext)


def store_media_bytes(media_dir: str | os.PathLike, data: bytes, name: str) -> tuple[str, str]:
    """Keep ``data`` under ``media_dir``, content-addressed (:func:`media_path`, ``name`` giving the
    extension); returns ``(path, sha256 hex)``. Written to a temporary file and renamed, so a killed run
    never leaves a partial file under its final name; bytes already stored are not written again (the same
    image from another URL, frame or archive)."""
    digest = hashlib.sha256(data).hexdigest()
    dst = media_path(media_dir, digest, name)
    if os.path.exists(dst):
        return dst, digest
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.fspath(media_dir), prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dst, digest


def extract_member(member: ArchiveMember, media_dir: str | os.PathLike, max_bytes: int) -> tuple[str, str, int]:
    """Copy a member into ``media_dir``, content-addressed; returns ``(path, sha256 hex, size)``.

    The copy is written to a temporary file and renamed, so a crash never leaves a partial file
    under its final name. Raises :class:`MemberError` (``too_large``, ``unreadable``)."""
    media_dir = os.fspath(media_dir)
    os.makedirs(media_dir, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=media_dir, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _read_bounded(member, max_bytes):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        digest = h.hexdigest()
        dst = media_path(media_dir, digest, member.ref.member or "")
        if os.path.exists(dst):
            os.unlink(tmp)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(tmp, dst)
        return dst, digest, size
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
