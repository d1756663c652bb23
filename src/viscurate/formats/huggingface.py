"""The Hugging Face ``datasets`` image folder: ``load_dataset("imagefolder", data_dir=OUT)`` loads it.

An export::

    OUT/train/metadata.parquet     one row per image of the split: file_name, viscurate_id, width, height,
    OUT/train/<images>             label, objects {bbox, categories, id, confidence, ...}
    OUT/validation/...
    OUT/metadata.parquet, <images> the images without a split (datasets calls them "train")

>>> write_huggingface(records, "hf/", classes=classes)                   # doctest: +SKIP
{'images': 120, 'boxes': 301, 'classes': 3, 'dropped': {}, 'splits': {'train': 100, 'validation': 20}}
>>> import datasets; datasets.load_dataset("imagefolder", data_dir="hf/")  # doctest: +SKIP

- ``objects`` is the object-detection layout the ImageFolder loader documents: per image a list of
  ``bbox`` (``[x, y, width, height]`` in pixels, COCO's convention) and of ``categories``. The categories
  are a ``ClassLabel``: their names, in the classes' order, ride in the Parquet schema's ``huggingface``
  metadata, so ``datasets`` shows ``ClassLabel(names=[...])`` and ``categories`` are indices into it.
  The classes' own ids (COCO's 1, 3, 90) ride beside them in the ``viscurate`` metadata.
- Why Parquet rather than ``metadata.jsonl``: ``datasets`` infers a JSON file's types per split and
  refuses splits that differ (a split whose images have no boxes infers ``null`` lists); a Parquet
  schema is the same in every split.
- The other box keys are lists beside ``bbox`` (only those some box has): ``id`` (as text: an integer
  id reads back as an integer), ``confidence``, ``iscrowd``, ``area``, ``difficult``, ``truncated``,
  ``occluded``, and ``attributes`` (JSON text per box). Nothing is dropped.
- Reading takes any such folder: ``metadata.parquet``, ``metadata.jsonl`` or ``metadata.csv`` per
  folder, the folder's name as the split, ``objects.categories`` as indices (names from the
  ``ClassLabel``) or as names, ``label`` (or ``labels``) as the image's class.
"""
from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ViscurateError
from .media import place_image
from .records import Category, LabeledImage, LabelSet, categories_from_names, merge_categories

__all__ = ["looks_like_huggingface", "read_huggingface", "write_huggingface", "METADATA_NAMES"]

METADATA_NAMES = ("metadata.parquet", "metadata.jsonl", "metadata.csv")
#: Box keys written as lists beside ``bbox``, with their Arrow types.
_BOX_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(), "confidence": pa.float64(), "iscrowd": pa.int64(), "area": pa.float64(),
    "difficult": pa.bool_(), "truncated": pa.bool_(), "occluded": pa.bool_(), "attributes": pa.string()}
_BATCH = 2048


# ---- reading ------------------------------------------------------------------------------------------

_SPLIT_ORDER = ("train", "training", "validation", "valid", "val", "dev", "test", "testing")


def _metadata_files(root: Path) -> list[Path]:
    """The metadata file of the root and of each split folder: train, then validation, then test, then
    the others by name."""
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: (_SPLIT_ORDER.index(p.name.lower()) if p.name.lower() in _SPLIT_ORDER
                                    else len(_SPLIT_ORDER), p.name))
    found = []
    for folder in [root, *folders]:
        for name in METADATA_NAMES:
            if (folder / name).is_file():
                found.append(folder / name)
                break
    return found


def looks_like_huggingface(path: Path) -> bool:
    """A folder with a ``metadata.parquet``/``.jsonl``/``.csv`` in it or in its split folders."""
    path = Path(path)
    return path.is_dir() and bool(_metadata_files(path))


def _rows(path: Path) -> Iterator[dict]:
    """The rows of one metadata file, streamed."""
    if path.suffix == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as e:
            raise ViscurateError(f"cannot read {path}: {e}") from None
        for batch in pf.iter_batches(batch_size=_BATCH):
            yield from batch.to_pylist()
    elif path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise ViscurateError(f"{path} line {n} is not JSON: {e}") from None
                if not isinstance(row, dict):
                    raise ViscurateError(f"{path} line {n} is not an object")
                yield row
    else:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                yield {k: _csv_value(v) for k, v in row.items()}


def _csv_value(v: str | None) -> Any:
    if v is None or v == "":
        return None
    if v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _class_names(path: Path) -> tuple[list[str] | None, list[Any] | None]:
    """The ``ClassLabel`` names of ``objects.categories`` (and the class ids we wrote) of a Parquet
    metadata file, if it says."""
    if path.suffix != ".parquet":
        return None, None
    meta = pq.read_schema(path).metadata or {}
    names = ids = None
    try:
        features = json.loads(meta.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
        cats = (features.get("objects") or {}).get("categories") or {}
        feature = cats.get("feature") or {}
        if feature.get("_type") == "ClassLabel":
            names = [str(n) for n in feature.get("names") or []]
        ours = json.loads(meta.get(b"viscurate", b"{}"))
        if isinstance(ours.get("classes"), list):
            ids = [c.get("id") for c in ours["classes"]]
            if names is None:  # no image had boxes, so no ClassLabel: our own list still holds the classes
                names = [str(c.get("name")) for c in ours["classes"]]
    except (ValueError, AttributeError):
        pass
    return names, ids


def _id_from_text(v: Any) -> Any:
    if isinstance(v, str) and re.fullmatch(r"-?[1-9]\d*|0", v):
        return int(v)
    return v


def _objects(objects: Any, names: list[str] | None, where: str, skipped: Counter) -> list[dict] | None:
    """The boxes of one row's ``objects`` (a dict of lists; a list of dicts also reads)."""
    if objects is None:
        return None
    if isinstance(objects, list):  # a list of {bbox, category} objects, as some datasets have it
        objects = {k: [o.get(k) for o in objects if isinstance(o, dict)]
                   for k in {k for o in objects if isinstance(o, dict) for k in o}}
    if not isinstance(objects, dict):
        raise ViscurateError(f"{where}: objects is not a dict of lists")
    bboxes = objects.get("bbox") or []
    cats = objects.get("categories", objects.get("category")) or []
    boxes: list[dict] = []
    for i, bb in enumerate(bboxes):
        try:
            bbox = [float(v) for v in bb]
            if len(bbox) != 4:
                raise ValueError
            cat = cats[i]
        except (TypeError, ValueError, IndexError):
            skipped["malformed box"] += 1
            continue
        if isinstance(cat, int) and not isinstance(cat, bool):
            name = names[cat] if names is not None and 0 <= cat < len(names) else str(cat)
        else:
            name = str(cat)
        box: dict[str, Any] = {"name": name, "bbox": bbox}
        for key in _BOX_COLUMNS:
            values = objects.get(key)
            v = values[i] if isinstance(values, list) and i < len(values) else None
            if v is None:
                continue
            if key == "attributes":
                v = json.loads(v) if isinstance(v, str) else v
            elif key == "id":
                v = _id_from_text(v)
            box[key] = v
        boxes.append(box)
    return boxes


def read_huggingface(path: str | os.PathLike, *, images: str | os.PathLike | None = None) -> LabelSet:
    """An image folder in the ``datasets`` layout as records, streamed split by split: ``file_name``
    relative to its metadata file's folder (the root's ``split`` is ``None``, a folder's is its name),
    ``viscurate_id`` as the sample id, ``width``/``height``, ``label``, ``objects`` as boxes; other
    scalar columns as ``hf.<column>`` fields. Classes: the ``ClassLabel`` names of the first metadata
    file that has them (with our ids when we wrote it), else the names as the boxes use them.
    ``images``: where the files are, when not beside the metadata (default: ``path``).

    >>> labels = read_huggingface("hf/")                       # doctest: +SKIP
    >>> next(iter(labels)).split                               # doctest: +SKIP
    'train'
    """
    root = Path(path)
    if not root.is_dir():
        raise ViscurateError(f"{root} is not a folder: a Hugging Face image folder is <split>/metadata.parquet "
                             f"(or .jsonl/.csv) beside the images")
    files = _metadata_files(root)
    if not files:
        raise ViscurateError(f"no metadata.parquet, metadata.jsonl or metadata.csv in {root} or its split folders")
    names: list[str] | None = None
    ids: list[Any] | None = None
    for f in files:
        names, ids = _class_names(f)
        if names is not None:
            break
    skipped: Counter = Counter()
    if names is not None:
        if ids is not None and len(ids) == len(names) and len(set(map(str, ids))) == len(ids):
            classes = [Category(i, n) for i, n in zip(ids, names)]
        else:
            classes = categories_from_names(names)
    else:
        # no ClassLabel: a pass over the rows finds the names (metadata is small next to the images)
        seen: list[str] = []
        for f in files:
            for row in _rows(f):
                for b in _objects(row.get("objects"), None, str(f), Counter()) or []:
                    seen.append(b["name"])
        classes = categories_from_names(seen)
    known = {c.name for c in classes}

    def records() -> Iterator[LabeledImage]:
        for f in files:
            split = None if f.parent == root else f.parent.name
            for n, row in enumerate(_rows(f), 1):
                file = row.get("file_name")
                if not isinstance(file, str) or not file:
                    skipped["row without file_name"] += 1
                    continue
                where = f"{f} row {n}"
                boxes = _objects(row.get("objects"), names, where, skipped)
                for b in boxes or []:
                    if b["name"] not in known:
                        skipped["class not among the ClassLabel names"] += 1
                label = row.get("label", row.get("labels"))
                fields = {f"hf.{k}": v for k, v in row.items()
                          if k not in ("file_name", "viscurate_id", "width", "height", "label", "labels", "objects")
                          and (v is None or isinstance(v, (str, int, float, bool)))}
                rel = Path(file)
                yield LabeledImage(str(rel if rel.is_absolute() else f.parent.relative_to(root) / rel),
                                   sample_id=row.get("viscurate_id"), width=row.get("width"),
                                   height=row.get("height"), detections=boxes,
                                   label=str(label) if label is not None else None, split=split,
                                   fields={k: v for k, v in fields.items() if v is not None})

    return LabelSet("huggingface", Path(os.path.abspath(images if images is not None else root)), classes, records(), {"metadata": [str(f) for f in files]}, skipped)


# ---- writing ------------------------------------------------------------------------------------------

def _safe_split(split: str | None) -> str | None:
    if split is None:
        return None
    name = re.sub(r"[^\w.-]+", "_", str(split)).strip("._")
    return name or "unnamed"


def _features(classes: list[Category], columns: dict[str, bool], box_keys: list[str]) -> dict:
    """The ``huggingface`` schema metadata: how ``datasets`` types each column (ClassLabel names)."""
    def value(dtype: str) -> dict:
        return {"dtype": dtype, "_type": "Value"}

    def listed(feature: dict) -> dict:
        return {"feature": feature, "_type": "List"}

    dtypes = {"id": "string", "confidence": "float64", "iscrowd": "int64", "area": "float64",
              "difficult": "bool", "truncated": "bool", "occluded": "bool", "attributes": "string"}
    features: dict[str, Any] = {"file_name": value("string"), "viscurate_id": value("string"),
                                "width": value("int64"), "height": value("int64")}
    if columns.get("label"):
        features["label"] = value("string")
    if columns.get("objects"):
        features["objects"] = {
            "bbox": listed({"feature": value("float64"), "length": 4, "_type": "List"}),
            "categories": listed({"names": [c.name for c in classes], "_type": "ClassLabel"}),
            **{k: listed(value(dtypes[k])) for k in box_keys}}
    return {"info": {"features": features}}


def _schema(columns: dict[str, bool], box_keys: list[str]) -> pa.Schema:
    fields = [pa.field("file_name", pa.string()), pa.field("viscurate_id", pa.string()),
              pa.field("width", pa.int64()), pa.field("height", pa.int64())]
    if columns.get("label"):
        fields.append(pa.field("label", pa.string()))
    if columns.get("objects"):
        fields.append(pa.field("objects", pa.struct(
            [pa.field("bbox", pa.list_(pa.list_(pa.float64(), 4))), pa.field("categories", pa.list_(pa.int64()))]
            + [pa.field(k, pa.list_(_BOX_COLUMNS[k])) for k in box_keys])))
    return pa.schema(fields)


def write_huggingface(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category],
                      media: str = "copy", progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write records as a ``datasets`` image folder: the images of each split in ``OUT/<split>/``
    (``media="copy"`` or ``"symlink"``; unique names), a ``metadata.parquet`` beside them. Streams: the
    rows go to a temporary JSON Lines file per split as the images are placed, then into Parquet in
    batches, once the columns and the class names are known. ``media="none"`` writes the images'
    absolute paths as ``file_name`` (our reader follows them; ``datasets`` wants the images there).
    Returns ``{"images", "boxes", "classes", "dropped", "splits"}``.

    >>> write_huggingface(records, "hf", classes=[Category(1, "cat")])     # doctest: +SKIP
    """
    if media not in ("copy", "symlink", "none"):
        raise ViscurateError(f"media must be copy, symlink or none, not {media!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = {c.name: i for i, c in enumerate(classes)}
    extra: list[str] = []
    columns = {"label": False, "objects": False}
    box_keys: set[str] = set()
    splits: Counter = Counter()
    dropped: Counter = Counter()
    n_boxes = 0
    spills: dict[str | None, Any] = {}
    with tempfile.TemporaryDirectory(dir=out, prefix=".hf-") as tmp:
        try:
            for n, rec in enumerate(images, 1):
                split = _safe_split(rec.split)
                folder = out / split if split else out
                if split not in spills:
                    spills[split] = open(Path(tmp) / f"{len(spills)}.jsonl", "w", encoding="utf-8")
                if media == "none" or "://" in rec.file:
                    if "://" in rec.file:
                        dropped["image given by URL (not copied)"] += 1
                    file_name = rec.file
                else:
                    try:
                        file_name = place_image(rec.file, folder, rec.sample_id, media).name
                    except ViscurateError:  # one gone image file never stops the export
                        dropped["image file missing"] += 1
                        if progress is not None:
                            progress(n)
                        continue
                row: dict[str, Any] = {"file_name": file_name, "viscurate_id": rec.sample_id,
                                       "width": rec.width, "height": rec.height}
                if rec.label is not None:
                    row["label"] = str(rec.label)
                    columns["label"] = True
                if rec.detections is not None:
                    columns["objects"] = True
                    objects: dict[str, list] = {"bbox": [], "categories": [], **{k: [] for k in _BOX_COLUMNS}}
                    for box in rec.detections:
                        try:
                            bbox = [float(v) for v in box["bbox"]]
                            name = str(box["name"])
                            if len(bbox) != 4:
                                raise ValueError
                        except (KeyError, TypeError, ValueError):
                            dropped["box without a name or bbox"] += 1
                            continue
                        if name not in index:
                            index[name] = len(index)
                            extra.append(name)
                        for k in box:
                            if k not in _BOX_COLUMNS and k not in ("name", "bbox"):
                                dropped[k] += 1  # segmentation, keypoints...: no list for them here
                        objects["bbox"].append(bbox)
                        objects["categories"].append(index[name])
                        for k in _BOX_COLUMNS:
                            v = box.get(k)
                            if v is not None:
                                box_keys.add(k)
                                if k == "attributes":
                                    v = json.dumps(v, ensure_ascii=False)
                                elif k == "id":
                                    v = str(v)
                                elif k in ("difficult", "truncated", "occluded"):
                                    v = bool(v)
                                elif k == "iscrowd":
                                    v = int(v)
                                else:
                                    v = float(v)
                            objects[k].append(v)
                        n_boxes += 1
                    row["objects"] = objects
                spills[split].write(json.dumps(row, ensure_ascii=False) + "\n")
                splits[split or "(none)"] += 1
                if progress is not None:
                    progress(n)
        finally:
            for f in spills.values():
                f.close()
        all_classes = list(classes) + merge_categories(list(classes), extra)[len(classes):]
        keys = [k for k in _BOX_COLUMNS if k in box_keys]
        schema = _schema(columns, keys).with_metadata({
            "huggingface": json.dumps(_features(all_classes, columns, keys)),
            "viscurate": json.dumps({"classes": [{"id": c.id, "name": c.name} for c in all_classes]})})
        for k, split in enumerate(spills):
            target = (out / split if split else out) / "metadata.parquet"
            _spill_to_parquet(Path(tmp) / f"{k}.jsonl", target, schema, keys)
    return {"images": sum(splits.values()), "boxes": n_boxes, "classes": len(all_classes),
            "dropped": dict(dropped), "splits": dict(splits)}


def _spill_to_parquet(spill: Path, target: Path, schema: pa.Schema, keys: list[str]) -> None:
    """Rows of a spill file into ``target``, in batches, atomically (a temporary name, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with pq.ParquetWriter(tmp, schema) as writer, open(spill, encoding="utf-8") as f:
        batch: list[dict] = []
        for line in f:
            row = json.loads(line)
            if row.get("objects") is not None:
                row["objects"] = {k: row["objects"][k] for k in ("bbox", "categories", *keys)}
            batch.append(row)
            if len(batch) >= _BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    os.replace(tmp, target)
