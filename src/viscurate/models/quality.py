"""Label quality estimation (LQE): how likely each detected box is a *correct* label, as a calibrated
probability in [0, 1], and a per-image summary.

A detection is correct when a ground-truth box of the same class overlaps it with IoU >= 0.5 (each
ground-truth box counted once). The detector's own confidence already ranks boxes; LQE adds evidence the
detector cannot see from inside one forward pass, and combines it with a small logistic regression whose
constants live in this file (fitted by ``bench/lqe_eval.py``; see ``docs/label-quality.md``):

- **test-time augmentation** (:func:`tta_consistency`): is the box found again, same class, same place,
  when the detector looks at the horizontally flipped image and at a 0.75x rescaled one?
- **agreement with the other models** (:func:`agreement`): does one of the image's top-5 ImageNet tags
  speak for the box's class (``tabby`` -> ``cat``, via :mod:`viscurate.models.imagenet_coco`)? For a
  ``person``: is a face inside the box, do the pose keypoints found in it look like a body?
- **rivals**: does a more confident box of another class cover the same pixels (``bowl`` on a ``cup``)?
- **neighbours** (dataset-wide, after every box is embedded; :func:`neighbour_agreement`,
  :func:`refine_with_neighbours`): do the most similar boxes of the whole dataset carry the same class?

Everything here is plain numpy, deterministic, and independent of any model runtime; the label stage
runs the models and passes their outputs in (boxes ``[x, y, w, h]`` in pixels of one image).

>>> from viscurate.models.base import Detection, Tag
>>> cat = Detection("cat", 0.91, [8, 0, 400, 296])
>>> flip, scale = [Detection("cat", 0.90, [10, 1, 398, 295])], [Detection("cat", 0.88, [9, 0, 401, 297])]
>>> [(round(q, 2) > 0.5, s["tag_agree"]) for q, s in
...  label_quality([cat], flip, scale, [Tag("tabby", 0.8)], [], [])]
[(True, 0.8)]
>>> image_label_quality([0.9, 0.5]), image_label_quality([])
(0.7, None)
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .base import Detection, Face, Pose, Tag
from .imagenet_coco import coco_classes_for_tag, has_imagenet_evidence

__all__ = [
    "VERSION", "SIGNALS", "FEATURES", "TTA_SCALE", "TTA_MIN_CONFIDENCE", "iou_matrix", "tta_consistency",
    "agreement", "rival_overlap", "label_quality", "features", "predict", "image_label_quality",
    "neighbour_agreement", "refine_with_neighbours", "flip_detections", "scale_detections",
]

#: Written with every estimate (``lqe@VERSION``); bumped whenever the signals or the constants change.
VERSION = "1"

#: The test-time augmentation protocol the constants were fitted with: the horizontal flip, and the image
#: resized by this factor; both passes keep boxes down to ``TTA_MIN_CONFIDENCE`` (evidence only).
TTA_SCALE = 0.75
TTA_MIN_CONFIDENCE = 0.1

#: Keypoint score above which a MoveNet keypoint counts as found.
KEYPOINT_MIN_SCORE = 0.3
#: A pose belongs to the detection whose box it was estimated in (IoU at least this).
POSE_BOX_MIN_IOU = 0.9

#: Signals every estimate reports (``None`` where a signal does not apply to the box).
SIGNALS = ("confidence", "tta_flip", "tta_scale", "tta", "tta_confidence", "rival_overlap", "tag_agree",
           "face_agree", "pose_agree")

# ---- the calibrated model -----------------------------------------------------------------------
# Logistic regression  lqe = sigmoid(INTERCEPT + sum_i WEIGHTS[i] * x_i)  over FEATURES, where x_i is the
# feature (see features()) minus its training mean, and a missing signal (None: e.g. face_agree for a
# dog) takes the value 0 (= the mean; it neither raises nor lowers the estimate).
# Fitted by `python bench/lqe_eval.py --fit` (L2-regularized, standardized features, all labeled
# detections); the numbers, data and cross-validated AUROCs are in docs/label-quality.md.
FEATURES = ("logit_confidence", "tta", "tta_confidence", "rival_overlap", "tag_agree", "face_agree",
            "pose_agree")
MEANS = {"logit_confidence": 0.0, "tta": 0.5, "tta_confidence": 0.3, "rival_overlap": 0.1, "tag_agree": 0.2,
         "face_agree": 0.3, "pose_agree": 0.5}
WEIGHTS = {"logit_confidence": 1.0, "tta": 1.0, "tta_confidence": 1.0, "rival_overlap": -1.0, "tag_agree": 1.0,
           "face_agree": 1.0, "pose_agree": 1.0}
INTERCEPT = 0.0

# refine_with_neighbours: lqe' = sigmoid(NB_INTERCEPT + NB_SLOPE * logit(lqe) + NB_WEIGHT * (agreement - NB_MEAN))
NB_INTERCEPT, NB_SLOPE, NB_WEIGHT, NB_MEAN = 0.0, 1.0, 1.0, 0.5


# ---- geometry -----------------------------------------------------------------------------------

def _boxes(dets: Iterable[Detection] | None) -> np.ndarray:
    """``(n, 4)`` float64 ``[x, y, w, h]``; NaN/inf become 0 and negative sizes 0."""
    rows = [list(d.bbox)[:4] for d in dets or ()]
    if not rows:
        return np.zeros((0, 4), np.float64)
    a = np.nan_to_num(np.asarray(rows, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    a[:, 2:] = np.maximum(a[:, 2:], 0.0)
    return a


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[x, y, w, h]`` boxes: ``(len(a), len(b))``.

    >>> iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10], [20, 20, 1, 1]])).round(3)
    array([[0.333, 0.   ]])
    """
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def flip_detections(dets: Iterable[Detection], width: float) -> list[Detection]:
    """Boxes found on the horizontally flipped image, mapped back to the original (image ``width``)."""
    return [Detection(d.name, d.confidence, [width - d.bbox[0] - d.bbox[2], d.bbox[1], d.bbox[2], d.bbox[3]],
                      d.class_id) for d in dets]


def scale_detections(dets: Iterable[Detection], sx: float, sy: float | None = None) -> list[Detection]:
    """Boxes found on a resized image, mapped back: ``x_original = x * sx`` (``sx = original / resized``)."""
    sy = sx if sy is None else sy
    return [Detection(d.name, d.confidence, [d.bbox[0] * sx, d.bbox[1] * sy, d.bbox[2] * sx, d.bbox[3] * sy],
                      d.class_id) for d in dets]


# ---- signals ------------------------------------------------------------------------------------

def _best_same_class(dets: Sequence[Detection], aug: Sequence[Detection] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per det: the best IoU with an augmented box of the same class, and that box's confidence (0, 0 when
    the class is not found again). ``aug=None`` (the pass did not run) gives NaN."""
    n = len(dets)
    if aug is None:
        return np.full(n, np.nan), np.full(n, np.nan)
    best, conf = np.zeros(n), np.zeros(n)
    if n == 0 or not aug:
        return best, conf
    iou = iou_matrix(_boxes(dets), _boxes(aug))
    same = np.array([[d.name == a.name for a in aug] for d in dets], bool)
    iou = np.where(same, iou, 0.0)
    j = np.argmax(iou, axis=1)  # first maximum: deterministic
    best = iou[np.arange(n), j]
    aconf = np.array([a.confidence for a in aug], np.float64)
    conf = np.where(best > 0, aconf[j], 0.0)
    return best, conf


def _tta(dets: Sequence[Detection], flip_dets: Sequence[Detection] | None,
         scale_dets: Sequence[Detection] | None) -> dict[str, np.ndarray]:
    fi, fc = _best_same_class(dets, flip_dets)
    si, sc = _best_same_class(dets, scale_dets)
    with np.errstate(all="ignore"):
        iou = np.nanmean(np.vstack([fi, si]), axis=0) if len(dets) else np.zeros(0)
        # a reproduction counts by its confidence when it overlaps well (IoU >= 0.5), else not at all
        conf = np.nanmean(np.vstack([np.where(fi >= 0.5, fc, np.where(np.isnan(fi), np.nan, 0.0)),
                                     np.where(si >= 0.5, sc, np.where(np.isnan(si), np.nan, 0.0))]), axis=0) \
            if len(dets) else np.zeros(0)
    return {"tta_flip": fi, "tta_scale": si, "tta": iou, "tta_confidence": conf}


def tta_consistency(dets: Sequence[Detection], flip_dets: Sequence[Detection] | None,
                    scale_dets: Sequence[Detection] | None) -> list[float]:
    """Per detection: how well test-time augmentation reproduces it, in [0, 1]: the mean, over the flipped
    and the rescaled pass, of the best IoU with a box of the same class found there (0 when the class is
    not found again near it). The augmented boxes must already be mapped back to original pixels
    (:func:`flip_detections`, :func:`scale_detections`). A pass given as ``None`` is left out.

    >>> d = [Detection("dog", 0.8, [0, 0, 10, 10]), Detection("cat", 0.4, [50, 50, 10, 10])]
    >>> tta_consistency(d, [Detection("dog", 0.7, [0, 0, 10, 10])], [Detection("dog", 0.7, [5, 0, 10, 10])])
    [0.6666666666666666, 0.0]
    """
    v = _tta(list(dets), flip_dets, scale_dets)["tta"]
    return [float(x) if np.isfinite(x) else 0.0 for x in v]


def rival_overlap(dets: Sequence[Detection]) -> list[float]:
    """Per detection: the largest IoU with a *more confident* detection of another class (0 if none): two
    classes claiming the same pixels cannot both be right, and the weaker one is usually the wrong one.

    >>> rival_overlap([Detection("cup", 0.95, [0, 0, 10, 10]), Detection("bowl", 0.87, [0, 0, 10, 11])])
    [0.0, 0.9090909090909091]
    """
    dets = list(dets)
    n = len(dets)
    if n < 2:
        return [0.0] * n
    iou = iou_matrix(_boxes(dets), _boxes(dets))
    conf = np.array([d.confidence for d in dets], np.float64)
    names = np.array([d.name for d in dets], object)
    idx = np.arange(n)
    stronger = (conf[None, :] > conf[:, None]) | ((conf[None, :] == conf[:, None]) & (idx[None, :] < idx[:, None]))
    other = names[None, :] != names[:, None]
    return [float(x) for x in np.where(stronger & other, iou, 0.0).max(axis=1)]


def _tag_agree(name: str, tags: Sequence[Tag] | None) -> float | None:
    """The summed confidence of the tags that speak for ``name`` (capped at 1); ``None`` when no ImageNet
    class can speak for it or there are no tags."""
    if tags is None or not has_imagenet_evidence(name):
        return None
    tags = list(tags)
    if not tags:
        return None
    s = sum(float(t.confidence) for t in tags if name in coco_classes_for_tag(t.name, t.class_id))
    return min(1.0, max(0.0, s))


def _inside(points: np.ndarray, box: Sequence[float], pad: float = 0.0) -> np.ndarray:
    x, y, w, h = (float(v) for v in box[:4])
    px, py = w * pad, h * pad
    return ((points[:, 0] >= x - px) & (points[:, 0] <= x + w + px) &
            (points[:, 1] >= y - py) & (points[:, 1] <= y + h + py))


def _face_agree(det: Detection, faces: Sequence[Face] | None) -> float | None:
    """For a person: the best confidence of a face whose center lies in the box and that is smaller than it
    (0 when none). ``None`` for other classes or when faces were not looked for."""
    if det.name != "person" or faces is None:
        return None
    best = 0.0
    for f in faces:
        fx, fy, fw, fh = (float(v) for v in f.bbox[:4])
        if fw * fh <= 0 or fw * fh > float(det.bbox[2]) * float(det.bbox[3]):
            continue
        if _inside(np.array([[fx + fw / 2, fy + fh / 2]]), det.bbox)[0]:
            best = max(best, float(f.confidence))
    return best


def _pose_agree(det: Detection, poses: Sequence[Pose] | None) -> float | None:
    """For a person whose box a pose was estimated in: the fraction of the 17 keypoints found (score >=
    KEYPOINT_MIN_SCORE) inside the box (10% margin). ``None`` when no pose belongs to the box."""
    if det.name != "person" or not poses:
        return None
    boxes = _boxes([Detection("", 0.0, list(p.bbox)) for p in poses])
    iou = iou_matrix(_boxes([det]), boxes)[0]
    j = int(np.argmax(iou))
    if iou[j] < POSE_BOX_MIN_IOU:
        return None
    kp = np.asarray(poses[j].keypoints, np.float64).reshape(-1, 3)
    if not len(kp):
        return None
    found = (kp[:, 2] >= KEYPOINT_MIN_SCORE) & _inside(kp[:, :2], det.bbox, pad=0.1)
    return float(found.sum() / 17.0)


def agreement(dets: Sequence[Detection], tags: Sequence[Tag] | None, faces: Sequence[Face] | None,
              poses: Sequence[Pose] | None) -> list[dict[str, float | None]]:
    """Per detection, what the other models say about it, as named signals in [0, 1] (``None``: the signal
    does not apply to the box, e.g. a face for a dog, or the model did not run):

    - ``tag_agree``: summed confidence of the image's ImageNet tags that map to the box's class;
    - ``face_agree`` (persons): best confidence of a face inside the box;
    - ``pose_agree`` (persons): fraction of the 17 keypoints found inside the box;
    - ``rival_overlap``: IoU with a more confident box of another class (see :func:`rival_overlap`).

    >>> p = Detection("person", 0.7, [0, 0, 100, 200])
    >>> agreement([p], [Tag("suit", 0.6)], [Face(0.9, [30, 10, 40, 40])], [])[0]
    {'tag_agree': 0.6, 'face_agree': 0.9, 'pose_agree': None, 'rival_overlap': 0.0}
    """
    dets = list(dets)
    rivals = rival_overlap(dets)
    return [{"tag_agree": _tag_agree(d.name, tags), "face_agree": _face_agree(d, faces),
             "pose_agree": _pose_agree(d, poses), "rival_overlap": r} for d, r in zip(dets, rivals)]


# ---- the model ----------------------------------------------------------------------------------

def _logit(p: float, eps: float = 1e-4) -> float:
    p = min(1.0 - eps, max(eps, float(p)))
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def features(signals: Mapping[str, Any]) -> dict[str, float | None]:
    """The model's inputs (:data:`FEATURES`) from a signals dict; ``None`` where a signal is missing."""
    def val(k: str) -> float | None:
        v = signals.get(k)
        if v is None:
            return None
        v = float(v)
        return v if math.isfinite(v) else None
    conf = val("confidence")
    return {"logit_confidence": None if conf is None else _logit(conf), "tta": val("tta"),
            "tta_confidence": val("tta_confidence"), "rival_overlap": val("rival_overlap"),
            "tag_agree": val("tag_agree"), "face_agree": val("face_agree"), "pose_agree": val("pose_agree")}


def predict(signals: Mapping[str, Any], weights: Mapping[str, float] | None = None,
            means: Mapping[str, float] | None = None, intercept: float | None = None) -> float:
    """The calibrated probability that the box is correct, from its signals (the file's constants unless
    others are given, as ``bench/lqe_eval.py`` does while fitting)."""
    weights = WEIGHTS if weights is None else weights
    means = MEANS if means is None else means
    z = INTERCEPT if intercept is None else float(intercept)
    for k, v in features(signals).items():
        if v is not None and k in weights:
            z += float(weights[k]) * (v - float(means.get(k, 0.0)))
    return _sigmoid(z)


def label_quality(dets: Sequence[Detection], flip_dets: Sequence[Detection] | None,
                  scale_dets: Sequence[Detection] | None, tags: Sequence[Tag] | None,
                  faces: Sequence[Face] | None, poses: Sequence[Pose] | None
                  ) -> list[tuple[float, dict[str, float | None]]]:
    """Per detection: ``(lqe, signals)``, ``lqe`` the calibrated probability in [0, 1] that the box is a
    correct label, ``signals`` the evidence it was computed from (:data:`SIGNALS`, rounded to 4 digits,
    ``None`` where one does not apply). ``flip_dets``/``scale_dets`` are the detector's boxes on the
    flipped and on the rescaled image mapped back to original pixels (``None``: not run); ``tags`` the
    image's top-5 ImageNet tags, ``faces`` its faces, ``poses`` the poses estimated in its person boxes.
    """
    dets = list(dets)
    if not dets:
        return []
    tta = _tta(dets, flip_dets, scale_dets)
    agree = agreement(dets, tags, faces, poses)
    out = []
    for i, d in enumerate(dets):
        s: dict[str, float | None] = {"confidence": float(d.confidence)}
        for k in ("tta_flip", "tta_scale", "tta", "tta_confidence"):
            v = float(tta[k][i])
            s[k] = v if math.isfinite(v) else None
        s.update(agree[i])
        s = {k: (None if v is None else round(float(v), 4)) for k, v in s.items()}
        out.append((predict(s), s))
    return out


def image_label_quality(object_lqes: Iterable[float | None]) -> float | None:
    """Per image: the mean LQE of its boxes, i.e. the expected fraction of its labels that are correct
    (the expected precision of the image's labels). ``None`` when it has no (scored) boxes."""
    vals = [float(v) for v in object_lqes if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    return float(sum(vals) / len(vals))


# ---- dataset-wide: neighbours -------------------------------------------------------------------

def neighbour_agreement(names: Sequence[str], embeddings: np.ndarray, k: int = 10,
                        groups: Sequence[Any] | None = None) -> np.ndarray:
    """Per object: the fraction of its ``k`` nearest neighbours (cosine similarity of the box embeddings,
    itself excluded; with ``groups``, e.g. sample ids, boxes of its own group are excluded too) that
    carry the same class name. NaN for an object with no neighbour. Exact search (numpy, in blocks);
    ties go to the lower index, so the result is deterministic.

    >>> e = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    >>> neighbour_agreement(["cat", "cat", "dog", "cat"], e, k=1).tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    n = len(names)
    x = np.asarray(embeddings, np.float32).reshape(n, -1) if n else np.zeros((0, 1), np.float32)
    out = np.full(n, np.nan)
    if n < 2 or k < 1:
        return out
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    codes = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)[1]
    g = None if groups is None else np.unique(np.asarray(list(groups), dtype=object).astype(str),
                                              return_inverse=True)[1]
    kk = min(int(k), n - 1)
    block = max(1, min(n, (1 << 22) // n))  # rows per block: ~4M similarities (16 MB) at a time
    for start in range(0, n, block):
        stop = min(n, start + block)
        sim = x[start:stop] @ x.T  # (b, n)
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        if g is not None:
            sim[g[start:stop, None] == g[None, :]] = -np.inf
        # the kk largest per row, ties broken by the lower index: everything above the kk-th value, then
        # as many of the entries equal to it as are still needed, leftmost first
        kth = -np.partition(-sim, kk - 1, axis=1)[:, kk - 1]
        above = sim > kth[:, None]
        tie = sim == kth[:, None]
        need = kk - above.sum(axis=1)
        chosen = (above | (tie & (np.cumsum(tie, axis=1) <= need[:, None]))) & np.isfinite(sim)
        same = chosen & (codes[None, :] == codes[start:stop, None])
        cnt = chosen.sum(axis=1)
        out[start:stop] = np.where(cnt > 0, same.sum(axis=1) / np.maximum(cnt, 1), np.nan)
    return out


def refine_with_neighbours(lqe: float, signals: dict | None, agreement: float | None) -> float:
    """A box's LQE refined by its neighbour agreement (:func:`neighbour_agreement`): a second small
    logistic model on ``logit(lqe)`` and the agreement (constants ``NB_*``, fitted by
    ``bench/lqe_eval.py``). ``signals`` (if given) gets ``neighbour_agreement`` recorded in it. A missing
    or NaN agreement leaves ``lqe`` unchanged."""
    if agreement is None or not math.isfinite(float(agreement)):
        return float(lqe)
    a = float(agreement)
    if signals is not None:
        signals["neighbour_agreement"] = round(a, 4)
    return _sigmoid(NB_INTERCEPT + NB_SLOPE * _logit(lqe) + NB_WEIGHT * (a - NB_MEAN))
