"""COCO detection files: ground truth (``instances.json``) and a model's results (``results.json``) into a
dataset. (The importer only, for now; the exporter will sit beside it.)

>>> import_coco(ds, "annotations/instances_val.json", images="val2017/")           # doctest: +SKIP
>>> import_coco_predictions(ds, "results.json", "annotations/instances_val.json")  # doctest: +SKIP

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
from typing import TYPE_CHECKING, Any

from ..errors import ViscurateError

if TYPE_CHECKING:
    from ..dataset import Dataset

__all__ = ["CocoImport", "check_coco_inputs", "read_coco", "read_coco_results", "import_coco",
           "import_coco_predictions"]


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


def _samples_for(ds: "Dataset", coco: dict, images: Path, progress: bool) -> tuple[dict[Any, str], int]:
    """Ingest the images of a COCO file; ``(coco image id -> sample id, files missing)``."""
    paths = {iid: (images / im["file_name"]).resolve() for iid, im in coco["images"].items()}
    present = {iid: p for iid, p in paths.items() if p.is_file()}
    if present:
        ds.add_images(sorted({str(p) for p in present.values()}), progress=progress)
    with ds._catalog() as cat:
        origin = {o: sid for o, (_, _, _, sid) in cat.file_index().items()}
    ids = {iid: origin[str(p)] for iid, p in present.items() if str(p) in origin}
    return ids, len(paths) - len(present)


def _write_boxes(ds: "Dataset", field: str, boxes: dict[str, list[dict]]) -> int:
    top = field.split(".")[0]
    with ds._catalog(write=True) as cat:
        written = 0
        sample_ids = list(boxes)
        for start in range(0, len(sample_ids), 2000):
            part = sample_ids[start:start + 2000]
            docs = []
            for d in cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]:
                new = {"_id": d["_id"]}
                if "." in field:  # e.g. ground_truth.detections: keep the group's other children
                    group = dict(d.get(top) or {})
                    group[field.split(".", 1)[1]] = boxes[d["_id"]]
                    new[top] = group
                else:
                    new[field] = boxes[d["_id"]]
                docs.append(new)
                written += len(boxes[d["_id"]])
            cat.write(docs, mode="merge", merge_keys=(top,))
    return written


def import_coco(ds: "Dataset", path: str | os.PathLike, *, images: str | os.PathLike | None = None,
                field: str = "ground_truth.detections", progress: bool = True) -> CocoImport:
    """Ingest the images of a COCO detection file and store its boxes as ground truth (``field``)."""
    coco = check_coco_inputs(path, images=images)
    folder = _images_folder(path, images)
    ids, missing = _samples_for(ds, coco, folder, progress)
    boxes: dict[str, list[dict]] = {}
    for iid, sid in ids.items():
        out = boxes.setdefault(sid, [])
        for a in coco["annotations"].get(iid, []):
            box = {"name": coco["categories"].get(a.get("category_id"), str(a.get("category_id"))),
                   "bbox": _bbox(a["bbox"])}
            if a.get("iscrowd"):
                box["iscrowd"] = 1
            if isinstance(a.get("area"), (int, float)):
                box["area"] = float(a["area"])
            out.append(box)
    n = _write_boxes(ds, field, boxes)
    return CocoImport(images=len(coco["images"]), samples=len(boxes), boxes=n, missing=missing)


def import_coco_predictions(ds: "Dataset", results: str | os.PathLike, coco_path: str | os.PathLike, *,
                            images: str | os.PathLike | None = None, field: str = "predictions",
                            progress: bool = True) -> CocoImport:
    """Store a COCO results file (``[{"image_id", "category_id", "bbox", "score"}]``) as predicted boxes
    (``field``) of the images of ``coco_path`` (which maps image ids to files and category ids to names).
    Images of the ground-truth file without any result get an empty list: the model found nothing there."""
    coco = read_coco(coco_path)
    rows = read_coco_results(results)
    folder = _images_folder(coco_path, images)
    ids, missing = _samples_for(ds, coco, folder, progress)
    boxes: dict[str, list[dict]] = {sid: [] for sid in ids.values()}
    for r in rows:
        if not isinstance(r, dict) or r.get("image_id") not in ids or _bbox(r.get("bbox")) is None:
            continue
        boxes[ids[r["image_id"]]].append({
            "name": coco["categories"].get(r.get("category_id"), str(r.get("category_id"))),
            "confidence": float(r.get("score", 1.0)), "bbox": _bbox(r["bbox"])})
    for sid in boxes:
        boxes[sid].sort(key=lambda b: -b["confidence"])
    n = _write_boxes(ds, field, boxes)
    return CocoImport(images=len(coco["images"]), samples=len(boxes), boxes=n, missing=missing)


GROUND_TRUTH = "ground_truth.detections"
AUTO_LABELS = "object_analysis"


def default_export_field(ds: "Dataset", query: dict | None = None) -> str:
    """The boxes a COCO export writes when none are named: the ground truth if a sample (of ``query``)
    has any, else the auto-labels (``viscurate label``)."""
    has_truth = {GROUND_TRUTH: {"$exists": True}}
    return GROUND_TRUTH if ds.count({"$and": [query, has_truth]} if query else has_truth) else AUTO_LABELS


def _is_corrupt(doc: dict) -> bool:
    """A sample COCO cannot describe: it could not be decoded, so it has no size (COCO needs one)."""
    return "corrupt" in (doc.get("issues") or ()) or not doc.get("width") or not doc.get("height")


def export_coco(ds: "Dataset", out_path: str | os.PathLike, *, field: str | None = None,
                query: dict | None = None, progress: Any = None) -> dict[str, Any]:
    """Write the boxes of ``field`` of the samples matching ``query`` as a COCO detection file.

    ``field`` defaults to :func:`default_export_field` (the ground truth, else the auto-labels).
    ``file_name`` is the sample's absolute path (so :func:`import_coco` reads the file back with any
    ``images`` folder), categories are numbered from 1 by name, scores are kept for predictions, and
    each image carries its sample's ``viscurate_id``. Corrupt samples (no size) are left out.
    ``progress(done, total)`` is called as it goes. Returns ``{"images", "annotations", "categories",
    "field", "corrupt_left_out"}``.

    >>> export_coco(ds, "labels.json", query={"split": "val"})                        # doctest: +SKIP
    """
    from ..files import write_atomic

    field = field or default_export_field(ds, query)
    total = ds.count(query)
    images, annotations, categories = [], [], {}
    corrupt = 0
    for n, doc in enumerate(ds.iter(query), 1):
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
    data = {"info": {"description": f"viscurate export of {ds.name} ({field})"}, "images": images,
            "annotations": annotations,
            "categories": [{"id": cid, "name": name} for name, cid in categories.items()]}
    write_atomic(Path(out_path), json.dumps(data).encode())
    return {"images": len(images), "annotations": len(annotations), "categories": len(categories),
            "field": field, "corrupt_left_out": corrupt}
