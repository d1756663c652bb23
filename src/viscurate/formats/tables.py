"""CSV and Parquet tables: samples, objects (one row per box) and embeddings, each a table of its own.

An export is a folder::

    samples.csv|parquet      one row per sample: every field, nested fields flattened to dotted columns
                             (``profile.brightness``); lists and dicts as JSON text in CSV, native in Parquet
    objects.csv|parquet      one row per box: sample_id, filepath, width, height, field, index, name, class_id,
                             x, y, w, h (pixels), confidence, iscrowd, area, difficult, truncated, occluded,
                             id, attributes (JSON text)
    classes.csv|parquet      the classes in order: id, name
    embeddings.parquet       sample_id, model, vector (list<float32>); CSV has no list type: use Parquet

>>> write_parquet(records, "tables/", classes=classes)                    # doctest: +SKIP
{'images': 120, 'boxes': 301, 'classes': 3, 'dropped': {}, 'tables': [...]}
>>> import duckdb; duckdb.sql("SELECT name, count(*) FROM 'tables/objects.parquet' GROUP BY 1")  # doctest: +SKIP

Reading takes our folder, or one table made elsewhere: a table of boxes (an image column ``image``,
``image_path``, ``file_name``, ``filepath``, ``file`` or ``path``; a class column ``label``, ``name``,
``class``, ``category``; corners ``xmin/ymin/xmax/ymax`` or ``x/y/w/h`` (``width``/``height``)), or a table
of samples (an image column and no box columns). Both stream in batches through pyarrow.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import ViscurateError
from ..files import atomic_file
from ..store.schema import PROFILE_FIELDS
from .media import place_image
from .records import Category, LabeledImage, LabelSet, categories_from_names, merge_categories

__all__ = ["looks_like_csv", "looks_like_parquet", "read_csv", "read_parquet", "write_csv", "write_parquet",
           "read_embeddings", "OBJECT_COLUMNS"]

#: The objects table's columns and their types (one schema for every export, so tables concatenate).
OBJECT_COLUMNS: dict[str, pa.DataType] = {
    "sample_id": pa.string(), "filepath": pa.string(), "width": pa.int64(), "height": pa.int64(),
    "field": pa.string(), "index": pa.int64(), "name": pa.string(), "class_id": pa.string(),
    "x": pa.float64(), "y": pa.float64(), "w": pa.float64(), "h": pa.float64(), "confidence": pa.float64(),
    "iscrowd": pa.int64(), "area": pa.float64(), "difficult": pa.bool_(), "truncated": pa.bool_(),
    "occluded": pa.bool_(), "id": pa.string(), "attributes": pa.string()}
_BATCH = 4096
#: Column names a table made elsewhere may use, in order of preference.
_IMAGE_COLUMNS = ("filepath", "file", "image", "image_path", "file_name", "filename", "path", "url", "image_url")
_ID_COLUMNS = ("sample_id", "_id", "viscurate_id")
_CLASS_COLUMNS = ("name", "label", "class", "class_name", "category", "category_name")
_CORNERS = ("xmin", "ymin", "xmax", "ymax")
_BOX_XYWH = (("x", "y", "w", "h"), ("x", "y", "width", "height"), ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
#: Sample columns that are the record itself, not fields to set.
_SAMPLE_OWN = {"filepath", "url", "_id", "sample_id", "viscurate_id", "width", "height", "split", "label", "n_objects"}
#: What ingest computes from the image's bytes (profile, hashes, quality): an import never sets it from a
#: table, the ingest of the image does.
_COMPUTED = frozenset(PROFILE_FIELDS) | {"datetime"}


# ---- small helpers -------------------------------------------------------------------------------------

def _flatten(doc: dict, prefix: str = "", out: dict | None = None) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists (and empty dicts) stay values."""
    out = {} if out is None else out
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            _flatten(v, f"{key}.", out)
        else:
            out[key] = v
    return out


def _drop_path(doc: dict, path: str | None) -> dict:
    """``doc`` without the value at dotted ``path`` (the boxes, which go to the objects table)."""
    if not path:
        return doc
    head, _, rest = path.partition(".")
    if head not in doc:
        return doc
    out = dict(doc)
    if rest and isinstance(out[head], dict):
        out[head] = _drop_path(out[head], rest)
        if not out[head]:
            del out[head]
    elif not rest:
        del out[head]
    return out


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _text(v: Any) -> str:
    """A CSV cell: JSON for lists and dicts, ``true``/``false`` for booleans, empty for none."""
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False, default=_json_default)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return str(v)


def _sample_text(v: Any) -> str:
    """A samples-table CSV cell (as :func:`_text`), with a text that reading would take for something
    else (``"007"``, ``"true"``, ``"[1]"``) written as a JSON string, so it comes back as the same text."""
    if isinstance(v, str) and (v.startswith('"') or _cell(v) != v or not isinstance(_cell(v), str)):
        return json.dumps(v, ensure_ascii=False)
    return _text(v)


def _id_from_text(v: Any) -> Any:
    if isinstance(v, str) and re.fullmatch(r"-?[1-9]\d*|0", v):
        return int(v)
    return v


def _box_row(rec: LabeledImage, file: str, field: str, index: int, box: dict, class_ids: dict[str, Any]) -> dict | None:
    try:
        x, y, w, h = (float(v) for v in box["bbox"])
        name = str(box["name"])
    except (KeyError, TypeError, ValueError):
        return None
    return {"sample_id": rec.sample_id, "filepath": file, "width": rec.width, "height": rec.height,
            "field": field, "index": index, "name": name,
            "class_id": str(class_ids[name]) if name in class_ids else None, "x": x, "y": y, "w": w, "h": h,
            "confidence": float(box["confidence"]) if isinstance(box.get("confidence"), (int, float)) else None,
            "iscrowd": int(box["iscrowd"]) if box.get("iscrowd") is not None else None,
            "area": float(box["area"]) if isinstance(box.get("area"), (int, float)) else None,
            **{k: bool(box[k]) if box.get(k) is not None else None for k in ("difficult", "truncated", "occluded")},
            "id": str(box["id"]) if box.get("id") is not None else None,
            "attributes": json.dumps(box["attributes"], ensure_ascii=False, default=_json_default)
            if box.get("attributes") is not None else None}


# ---- writing ------------------------------------------------------------------------------------------

class _ObjectsOut:
    """The objects table, written as boxes arrive (one schema, so no spill): CSV rows, or Parquet batches."""

    def __init__(self, path: Path, kind: str):
        self.kind = kind
        self.rows: list[dict] = []
        self.count = 0
        self._ctx = atomic_file(path)
        self._file = self._ctx.__enter__()
        if kind == "csv":
            self._text = io.TextIOWrapper(self._file, encoding="utf-8", newline="")
            self._csv = csv.writer(self._text)
            self._csv.writerow(list(OBJECT_COLUMNS))
        else:
            self._writer = pq.ParquetWriter(self._file, pa.schema(list(OBJECT_COLUMNS.items())))

    def add(self, row: dict) -> None:
        self.count += 1
        if self.kind == "csv":
            self._csv.writerow([_text(row[c]) for c in OBJECT_COLUMNS])
            return
        self.rows.append(row)
        if len(self.rows) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=self._writer.schema))
            self.rows = []

    def close(self, error: BaseException | None = None) -> None:
        if self.kind == "csv":
            self._text.flush()
            self._text.detach()
        else:
            self._flush()
            self._writer.close()
        self._ctx.__exit__(type(error) if error else None, error, None)


def _write_tables(kind: str, images: Iterable[LabeledImage], out: Path, *, classes: list[Category], media: str,
                  progress: Callable[[int], None] | None, field: str,
                  embeddings: Iterable[tuple[str, Sequence[str], Any]] | None) -> dict[str, Any]:
    if media not in ("none", "copy", "symlink"):
        raise ViscurateError(f"media must be none, copy or symlink, not {media!r}")
    out.mkdir(parents=True, exist_ok=True)
    class_ids = {c.name: c.id for c in classes}
    extra: list[str] = []
    dropped: Counter = Counter()
    n_images = 0
    objects = _ObjectsOut(out / f"objects.{kind}", kind)
    error: BaseException | None = None
    with tempfile.TemporaryDirectory(dir=out, prefix=".tables-") as tmp:
        spill = Path(tmp) / "samples.jsonl"
        try:
            with open(spill, "w", encoding="utf-8") as f:
                for n_images, rec in enumerate(images, 1):
                    file = rec.file
                    if media != "none" and "://" not in file:
                        try:
                            file = str(place_image(file, out / "images", rec.sample_id, media))
                        except ViscurateError:  # the row keeps the original path; the export goes on
                            dropped["image file missing (not copied)"] += 1
                    doc = _drop_path(dict(rec.fields), field)
                    for key in ("filepath", "url"):
                        doc.pop(key, None)
                    row = {"_id": rec.sample_id, ("url" if "://" in file else "filepath"): file,
                           "width": rec.width, "height": rec.height, "split": rec.split,
                           "n_objects": len(rec.detections) if rec.detections is not None else None,
                           **{k: v for k, v in _flatten(doc).items() if k not in ("_id", "width", "height", "split")}}
                    if rec.label is not None:
                        row["label"] = rec.label
                    f.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
                    for i, box in enumerate(rec.detections or []):
                        name = box.get("name")
                        if isinstance(name, str) and name not in class_ids:
                            extra.append(name)
                            class_ids[name] = None
                        r = _box_row(rec, file, field, i, box, class_ids)
                        if r is None:
                            dropped["box without a name or bbox"] += 1
                            continue
                        objects.add(r)
                    if progress is not None:
                        progress(n_images)
        except BaseException as e:
            error = e
            raise
        finally:
            objects.close(error)
        all_classes = merge_categories(list(classes), extra)
        _write_samples(kind, spill, out / f"samples.{kind}")
    _write_classes(kind, all_classes, out / f"classes.{kind}")
    tables = [f"samples.{kind}", f"objects.{kind}", f"classes.{kind}"]
    n_vectors = 0
    if embeddings is not None:
        if kind == "csv":
            dropped["embeddings (CSV has no list type: export as parquet)"] += sum(len(ids) for _, ids, _ in embeddings)
        else:
            n_vectors = _write_embeddings(embeddings, out / "embeddings.parquet")
            tables.append("embeddings.parquet")
    return {"images": n_images, "boxes": objects.count, "classes": len(all_classes), "vectors": n_vectors,
            "dropped": dict(dropped), "tables": tables, "path": str(out)}


def _write_classes(kind: str, classes: list[Category], path: Path) -> None:
    table = pa.table({"id": [str(c.id) for c in classes], "name": [c.name for c in classes]})
    with atomic_file(path) as f:
        if kind == "csv":
            pacsv.write_csv(table, f)
        else:
            pq.write_table(table, f)


def _spill_batches(spill: Path) -> Iterator[list[dict]]:
    with open(spill, encoding="utf-8") as f:
        batch: list[dict] = []
        for line in f:
            batch.append(json.loads(line))
            if len(batch) >= _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _write_samples(kind: str, spill: Path, path: Path) -> None:
    """The spilled sample rows as one table: the columns (and, for Parquet, their types) are known only
    once every row was seen, so this is a second pass over the spill file, in batches."""
    columns: dict[str, None] = {}
    types: dict[str, pa.DataType] = {}
    as_json: set[str] = set()
    for batch in _spill_batches(spill):
        for row in batch:
            for k in row:
                columns.setdefault(k, None)
        if kind == "parquet":
            _merge_types(batch, types, as_json)
    names = list(columns)
    with atomic_file(path) as f:
        if kind == "csv":
            text = io.TextIOWrapper(f, encoding="utf-8", newline="")
            writer = csv.writer(text)
            writer.writerow(names)
            for batch in _spill_batches(spill):
                own = [c in _SAMPLE_OWN or c in _IMAGE_COLUMNS for c in names]  # read as they are, not typed
                writer.writerows([_text(row.get(c)) if o else _sample_text(row.get(c)) for c, o in zip(names, own)]
                                 for row in batch)
            text.flush()
            text.detach()
            return
        schema = pa.schema([(c, pa.string() if c in as_json else types.get(c, pa.null())) for c in names],
                           metadata={"viscurate": json.dumps({"json_columns": sorted(as_json)})})
        with pq.ParquetWriter(f, schema) as writer:
            for batch in _spill_batches(spill):
                rows = [{c: (json.dumps(row.get(c), ensure_ascii=False) if c in as_json and row.get(c) is not None
                             else row.get(c)) for c in names} for row in batch]
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))


def _merge_types(batch: list[dict], types: dict[str, pa.DataType], as_json: set[str]) -> None:
    """Widen each column's type by a batch's (int and float become float; structs gain fields); a column
    whose values cannot share one type (text here, numbers there) is written as JSON text."""
    for col in {k for row in batch for k in row}:
        if col in as_json:
            continue
        try:
            t = pa.array([row.get(col) for row in batch]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            as_json.add(col)
            continue
        if col not in types or pa.types.is_null(types[col]):
            types[col] = t
            continue
        if pa.types.is_null(t) or t == types[col]:
            continue
        try:
            types[col] = pa.unify_schemas([pa.schema([(col, types[col])]), pa.schema([(col, t)])],
                                          promote_options="permissive").field(col).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            as_json.add(col)


def _write_embeddings(blocks: Iterable[tuple[str, Sequence[str], Any]], path: Path) -> int:
    """``(model, sample ids, matrix)`` blocks as rows ``sample_id, model, vector`` (list<float32>), a
    block at a time (vectorized: the matrix becomes the list column without a Python loop)."""
    schema = pa.schema([("sample_id", pa.string()), ("model", pa.string()), ("vector", pa.list_(pa.float32()))])
    n = 0
    with atomic_file(path) as f, pq.ParquetWriter(f, schema) as writer:
        for model, ids, matrix in blocks:
            m = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
            if m.ndim != 2 or m.shape[0] != len(ids):
                raise ViscurateError(f"embeddings of {model}: {len(ids)} ids but a matrix of shape {m.shape}")
            offsets = pa.array(np.arange(0, m.size + 1, max(m.shape[1], 1), dtype=np.int32)[: len(ids) + 1])
            vectors = pa.ListArray.from_arrays(offsets, pa.array(m.reshape(-1)))
            writer.write_table(pa.table([pa.array(list(ids), pa.string()), pa.array([model] * len(ids), pa.string()),
                                         vectors], schema=schema))
            n += len(ids)
    return n


def write_csv(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category], media: str = "none",
              progress: Callable[[int], None] | None = None, field: str = "ground_truth.detections",
              embeddings: Iterable[tuple[str, Sequence[str], Any]] | None = None) -> dict[str, Any]:
    """Write records as CSV tables in the folder ``out``: ``samples.csv``, ``objects.csv`` (the records'
    boxes; ``field`` names them in the table and is left out of the samples), ``classes.csv``.
    Embeddings are not written (CSV has no list type; the report counts them as dropped). Streams: the
    objects as they come, the samples through a temporary file (their columns are known at the end).

    >>> write_csv(records, "tables", classes=[Category(1, "cat")])     # doctest: +SKIP
    """
    return _write_tables("csv", images, Path(out), classes=classes, media=media, progress=progress, field=field,
                         embeddings=embeddings)


def write_parquet(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category],
                  media: str = "none", progress: Callable[[int], None] | None = None,
                  field: str = "ground_truth.detections",
                  embeddings: Iterable[tuple[str, Sequence[str], Any]] | None = None) -> dict[str, Any]:
    """Write records as Parquet tables in the folder ``out`` (as :func:`write_csv`, with native types:
    lists, structs, booleans), and ``embeddings.parquet`` from ``embeddings``: blocks of ``(model,
    sample ids, float matrix)``, e.g. what ``Catalog.read_vectors`` returns.

    >>> write_parquet(records, "tables", classes=classes, embeddings=[("clip", ids, matrix)])   # doctest: +SKIP
    """
    return _write_tables("parquet", images, Path(out), classes=classes, media=media, progress=progress, field=field,
                         embeddings=embeddings)


# ---- reading ------------------------------------------------------------------------------------------

def _columns(path: Path, kind: str) -> list[str]:
    try:
        if kind == "parquet":
            return pq.read_schema(path).names
        with open(path, encoding="utf-8", newline="") as f:
            return next(csv.reader(f), [])
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError, csv.Error) as e:
        raise ViscurateError(f"cannot read the table {path}: {e}") from None


def _box_columns(cols: list[str]) -> tuple[str, ...] | None:
    low = {c.lower(): c for c in cols}
    if all(c in low for c in _CORNERS):
        return tuple(low[c] for c in _CORNERS)
    for names in _BOX_XYWH:
        if all(c in low for c in names):
            return tuple(low[c] for c in names)
    return None


def _first(cols: list[str], choices: Sequence[str]) -> str | None:
    low = {c.lower(): c for c in cols}
    return next((low[c] for c in choices if c in low), None)


def _batches(path: Path, kind: str) -> Iterator[list[dict]]:
    """The rows of a table in batches. A CSV's cells come as text (``None`` when empty): its columns
    are typed by whoever knows what they hold (:func:`_cell` guesses for columns nobody knows)."""
    try:
        if kind == "parquet":
            for b in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
                yield b.to_pylist()
            return
        # every column as text, only the empty cell as null: a class called "NA" or "null" stays a class
        options = pacsv.ConvertOptions(column_types={c: pa.string() for c in _columns(path, kind)},
                                       null_values=[""], strings_can_be_null=True)
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22), convert_options=options)
        for b in reader:
            yield b.to_pylist()
    except (pa.ArrowInvalid, OSError) as e:
        raise ViscurateError(f"cannot read the table {path}: {e}") from None


_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _cell(v: Any) -> Any:
    """A CSV cell of a column nobody knows, typed by its text: a JSON string (how our export writes a
    text that looks like something else), JSON lists and dicts, ``true``/``false``, numbers (integers as
    integers), else the text."""
    if not isinstance(v, str):
        return v
    if len(v) >= 2 and v[0] == v[-1] == '"':  # a text written as JSON so that it stays text
        try:
            return json.loads(v)
        except ValueError:
            return v
    if v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    if v in ("true", "false"):
        return v == "true"
    if _NUMBER.fullmatch(v):
        return int(v) if re.fullmatch(r"-?\d+", v) else float(v)
    return v


def _number(v: Any, cast: Callable[[Any], Any] = float) -> Any:
    """``v`` as a number (``"640.0"``, what pandas writes for an integer column with gaps, is 640), or
    ``None`` when it is empty or no number."""
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if f != f or f in (float("inf"), float("-inf")):
        return None
    return int(f) if cast is int else cast(f)


def _flag(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("1", "true", "yes")


def _kind(path: Path) -> str:
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"


def _tables_in(path: Path, kind: str) -> dict[str, Path]:
    """Our folder's tables, or one table (its role told by its columns)."""
    if path.is_dir():
        found = {t: path / f"{t}.{kind}" for t in ("samples", "objects", "classes") if (path / f"{t}.{kind}").is_file()}
        if not found:
            raise ViscurateError(f"no samples.{kind} or objects.{kind} in {path}")
        return found
    if not path.is_file():
        raise ViscurateError(f"{path} does not exist")
    cols = _columns(path, kind)
    if _first(cols, _IMAGE_COLUMNS) is None:
        raise ViscurateError(f"{path} has no image column: name one of {', '.join(_IMAGE_COLUMNS)}")
    return {"objects" if _box_columns(cols) else "samples": path}


def _json_columns(path: Path) -> set[str]:
    """The Parquet columns we wrote as JSON text (their values had no one type)."""
    meta = (pq.read_schema(path).metadata or {}).get(b"viscurate")
    try:
        return set(json.loads(meta).get("json_columns", [])) if meta else set()
    except (ValueError, AttributeError):
        return set()


def _read_classes(path: Path | None, kind: str) -> list[Category] | None:
    if path is None:
        return None
    out = []
    for batch in _batches(path, kind):
        for row in batch:
            out.append(Category(_id_from_text(str(row["id"])) if row.get("id") is not None else len(out),
                                str(row["name"]) if row.get("name") is not None else ""))
    return out


def _read_objects(path: Path, kind: str, skipped: Counter, fields: set | None = None
                  ) -> tuple[dict[str, dict], list[str]]:
    """``{image key: {"file", "sample_id", "width", "height", "boxes"}}`` (in the order images first
    appear) and the class names in the order of first use, from a table of boxes; the label fields its
    ``field`` column names are added to ``fields``."""
    cols = _columns(path, kind)
    img_col, id_col = _first(cols, _IMAGE_COLUMNS), _first(cols, _ID_COLUMNS)
    cls_col, box_cols = _first(cols, _CLASS_COLUMNS), _box_columns(cols)
    if box_cols is None or cls_col is None:
        raise ViscurateError(f"{path} is not a table of boxes: it needs a class column ({', '.join(_CLASS_COLUMNS)}) "
                             f"and xmin/ymin/xmax/ymax or x/y/w/h")
    corners = box_cols[0].lower() == "xmin"
    images: dict[str, dict] = {}
    names: list[str] = []
    line = 1
    for batch in _batches(path, kind):
        for row in batch:
            line += 1
            key = row.get(id_col) if id_col and row.get(id_col) is not None else row.get(img_col)
            if key is None:
                skipped["row without an image"] += 1
                continue
            sizes = {} if "width" in box_cols else {"width": _number(row.get("width"), int),
                                                    "height": _number(row.get("height"), int)}
            image = images.setdefault(str(key), {"file": row.get(img_col), "sample_id": row.get(id_col) if id_col else None,
                                                  "boxes": [], **sizes})
            if fields is not None and row.get("field") is not None:
                fields.add(str(row["field"]))
            if row.get(cls_col) is None and row.get(box_cols[0]) is None:
                continue  # an image without boxes, in a table that lists it
            try:
                a, b, c, d = (float(row[k]) for k in box_cols)
                if not all(math.isfinite(v) for v in (a, b, c, d)):
                    raise ValueError
                name = str(row[cls_col])
            except (TypeError, ValueError):
                skipped[f"malformed box ({path.name} row {line})" if sum(skipped.values()) < 5 else "malformed box"] += 1
                continue
            box: dict[str, Any] = {"name": name, "bbox": [a, b, c - a, d - b] if corners else [a, b, c, d]}
            try:
                for k in ("confidence", "area"):
                    if row.get(k) is not None:
                        box[k] = float(row[k])
                if row.get("score") is not None and "confidence" not in box:
                    box["confidence"] = float(row["score"])
                if row.get("iscrowd") is not None:
                    box["iscrowd"] = int(float(row["iscrowd"]))
                for k in ("difficult", "truncated", "occluded"):
                    if row.get(k) is not None:
                        box[k] = _flag(row[k])
                if row.get("id") is not None:
                    box["id"] = _id_from_text(str(row["id"]))
                if row.get("attributes") is not None:
                    attrs = row["attributes"]
                    box["attributes"] = json.loads(attrs) if isinstance(attrs, str) else attrs
            except (TypeError, ValueError):
                skipped["malformed box value"] += 1
            image["boxes"].append(box)
            names.append(name)
    return images, names


def _read(kind: str, path: str | os.PathLike, images_root: str | os.PathLike | None) -> LabelSet:
    path = Path(path)
    tables = _tables_in(path, kind)
    skipped: Counter = Counter()
    root = Path(images_root) if images_root is not None else (path if path.is_dir() else path.parent)
    label_fields: set = set()
    objects, names = _read_objects(tables["objects"], kind, skipped, label_fields) if "objects" in tables else ({}, [])
    if len(label_fields) > 1:
        raise ViscurateError(f"{tables['objects']} holds the boxes of several fields ({', '.join(sorted(label_fields))}): "
                             "import one field's rows at a time")
    classes = _read_classes(tables.get("classes"), kind)
    classes = merge_categories(classes, names) if classes is not None else categories_from_names(names)

    def from_objects() -> Iterator[LabeledImage]:
        for image in objects.values():
            yield LabeledImage(str(image["file"]), sample_id=image["sample_id"], width=image.get("width"),
                               height=image.get("height"), detections=image["boxes"])

    def from_samples() -> Iterator[LabeledImage]:
        spath = tables["samples"]
        cols = _columns(spath, kind)
        low = {c.lower(): c for c in cols}
        img_cols = [low[c] for c in _IMAGE_COLUMNS if c in low]
        id_col = _first(cols, _ID_COLUMNS)
        json_cols = _json_columns(spath) if kind == "parquet" else set()
        by_id = {str(v["sample_id"]): v for v in objects.values() if v["sample_id"] is not None}
        by_file = {str(v["file"]): v for v in objects.values()}
        for batch in _batches(spath, kind):
            for row in batch:
                file = next((row[c] for c in img_cols if row.get(c) is not None), None)
                if file is None:
                    skipped["sample without an image"] += 1
                    continue
                sid = row.get(id_col) if id_col else None
                found = by_id.get(str(sid)) if sid is not None else by_file.get(str(file))
                n = _number(row.get("n_objects"), int)
                # no objects row: an image without boxes when the table says it has none, else unknown
                # (a samples table read alone never clears boxes it does not carry)
                boxes = found["boxes"] if found else ([] if n == 0 else None)
                if n is not None and found is None and n:
                    skipped["sample whose boxes are not in the objects table"] += 1
                fields = {k: (_cell(v) if kind == "csv" else json.loads(v) if k in json_cols else v)
                          for k, v in row.items()
                          if k not in _SAMPLE_OWN and not k.startswith("_") and k not in img_cols and v is not None
                          and k.split(".", 1)[0] not in _COMPUTED}
                label = row.get("label")
                yield LabeledImage(str(file), sample_id=str(sid) if sid is not None else None,
                                   width=_number(row.get("width"), int), height=_number(row.get("height"), int),
                                   detections=boxes,
                                   label=str(label) if label is not None else None,
                                   split=row.get("split") if isinstance(row.get("split"), str) else None, fields=fields)

    records = from_samples() if "samples" in tables else from_objects()
    info: dict[str, Any] = {"tables": {k: str(v) for k, v in tables.items()}}
    if label_fields:
        info["field"] = label_fields.pop()  # where the boxes came from: an import puts them back there
    return LabelSet(kind, Path(os.path.abspath(root)), classes, records, info, skipped)


def read_csv(path: str | os.PathLike, *, images: str | os.PathLike | None = None) -> LabelSet:
    """Our CSV tables (a folder) or one CSV of boxes or samples made elsewhere, as records. Image paths
    are taken relative to ``images`` (default: the table's folder). A box table groups its rows by
    ``sample_id`` when it has one, else by image.

    >>> labels = read_csv("deepforest/example.csv")                     # doctest: +SKIP
    >>> [c.name for c in labels.classes]                                # doctest: +SKIP
    ['Tree']
    """
    return _read("csv", path, images)


def read_parquet(path: str | os.PathLike, *, images: str | os.PathLike | None = None) -> LabelSet:
    """As :func:`read_csv`, for Parquet tables."""
    return _read("parquet", path, images)


def read_embeddings(path: str | os.PathLike) -> Iterator[tuple[str, list[str], np.ndarray]]:
    """The blocks ``(model, sample ids, float32 matrix)`` of an ``embeddings.parquet``, a batch at a
    time (a block per model within a batch)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
        models = np.asarray(batch.column("model").to_pylist(), dtype=object)
        for model in dict.fromkeys(models.tolist()):
            rows = pa.array(np.flatnonzero(models == model))
            vectors = batch.column("vector").take(rows)
            flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            yield model, batch.column("sample_id").take(rows).to_pylist(), flat.reshape(len(vectors), -1)


def looks_like_csv(path: Path) -> bool:
    """A ``.csv`` file with an image column, or a folder with ``samples.csv`` or ``objects.csv``."""
    return _looks_like(Path(path), "csv")


def looks_like_parquet(path: Path) -> bool:
    """A ``.parquet`` file with an image column, or a folder with ``samples.parquet`` or ``objects.parquet``."""
    return _looks_like(Path(path), "parquet")


def _looks_like(path: Path, kind: str) -> bool:
    if path.is_dir():
        return any((path / f"{t}.{kind}").is_file() for t in ("samples", "objects"))
    if not path.is_file() or _kind(path) != kind or path.suffix.lower() not in (f".{kind}", ".pq"):
        return False
    # a table of URLs and nothing else is an img2dataset list (formats/urllist.py), not a table of samples
    files = tuple(c for c in _IMAGE_COLUMNS if c not in ("url", "image_url"))
    try:
        cols = _columns(path, kind)
    except ViscurateError:
        return False
    return _first(cols, files) is not None or (_first(cols, _IMAGE_COLUMNS) is not None and _box_columns(cols) is not None)
