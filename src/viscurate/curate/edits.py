"""Hand edits of labels, each recorded with who made it and when.

An edit changes one sample: a box's class, a box removed, a missing box drawn, or the sample marked
reviewed. The change and its audit record are written in one transaction (``edits`` table of the
catalog), so the trail never misses an edit nor records one that did not happen.

Edits name a box by its index in the field *and* say what they expect there (``expect``: the box's
current class and bbox as the editor saw them); when someone changed the list meanwhile, the edit is
refused with :class:`EditConflict` instead of changing the wrong box.

>>> apply_edit(cat, "s1", {"action": "relabel", "field": "ground_truth.detections", "index": 0,
...                        "name": "dog", "expect": {"name": "cat"}}, by="ana")     # doctest: +SKIP
"""
from __future__ import annotations

import copy
import datetime as _dt
import math
from typing import TYPE_CHECKING, Any

from ..errors import ViscurateError

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["apply_edit", "EditConflict", "BOX_FIELDS", "ACTIONS", "REVIEWED_TAG"]

#: The box lists a person may edit (the models' own output is kept as it was; editing their boxes
#: changes the catalog's copy, which the next forced `label` run would overwrite).
BOX_FIELDS = ("ground_truth.detections", "object_analysis", "predictions")
ACTIONS = ("relabel", "delete_box", "add_box", "mark_reviewed", "unmark_reviewed")
REVIEWED_TAG = "reviewed"
MAX_NAME = 128


class EditConflict(ViscurateError):
    """The sample changed since the editor looked at it; reload and edit again."""


def utc_timestamp() -> str:
    """Now, as the curation records write it: ``2026-11-23T18:16:24.057Z``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _get(doc: dict, path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


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


def apply_edit(cat: "Catalog", sample_id: str, edit: dict, *, by: str | None = None) -> dict:
    """Apply one edit to a sample, with its audit record; returns the sample document after it.

    ``edit``: ``{"action": "relabel", "field", "index", "name", "expect"?}``,
    ``{"action": "delete_box", "field", "index", "expect"?}``, ``{"action": "add_box", "field", "bbox", "name"}``,
    ``{"action": "mark_reviewed"}`` or ``{"action": "unmark_reviewed"}``."""
    action = edit.get("action")
    if action not in ACTIONS:
        raise ViscurateError(f"unknown edit action {action!r}: use one of {', '.join(ACTIONS)}")
    doc = cat.get(sample_id)
    if doc is None:
        raise ViscurateError(f"no sample with _id {sample_id!r}")
    record: dict[str, Any] = {"at": utc_timestamp(), "by": by, "sample_id": sample_id, "action": action,
                              "field": None, "idx": None, "before": None, "after": None}
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
        boxes = copy.deepcopy(_get(doc, field) or [])
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
