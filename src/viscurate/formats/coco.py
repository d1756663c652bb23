"""COCO detection files, read and written: ground truth (``instances.json``), a model's results
(``results.json``), and the boxes of samples written back as a COCO file. Readers turn the files into
boxes per sample, writers take sample documents; the ``Dataset`` ingests and stores
(:meth:`~viscurate.dataset.Dataset.import_coco`, :meth:`~viscurate.dataset.Dataset.export`).

>>> coco = check_coco_inputs("annotations/instances_val.json", images="val2017/")  # doctest: +SKIP
>>> coco_ground_truth_boxes(coco, {397133: "5f0c..."})                              # doctest: +SKIP
{'5f0c...': [{'name': 'person', 'bbox': [388.66, 69.92, 109.41, 277.62], 'area': 17376.9}, ...]}

- Images are found by ``file_name``, relative to ``images`` (default: the JSON's folder); they are
  ingested (profiled) like any other image, so importing twice changes nothing.
- Boxes keep COCO's ``[x, y, width, height]`` in pixels (viscurate's own convention) and get ``name``
  (the category name); ground truth keeps ``iscrowd`` (evaluation ignores crowd regions, as COCO does)
  and ``area``; predictions get ``confidence`` (COCO's ``score``).
- Ground truth goes to ``ground_truth.detections``, predictions to ``predictions`` (or a field you
  name), replacing what the samples had there.
"""
from __future__ import annotations

import json
import os
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import ViscurateError
from ..files import atomic_file
from .media import place_image
from .records import Category, LabeledImage, LabelSet, field_value, categories_from_names

__all__ = ["GROUND_TRUTH", "AUTO_LABELS", "CocoImport", "read_coco", "read_coco_results", "check_coco_inputs",
           "coco_image_files", "coco_ground_truth_boxes", "coco_predicted_boxes", "default_export_field",
           "looks_like_coco", "read_coco_set", "write_coco"]

#: Where imported ground truth goes, and what an export writes when the samples have some.
GROUND_TRUTH = "ground_truth.detections"
#: What an export writes when no sample has ground truth: the auto-labels (``viscurate label``).
AUTO_LABELS = "object_analysis"


@dataclass
class CocoImport:
    """What an import did: images found in the file, samples written, boxes written, image files missing."""

    images: int = 0
    samples: int = 0
    boxes: int = 0
    missing: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"images": self.images, "samples": self.samples, "boxes": self.boxes, "missing": self.missing}


def _load_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed COCO file, or an error saying why it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ViscurateError(f"cannot read COCO file {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ViscurateError(f"{path} is not a COCO detection file (no 'images' list)")
    return data


def read_coco(path: str | os.PathLike) -> dict[str, Any]:
    """A COCO detection file, checked: ``{"images": {id: image}, "categories": {id: name},
    "annotations": {image id: [annotation]}}``."""
    data = _load_coco_json(path)
    images = {im["id"]: im for im in data["images"] if isinstance(im, dict) and "id" in im and "file_name" in im}
    categories = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories") or [] if "id" in c}
    annotations: dict[Any, list] = {}
    for a in data.get("annotations") or []:
        if isinstance(a, dict) and a.get("image_id") in images and _bbox(a.get("bbox")) is not None:
            annotations.setdefault(a["image_id"], []).append(a)
    return {"images": images, "categories": categories, "annotations": annotations}


def read_coco_results(path: str | os.PathLike) -> list:
    """A COCO results file (a list of detections), checked to be one."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
    except (OSError, ValueError) as e:
        raise ViscurateError(f"cannot read COCO results file {path}: {e}") from None
    if not isinstance(rows, list):
        raise ViscurateError(f"{path} is not a COCO results file (a list of detections)")
    return rows


def _images_folder(path: str | os.PathLike, images: str | os.PathLike | None) -> Path:
    return Path(images) if images is not None else Path(os.path.abspath(path)).parent


def coco_image_files(coco: dict[str, Any], path: str | os.PathLike,
                     images: str | os.PathLike | None = None) -> dict[Any, Path]:
    """``{COCO image id: absolute path of its file}`` (there or not) of the COCO file read from ``path``
    (as :func:`read_coco`): ``file_name`` under ``images``, by default the JSON's folder."""
    folder = _images_folder(path, images)
    return {iid: (folder / im["file_name"]).resolve() for iid, im in coco["images"].items()}


def check_coco_inputs(path: str | os.PathLike, *, images: str | os.PathLike | None = None,
                      predictions: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything an import needs, checked before it writes anything: the COCO file parses, the images
    folder exists and holds at least one of its images, the results file (if any) parses. Returns the
    COCO file (as :func:`read_coco`); raises :class:`~viscurate.errors.ViscurateError` naming the problem.

    >>> check_coco_inputs("instances.json", images="no/such/folder")                 # doctest: +SKIP
    Traceback (most recent call last):
    ...
    viscurate.errors.ViscurateError: images folder not found: no/such/folder
    """
    coco = read_coco(path)
    folder = _images_folder(path, images)
    if not folder.is_dir():
        raise ViscurateError(f"images folder not found: {folder}")
    names = [im["file_name"] for im in coco["images"].values()]
    if names and not any((folder / str(n)).is_file() for n in names):
        raise ViscurateError(f"none of the {len(names):,} images of {path} is in {folder} "
                             f"(e.g. {folder / str(names[0])}); name their folder with --images")
    if predictions is not None:
        read_coco_results(predictions)
    return coco


def _bbox(value: Any) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return box if all(v == v and abs(v) != float("inf") for v in box) and box[2] >= 0 and box[3] >= 0 else None


def _category(coco: dict[str, Any], row: dict) -> str:
    return coco["categories"].get(row.get("category_id"), str(row.get("category_id")))


def coco_ground_truth_boxes(coco: dict[str, Any], sample_ids: Mapping[Any, str]) -> dict[str, list[dict]]:
    """The ground-truth boxes of each sample: ``{sample id: [box]}`` from the annotations of the COCO
    file ``coco`` (as :func:`read_coco`) whose images ``sample_ids`` maps (``{COCO image id: sample
    id}``); a sample without annotations gets an empty list."""
    boxes: dict[str, list[dict]] = {}
    for iid, sid in sample_ids.items():
        out = boxes.setdefault(sid, [])
        for a in coco["annotations"].get(iid, []):
            box = {"name": _category(coco, a), "bbox": _bbox(a["bbox"])}
            if a.get("iscrowd"):
                box["iscrowd"] = 1
            if isinstance(a.get("area"), (int, float)):
                box["area"] = float(a["area"])
            out.append(box)
    return boxes


def coco_predicted_boxes(coco: dict[str, Any], rows: list, sample_ids: Mapping[Any, str]) -> dict[str, list[dict]]:
    """A COCO results file's rows (``[{"image_id", "category_id", "bbox", "score"}]``, as
    :func:`read_coco_results`) as predicted boxes per sample, most confident first: ``{sample id: [box]}``.
    ``coco`` (the ground-truth file) names the categories; ``sample_ids`` maps its image ids to samples.
    A sample without any result gets an empty list: the model found nothing there."""
    boxes: dict[str, list[dict]] = {sid: [] for sid in sample_ids.values()}
    for r in rows:
        if not isinstance(r, dict) or r.get("image_id") not in sample_ids or _bbox(r.get("bbox")) is None:
            continue
        boxes[sample_ids[r["image_id"]]].append({
            "name": _category(coco, r), "confidence": float(r.get("score", 1.0)), "bbox": _bbox(r["bbox"])})
    for sid in boxes:
        boxes[sid].sort(key=lambda b: -b["confidence"])
    return boxes


def default_export_field(count: Callable[[dict | None], int], query: dict | None = None) -> str:
    """The boxes a COCO export writes when none are named: the ground truth if a sample (of ``query``)
    has any, else the auto-labels. ``count`` counts the samples matching a query (``Dataset.count``)."""
    has_truth = {GROUND_TRUTH: {"$exists": True}}
    return GROUND_TRUTH if count({"$and": [query, has_truth]} if query else has_truth) else AUTO_LABELS


# ---- the common record shape (formats/records.py): any COCO file in, any records out ------------------

#: Annotation keys kept on the box as they are (the box dict has a place for them, the catalog keeps them).
_KEPT_ANNOTATION_KEYS = ("segmentation", "keypoints", "num_keypoints", "attributes")
#: The box flags of VOC and CVAT: COCO has no place for them but the attributes, where they are written.
_FLAGS = ("difficult", "truncated", "occluded")
#: Image keys kept as the sample's ``coco.*`` fields, and written back.
_KEPT_IMAGE_KEYS = ("license", "coco_url", "flickr_url", "date_captured")


def looks_like_coco(path: Path) -> bool:
    """A ``.json`` file that starts like a COCO detection file (an ``images`` list and ``annotations``
    or ``categories``)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b'"images"' in head and (b'"annotations"' in head or b'"categories"' in head)


def read_coco_set(path: str | os.PathLike, *, images: str | os.PathLike | None = None) -> LabelSet:
    """A COCO detection file as records: the categories in the file's order with their ids (and
    ``supercategory`` in ``extra``), one :class:`LabeledImage` per image with its annotations as boxes
    (annotation ``id``, ``iscrowd``, ``area``, ``attributes``, ``segmentation``, keypoints, ``score`` as
    ``confidence``) and the image's id and other keys as ``coco.*`` fields.

    >>> labels = read_coco_set("annotations/instances_val2017.json", images="val2017")   # doctest: +SKIP
    >>> labels.classes[:2]                                                                 # doctest: +SKIP
    [Category(id=1, name='person'), Category(id=2, name='bicycle')]
    """
    data = _load_coco_json(path)
    classes = [Category(c["id"], str(c.get("name", c["id"])),
                        {k: v for k, v in c.items() if k not in ("id", "name")})
               for c in data.get("categories") or [] if isinstance(c, dict) and "id" in c]
    names = {c.id: c.name for c in classes}
    # ids compared as text: a file whose images say "1" and annotations 1 is common enough
    image_ids = {str(im.get("id")) for im in data["images"] if isinstance(im, dict)}
    by_image: dict[str, list[dict]] = {}
    skipped: dict[str, int] = {}
    for a in data.get("annotations") or []:
        why = ("annotation without a box" if not isinstance(a, dict) or _bbox(a.get("bbox")) is None
               else "annotation of an unknown image" if str(a.get("image_id")) not in image_ids else None)
        if why:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        by_image.setdefault(str(a.get("image_id")), []).append(a)

    def box_of(a: dict) -> dict:
        box: dict[str, Any] = {"name": names.get(a.get("category_id"), str(a.get("category_id"))),
                               "bbox": _bbox(a["bbox"])}
        if isinstance(a.get("score"), (int, float)) and not isinstance(a.get("score"), bool):
            box["confidence"] = float(a["score"])
        if a.get("iscrowd"):
            box["iscrowd"] = 1
        if isinstance(a.get("area"), (int, float)):
            box["area"] = float(a["area"])
        for k in _KEPT_ANNOTATION_KEYS:
            if a.get(k) not in (None, [], {}):
                box[k] = a[k]
        attributes = box.get("attributes")
        if isinstance(attributes, dict) and any(k in attributes for k in _FLAGS):  # our writer put them there
            box.update({k: attributes[k] for k in _FLAGS if k in attributes})
            rest = {k: v for k, v in attributes.items() if k not in _FLAGS}
            box.pop("attributes")
            if rest:
                box["attributes"] = rest
        if "id" in a:
            box["id"] = a["id"]
        return box

    def records():
        for im in data["images"]:
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                continue
            fields = {"coco.image_id": im["id"], **{f"coco.{k}": im[k] for k in _KEPT_IMAGE_KEYS if k in im}}
            yield LabeledImage(str(im["file_name"]), sample_id=im.get("viscurate_id"), width=im.get("width"),
                               height=im.get("height"), detections=[box_of(a) for a in by_image.get(str(im["id"]), [])],
                               fields=fields, source_id=im["id"])

    from collections import Counter
    info = {k: v for k, v in data.items() if k in ("info", "licenses")}
    root = Path(os.path.abspath(_images_folder(path, images)))
    first = next((im["file_name"] for im in data["images"] if isinstance(im, dict) and "file_name" in im), None)
    if images is None and first and not (root / str(first)).exists() and (root / "data" / str(first)).exists():
        root = root / "data"  # our folder exports (and FiftyOne's): labels.json beside data/
    return LabelSet("coco", root, classes, records(), info, Counter(skipped))


def _final_ids(given: array) -> np.ndarray:
    """Ids for items whose source ids are ``given`` (-1: none): the source ids when they are unique
    non-negative integers, the missing ones numbered after the largest; all renumbered from 1 otherwise."""
    ids = np.frombuffer(given, dtype=np.int64).copy() if len(given) else np.zeros(0, np.int64)
    have = ids[ids >= 0]
    if len(np.unique(have)) != len(have):
        return np.arange(1, len(ids) + 1, dtype=np.int64)
    missing = ids < 0
    start = int(have.max()) + 1 if len(have) else 1
    ids[missing] = np.arange(start, start + int(missing.sum()), dtype=np.int64)
    return ids


def _int_id(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else -1


def write_coco(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category],
               media: str = "none", progress: Callable[[int], None] | None = None,
               description: str = "viscurate export") -> dict[str, Any]:
    """Write records as one COCO detection file, streaming: memory stays bounded whatever the count
    (images and annotations go to temporary files first, 8 bytes of id per item stay in memory).

    ``out``: a ``.json`` file (``file_name`` is then each image's absolute path, so the file works from
    anywhere), or a folder (``labels.json`` and, with ``media="copy"`` or ``"symlink"``, the images in
    ``data/``, ``file_name`` relative to it). Category ids are the ``classes``' ids (renumbered from 1
    when one is not a non-negative integer); image ids are the ``coco.image_id`` each record carries and
    annotation ids the boxes' ``id``, when unique, else numbered from 1. Each image carries its
    ``viscurate_id``. Returns ``{"images", "annotations", "categories", "dropped"}``.

    >>> write_coco(records, "labels.json", classes=[Category(1, "cat")])          # doctest: +SKIP
    {'images': 2, 'annotations': 3, 'categories': 1, 'dropped': {}}
    """
    out = Path(out)
    as_folder = out.suffix.lower() != ".json"
    if media not in ("none", "copy", "symlink"):
        raise ViscurateError(f"media must be none, copy or symlink, not {media!r}")
    if media != "none" and not as_folder:
        raise ViscurateError("copying images needs a folder to write into: give a folder, not a .json file")
    json_path = out / "labels.json" if as_folder else out
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if any(not isinstance(c.id, int) or isinstance(c.id, bool) or c.id < 0 for c in classes) \
            or len({c.id for c in classes}) != len(classes):
        classes = categories_from_names([c.name for c in classes], start=1)
    cat_ids = {c.name: c.id for c in classes}
    extra_classes: list[Category] = []
    image_src, ann_src = array("q"), array("q")
    dropped: dict[str, int] = {}
    with tempfile.TemporaryDirectory(dir=json_path.parent, prefix=".coco-") as tmp:
        img_tmp, ann_tmp = Path(tmp) / "images.jsonl", Path(tmp) / "annotations.jsonl"
        with open(img_tmp, "w", encoding="utf-8") as fi, open(ann_tmp, "w", encoding="utf-8") as fa:
            for done, rec in enumerate(images, 1):
                seq = len(image_src)  # the image's position in the file: a left-out image takes none
                if progress is not None:
                    progress(done)
                if media != "none":
                    try:
                        placed = place_image(rec.file, out / "data", rec.sample_id, media)
                    except ViscurateError:  # one gone image file never stops the export
                        dropped["image file missing"] = dropped.get("image file missing", 0) + 1
                        continue
                    file_name = placed.relative_to(out / "data").as_posix()
                else:
                    file_name = rec.file
                im: dict[str, Any] = {"file_name": file_name, "width": rec.width, "height": rec.height}
                for k in _KEPT_IMAGE_KEYS:
                    v = field_value(rec.fields, f"coco.{k}")
                    if v is not None:
                        im[k] = v
                if rec.sample_id:
                    im["viscurate_id"] = rec.sample_id
                fi.write(json.dumps(im, ensure_ascii=False) + "\n")
                image_src.append(_int_id(field_value(rec.fields, "coco.image_id")))
                for box in rec.detections or []:
                    bbox = _bbox(box.get("bbox"))
                    if bbox is None or not box.get("name"):
                        dropped["box without a name or bbox"] = dropped.get("box without a name or bbox", 0) + 1
                        continue
                    name = str(box["name"])
                    if name not in cat_ids:
                        cat_ids[name] = max(cat_ids.values(), default=0) + 1
                        extra_classes.append(Category(cat_ids[name], name))
                    ann: dict[str, Any] = {"image": seq, "category_id": cat_ids[name], "bbox": bbox,
                                           "area": float(box["area"]) if isinstance(box.get("area"), (int, float))
                                           else round(bbox[2] * bbox[3], 2),
                                           "iscrowd": int(bool(box.get("iscrowd")))}
                    if box.get("confidence") is not None:
                        ann["score"] = float(box["confidence"])
                    for k in _KEPT_ANNOTATION_KEYS:
                        if box.get(k) not in (None, [], {}):
                            ann[k] = box[k]
                    flags = {k: box[k] for k in _FLAGS if k in box}
                    if flags:  # COCO has no flags: they ride in the attributes, as CVAT's COCO export does
                        ann["attributes"] = {**flags, **(ann.get("attributes") or {})}
                    fa.write(json.dumps(ann, ensure_ascii=False) + "\n")
                    ann_src.append(_int_id(box.get("id")))
        image_ids, ann_ids = _final_ids(image_src), _final_ids(ann_src)
        categories = [{"id": cat_ids[c.name], "name": c.name,
                       **{k: v for k, v in c.extra.items() if k not in ("id", "name")}}
                      for c in classes + extra_classes]
        with atomic_file(json_path) as f:
            head = {"info": {"description": description}}
            f.write(json.dumps(head)[:-1].encode() + b', "categories": ')
            f.write(json.dumps(categories, ensure_ascii=False).encode() + b', "images": [')
            with open(img_tmp, encoding="utf-8") as fi:
                for n, line in enumerate(fi):
                    im = json.loads(line)
                    f.write((b", " if n else b"") + json.dumps({"id": int(image_ids[n]), **im}, ensure_ascii=False).encode())
            f.write(b'], "annotations": [')
            with open(ann_tmp, encoding="utf-8") as fa:
                for n, line in enumerate(fa):
                    ann = json.loads(line)
                    ann = {"id": int(ann_ids[n]), "image_id": int(image_ids[ann.pop("image")]), **ann}
                    f.write((b", " if n else b"") + json.dumps(ann, ensure_ascii=False).encode())
            f.write(b"]}")
    return {"images": len(image_src), "annotations": len(ann_src), "categories": len(categories),
            "dropped": dropped, "path": str(json_path)}
