"""Hand edits of labels, each recorded with who made it and when.

An edit changes one sample: a box's class, a box removed, a missing box drawn, or the sample marked
reviewed. The change and its audit record are written in one transaction (``edits`` table of the
catalog), so the trail never misses an edit nor records one that did not happen.

Edits name a box by its index in the field *and* say what they expect there (``expect``: the box's
current class and bbox as the editor saw them); when someone changed the list meanwhile, the edit is
refused with :class:`EditConflict` instead of changing the wrong box.

>>> apply_edit(cat, "s1", {"action": "relabel", "field": "ground_truth.detections", "index": 0,
...                        "name": "dog", "expect": {"name": "cat"}}, by="ana")     # doctest: +SKIP

A model's boxes (``object_analysis``, ``predictions``) are reviewed rather than rewritten: ``accept_label``
copies the box into ground truth (optionally with a corrected class ``name`` or ``bbox``: a relabel or a
move) and ``reject_label`` refuses it. Either way the model's box stays where it was, with a ``review``
attribute saying what the reviewer decided (:data:`LABEL_REVIEWS`), so model output is never lost and
``{"object_analysis.review": "rejected"}`` finds what people refused.

>>> apply_edit(cat, "s1", {"action": "accept_label", "field": "object_analysis", "index": 2,
...                        "name": "horse", "expect": {"name": "sheep"}}, by="ana")  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import datetime as _dt
import math
from typing import TYPE_CHECKING, Any

from ..errors import ViscurateError
from ..store.documents import get_path

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["apply_edit", "EditConflict", "BOX_FIELDS", "AUTO_LABEL_FIELDS", "ACTIONS", "LABEL_REVIEWS", "REVIEWED_TAG"]

#: The box lists a person may edit (the models' own output is kept as it was; editing their boxes
#: changes the catalog's copy, which the next forced `label` run would overwrite).
BOX_FIELDS = ("ground_truth.detections", "object_analysis", "predictions")
#: Fields holding a model's boxes, which a reviewer accepts into ground truth or rejects.
AUTO_LABEL_FIELDS = ("object_analysis", "predictions")
TRUTH_FIELD = "ground_truth.detections"
ACTIONS = ("relabel", "delete_box", "add_box", "mark_reviewed", "unmark_reviewed", "accept_label", "reject_label")
#: The ``review`` attribute of a reviewed model box: accepted as it was, accepted with another class
#: (relabeled), another box (moved), both (corrected), or rejected.
LABEL_REVIEWS = ("accepted", "relabeled", "moved", "corrected", "rejected")
REVIEWED_TAG = "reviewed"
MAX_NAME = 128


class EditConflict(ViscurateError):
    """The sample changed since the editor looked at it; reload and edit again."""


def utc_timestamp() -> str:
    """Now, as the curation records write it: ``2026-11-23T18:16:24.057Z``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _class_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise ViscurateError(f"a class name is 1-{MAX_NAME} characters, got {value!r}")
    return value.strip()


def _bbox(value: Any, width: Any, height: Any) -> list[float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise ViscurateError(f"a bbox is [x, y, width, height] in pixels, got {value!r}")
    x, y, w, h = (float(v) for v in value)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ViscurateError(f"a bbox needs x, y >= 0 and a positive width and height, got {value!r}")
    if isinstance(width, (int, float)) and isinstance(height, (int, float)) and (x + w > width + 0.5 or y + h > height + 0.5):
        raise ViscurateError(f"the bbox {value!r} reaches outside the {width}x{height} image")
    return [round(x, 2), round(y, 2), round(w, 2), round(h, 2)]


def _check_expect(box: dict, expect: Any) -> None:
    if expect is None:
        return
    if not isinstance(expect, dict):
        raise ViscurateError("expect is an object such as {\"name\": \"cat\", \"bbox\": [...]}")
    for key, want in expect.items():
        have = box.get(key)
        if key == "bbox" and isinstance(have, list) and isinstance(want, list) and len(have) == len(want):
            same = all(abs(float(a) - float(b)) < 0.01 for a, b in zip(have, want))
        else:
            same = have == want
        if not same:
            raise EditConflict(f"the box changed since you looked at it ({key}: {have!r}, expected {want!r}); reload")


def _review_label(doc: dict, edit: dict, record: dict) -> tuple[dict, list[dict]]:
    """The changes and audit records of accepting or rejecting a model's box. Accepting writes two
    records: the model's box marked, and its copy added to ground truth."""
    field = edit.get("field")
    if field not in AUTO_LABEL_FIELDS:
        raise ViscurateError(f"model boxes are reviewed in {', '.join(AUTO_LABEL_FIELDS)}, not {field!r}")
    boxes = copy.deepcopy(get_path(doc, field) or [])
    index = edit.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(boxes):
        raise ViscurateError(f"no box {index!r} in {field} (it has {len(boxes)})")
    box = boxes[index]
    _check_expect(box, edit.get("expect"))
    previous = box.get("review")
    if previous is not None and not (previous == "rejected" and edit["action"] == "accept_label"):
        # accepting twice would put the same box twice into ground truth
        raise EditConflict(f"box {index} of {field} was already {previous}; edit its ground-truth copy instead")
    marked = {**record, "field": field, "idx": index, "before": copy.deepcopy(box), "after": box}
    if edit["action"] == "reject_label":
        box["review"] = "rejected"
        return {"$set": {field: boxes}}, [marked]
    name = box.get("name") if edit.get("name") is None else _class_name(edit.get("name"))
    bbox = box.get("bbox") if edit.get("bbox") is None else _bbox(edit.get("bbox"), doc.get("width"), doc.get("height"))
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ViscurateError(f"box {index} of {field} has no bbox to accept: give one")
    renamed = name != box.get("name")
    moved = any(abs(float(a) - float(b)) >= 0.01 for a, b in zip(bbox, box.get("bbox") or [0, 0, 0, 0]))
    box["review"] = {(False, False): "accepted", (True, False): "relabeled", (False, True): "moved"}.get(
        (renamed, moved), "corrected")
    truth = copy.deepcopy(get_path(doc, TRUTH_FIELD) or [])
    # the shape the COCO importer writes (name, bbox, area), plus the box it came from
    copied = {"name": _class_name(name), "bbox": [float(v) for v in bbox],
              "area": round(float(bbox[2]) * float(bbox[3]), 2), "source": f"{field}[{index}]"}
    truth.append(copied)
    added = {**record, "action": "add_box", "field": TRUTH_FIELD, "idx": len(truth) - 1, "after": copied}
    return {"$set": {field: boxes, TRUTH_FIELD: truth}}, [marked, added]


def apply_edit(cat: "Catalog", sample_id: str, edit: dict, *, by: str | None = None) -> dict:
    """Apply one edit to a sample, with its audit record; returns the sample document after it.

    ``edit``: ``{"action": "relabel", "field", "index", "name", "expect"?}``,
    ``{"action": "delete_box", "field", "index", "expect"?}``, ``{"action": "add_box", "field", "bbox", "name"}``,
    ``{"action": "mark_reviewed"}`` or ``{"action": "unmark_reviewed"}``; for a model's box (``field``
    ``object_analysis`` or ``predictions``): ``{"action": "accept_label", "field", "index", "name"?,
    "bbox"?, "expect"?}`` (into ground truth, relabeled or moved when ``name`` / ``bbox`` differ) or
    ``{"action": "reject_label", "field", "index", "expect"?}``."""
    action = edit.get("action")
    if action not in ACTIONS:
        raise ViscurateError(f"unknown edit action {action!r}: use one of {', '.join(ACTIONS)}")
    doc = cat.get(sample_id)
    if doc is None:
        raise ViscurateError(f"no sample with _id {sample_id!r}")
    record: dict[str, Any] = {"at": utc_timestamp(), "by": by, "sample_id": sample_id, "action": action,
                              "field": None, "idx": None, "before": None, "after": None}
    if action in ("accept_label", "reject_label"):
        changes, records = _review_label(doc, edit, record)
        cat.update(None, changes, ids=[sample_id], audit=records)
        out = cat.get(sample_id)
        assert out is not None
        return out
    if action in ("mark_reviewed", "unmark_reviewed"):
        tags = list(doc.get("tags") or [])
        if action == "mark_reviewed":
            changes = {"$addToSet": {"tags": REVIEWED_TAG}}
            after = tags + ([REVIEWED_TAG] if REVIEWED_TAG not in tags else [])
        else:
            changes = {"$pull": {"tags": REVIEWED_TAG}}
            after = [t for t in tags if t != REVIEWED_TAG]
        record.update(field="tags", before=tags, after=after)
    else:
        field = edit.get("field", "ground_truth.detections")
        if field not in BOX_FIELDS:
            raise ViscurateError(f"boxes can be edited in {', '.join(BOX_FIELDS)}, not {field!r}")
        boxes = copy.deepcopy(get_path(doc, field) or [])
        record["field"] = field
        if action == "add_box":
            box = {"name": _class_name(edit.get("name")), "bbox": _bbox(edit.get("bbox"), doc.get("width"), doc.get("height"))}
            boxes.append(box)
            record.update(idx=len(boxes) - 1, after=box)
        else:
            index = edit.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(boxes):
                raise ViscurateError(f"no box {index!r} in {field} (it has {len(boxes)})")
            _check_expect(boxes[index], edit.get("expect"))
            record.update(idx=index, before=copy.deepcopy(boxes[index]))
            if action == "relabel":
                name = _class_name(edit.get("name"))
                old = boxes[index].get("name")
                boxes[index]["name"] = name
                if old is not None and old != name:
                    boxes[index]["previous_name"] = old
                record["after"] = boxes[index]
            else:
                del boxes[index]
        changes = {"$set": {field: boxes}}
    cat.update(None, changes, ids=[sample_id], audit=[record])
    out = cat.get(sample_id)
    assert out is not None
    return out
