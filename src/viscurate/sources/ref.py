"""``MediaRef``: what a source knows about one piece of media, before anything reads its bytes.

>>> r = MediaRef("/data/a.jpg", "/data/a.jpg", "local", 1024, 1700000000.0)
>>> r.sample_id
'4d2d07da26a7ba353aa43380'
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Source = Literal["local", "zip", "tar"]

#: Separates an archive's path from a member's name in an origin: ``/abs/a.zip!/dir/b.jpg``.
ARCHIVE_SEP = "!/"


def sample_id(origin: str) -> str:
    """The deterministic ``_id`` of the sample whose origin is ``origin``: 24 hex digits of sha1."""
    return hashlib.sha1(origin.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A reference to one piece of media.

    - ``origin``: the unique key of the sample: the absolute path of a file, or
      ``"/abs/archive.zip!/member/path.jpg"`` for an archive member.
    - ``filepath``: where the bytes can be read from the file system (``None`` for an archive member
      until it is copied out of its archive).
    - ``source``: ``"local"``, ``"zip"`` or ``"tar"``.
    - ``size`` / ``mtime``: what the file system (or the archive's header) says, or ``None``.
    - ``archive`` / ``member``: the archive's absolute path and the member's name, for members.
    """

    origin: str
    filepath: str | None
    source: Source
    size: int | None
    mtime: float | None
    archive: str | None = None
    member: str | None = None

    @property
    def sample_id(self) -> str:
        return sample_id(self.origin)
