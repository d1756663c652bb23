"""Which field paths a query names, and a warning for each that no sample of the dataset has.

A misspelled field (``isues``) is not an error in MongoDB's language: it silently matches nothing (or,
under ``$ne``/``$exists: false``, everything). Here each field path of a query is checked against the
paths the catalog knows some sample holds (:class:`KnownPaths`), and each path that none has gets a
warning with the closest known path. Only the paths a query names at its top level and under
``$and``/``$or``/``$nor`` are checked: the inner paths of ``$elemMatch`` are relative to elements.

>>> known = KnownPaths(frozenset({"_id", "issues", "width"}))
>>> query_warnings({"isues": "dark", "width": {"$gt": 10}}, known)
["no sample has field 'isues' — did you mean 'issues'?"]
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

# MongoDB's query operators that are not field names (and are refused by the compiler where unsupported):
# the warning is about field names only.
_LOGICAL = ("$and", "$or", "$nor")

# The step that writes a declared field no sample has yet: a hint in the warning.
WRITTEN_BY = {
    "object_analysis": "label", "classifications": "label", "face_analysis": "label",
    "pose_estimation": "label", "label_quality_estimation": "label", "embeddings": "label or embed",
    "duplicates": "duplicates", "scores": "outliers", "cluster": "clusters", "map": "map",
    "mislabel": "label-errors", "box_mislabel": "box-label-errors", "object_duplicates": "object-duplicates",
    "label_conflict": "analyze", "leak": "leaks", "eval": "evaluate",
}

# A free-form value is walked this deep when its paths are noted; below, anything counts as known.
MAX_DEPTH = 8
OPEN = ".*"  # suffix of a noted path below which every path counts as known


@dataclass(frozen=True)
class KnownPaths:
    """Dotted paths (array positions left out) that some sample has; a path ending in ``.*`` stands
    for everything below it (values too deep to note, catalogs from before the paths were noted).
    ``declared``: the paths of the schema, which no sample may have *yet* (not a typo then).
    ``complete=False``: the free-form paths are not known (yet), so every undeclared path counts as known.
    """

    paths: frozenset[str]
    declared: frozenset[str] = frozenset()
    complete: bool = True

    def has(self, path: str) -> bool:
        """Whether some sample may hold ``path`` (array positions such as ``.0`` are ignored).

        >>> KnownPaths(frozenset({"tags", "metadata.*"})).has("tags.0"), KnownPaths(frozenset({"metadata.*"})).has("metadata.a.b")
        (True, True)
        """
        parts = [p for p in path.split(".") if not _is_position(p)]
        if not parts or (not self.complete and parts[0] not in self.declared):
            return True
        if ".".join(parts) in self.paths:
            return True
        return any(".".join(parts[:k]) + OPEN in self.paths for k in range(1, len(parts) + 1))

    def names(self) -> list[str]:
        """The known paths as a user writes them (for suggestions)."""
        return sorted(p[: -len(OPEN)] if p.endswith(OPEN) else p for p in self.paths)


def _is_position(part: str) -> bool:
    return part.isdigit()


def query_paths(query: Any) -> Iterator[str]:
    """The field paths ``query`` names at its top level and inside ``$and``/``$or``/``$nor``.

    >>> list(query_paths({"a": 1, "$or": [{"b.c": 2}, {"d": {"$elemMatch": {"e": 1}}}]}))
    ['a', 'b.c', 'd']
    """
    if not isinstance(query, dict):
        return
    for key, value in query.items():
        if not isinstance(key, str):
            continue
        if key in _LOGICAL:
            for sub in value if isinstance(value, list) else ():
                yield from query_paths(sub)
        elif not key.startswith("$"):
            yield key


def query_warnings(query: Any, known: KnownPaths | None) -> list[str]:
    """One warning for each field path of ``query`` that no sample has, with the closest known path
    when one is close. ``known=None`` (a catalog that cannot tell) gives no warnings."""
    if known is None:
        return []
    out: list[str] = []
    for path in dict.fromkeys(query_paths(query)):
        if known.has(path):
            continue
        out.append(_warning(path, known))
    return out


def _warning(path: str, known: KnownPaths) -> str:
    message = f"no sample has field {path!r}"
    if ".".join(p for p in path.split(".") if not _is_position(p)) in known.declared:
        step = WRITTEN_BY.get(path.split(".")[0])
        return f"{message} yet" + (f" (the {step} step writes it)" if step else "")
    close = difflib.get_close_matches(path, known.names(), n=1, cutoff=0.6)
    return f"{message} — did you mean {close[0]!r}?" if close else message


def json_paths(value: Any, prefix: str = "", depth: int = 0) -> Iterator[str]:
    """Every dotted path of a JSON value's sub-documents, arrays traversed as MongoDB traverses them
    (their elements' fields are the array's fields); ``.*`` ends a path cut at :data:`MAX_DEPTH`.

    >>> sorted(json_paths({"a": {"b": 1}, "c": [{"d": 2}, 3]}))
    ['a', 'a.b', 'c', 'c.d']
    """
    if isinstance(value, list):
        for item in value:
            yield from json_paths(item, prefix, depth)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else key
        if depth >= MAX_DEPTH:
            yield path + OPEN
            continue
        yield path
        if isinstance(item, (dict, list)):
            yield from json_paths(item, path, depth + 1)


def declared_paths(filled: Iterable[str], box_fields: Iterable[str], filled_attrs: Iterable[str]) -> set[str]:
    """Known paths from the catalog's filled columns: each filled leaf and the groups above it, each
    filled box list and its filled attributes.

    >>> sorted(declared_paths({"quality.blur", "object_analysis#n"}, ["object_analysis"], {"name"}))
    ['object_analysis', 'object_analysis.name', 'quality', 'quality.blur']
    """
    out: set[str] = set()
    attrs = list(filled_attrs)
    boxes = set(box_fields)
    for column in filled:
        path = column[:-2] if column.endswith("#n") else column
        if column in ("_seq", "extra"):
            continue
        parts = path.split(".")
        out.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
        if path in boxes:
            out.update(f"{path}.{a}" for a in attrs)
    return out
