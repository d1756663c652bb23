"""What the inputs of one ingest cover, and whether a sample they cover is gone.

An ingest notices vanished files only where it looked: a sample is *covered* when its origin lies
under an input of this run (a folder, an archive, a file, or a line of a path list; a path-list line
that names nothing any more still covers what it used to name). A covered sample that the run did not
list is *gone* when its file no longer exists on disk (or its member is no longer in its archive);
a file that still exists but was not listed (excluded by this run's filters, unreadable) is not gone.

>>> cov = InputCoverage.of(["/data/pets"])                                         # doctest: +SKIP
>>> cov.covers("/data/pets/cat.jpg", "local"), cov.covers("/data/other/dog.jpg", "local")  # doctest: +SKIP
(True, False)
>>> cov.gone("/data/pets/cat.jpg", "local")                                        # doctest: +SKIP
False
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Iterable

from .archive import archive_member_names
from .pathlist import iter_pathlist_entries
from .ref import ARCHIVE_SEP
from .resolve import input_kind
from .video import FRAME_SEP, VIDEO_SOURCE, is_video, video_of

#: ``errno`` values that say "this path does not exist" (others, e.g. permission denied, say "unknown").
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


@dataclass
class InputCoverage:
    """The files, folders and archives one ingest was given (absolute paths; path lists expanded)."""

    files: set[str] = field(default_factory=set)
    folders: set[str] = field(default_factory=set)
    archives: set[str] = field(default_factory=set)
    _names: dict[str, set[str] | None] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, paths: Iterable[str]) -> "InputCoverage":
        """The coverage of checked absolute input paths (see :func:`~viscurate.sources.resolve.check_inputs`)."""
        cov = cls()
        for p in paths:
            cov._add(p, from_list=False)
        return cov

    def _add(self, path: str, from_list: bool) -> None:
        if not os.path.exists(path):  # a path-list line naming nothing now: whatever it named before
            self.files.add(path)
            self.folders.add(path)
            self.archives.add(path)
            return
        kind = input_kind(path)
        if kind == "pathlist" and not from_list:
            for _, line in iter_pathlist_entries(path):
                self._add(line, from_list=True)
        elif kind == "folder":
            self.folders.add(path)
        elif kind in ("zip", "tar"):
            self.archives.add(path)
        else:  # a file, or a list named in a list (taken as a file)
            self.files.add(path)

    def prefixes(self) -> list[str]:
        """Every origin a covered sample can have starts with one of these, or is one of ``files`` (a
        cheap pre-filter; :meth:`covers` decides)."""
        return sorted({f if f.endswith("/") else f + "/" for f in self.folders}
                      | {a + ARCHIVE_SEP for a in self.archives}
                      | {f + FRAME_SEP for f in self.files if is_video(f)})

    def archive_of(self, origin: str) -> str | None:
        """The input archive ``origin`` is a member of, or ``None``."""
        at = origin.find(ARCHIVE_SEP)
        while at >= 0:
            if origin[:at] in self.archives:
                return origin[:at]
            at = origin.find(ARCHIVE_SEP, at + 1)
        return None

    def covers(self, origin: str, source: str | None) -> bool:
        """Whether the sample of ``origin`` (its ``source``: local, zip, tar, video) came from these inputs."""
        if source == VIDEO_SOURCE:  # a frame: where its video came from
            video = video_of(origin)
            return video is not None and self.covers(video, "local")
        if source in ("zip", "tar"):
            return self.archive_of(origin) is not None
        if origin in self.files:
            return True
        parent = os.path.dirname(origin)
        while True:
            if parent in self.folders:
                return True
            up = os.path.dirname(parent)
            if up == parent:
                return False
            parent = up

    def gone(self, origin: str, source: str | None) -> bool:
        """Whether the file (or archive member) of a covered sample no longer exists. ``False`` when
        that cannot be known (permission denied, an archive that cannot be read through)."""
        if source == VIDEO_SOURCE:  # a frame is gone with its video
            video = video_of(origin)
            return video is not None and self.gone(video, "local")
        if source in ("zip", "tar"):
            arc = self.archive_of(origin)
            if arc is None:
                return False
            if arc not in self._names:
                self._names[arc] = archive_member_names(arc) if os.path.isfile(arc) else set()
            names = self._names[arc]
            return names is not None and origin[len(arc) + len(ARCHIVE_SEP):] not in names
        try:
            os.stat(origin)
        except OSError as e:
            return e.errno in _ABSENT
        return False
