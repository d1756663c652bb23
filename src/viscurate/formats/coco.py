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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import ViscurateError
from ..files import write_atomic

__all__ = ["GROUND_TRUTH", "AUTO_LABELS", "CocoImport", "read_coco", "read_coco_results", "check_coco_inputs",
           "coco_image_files", "coco_ground_truth_boxes", "coco_predicted_boxes", "default_export_field",
           "write_coco"]

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


def read_coco(path: str | os.PathLike) -> dict[str, Any]:
    """A COCO detection file, checked: ``{"images": {id: image}, "categories": {id: name},
    "annotations": {image id: [annotation]}}``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ViscurateError(f"cannot read COCO file {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ViscurateError(f"{path} is not a COCO detection file (no 'images' list)")
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
    return Path(images) if images is not None else Path(path).resolve().parent


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


def _is_corrupt(doc: dict) -> bool:
    """A sample COCO cannot describe: it could not be decoded, so it has no size (COCO needs one)."""
    return "corrupt" in (doc.get("issues") or ()) or not doc.get("width") or not doc.get("height")


def write_coco(docs: Iterable[dict], out_path: str | os.PathLike, *, field: str, description: str,
               total: int, progress: Any = None) -> dict[str, Any]:
    """Write the boxes of ``field`` of the sample documents ``docs`` as a COCO detection file.

    ``file_name`` is the sample's absolute path (so ``Dataset.import_coco`` reads the file back with any
    ``images`` folder), categories are numbered from 1 by name, scores are kept for predictions, and
    each image carries its sample's ``viscurate_id``. Corrupt samples (no size) are left out.
    ``progress(done, total)`` is called as it goes (``total``: how many ``docs`` there are). Returns
    ``{"images", "annotations", "categories", "field", "corrupt_left_out"}``.

    >>> write_coco(ds.iter({"split": "val"}), "labels.json", field=GROUND_TRUTH,
    ...            description="val", total=ds.count({"split": "val"}))              # doctest: +SKIP
    """
    images, annotations, categories = [], [], {}
    corrupt = 0
    for n, doc in enumerate(docs, 1):
        if progress is not None and (n % 200 == 0 or n == total):
            progress(n, total)
        if _is_corrupt(doc):
            corrupt += 1
            continue
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": doc.get("filepath") or doc["_id"], "width": doc.get("width"),
                       "height": doc.get("height"), "viscurate_id": doc["_id"]})
        node: Any = doc
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        for box in node or []:
            bbox = _bbox(box.get("bbox"))
            if bbox is None or not box.get("name"):
                continue
            cid = categories.setdefault(str(box["name"]), len(categories) + 1)
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": cid, "bbox": bbox,
                   "area": round(bbox[2] * bbox[3], 2), "iscrowd": int(bool(box.get("iscrowd")))}
            if box.get("confidence") is not None:
                ann["score"] = box["confidence"]
            annotations.append(ann)
    data = {"info": {"description": description}, "images": images, "annotations": annotations,
            "categories": [{"id": cid, "name": name} for name, cid in categories.items()]}
    write_atomic(Path(out_path), json.dumps(data).encode())
    return {"images": len(images), "annotations": len(annotations), "categories": len(categories),
            "field": field, "corrupt_left_out": corrupt}
