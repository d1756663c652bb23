"""An img2dataset-ready URL list: a Parquet (or CSV) table with ``url``, ``caption`` and ``viscurate_id``.

    img2dataset --url_list urls.parquet --input_format parquet --url_col url --caption_col caption \\
                --save_additional_columns '["viscurate_id"]' --output_folder shards

>>> write_urllist(records, "urls.parquet", classes=[])                   # doctest: +SKIP
{'images': 980, 'boxes': 0, 'classes': 0, 'dropped': {'local file (no URL)': 20}, 'path': 'urls.parquet'}

- ``url``: a sample that came from a URL has it (its ``url`` field); a local file has none, so by default it
  is left out and counted in the report's ``dropped`` (``local="file"`` writes it as a ``file://`` URL,
  which img2dataset's downloader also opens, for a list that stays on this machine).
- ``caption``: the value of ``caption_field`` (default ``caption``, else the image's class) when the sample
  has one; img2dataset writes it beside each image as its ``.txt``.
- ``viscurate_id`` rides along (``--save_additional_columns``), so what img2dataset downloads maps back to
  the samples.

Reading takes such a table, or a ``.txt`` with one URL per line: one record per URL (the other columns as
fields), for ``viscurate ingest`` to download.
"""
from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import ViscurateError
from ..files import atomic_file
from .records import Category, LabeledImage, LabelSet, field_value

__all__ = ["looks_like_urllist", "read_urllist", "write_urllist", "URL_SCHEMES"]

URL_SCHEMES = ("http://", "https://")
_SCHEMA = pa.schema([("url", pa.string()), ("caption", pa.string()), ("viscurate_id", pa.string())])
_BATCH = 8192


def write_urllist(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category] | None = None,
                  media: str = "none", progress: Callable[[int], None] | None = None,
                  caption_field: str = "caption", local: str = "skip") -> dict[str, Any]:
    """Write the records' URLs as one table (``.parquet``, the default, or ``.csv`` by ``out``'s suffix;
    a folder gets ``urls.parquet``), in batches. ``local``: ``skip`` (default) or ``file`` (local images
    as ``file://`` URLs). ``media`` must be ``none``: the list names images, it holds none.

    >>> write_urllist(records, "urls.csv", caption_field="ground_truth.label")        # doctest: +SKIP
    """
    if media != "none":
        raise ViscurateError("a URL list holds no images: export it with media none (img2dataset downloads them)")
    if local not in ("skip", "file"):
        raise ViscurateError(f"local must be skip or file, not {local!r}")
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        out = out / "urls.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    as_csv = out.suffix.lower() == ".csv"
    dropped: Counter = Counter()
    rows: list[dict] = []
    n = written = 0
    with atomic_file(out) as f:
        writer = None if as_csv else pq.ParquetWriter(f, _SCHEMA)

        def flush() -> None:
            nonlocal rows
            if not rows:
                return
            table = pa.Table.from_pylist(rows, schema=_SCHEMA)
            if writer is not None:
                writer.write_table(table)
            else:
                buf = io.BytesIO()
                pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=written == len(rows)))
                f.write(buf.getvalue())
            rows = []

        for n, rec in enumerate(images, 1):
            url = rec.file if "://" in rec.file else field_value(rec.fields, "url")
            if not isinstance(url, str) or "://" not in url:
                if local == "file":
                    url = Path(rec.file).resolve().as_uri()
                else:
                    dropped["local file (no URL)"] += 1
                    url = None
            if url is not None:
                caption = field_value(rec.fields, caption_field) if caption_field else None
                if caption is None and caption_field == "caption":  # where a URL table's columns are kept
                    caption = field_value(rec.fields, "metadata.caption")
                if caption is None:
                    caption = rec.label
                rows.append({"url": url, "caption": None if caption is None else str(caption),
                             "viscurate_id": rec.sample_id})
                written += 1
                if len(rows) >= _BATCH:
                    flush()
            if progress is not None:
                progress(n)
        flush()
        if writer is not None:
            writer.close()
        elif written == 0:
            f.write(b'"url","caption","viscurate_id"\n')
    return {"images": written, "boxes": 0, "classes": 0, "dropped": dict(dropped), "path": str(out)}


def looks_like_urllist(path: Path) -> bool:
    """A ``.txt`` whose first lines are http(s) URLs, or a ``.parquet``/``.csv`` whose columns are ``url``
    and at most ``caption``-like text beside it (no boxes, no file paths: those are the tables)."""
    path = Path(path)
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix == ".txt":
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for _, ln in zip(range(20), f) if ln.strip() and not ln.startswith("#")]
        return bool(lines) and all(ln.startswith(URL_SCHEMES) for ln in lines)
    if suffix == ".parquet":
        cols = pq.read_schema(path).names
    elif suffix == ".csv":
        with open(path, encoding="utf-8", errors="replace") as f:
            cols = [c.strip().strip('"') for c in f.readline().split(",")]
    else:
        return False
    low = {c.lower() for c in cols}
    return "url" in low and not low & {"filepath", "file_name", "image_path", "xmin", "x", "n_objects", "name"}


def _txt_urls(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def read_urllist(path: str | os.PathLike, *, url_column: str = "url", images: str | os.PathLike | None = None) -> LabelSet:
    """A URL list as records (``file`` is the URL): a ``.txt`` (one URL per line, ``#`` comments), or a
    ``.parquet``/``.csv`` with ``url_column`` (other columns become fields; ``viscurate_id`` the sample
    id). Rows whose URL is empty or not http(s) are counted in ``skipped``.

    >>> [r.file for r in read_urllist("urls.txt")][:1]                  # doctest: +SKIP
    ['https://example.org/a.jpg']
    """
    path = Path(path)
    if images is not None:
        raise ViscurateError("a URL list names its images by URL: it takes no images folder")
    if not path.is_file():
        raise ViscurateError(f"{path} does not exist")
    skipped: Counter = Counter()
    suffix = path.suffix.lower()

    def rows() -> Iterator[dict]:
        if suffix == ".txt":
            for url in _txt_urls(path):
                yield {url_column: url}
            return
        try:
            if suffix == ".parquet":
                pf = pq.ParquetFile(path)
                if url_column not in pf.schema_arrow.names:
                    raise ViscurateError(f"{path} has no {url_column!r} column (columns: {', '.join(pf.schema_arrow.names)})")
                for b in pf.iter_batches(batch_size=_BATCH):
                    yield from b.to_pylist()
            else:
                reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True))
                if url_column not in reader.schema.names:
                    raise ViscurateError(f"{path} has no {url_column!r} column (columns: {', '.join(reader.schema.names)})")
                for b in reader:
                    yield from b.to_pylist()
        except (pa.ArrowInvalid, OSError) as e:
            raise ViscurateError(f"cannot read the URL list {path}: {e}") from None

    def records() -> Iterator[LabeledImage]:
        for row in rows():
            url = row.get(url_column)
            if not isinstance(url, str) or not url.strip().lower().startswith(URL_SCHEMES + ("file://",)):
                skipped["row without an http(s) URL"] += 1
                continue
            sid = row.get("viscurate_id")
            yield LabeledImage(url.strip(), sample_id=str(sid) if sid is not None else None,
                               fields={f"metadata.{k}": v for k, v in row.items()
                                       if k not in (url_column, "viscurate_id") and v is not None})

    if suffix not in (".txt", ".parquet", ".csv"):
        raise ViscurateError(f"{path}: a URL list is a .txt, .csv or .parquet file")
    return LabelSet("urllist", Path(os.path.abspath(path.parent)), [], records(), {}, skipped)
