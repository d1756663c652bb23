"""Saved views and slices: a team's names for the parts of a dataset it keeps coming back to.

- A **view** is a saved query (and sort): it is evaluated again every time, so new samples that match
  appear in it. ``{"object_analysis.name": "dog", "label_quality_estimation": {"$lt": 0.5}}`` saved as
  ``"dogs-to-check"``.
- A **slice** is a frozen set of samples: the matches at the moment it was saved, written on the samples
  themselves (``slices: ["val-v2"]``), so ``{"slices": "val-v2"}`` finds exactly them later, whatever
  changed since, and it composes with any other query.

Both live in the dataset's catalog (views in its ``meta`` table), so they travel with the dataset.

>>> ds.save_view("dogs", {"object_analysis.name": "dog"})                          # doctest: +SKIP
>>> ds.find(ds.view("dogs")["query"])                                              # doctest: +SKIP
>>> ds.save_slice("val-v2", {"split": "val"})                                      # doctest: +SKIP
12
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..errors import ViscurateError
from .edits import utc_timestamp

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["validate_label", "list_views", "save_view", "delete_view", "SLICE_FIELD"]

VIEWS_KEY = "views"
SLICE_FIELD = "slices"
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,127}\Z")


def validate_label(name: str, what: str = "view") -> str:
    """A view, slice or tag name: 1-128 letters, digits, spaces, '.', '_', ':' or '-'."""
    if not isinstance(name, str) or not _LABEL_RE.match(name):
        raise ViscurateError(f"invalid {what} name {name!r}: use 1-128 letters, digits, spaces, '.', '_', ':' or "
                             "'-', starting with a letter or digit")
    return name


def list_views(cat: "Catalog") -> dict[str, dict[str, Any]]:
    """Every saved view: ``{name: {"query", "sort", "created_at", "created_by"}}``."""
    raw = cat.meta_get(VIEWS_KEY)
    return json.loads(raw) if raw else {}


def save_view(cat: "Catalog", name: str, query: dict, sort: Any = None, *, by: str | None = None) -> dict:
    """Save (or replace) the view ``name``; the query is checked first, so a view always runs."""
    validate_label(name)
    if not isinstance(query, dict):
        raise ViscurateError("a view's query must be a JSON object")
    cat.count(query)  # refuses an unsupported or malformed query now, not when someone opens the view
    views = list_views(cat)
    views[name] = {"query": query, "sort": sort, "created_at": utc_timestamp(), "created_by": by}
    cat.meta_set(VIEWS_KEY, json.dumps(views, sort_keys=True))
    return views[name]


def delete_view(cat: "Catalog", name: str) -> bool:
    views = list_views(cat)
    if name not in views:
        return False
    del views[name]
    cat.meta_set(VIEWS_KEY, json.dumps(views, sort_keys=True))
    return True
