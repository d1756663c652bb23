"""Which samples the models and analyses can work on: those whose pixels can be read.

A sample flagged ``corrupt`` (ingest could not decode its file), ``unsupported`` (a valid file in an
encoding viscurate cannot decode, e.g. a JPEG 2000 TIFF), ``missing`` (its file is gone) or
``download_failed`` (its URL gave no image) stays in the catalog, with everything it holds, but label,
embed and every analysis skip it.

>>> usable()
{'issues': {'$nin': ['corrupt', 'unsupported', 'missing', 'download_failed']}}
>>> usable({"split": "val"})
{'$and': [{'split': 'val'}, {'issues': {'$nin': ['corrupt', 'unsupported', 'missing', 'download_failed']}}]}
"""
from __future__ import annotations

#: The issue of a sample whose file (or archive member) no longer exists; see ``docs/ingest.md``.
MISSING = "missing"
#: The issue of a sample whose URL could not be downloaded (``download.status`` says why).
DOWNLOAD_FAILED = "download_failed"
#: Issues that make a sample's pixels unreadable.
UNUSABLE_ISSUES: tuple[str, ...] = ("corrupt", "unsupported", MISSING, DOWNLOAD_FAILED)


def usable(query: dict | None = None) -> dict:
    """``query`` narrowed to the samples whose pixels can be read (all of them without ``query``)."""
    scope: dict = {"issues": {"$nin": list(UNUSABLE_ISSUES)}}
    return {"$and": [query, scope]} if query else scope
