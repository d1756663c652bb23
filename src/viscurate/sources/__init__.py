"""viscurate.sources: references to media (files, archive members) plus what is known about them.

Sources know nothing of the store. See ``docs/ingest.md``.

>>> from viscurate.sources import resolve_inputs, MediaRef, IMAGE_EXTENSIONS
>>> ".jpg" in IMAGE_EXTENSIONS
True
"""
from .archive import (ARCHIVE_SUFFIXES, ArchiveMember, MemberError, archive_kind, extract_member, iter_archive,
                      iter_archive_members, media_path)
from .folder import IMAGE_EXTENSIONS, PathFilter, glob_to_regex, iter_folder
from .ref import ARCHIVE_SEP, MediaRef, sample_id
from .resolve import PATHLIST_SUFFIXES, input_kind, iter_pathlist, resolve_entries, resolve_inputs

__all__ = [
    "ARCHIVE_SEP", "ARCHIVE_SUFFIXES", "IMAGE_EXTENSIONS", "PATHLIST_SUFFIXES", "ArchiveMember", "MediaRef",
    "MemberError", "PathFilter", "archive_kind", "extract_member", "glob_to_regex", "input_kind", "iter_archive",
    "iter_archive_members", "iter_folder", "iter_pathlist", "media_path", "resolve_entries", "resolve_inputs",
    "sample_id",
]
