"""Which samples the models and analyses can work on: those whose pixels can be read.

A sample flagged ``corrupt`` (ingest could not decode its file), ``unsupported`` (a valid file in an
encoding viscurate cannot decode, e.g. a JPEG 2000 TIFF) or ``missing`` (its file is gone) stays in the
catalog, with everything it holds, but label, embed and every analysis skip it.

>>> usable()
{'issues': {'$nin': ['corrupt', 'unsupported', 'missing']}}
>>> usable({"split": "val"})
{'$and': [{'split': 'val'}, {'issues': {'$nin': ['corrupt', 'unsupported', 'missing']}}]}
"""
from __future__ import annotations

#: The issue of a sample whose file (or archive member) no longer exists; see ``docs/ingest.md``.
MISSING = "missing"
#: Issues that make a sample's pixels unreadable.
UNUSABLE_ISSUES: tuple[str, ...] = ("corrupt", "unsupported", MISSING)


def usable(query: dict | None = None) -> dict:
    """``query`` narrowed to the samples whose pixels can be read (all of them without ``query``)."""
    scope: dict = {"issues": {"$nin": list(UNUSABLE_ISSUES)}}
    return {"$and": [query, scope]} if query else scope
