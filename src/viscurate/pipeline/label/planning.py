"""Which samples need which roles: the label stage's plan, and the work items sent to the workers.

A sample needs a role when the model that labelled it is not the selected one (or the LQE version
changed, for the detector); it needs the embedder when its vector is missing, checked in the vector
table itself, so a batch whose vectors did not make it is embedded again.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from ...usable import MISSING, usable
from .choose import Selection
from .fields import BOX_FIELDS, MODEL_FIELD, lqe_version
from .report import StageReport

if TYPE_CHECKING:
    from ...store.catalog import Catalog


def plan(cat: "Catalog", sel: Selection, query: dict | None = None, force: bool = False,
         report: StageReport | None = None) -> list[tuple[str, frozenset]]:
    """(sample id, roles to run) for every sample that needs work, in catalog order. ``report``: gets
    the counts of the samples skipped (``missing``, ``corrupt``, ``up_to_date``)."""
    base = usable(query)
    ids = cat.ids(base)
    if report is not None:
        flagged = {"issues": MISSING}
        report.missing = cat.count({"$and": [query, flagged]} if query else flagged)
        report.corrupt = cat.count(query or {}) - len(ids) - report.missing
    if force:
        tasks = frozenset(sel.roles) | ({"crops"} if sel.crops else set())
        return [(i, tasks) for i in ids]
    need: dict[str, set[str]] = {}
    for role, fld in MODEL_FIELD.items():
        if role not in sel.roles:
            continue
        stale: list[dict] = [{f"models.{fld}": {"$ne": sel.key(role)}}]
        if role != "classifier":
            stale.append({f"{fld}_processed": {"$ne": True}})
        if role == "detector":  # a new LQE version needs the detector's augmented passes again
            stale.append({"models.label_quality_estimation": {"$ne": lqe_version()}})
        need[role] = set(cat.ids({"$and": [base, {"$or": stale}]}))
    if "pose" in need and "detector" in need:
        need["pose"] |= need["detector"]  # new boxes: new person boxes
    if "face" in need and "detector" in need:
        need["face"] |= need["detector"]  # new person boxes: faces are kept where a person is (faces.py)
    if "embedder" in sel.roles:
        key = sel.key("embedder")
        with_vec = cat.ids_with_image_vector(key)
        lacking = set(cat.ids({"$and": [base, {"embeddings": {"$ne": key}}]}))
        need["embedder"] = {i for i in ids if i not in with_vec} | lacking
        if sel.crops:
            crops = set(need.get("detector", ()))
            for fld in BOX_FIELDS:
                crops |= cat.ids_missing_box_vectors(key, fld)
            need["crops"] = crops
    out = []
    for i in ids:
        tasks = frozenset(r for r, s in need.items() if i in s)
        if tasks:
            out.append((i, tasks))
    if report is not None:
        report.up_to_date = len(ids) - len(out)
    return out


def work_items(cat: "Catalog", todo: list[tuple[str, frozenset]], chunk: int = 256) -> Iterator[tuple]:
    """The workers' items ``(id, filepath, tasks, stored)`` of the plan ``todo``, fetching the documents a
    chunk at a time (the catalog may be written meanwhile). ``stored``: the label fields this run keeps
    but the models need (see :func:`~viscurate.pipeline.label.infer.label_item`)."""
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        docs = {d["_id"]: d for d in cat.find({"_id": {"$in": [i for i, _ in part]}}, page_size=len(part))["results"]}
        for sid, tasks in part:
            doc = docs.get(sid)
            if doc is None:
                continue  # deleted since the plan
            stored: dict[str, Any] = {}
            if "detector" in tasks:
                # the LQE also weighs the tags, faces and poses this run does not recompute
                for role, fld in (("classifier", "classifications"), ("face", "face_analysis"),
                                  ("pose", "pose_estimation")):
                    if role not in tasks and fld in doc:
                        stored[fld] = doc[fld]
            elif "pose" in tasks or "crops" in tasks:
                stored["object_analysis"] = doc.get("object_analysis") or []
            if "face" in tasks and "detector" not in tasks and doc.get("object_analysis_processed"):
                # faces are kept where a person is (faces.py): the stored person boxes say where
                stored["person_boxes"] = [o for o in doc.get("object_analysis") or ()
                                          if isinstance(o, dict) and o.get("name") == "person"]
            if "crops" in tasks:
                gt = doc.get("ground_truth")
                if isinstance(gt, dict) and isinstance(gt.get("detections"), list):
                    stored["ground_truth.detections"] = gt["detections"]
            yield (sid, doc.get("filepath"), tasks, stored)
