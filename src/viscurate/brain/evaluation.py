"""Detection evaluation: predictions against ground truth, the COCO way, stored on every box and sample.

>>> report = evaluate_detections(cat, pred_field="predictions")                  # doctest: +SKIP
>>> report.map, report.ap50, report.per_class["cat"]                               # doctest: +SKIP
>>> cat.find({"eval.fp": {"$gt": 2}})                                                # doctest: +SKIP

Matching follows the COCO evaluation (``pycocotools.cocoeval``, which a test compares with): per image
and class, predictions by decreasing confidence (at most 100), each matched to the unmatched
ground-truth box it overlaps most, if that IoU reaches the threshold; boxes marked ``iscrowd`` are
regions to ignore (a prediction on one counts neither way). Average precision per class is the mean of
the interpolated precision at 101 recall points; ``map`` averages it over classes and the ten IoU
thresholds 0.50:0.05:0.95, ``ap50`` and ``ap75`` at one threshold. Classes without ground truth are left
out (there is nothing to find).

Stored, at the IoU ``iou`` (0.5 by default): on each predicted box ``eval`` = ``tp`` or ``fp`` (and
``eval_iou`` for a match), on each ground-truth box ``eval`` = ``tp`` or ``fn``, on each sample
``eval.tp``, ``eval.fp``, ``eval.fn``: ``{"eval.fn": {"$gt": 0}}`` finds images with missed objects,
``{"predictions": {"$elemMatch": {"eval": "fp", "confidence": {"$gt": 0.8}}}}`` confident mistakes.

Each false positive also says what kind of mistake it is (``eval_error``, after TIDE: Bolya et al.,
"TIDE: A General Toolbox for Identifying Object Detection Errors", ECCV 2020), from its best IoU with the
image's ground truth: ``duplicate`` (a box of its class it overlaps at ``iou`` was already matched by a
more confident prediction), ``wrong_class`` (it overlaps a box of another class at ``iou``),
``badly_placed`` (its class is there but it overlaps it only between ``BACKGROUND_IOU`` and ``iou``) or
``spurious`` (nothing there). Missed objects are the ground-truth boxes marked ``fn``. Each sample counts
them: ``eval.duplicate``, ``eval.wrong_class``, ``eval.badly_placed``, ``eval.spurious``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common.geometry import iou_matrix_xywh
from ..errors import ViscurateError
from ..store.documents import get_path
from ..usable import usable

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["EvaluationReport", "evaluate_detections", "box_iou", "error_kind", "IOU_THRESHOLDS", "ERROR_KINDS",
           "BACKGROUND_IOU"]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100
WRITE_BATCH = 1000
#: Below this IoU with every ground-truth box of its class a false positive is ``spurious``, not badly placed.
BACKGROUND_IOU = 0.1
ERROR_KINDS = ("duplicate", "wrong_class", "badly_placed", "spurious")


def error_kind(same_class_iou: float, other_class_iou: float, iou: float = 0.5) -> str:
    """What kind of false positive a prediction is, from its best IoU with a ground-truth box of its own
    class and of another class (see the module doc; the order of the checks is TIDE's).

    >>> error_kind(0.7, 0.0), error_kind(0.0, 0.8), error_kind(0.3, 0.2), error_kind(0.05, 0.3)
    ('duplicate', 'wrong_class', 'badly_placed', 'spurious')
    """
    if same_class_iou >= iou:
        return "duplicate"
    if other_class_iou >= iou:
        return "wrong_class"
    if same_class_iou >= BACKGROUND_IOU:
        return "badly_placed"
    return "spurious"


def box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of ``[x, y, w, h]`` boxes, ``(len(dt), len(gt))``; against a crowd region, the fraction of the
    prediction inside it (COCO's rule).

    >>> box_iou(np.array([[0., 0, 10, 10]]), np.array([[5., 0, 10, 10], [0, 0, 20, 20]]), np.array([False, True]))
    array([[0.33333333, 1.        ]])
    """
    if not len(dt) or not len(gt):
        return np.zeros((len(dt), len(gt)))
    return iou_matrix_xywh(dt, gt, crowd)


@dataclass
class _Match:
    """One image and class: predictions (best first, at most 100) and their matches per threshold."""

    scores: np.ndarray
    dt_index: np.ndarray  # positions in the sample's prediction list
    gt_index: np.ndarray  # positions in the sample's ground-truth list (non-crowd first)
    gt_crowd: np.ndarray
    dt_match: np.ndarray  # (thresholds, dts): matched gt position in gt_index order, -1 none
    dt_ignored: np.ndarray  # (thresholds, dts): matched a crowd region
    gt_matched: np.ndarray  # (thresholds, gts)
    ious: np.ndarray


def _match(dt_boxes, dt_scores, gt_boxes, gt_crowd, thresholds) -> _Match:
    order = np.argsort(-dt_scores, kind="mergesort")[:MAX_DETECTIONS]
    g_order = np.argsort(gt_crowd, kind="mergesort")  # regular boxes first, crowd regions last
    dt, gt, crowd = dt_boxes[order], gt_boxes[g_order], gt_crowd[g_order]
    ious = box_iou(dt, gt, crowd)
    t_n, d_n, g_n = len(thresholds), len(dt), len(gt)
    dt_match = np.full((t_n, d_n), -1)
    dt_ignored = np.zeros((t_n, d_n), bool)
    gt_matched = np.zeros((t_n, g_n), bool)
    for ti, t in enumerate(thresholds):
        for d in range(d_n):
            best, m = min(t, 1 - 1e-10), -1
            for g in range(g_n):
                if gt_matched[ti, g] and not crowd[g]:
                    continue
                if m > -1 and not crowd[m] and crowd[g]:
                    break  # a regular match beats any crowd region
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m == -1:
                continue
            dt_match[ti, d] = m
            dt_ignored[ti, d] = crowd[m]
            gt_matched[ti, m] = True
    return _Match(dt_scores[order], order, g_order, crowd, dt_match, dt_ignored, gt_matched, ious)


def _average_precision(scores: np.ndarray, tp: np.ndarray, fp: np.ndarray, positives: int) -> float:
    """COCO's 101-point interpolated AP of detections pooled over images (``scores`` in pooling order)."""
    order = np.argsort(-scores, kind="mergesort")
    tps, fps = np.cumsum(tp[order]), np.cumsum(fp[order])
    recall = tps / positives
    precision = tps / (tps + fps + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
    q = np.zeros(len(RECALL_POINTS))
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    ok = idx < len(precision)
    q[ok] = precision[idx[ok]]
    return float(q.mean())


@dataclass
class EvaluationReport:
    """``map`` (AP averaged over classes and IoU 0.50:0.95), ``ap50``, ``ap75``; ``per_class``: per class
    ``ap``, ``ap50``, ``ap75``, ``ground_truth``, ``predictions``, and at ``iou``: ``tp``, ``fp``, ``fn``,
    ``precision``, ``recall``; ``samples``: images evaluated (those with a ground-truth list)."""

    pred_field: str
    gt_field: str
    iou: float
    samples: int = 0
    map: float | None = None
    ap50: float | None = None
    ap75: float | None = None
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # false positives by kind (ERROR_KINDS)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, 4)  # noqa: E731
        return {"pred_field": self.pred_field, "gt_field": self.gt_field, "iou": self.iou, "samples": self.samples,
                "map": r(self.map), "ap50": r(self.ap50), "ap75": r(self.ap75), "totals": self.totals,
                "errors": self.errors,
                "per_class": self.per_class, "seconds": round(self.seconds, 3)}


def _boxes(objs: list) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    names, boxes, scores, crowd = [], [], [], []
    for o in objs:
        b = o.get("bbox") if isinstance(o, dict) else None
        if not (isinstance(b, list) and len(b) == 4):
            b = [0.0, 0.0, 0.0, 0.0]
        names.append(str(o.get("name")) if isinstance(o, dict) else "")
        boxes.append([float(v) for v in b])
        scores.append(float(o.get("confidence", 1.0) or 0.0) if isinstance(o, dict) else 0.0)
        crowd.append(bool(o.get("iscrowd")) if isinstance(o, dict) else False)
    return names, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores), np.asarray(crowd, bool)


def evaluate_detections(cat: "Catalog", *, pred_field: str = "predictions",
                        gt_field: str = "ground_truth.detections", iou: float = 0.5, query: dict | None = None,
                        write: bool = True) -> EvaluationReport:
    """Evaluate the boxes of ``pred_field`` against those of ``gt_field`` on the samples matching ``query``
    that have a ``gt_field`` list (an empty list: an image with nothing to find); see the module doc."""
    t0 = time.monotonic()
    if not 0 < iou < 1:
        raise ViscurateError(f"iou must be between 0 and 1, got {iou!r}")
    for f in (pred_field, gt_field):
        spec = cat.fields.get(f)
        if spec is None or spec.kind != "objects":
            raise ViscurateError(f"{f!r} is not a box list; box lists: "
                                 f"{', '.join(p for p, s in cat.fields.items() if s.kind == 'objects')}")
    scope = {"$and": [usable(query), {gt_field: {"$exists": True}}]}
    thresholds = np.unique(np.concatenate([IOU_THRESHOLDS, [iou]]))
    at = int(np.nonzero(np.isclose(thresholds, iou))[0][0])
    coco_t = [int(np.nonzero(np.isclose(thresholds, t))[0][0]) for t in IOU_THRESHOLDS]
    report = EvaluationReport(pred_field=pred_field, gt_field=gt_field, iou=float(iou))
    pooled: dict[str, dict[str, list]] = {}  # class -> scores, tp/fp per threshold, positives
    marks: dict[str, tuple[dict[int, tuple], dict[int, str]]] = {}
    errors = dict.fromkeys(ERROR_KINDS, 0)
    for doc in cat.iter_docs(scope):
        report.samples += 1
        p_names, p_boxes, p_scores, _ = _boxes(get_path(doc, pred_field) or [])
        g_names, g_boxes, _, g_crowd = _boxes(get_path(doc, gt_field) or [])
        p_marks: dict[int, tuple[str, float | None]] = {}
        g_marks: dict[int, str] = {}
        for name in sorted(set(p_names) | set(g_names)):
            pi = np.array([i for i, n in enumerate(p_names) if n == name], np.int64)
            gi = np.array([i for i, n in enumerate(g_names) if n == name], np.int64)
            m = _match(p_boxes[pi], p_scores[pi], g_boxes[gi], g_crowd[gi], thresholds)
            acc = pooled.setdefault(name, {"scores": [], "tp": [], "fp": [], "positives": 0, "predictions": 0,
                                           "ground_truth": 0})
            acc["scores"].append(m.scores)
            matched = m.dt_match >= 0
            acc["tp"].append(matched & ~m.dt_ignored)
            acc["fp"].append(~matched)
            acc["positives"] += int((~m.gt_crowd).sum())
            acc["ground_truth"] += int((~m.gt_crowd).sum())
            acc["predictions"] += len(pi)
            for d, src in enumerate(m.dt_index):
                j = int(m.dt_match[at, d])
                if j < 0:
                    p_marks[int(pi[src])] = ("fp", None)
                elif not m.dt_ignored[at, d]:
                    p_marks[int(pi[src])] = ("tp", round(float(m.ious[d, j]), 4))
            for g, src in enumerate(m.gt_index):
                if not m.gt_crowd[g]:
                    g_marks[int(gi[src])] = "tp" if m.gt_matched[at, g] else "fn"
        fps = [i for i, mk in p_marks.items() if mk[0] == "fp"]
        if fps:
            real = np.nonzero(~g_crowd)[0]
            ious = box_iou(p_boxes[fps], g_boxes[real], np.zeros(len(real), bool))
            same = np.array([[g_names[j] == p_names[i] for j in real] for i in fps], bool).reshape(ious.shape)
            for row, i in enumerate(fps):
                kind = error_kind(float(ious[row][same[row]].max(initial=0.0)),
                                  float(ious[row][~same[row]].max(initial=0.0)), iou)
                p_marks[i] = ("fp", None, kind)
                errors[kind] += 1
        marks[doc["_id"]] = (p_marks, g_marks)

    aps = []
    for name, acc in sorted(pooled.items()):
        scores = np.concatenate(acc["scores"]) if acc["scores"] else np.zeros(0)
        tp = np.concatenate(acc["tp"], axis=1) if acc["tp"] else np.zeros((len(thresholds), 0), bool)
        fp = np.concatenate(acc["fp"], axis=1) if acc["fp"] else np.zeros((len(thresholds), 0), bool)
        row: dict[str, Any] = {"ground_truth": acc["ground_truth"], "predictions": acc["predictions"],
                               "tp": int(tp[at].sum()), "fp": int(fp[at].sum()),
                               "fn": int(acc["positives"] - tp[at].sum())}
        row["precision"] = round(row["tp"] / max(1, row["tp"] + row["fp"]), 4)
        row["recall"] = round(row["tp"] / acc["positives"], 4) if acc["positives"] else None
        if acc["positives"]:
            per_t = [_average_precision(scores, tp[t], fp[t], acc["positives"]) for t in coco_t]
            aps.append(per_t)
            row.update(ap=round(float(np.mean(per_t)), 4), ap50=round(per_t[0], 4), ap75=round(per_t[5], 4))
        report.per_class[name] = row
    if aps:
        a = np.asarray(aps)
        report.map, report.ap50, report.ap75 = float(a.mean()), float(a[:, 0].mean()), float(a[:, 5].mean())
    report.totals = {k: int(sum(r[k] for r in report.per_class.values())) for k in ("tp", "fp", "fn")}
    report.errors = errors
    if write:
        _store(cat, pred_field, gt_field, marks)
    report.seconds = time.monotonic() - t0
    return report


def _store(cat: "Catalog", pred_field: str, gt_field: str, marks: dict) -> None:
    keys = sorted({pred_field.split(".")[0], gt_field.split(".")[0], "eval"})
    ids = list(marks)
    for start in range(0, len(ids), WRITE_BATCH):
        part = ids[start:start + WRITE_BATCH]
        out = []
        for doc in cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]:
            p_marks, g_marks = marks[doc["_id"]]
            for path, mk in ((pred_field, p_marks), (gt_field, g_marks)):
                objs = get_path(doc, path)
                if not isinstance(objs, list):
                    continue
                for i, o in enumerate(objs):
                    if not isinstance(o, dict):
                        continue
                    o.pop("eval", None)
                    o.pop("eval_iou", None)
                    o.pop("eval_error", None)
                    got = mk.get(i)
                    if isinstance(got, tuple):
                        o["eval"] = got[0]
                        if got[1] is not None:
                            o["eval_iou"] = got[1]
                        if len(got) > 2:
                            o["eval_error"] = got[2]
                    elif got:
                        o["eval"] = got
            new = {k: doc[k] for k in keys if k in doc and k != "eval"}
            new["_id"] = doc["_id"]
            new["eval"] = {"tp": sum(1 for v in p_marks.values() if v[0] == "tp"),
                           "fp": sum(1 for v in p_marks.values() if v[0] == "fp"),
                           "fn": sum(1 for v in g_marks.values() if v == "fn"),
                           **{k: sum(1 for v in p_marks.values() if len(v) > 2 and v[2] == k) for k in ERROR_KINDS}}
            out.append(new)
        cat.write(out, mode="merge", merge_keys=keys)
