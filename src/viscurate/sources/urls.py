"""Image URLs a user names: URLs given directly, a ``.txt`` list of URLs, a ``.csv``/``.parquet`` table
with a ``url`` column (its other columns become the sample's ``metadata``).

A ``.txt`` is a URL list when its first entry (blank lines and ``#`` comments skipped) is an ``http(s)``
URL; otherwise it stays a path list (:mod:`~viscurate.sources.pathlist`). A table's URL column is the one
named ``url`` whatever its case (img2dataset's lists say ``URL``).

Nothing here touches the network: this module only says which URLs there are.

>>> is_url("https://example.org/a.jpg"), is_url("/data/a.jpg"), is_url("HTTP://x.org")
(True, False, True)
>>> [u.url for u in iter_url_entries(["https://example.org/a.jpg"])]
['https://example.org/a.jpg']
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from ..errors import ViscurateError

#: File endings of URL tables.
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
#: File endings of lists that may hold URLs (else paths).
LIST_SUFFIXES = (".txt", ".lst")
#: Rows of a Parquet table read at a time (memory stays flat on a 100M-row list).
PARQUET_BATCH = 65_536

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class UrlEntry:
    """One URL to download: the ``url`` as written (stripped), the ``metadata`` of its row (table
    inputs), and ``where`` it came from (``list.txt:12``), for messages."""

    url: str
    metadata: dict[str, Any] = field(default_factory=dict)
    where: str = ""


def is_url(text: str) -> bool:
    """Whether ``text`` is an ``http://`` or ``https://`` URL (what viscurate downloads)."""
    head = text[:8].lower()
    return head.startswith("http://") or head.startswith("https://")


def _first_entry(path: str) -> str | None:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                s = line.strip()
                if s and not s.startswith("#"):
                    return s
    except OSError:
        return None
    return None


def url_input_kind(path: str) -> str | None:
    """``"urllist"`` (a ``.txt``/``.lst`` whose first entry is a URL), ``"urltable"`` (``.csv``, ``.tsv``,
    ``.parquet``) or ``None`` (not a URL input) for an existing file ``path``."""
    ext = os.path.splitext(path)[1].lower()
    if ext in TABLE_SUFFIXES:
        return "urltable"
    if ext in LIST_SUFFIXES:
        first = _first_entry(path)
        return "urllist" if first is not None and is_url(first) else None
    return None


def check_url_input(path: str) -> None:
    """A URL table must have a ``url`` column; raises :class:`ViscurateError` naming the columns it has.
    Reads only the header (or the Parquet schema)."""
    if url_input_kind(path) != "urltable":
        return
    columns = _table_columns(path)
    if _url_column(columns) is None:
        raise ViscurateError(f"{path} has no 'url' column (its columns: {', '.join(columns) or 'none'}); "
                             f"name the column of image URLs 'url'")


def _table_columns(path: str) -> list[str]:
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq
        try:
            return list(pq.read_schema(path).names)
        except Exception as e:  # noqa: BLE001 - any reason: it is not a Parquet file we can read
            raise ViscurateError(f"{path} is not a readable Parquet file ({type(e).__name__}: {e})") from None
    with open(path, "r", encoding="utf-8-sig", errors="replace", newline="") as f:
        return next(csv.reader(f, delimiter=_delimiter(path)), [])


def _delimiter(path: str) -> str:
    return "\t" if path.lower().endswith(".tsv") else ","


def _url_column(columns: Iterable[str]) -> str | None:
    for c in columns:
        if c.strip().lower() == "url":
            return c
    return None


def iter_url_list(path: str, warn: Warn) -> Iterator[UrlEntry]:
    """The URLs of a ``.txt`` list, one a line; a line that is not a URL is reported and skipped."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if not is_url(s):
                warn(f"{path}:{lineno}: skipped {s!r}: not an http(s) URL (a list of URLs holds only URLs)")
                continue
            yield UrlEntry(s, {}, f"{path}:{lineno}")


def iter_url_table(path: str, warn: Warn) -> Iterator[UrlEntry]:
    """The URLs of a CSV/TSV/Parquet table, each with the other columns of its row as ``metadata``
    (empty cells left out). Parquet is read in batches of :data:`PARQUET_BATCH` rows."""
    if path.lower().endswith(".parquet"):
        rows: Iterator[tuple[int, dict[str, Any]]] = _parquet_rows(path)
    else:
        rows = _csv_rows(path)
    column = None
    for n, row in rows:
        if column is None:
            column = _url_column(row)
            if column is None:
                raise ViscurateError(f"{path} has no 'url' column")
        url = row.get(column)
        url = url.strip() if isinstance(url, str) else None
        if not url or not is_url(url):
            warn(f"{path}:{n}: skipped {url!r}: not an http(s) URL")
            continue
        meta = {k: v for k, v in row.items() if k != column and not _empty(v)}
        yield UrlEntry(url, meta, f"{path}:{n}")


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _csv_rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, "r", encoding="utf-8-sig", errors="replace", newline="") as f:
        for n, row in enumerate(csv.DictReader(f, delimiter=_delimiter(path)), 2):
            yield n, {k: v for k, v in row.items() if k is not None}


def _parquet_rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq
    n = 1
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            n += 1
            yield n, {k: _jsonable(v) for k, v in row.items()}


def _jsonable(value: Any) -> Any:
    """Parquet cells as JSON values: bytes and dates as text (the catalog stores JSON)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def iter_url_entries(inputs: Iterable[str], on_warning: Warn | None = None) -> Iterator[UrlEntry]:
    """Every URL of ``inputs``: each one a URL itself or the path of a URL list or table."""
    import logging
    warn = on_warning or logging.getLogger("viscurate.sources").warning
    for item in inputs:
        if is_url(item):
            yield UrlEntry(item.strip(), {}, "")
        elif url_input_kind(item) == "urltable":
            yield from iter_url_table(item, warn)
        else:
            yield from iter_url_list(item, warn)


def split_url_inputs(inputs: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(URL inputs, other inputs)`` of checked inputs: URLs and URL lists/tables first, in order.

    >>> split_url_inputs(["https://x.org/a.jpg", "/photos"])
    (['https://x.org/a.jpg'], ['/photos'])
    """
    urls: list[str] = []
    rest: list[str] = []
    for p in inputs:
        is_file = not is_url(p) and os.path.isfile(p)
        (urls if is_url(p) or (is_file and url_input_kind(p)) else rest).append(p)
    return urls, rest
