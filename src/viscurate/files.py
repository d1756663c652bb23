"""Small file helpers shared by the store, the models and the brain."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["write_atomic", "atomic_file"]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file to write that becomes ``path`` only when the block ends without an error, so that a
    concurrent reader sees the old file or the whole new one, never a part (a temporary file in the same
    folder, then a rename). The new file has the permissions of the file it replaces, or the user's
    usual ones (0666 less the umask, as ``open`` gives): unlike ``mkstemp``'s 0600, an export is
    readable by whoever may read the folder. ``mode`` (e.g. ``0o600`` for secrets) is set from the file's
    creation on, so the content is never readable by others even for a moment. The folder must exist.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> with atomic_file(folder / "a.txt") as f:
    ...     _ = f.write(b"hello")
    >>> (folder / "a.txt").read_bytes(), [p.name for p in folder.iterdir()]
    (b'hello', ['a.txt'])
    >>> write_atomic(folder / "secret", b"k", mode=0o600)
    >>> oct((folder / "secret").stat().st_mode & 0o777)
    '0o600'
    """
    path = Path(path)
    create = 0o666 if mode is None else mode
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = None
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, create)  # the umask applies
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, mode=mode) as f:
        f.write(data)
