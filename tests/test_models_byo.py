"""Bring-your-own models: every loader runs real onnxruntime (or torch) inference on a small model that the
test builds and saves itself, and whose outputs are known exactly.

The YOLO test graphs hold constant anchor boxes and class scores; each anchor's score is multiplied by one
pixel of the model's input (the "probe" at the anchor's centre), so an anchor fires only where the
*letterboxed* input is white. The test images are black with white rectangles, and a box comes out in the
right place only if the letterbox, the decoding, the NMS and the letterbox undo are all right.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="building the test models needs the onnx package")
pytest.importorskip("onnxruntime", reason="ONNX models run with onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from viscurate.common.geometry import batched_nms, nms  # noqa: E402
from viscurate.models.base import DetectorModel, EmbedderModel  # noqa: E402
from viscurate.models.byo import Factory, build_model, describe, load_model  # noqa: E402
from viscurate.models.litert import ModelClosed  # noqa: E402
from viscurate.models.onnx_detector import OnnxDetector, letterbox  # noqa: E402
from viscurate.models.onnx_embedder import OnnxEmbedder  # noqa: E402
from viscurate.models.user_model import ModelLoadError  # noqa: E402

OPSET = 17
CLASSES = ["cat", "dog", "bird"]
S = 640  # model input side

# anchors in model-input pixels: (cx, cy, w, h), class, score
ANCHORS = [
    ((320, 320, 200, 100), 0, 0.90),  # object 1, a cat
    ((324, 322, 200, 100), 0, 0.80),  # a duplicate of it (IoU 0.92): suppressed by NMS
    ((320, 320, 200, 100), 1, 0.70),  # the same box as a dog: kept (NMS is per class)
    ((400, 420, 60, 60), 2, 0.60),    # object 2, a bird
    ((320, 60, 100, 60), 0, 0.95),    # its probe lies in the letterbox padding (grey 114): 0.95 * 0.447 < 0.5
    ((200, 200, 40, 40), 1, 0.99),    # its probe lies on black: never fires
]

# the same two objects drawn in a wide image (320 x 160: scale 2, 160 px of padding top and bottom) and a
# tall one (160 x 320: scale 2, 160 px of padding left and right), as image-pixel x1, y1, x2, y2
WIDE = {"size": (320, 160), "obj1": (110, 55, 210, 105), "obj2": (185, 115, 215, 145)}
TALL = {"size": (160, 320), "obj1": (30, 135, 130, 185), "obj2": (105, 195, 135, 225)}


def scene(spec: dict) -> np.ndarray:
    w, h = spec["size"]
    img = np.zeros((h, w, 3), np.uint8)
    for key in ("obj1", "obj2"):
        x1, y1, x2, y2 = spec[key]
        img[y1:y2, x1:x2] = 255
    return img


def xywh(xyxy) -> list[float]:
    x1, y1, x2, y2 = xyxy
    return [x1, y1, x2 - x1, y2 - y1]


def expected_scene(spec: dict) -> list[tuple[str, float, list[float]]]:
    return [("cat", 0.90, xywh(spec["obj1"])), ("dog", 0.70, xywh(spec["obj1"])), ("bird", 0.60, xywh(spec["obj2"]))]


def assert_detections(got, expected, tol=1.0):
    assert [d.name for d in got] == [n for n, _, _ in expected]
    for d, (_, conf, box) in zip(got, expected):
        assert d.confidence == pytest.approx(conf, abs=1e-4)
        assert np.allclose(d.bbox, box, atol=tol), (d.bbox, box)
        assert d.class_id == CLASSES.index(d.name)


# ---------------------------------------------------------------------------------------------------------
# graph builders

def _const(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _save(graph, path: Path, metadata: dict | None = None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="viscurate-test")
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _probe_gates(nodes, inits, probes, height, width, input_name="images"):
    """Nodes computing ``gate (N, 1, A)``: channel 0 of the input at each (x, y) probe."""
    idx = np.array([y * width + x for x, y in probes], np.int64)
    inits += [_const("flat_shape", np.array([0, -1], np.int64)), _const("probe_idx", idx),
              _const("axis1", np.array([1], np.int64)), _const("zero", np.array(0.0, np.float32))]
    nodes += [helper.make_node("Reshape", [input_name, "flat_shape"], ["flat"]),
              helper.make_node("Gather", ["flat", "probe_idx"], ["g"], axis=1),
              helper.make_node("Unsqueeze", ["g", "axis1"], ["gate"]),        # (N, 1, A)
              helper.make_node("Mul", ["gate", "zero"], ["zeros"])]           # (N, 1, A) of zeros


def yolo_model(path: Path, layout: str = "v8", batch: int | str = "N", anchors=ANCHORS, metadata=None) -> Path:
    """A YOLO-layout graph with the given anchors. layout: v8 (N, 4+C, A), rows (N, A, 4+C), v5 (N, A, 5+C).
    Zero-score anchors fill it up to 32, so that, as in real models, there are more anchors than channels."""
    fillers = max(0, 32 - len(anchors))
    anchors = list(anchors) + [((8.0 + 16 * i, 8.0, 16.0, 16.0), 0, 0.0) for i in range(fillers)]
    a, c = len(anchors), len(CLASSES)
    boxes = np.array([b for b, _, _ in anchors], np.float32).T[None]          # (1, 4, A)
    scores = np.full((1, c, a), 0.02, np.float32)                             # other classes: low
    for i, (_, k, s) in enumerate(anchors):
        scores[0, k, i] = s
        if s == 0.0:
            scores[0, :, i] = 0.0
    probes = [(int(b[0]), int(b[1])) for b, _, _ in anchors]
    nodes, inits = [], [_const("B", boxes), _const("S", scores)]
    _probe_gates(nodes, inits, probes, S, S)
    nodes.append(helper.make_node("Add", ["B", "zeros"], ["bx"]))             # (N, 4, A)
    if layout == "v5":
        nodes += [helper.make_node("Add", ["S", "zeros"], ["cls"]),
                  helper.make_node("Concat", ["bx", "gate", "cls"], ["cat"], axis=1),
                  helper.make_node("Transpose", ["cat"], ["output0"], perm=[0, 2, 1])]
        out_shape = [batch, a, 5 + c]
    else:
        nodes += [helper.make_node("Mul", ["S", "gate"], ["sc"]),
                  helper.make_node("Concat", ["bx", "sc"], ["cat" if layout == "rows" else "output0"], axis=1)]
        out_shape = [batch, 4 + c, a]
        if layout == "rows":
            nodes.append(helper.make_node("Transpose", ["cat"], ["output0"], perm=[0, 2, 1]))
            out_shape = [batch, a, 4 + c]
    graph = helper.make_graph(
        nodes, "yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, S, S])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)], initializer=inits)
    return _save(graph, path, metadata)


def yolo_end2end_model(path: Path, metadata: dict | None = None) -> Path:
    """An end-to-end (post-NMS) export: (N, K, 6) rows x1, y1, x2, y2, score, class."""
    k = len(ANCHORS)
    xyxy = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for (cx, cy, w, h), _, _ in ANCHORS],
                    np.float32)[None]                                            # (1, K, 4)
    score = np.array([s for _, _, s in ANCHORS], np.float32)[None, :, None]      # (1, K, 1)
    cls = np.array([c for _, c, _ in ANCHORS], np.float32)[None, :, None]
    nodes, inits = [], [_const("XY", xyxy), _const("SC", score), _const("CL", cls),
                        _const("perm_shape", np.array([0, -1, 1], np.int64))]
    _probe_gates(nodes, inits, [(int(b[0]), int(b[1])) for b, _, _ in ANCHORS], S, S)
    nodes += [helper.make_node("Reshape", ["gate", "perm_shape"], ["gate_k"]),   # (N, K, 1)
              helper.make_node("Reshape", ["zeros", "perm_shape"], ["zeros_k"]),
              helper.make_node("Add", ["XY", "zeros_k"], ["xy"]),
              helper.make_node("Mul", ["SC", "gate_k"], ["sc"]),
              helper.make_node("Add", ["CL", "zeros_k"], ["cl"]),
              helper.make_node("Concat", ["xy", "sc", "cl"], ["output0"], axis=2)]
    graph = helper.make_graph(
        nodes, "yolo-e2e", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, S, S])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", k, 6])], initializer=inits)
    return _save(graph, path, {"end2end": "True", "names": str(dict(enumerate(CLASSES)))} if metadata is None
                 else metadata)


# DETR: queries' logits over (cat, dog, bird, no-object) and normalized cx, cy, w, h boxes
DETR_LOGITS = np.array([
    [5, 0, 0, 0],     # q0 cat
    [0, 0, 0, 8],     # q1 "no object" wins: never a detection
    [0, 4, 0, 1],     # q2 dog
    [3, 0, 0, 0],     # q3 cat overlapping q0: DETR has no NMS, both stay
    [-5, 0, 0, 0],    # q4 cat logit + 10 * mean(normalized pixels): fires on a bright image only
    [2, 0, 0, 2.5],   # q5 cat 0.34 once "no object" takes its share (0.79 if it were ignored)
], np.float32)
DETR_BOXES = np.array([[0.5, 0.5, 0.4, 0.2], [0.2, 0.2, 0.1, 0.1], [0.25, 0.75, 0.2, 0.3],
                       [0.52, 0.5, 0.4, 0.2], [0.5, 0.25, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]], np.float32)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def detr_model(path: Path, with_mask: bool = True) -> Path:
    q = len(DETR_LOGITS)
    gate = np.zeros((1, q, 4), np.float32)
    gate[0, 4, 0] = 10.0
    inits = [_const("L", DETR_LOGITS[None]), _const("P", DETR_BOXES[None]), _const("G", gate),
             _const("shape_n11", np.array([-1, 1, 1], np.int64)), _const("zero", np.array(0.0, np.float32))]
    nodes = [helper.make_node("ReduceMean", ["pixel_values"], ["m"], axes=[1, 2, 3], keepdims=0)]   # (N,)
    if with_mask:
        nodes += [helper.make_node("Cast", ["pixel_mask"], ["maskf"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceMean", ["maskf"], ["mm"], axes=[1, 2], keepdims=0),
                  helper.make_node("Mul", ["m", "mm"], ["m2"])]
    else:
        nodes.append(helper.make_node("Identity", ["m"], ["m2"]))
    nodes += [helper.make_node("Reshape", ["m2", "shape_n11"], ["m3"]),                              # (N, 1, 1)
              helper.make_node("Mul", ["G", "m3"], ["term"]),
              helper.make_node("Add", ["L", "term"], ["logits"]),
              helper.make_node("Mul", ["m3", "zero"], ["z"]),
              helper.make_node("Add", ["P", "z"], ["pred_boxes"])]
    inputs = [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, "height", "width"])]
    if with_mask:
        inputs.append(helper.make_tensor_value_info("pixel_mask", TensorProto.INT64, ["N", "height", "width"]))
    graph = helper.make_graph(
        nodes, "detr", inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", q, 4]),
         helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, ["N", q, 4])], initializer=inits)
    return _save(graph, path)


def detr_expected(image: np.ndarray, min_confidence: float) -> list[tuple[str, float, list[float]]]:
    """What the DETR graph must give for a solid-colour image, computed independently in numpy."""
    h, w = image.shape[:2]
    norm = (image[0, 0] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    logits = DETR_LOGITS.astype(np.float64).copy()
    logits[4, 0] += 10.0 * norm.mean()
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (e / e.sum(axis=1, keepdims=True))[:, :3]
    out = []
    for qi in range(len(logits)):
        k = int(np.argmax(probs[qi]))
        if probs[qi, k] >= min_confidence:
            cx, cy, bw, bh = DETR_BOXES[qi]
            out.append((CLASSES[k], float(probs[qi, k]), [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]))
    return sorted(out, key=lambda t: -t[1])


def embedder_model(path: Path, variant: str = "nchw-4d", batch: int | str = "N") -> tuple[Path, np.ndarray, np.ndarray]:
    """A 1x1 convolution (8 filters): its spatial mean is W @ mean(normalized pixel) + b, known exactly."""
    rng = np.random.default_rng(7)
    weight = rng.normal(size=(8, 3, 1, 1)).astype(np.float32)
    bias = rng.normal(size=(8,)).astype(np.float32) * 0.1
    inits = [_const("W", weight), _const("b", bias)]
    nodes = []
    x = "input"
    if variant.startswith("nhwc"):
        nodes.append(helper.make_node("Transpose", ["input"], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
        in_shape = [batch, 32, 32, 3]
    else:
        in_shape = [batch, 3, "h", "w"]
    nodes.append(helper.make_node("Conv", [x, "W", "b"], ["fmap"], kernel_shape=[1, 1]))
    if variant.endswith("4d"):
        nodes.append(helper.make_node("Identity", ["fmap"], ["features"]))
        out_shape = [batch, 8, "fh", "fw"]
    else:
        nodes.append(helper.make_node("ReduceMean", ["fmap"], ["features"], axes=[2, 3], keepdims=0))
        out_shape = [batch, 8]
    graph = helper.make_graph(nodes, "embedder", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, out_shape)],
                              initializer=inits)
    return _save(graph, path), weight[:, :, 0, 0], bias


def solid(w: int, h: int, rgb) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


# ---------------------------------------------------------------------------------------------------------
# YOLO

@pytest.mark.parametrize("layout", ["v8", "rows", "v5"])
@pytest.mark.parametrize("batch", ["N", 1])
def test_yolo_layouts_decode_nms_and_letterbox(tmp_path, layout, batch):
    det = OnnxDetector(yolo_model(tmp_path / "y.onnx", layout, batch), layout="yolo", class_names=CLASSES, threads=1)
    assert isinstance(det, DetectorModel)
    assert det.input_hw == (S, S)
    black = np.zeros((200, 300, 3), np.uint8)
    wide, tall = scene(WIDE), scene(TALL)
    results = det.detect([wide, tall, black], min_confidence=0.5)
    assert len(results) == 3
    assert_detections(results[0], expected_scene(WIDE))   # letterbox with vertical padding
    assert_detections(results[1], expected_scene(TALL))   # letterbox with horizontal padding
    assert results[2] == []
    # the duplicate cat (0.80) is gone, but not because of the threshold: it fires at 0.5
    assert all(round(d.confidence, 2) != 0.80 for d in results[0])
    det.close()


def test_yolo_padding_is_grey_114_and_thresholds(tmp_path):
    det = OnnxDetector(yolo_model(tmp_path / "y.onnx"), layout="yolo", class_names=CLASSES, threads=1)
    # a tall box whose probe (320, 60) lies in the top padding of a wide image: it fires at 0.95 * 114 / 255
    tall_box = yolo_model(tmp_path / "pad.onnx", anchors=[((320, 60, 100, 400), 0, 0.95)])
    pad = OnnxDetector(tall_box, layout="yolo", class_names=CLASSES, threads=1)
    (got,) = pad.detect([scene(WIDE)], min_confidence=0.3)
    assert [d.name for d in got] == ["cat"]
    assert got[0].confidence == pytest.approx(0.95 * 114 / 255, abs=1e-4)
    # input y -140..260 -> image y (-140 - 160) / 2 .. (260 - 160) / 2, clipped to 0..50; x 270..370 -> 135..185
    assert np.allclose(got[0].bbox, [135, 0, 50, 50], atol=1)
    assert pad.detect([scene(WIDE)], min_confidence=0.5) == [[]]
    # a lower threshold does not bring back what NMS removed
    low = det.detect([scene(WIDE)], min_confidence=0.05)[0]
    assert [(d.name, round(d.confidence, 2)) for d in low] == [("cat", 0.9), ("dog", 0.7), ("bird", 0.6)]


def test_yolo_class_agnostic_nms_and_max_detections(tmp_path):
    path = yolo_model(tmp_path / "y.onnx")
    agnostic = OnnxDetector(path, layout="yolo", class_names=CLASSES, class_agnostic=True, threads=1)
    got = agnostic.detect([scene(WIDE)], min_confidence=0.5)[0]
    assert [d.name for d in got] == ["cat", "bird"]          # the dog on the cat's box is suppressed too
    one = OnnxDetector(path, layout="yolo", class_names=CLASSES, max_detections=1, threads=1)
    assert [d.name for d in one.detect([scene(WIDE)], 0.5)[0]] == ["cat"]


@pytest.mark.parametrize("metadata", [None, {"args": "{'nms': True, 'imgsz': 640}"}, {}])
def test_yolo_end_to_end_export(tmp_path, metadata):
    """Post-NMS (N, K, 6) exports, told by Ultralytics' end2end or args.nms metadata, or by the shape alone."""
    det = OnnxDetector(yolo_end2end_model(tmp_path / "e2e.onnx", metadata), layout="yolo",
                       class_names=CLASSES if metadata is not None else None, threads=1)
    assert det.end2end and det.class_names == CLASSES
    got = det.detect([scene(TALL)], min_confidence=0.5)[0]
    # no NMS of our own: the duplicate stays (the exporter's NMS would have removed it)
    assert [(d.name, round(d.confidence, 2)) for d in got] == [("cat", 0.9), ("cat", 0.8), ("dog", 0.7), ("bird", 0.6)]
    assert np.allclose(got[0].bbox, xywh(TALL["obj1"]), atol=1)
    assert np.allclose(got[3].bbox, xywh(TALL["obj2"]), atol=1)


def test_yolo_ultralytics_metadata_and_kind_inference(tmp_path):
    meta = {"author": "Ultralytics", "task": "detect", "imgsz": "[640, 640]",
            "names": "{0: 'cat', 1: 'dog', 2: 'bird'}"}
    path = yolo_model(tmp_path / "yolov8-test.onnx", metadata=meta)
    kind, target, settings = describe(path)
    assert (kind, target, settings) == ("yolo", path, {})
    det = build_model(path, threads=1)
    assert det.class_names == CLASSES
    assert det.spec.name == "yolov8-test" and det.spec.runtime == "onnxruntime" and det.spec.role == "detector"
    assert det.spec.licence == "user supplied" and det.spec.source == str(path)
    assert len(det.spec.version) == 12   # sha256 of the file
    assert_detections(det.detect([scene(WIDE)], 0.5)[0], expected_scene(WIDE))


def test_yolo_without_class_names(tmp_path):
    v8 = OnnxDetector(yolo_model(tmp_path / "v8.onnx"), layout="yolo", threads=1)
    assert v8.class_names == ["class_0", "class_1", "class_2"]    # counted from (N, 4 + C, A)
    assert [d.name for d in v8.detect([scene(WIDE)], 0.5)[0]] == ["class_0", "class_1", "class_2"]
    with pytest.raises(ModelLoadError, match="objectness"):      # (N, A, 5 + C) or (N, A, 4 + C)?
        OnnxDetector(yolo_model(tmp_path / "v5.onnx", "v5"), layout="yolo", threads=1)
    v5 = OnnxDetector(tmp_path / "v5.onnx", layout="yolo", objectness=True, threads=1)
    assert len(v5.class_names) == 3
    with pytest.raises(ModelLoadError, match="does not fit 5 classes"):
        OnnxDetector(tmp_path / "v8.onnx", layout="yolo", class_names=CLASSES + ["x", "y"],
                     threads=1).detect([scene(WIDE)])


def test_letterbox_and_nms_helpers():
    img = np.full((160, 320, 3), 255, np.uint8)
    out, lb = letterbox(img, S, S)
    assert (lb.scale, lb.left, lb.top) == (2.0, 0, 160)
    assert (out[:160] == 114).all() and (out[480:] == 114).all() and (out[160:480] == 255).all()
    assert np.allclose(lb.to_image(np.array([[220, 270, 420, 370]])), [[110, 55, 210, 105]])
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.85, 0.3])
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert batched_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.99).tolist() == [0, 1, 3]          # only the identical box goes


# ---------------------------------------------------------------------------------------------------------
# DETR

def test_detr_softmax_no_object_and_boxes(tmp_path):
    det = OnnxDetector(detr_model(tmp_path / "detr.onnx"), layout="detr", class_names=CLASSES,
                       input_size=(48, 64), threads=1)
    assert det.input_hw == (48, 64)
    white = solid(320, 160, (255, 255, 255))
    grey = solid(100, 200, (124, 116, 104))     # about the ImageNet mean: normalizes to ~0
    got_white, got_grey = det.detect([white, grey], min_confidence=0.5)
    want_white, want_grey = detr_expected(white, 0.5), detr_expected(grey, 0.5)
    assert_detections(got_white, want_white, tol=0.01)
    assert_detections(got_grey, want_grey, tol=0.01)
    # hand-checked: on the white image the gated query fires, on the grey one it does not
    assert [d.name for d in got_white] == ["cat", "cat", "dog", "cat"]
    assert [d.name for d in got_grey] == ["cat", "dog", "cat"]
    assert got_white[0].bbox == pytest.approx([128, 24, 64, 32], abs=0.01)     # q4 (0.5, 0.25, 0.2, 0.2)
    assert got_grey[0].bbox == pytest.approx([30, 80, 40, 40], abs=0.01)       # q0 on the 100 x 200 image
    # "no object" takes its share: q5's cat is 0.34 (0.79 without the no-object class) and stays out
    assert not any(d.bbox == pytest.approx([192, 96, 64, 32], abs=0.01) for d in got_white)
    low = det.detect([white], min_confidence=0.3)[0]
    q5 = [d for d in low if d.bbox == pytest.approx([192, 96, 64, 32], abs=0.01)]
    assert len(q5) == 1 and q5[0].confidence == pytest.approx(np.exp(2) / (np.exp(2) + 2 + np.exp(2.5)), abs=1e-5)
    # at threshold 0 every query comes out with its best *real* class: "no object" is never a label
    assert all(d.class_id in (0, 1, 2) for d in det.detect([white], min_confidence=0.0)[0])
    assert len(det.detect([white], min_confidence=0.0)[0]) == len(DETR_LOGITS)


def test_detr_hf_export_directory(tmp_path):
    """An Optimum-style export folder: model.onnx + config.json (id2label); kind and names are found."""
    folder = tmp_path / "detr-export"
    folder.mkdir()
    detr_model(folder / "model.onnx", with_mask=False)
    (folder / "config.json").write_text(json.dumps({"model_type": "detr",
                                                    "id2label": {"0": "cat", "1": "dog", "2": "bird"}}))
    kind, target, _ = describe(folder)
    assert kind == "detr" and target == folder / "model.onnx"
    det = build_model(folder, input_size=32, threads=1)
    assert det.class_names == CLASSES and det.spec.name == "detr-export" and det.input_hw == (32, 32)
    white = solid(64, 64, (255, 255, 255))
    assert_detections(det.detect([white], 0.5)[0], detr_expected(white, 0.5), tol=0.01)


# ---------------------------------------------------------------------------------------------------------
# embedder

@pytest.mark.parametrize("variant,batch", [("nchw-4d", "N"), ("nchw-2d", 1), ("nhwc-2d", "N")])
def test_onnx_embedder(tmp_path, variant, batch):
    path, weight, bias = embedder_model(tmp_path / "emb.onnx", variant, batch)
    emb = OnnxEmbedder(path, input_size=32, threads=1, name="tiny", version="1")
    assert isinstance(emb, EmbedderModel)
    assert emb.spec.key == "tiny@1" and emb.spec.embedding_dim == 8 and emb.spec.role == "embedder"
    colours = [(255, 0, 0), (0, 0, 255), (124, 200, 30)]
    images = [solid(50, 40, c) for c in colours] + [solid(70, 20, colours[0])]
    vecs = emb.embed(images)
    assert vecs.shape == (4, 8) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    for vec, c in zip(vecs, colours + [colours[0]]):
        norm = (np.array(c) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        want = weight.astype(np.float64) @ norm + bias
        assert np.allclose(vec, want / np.linalg.norm(want), atol=1e-5)
    assert np.allclose(vecs[0], vecs[3], atol=1e-6)      # same colour, other size: same vector
    assert float(vecs[0] @ vecs[1]) < 0.99                # it depends on the input
    # patterns, not solid colours: half white vs three quarters white
    half, most = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)
    half[:, :16] = 255
    most[:, :24] = 255
    p, q = emb.embed([half, most])
    assert float(p @ q) < 0.999
    assert emb.embed([]).shape == (0, 8)


def test_embedder_crop_mode_and_errors(tmp_path):
    path, _, _ = embedder_model(tmp_path / "emb.onnx")
    stretch = OnnxEmbedder(path, input_size=(32, 32), threads=1)
    crop = OnnxEmbedder(path, input_size=(32, 32), resize="crop", threads=1)
    img = np.zeros((32, 96, 3), np.uint8)
    img[:, 32:64] = 255                          # white in the middle third
    a, b = stretch.embed([img])[0], crop.embed([img])[0]
    assert crop.embed([solid(32, 32, (255, 255, 255))])[0] == pytest.approx(b, abs=1e-5)  # crop sees only white
    assert float(a @ b) < 0.999
    with pytest.raises(ModelLoadError, match="no output"):
        OnnxEmbedder(path, output="nope")
    nhwc, _, _ = embedder_model(tmp_path / "nhwc.onnx", "nhwc-2d")
    with pytest.raises(ModelLoadError, match="does not fit"):
        OnnxEmbedder(nhwc, input_size=64)        # the graph is fixed at 32 x 32


# ---------------------------------------------------------------------------------------------------------
# load_model, description files, registry

def test_description_file_and_overrides(tmp_path):
    path = yolo_model(tmp_path / "parts.onnx")
    (tmp_path / "parts.viscurate.json").write_text(json.dumps(
        {"kind": "yolo", "name": "parts-detector", "version": "2024-05", "class_names": ["bolt", "nut", "gear"],
         "iou_threshold": 0.5}))
    det = build_model(path, threads=1)
    assert det.spec.key == "parts-detector@2024-05"
    assert [d.name for d in det.detect([scene(WIDE)], 0.5)[0]] == ["bolt", "nut", "gear"]
    assert det.iou_threshold == 0.5
    # the description itself can be passed; keyword arguments win over it
    det2 = build_model(tmp_path / "parts.viscurate.json", version="2", class_names=CLASSES, threads=1)
    assert det2.spec.key == "parts-detector@2" and det2.class_names == CLASSES
    with pytest.raises(ModelLoadError, match="unknown option"):
        build_model(path, confidence_floor=0.2)
    with pytest.raises(ModelLoadError, match="unknown model kind"):
        build_model(path, kind="segmenter")
    with pytest.raises(ModelLoadError, match="no such model"):
        build_model(tmp_path / "missing.onnx")
    emb_path, _, _ = embedder_model(tmp_path / "emb.onnx")
    assert describe(emb_path)[0] == "onnx-embedder"


def test_load_model_registers(tmp_path):
    from viscurate.models import registry
    path = yolo_model(tmp_path / "reg.onnx")
    det = load_model(path, kind="yolo", class_names=CLASSES, name="byo-test-detector", threads=1)
    try:
        assert det.spec.name == "byo-test-detector" and len(det.spec.version) == 12
        assert det.spec in registry.list_models(role="detector")
        assert registry.get_model("byo-test-detector", threads=1) is det    # no second load
        two = registry.get_model(det.spec.key, threads=2)                    # another thread count: rebuilt
        assert two is not det and two.spec == det.spec and two.threads == 2
        assert_detections(two.detect([scene(WIDE)], 0.5)[0], expected_scene(WIDE))
        # the kind of factory load_model registers travels to worker processes (pickled, without the loaded
        # instance) and rebuilds the same model there
        factory = Factory(path, "yolo", {"class_names": CLASSES, "name": "byo-test-detector"}, det)
        clone = pickle.loads(pickle.dumps(factory))(threads=1)
        assert clone is not det and clone.spec == det.spec
        assert_detections(clone.detect([scene(TALL)], 0.5)[0], expected_scene(TALL))
        det.close()
        with pytest.raises(ModelClosed):
            det.detect([scene(WIDE)])
        rebuilt = registry.get_model("byo-test-detector", threads=1)         # a closed model is rebuilt
        assert rebuilt is not det and not rebuilt.closed
    finally:
        registry.unregister(det.spec.key)
    emb_path, _, _ = embedder_model(tmp_path / "emb.onnx")
    emb = load_model(emb_path, name="byo-test-embedder", input_size=32, threads=1)
    try:
        assert registry.get_spec("byo-test-embedder").embedding_dim == 8
        assert emb.spec in registry.list_models(role="embedder")
    finally:
        registry.unregister(emb.spec.key)


# ---------------------------------------------------------------------------------------------------------
# CLIP (optional extra)

def _tiny_clip(folder: Path) -> None:
    torch = pytest.importorskip("torch", reason="CLIP needs the optional 'clip' extra (torch)", exc_type=ImportError)
    transformers = pytest.importorskip("transformers", reason="CLIP needs the optional 'clip' extra (transformers)",
                                       exc_type=ImportError)
    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters:                     # byte-level BPE: every letter alone and at a word's end
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    merges = ["d o", "do g</w>", "c a", "ca t</w>"]
    for m in ("do", "dog</w>", "ca", "cat</w>"):
        vocab[m] = len(vocab)
    tok_dir = folder / "tok"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 16,
                                                               "tokenizer_class": "CLIPTokenizer"}))
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                           num_hidden_layers=1, num_attention_heads=2),
        projection_dim=16)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))


def test_clip_from_local_directory(tmp_path):
    folder = tmp_path / "tiny-clip"
    _tiny_clip(folder)
    from viscurate.models import registry
    from viscurate.models.clip import ClipModel
    assert describe(folder)[0] == "clip"
    clip = load_model(folder, threads=1)
    registry.unregister(clip.spec.key)
    assert isinstance(clip, ClipModel) and isinstance(clip, EmbedderModel)
    assert clip.spec.runtime == "torch" and clip.spec.embedding_dim == 16 and clip.spec.name == "tiny-clip"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), np.zeros((50, 50, 3), np.uint8)]
    v = clip.embed(images)
    assert v.shape == (2, 16) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert float(v[0] @ v[1]) < 0.9999
    t = clip.embed_text(["a cat", "a dog", "dog"])
    assert t.shape == (3, 16) and t.dtype == np.float32
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert float(t[0] @ t[1]) < 0.9999
    # the same space: a text query ranks images by dot product
    assert (t @ v.T).shape == (3, 2)
    # batching gives the same vectors as one at a time
    one = np.concatenate([clip.embed([im]) for im in images])
    assert np.allclose(one, v, atol=1e-5)


def test_clip_needs_a_model_directory(tmp_path):
    from viscurate.models.clip import ClipModel
    with pytest.raises(ModelLoadError, match="config.json"):
        ClipModel(tmp_path)


def test_clip_without_the_extra_is_a_clear_error(tmp_path, monkeypatch):
    """Without torch/transformers, loading a CLIP directory says which extra to install."""
    from viscurate.models.user_model import MissingDependency
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "clip"}))
    monkeypatch.setitem(__import__("sys").modules, "torch", None)   # makes `import torch` fail
    with pytest.raises(MissingDependency, match=r"viscurate\[clip\]"):
        build_model(folder)
