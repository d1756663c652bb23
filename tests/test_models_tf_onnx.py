"""The default detector on onnxruntime: the TensorFlow graph readers, the TF -> ONNX rebuild, and the
equivalence with OpenCV DNN running the very same frozen graph, on real photos.

No TensorFlow here: the frozen-graph reader is checked on GraphDef bytes this file encodes itself
(protobuf wire format, field numbers from tensorflow/core/framework/{graph,node_def,attr_value,tensor}.proto).
"""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import skimage
from PIL import Image

from tests.conftest import assert_same_detections
from viscurate.errors import ViscurateError
from viscurate.models import ssd
from viscurate.models.tf_graph import GraphFormatError, parse_text_graph, read_constants
from viscurate.models.tf_onnx import UnsupportedGraph, convert

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")


# ---- a tiny protobuf encoder, to write GraphDefs without TensorFlow ------------------------------

def _varint(v: int) -> bytes:
    out = bytearray()
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(number: int, payload: bytes | int, wire: int = 2) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(int(payload))
    return key + _varint(len(payload)) + payload


def _tensor(dtype: int, shape: list[int], content: bytes = b"", floats: list[float] | None = None) -> bytes:
    dims = b"".join(_field(2, _field(1, d, 0)) for d in shape)
    out = _field(1, dtype, 0) + _field(2, dims)
    if content:
        out += _field(4, content)
    if floats is not None:
        out += _field(5, struct.pack(f"<{len(floats)}f", *floats))
    return out


def _const(name: str, tensor: bytes) -> bytes:
    attr = _field(1, b"value") + _field(2, _field(8, tensor))
    return _field(1, _field(1, name.encode()) + _field(2, b"Const") + _field(5, attr))


def test_read_constants_decodes_content_and_repeated_values(tmp_path):
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    graph = (_const("w", _tensor(1, [2, 3, 4], w.tobytes()))
             + _const("filled", _tensor(1, [2, 2], floats=[0.5]))  # TensorFlow repeats the last value
             + _const("ints", _tensor(3, [3], np.array([1, -2, 3], np.int32).tobytes()))
             + _const("text", _tensor(7, [1]))  # a string constant: not a weight, left out
             + _field(1, _field(1, b"relu") + _field(2, b"Relu6") + _field(3, b"w")))
    path = tmp_path / "g.pb"
    path.write_bytes(graph)
    consts = read_constants(str(path))
    assert sorted(consts) == ["filled", "ints", "w"]
    np.testing.assert_array_equal(consts["w"], w)
    np.testing.assert_array_equal(consts["filled"], np.full((2, 2), 0.5, np.float32))
    assert consts["ints"].tolist() == [1, -2, 3]


def test_read_constants_refuses_what_is_not_a_graph(tmp_path):
    bad = tmp_path / "truncated.pb"
    bad.write_bytes(_const("w", _tensor(1, [4], np.ones(4, np.float32).tobytes()))[:-9])
    with pytest.raises(GraphFormatError):
        read_constants(str(bad))
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    with pytest.raises(GraphFormatError, match="no constant"):
        read_constants(str(empty))


def test_parse_text_graph_reads_lists_tensors_and_strings():
    nodes = parse_text_graph('''
        node { name: "conv" op: "Conv2D" input: "x" input: "w"
               attr { key: "strides" value { list { i: 1 i: 2 i: 2 i: 1 } } }
               attr { key: "padding" value { s: "SAME" } } }
        # a comment
        node { name: "p" op: "PriorBox" attr { key: "width" value { tensor { dtype: DT_FLOAT
               tensor_shape { dim { size: 2 } } float_val: 30.0 float_val: 42.5 } } }
               attr { key: "flip" value { b: false } } }''')
    assert [n.name for n in nodes] == ["conv", "p"]
    assert nodes[0].inputs == ["x", "w"] and nodes[0].attr == {"strides": [1, 2, 2, 1], "padding": "SAME"}
    assert nodes[1].attr["width"].tolist() == [30.0, 42.5] and nodes[1].attr["flip"] is False
    with pytest.raises(GraphFormatError):
        parse_text_graph('node { name: "x" ')


def test_convert_folds_batch_norm_and_matches_numpy():
    """A 1x1 convolution + batch norm + Relu6 + NHWC flatten, rebuilt and run on onnxruntime, against numpy."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(1, 1, 3, 4)).astype(np.float32)  # HWIO
    gamma, beta = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    mean, var = rng.normal(size=4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    consts = {"w": w, "g": gamma, "b": beta, "m": mean, "v": var}
    nodes = parse_text_graph('''
        node { name: "x" op: "Placeholder" }
        node { name: "c" op: "Conv2D" input: "x" input: "w" attr { key: "padding" value { s: "SAME" } } }
        node { name: "bn" op: "FusedBatchNorm" input: "c" input: "g" input: "b" input: "m" input: "v"
               attr { key: "epsilon" value { f: 0.001 } } }
        node { name: "r" op: "Relu6" input: "bn" }
        node { name: "f" op: "Flatten" input: "r" }''')
    model = convert(nodes, consts, ["f"], input_name="x")
    assert [n.op_type for n in model.graph.node] == ["Conv", "Clip", "Transpose", "Flatten"]  # the norm is folded
    x = rng.normal(size=(2, 3, 5, 5)).astype(np.float32)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y = np.einsum("nchw,co->nhwo", x, w[0, 0])  # NHWC
    y = np.clip((y - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0, 6)
    np.testing.assert_allclose(got, y.reshape(2, -1), rtol=1e-5, atol=1e-5)


def test_convert_names_what_it_cannot_do():
    nodes = parse_text_graph('node { name: "x" op: "Placeholder" } node { name: "y" op: "Softplus" input: "x" }')
    with pytest.raises(UnsupportedGraph, match="Softplus"):
        convert(nodes, {}, ["y"], input_name="x")
    with pytest.raises(UnsupportedGraph, match="no node named"):
        convert(nodes, {}, ["nope"], input_name="x")


def test_detection_output_per_class_nms_and_decoding():
    anchors = ssd.anchors([(1, 2, np.array([150.0]), np.array([300.0]))], 300)  # two anchors side by side
    codes = np.zeros((1, 2, 4), np.float32)  # zero offsets: the boxes are the anchors
    scores = np.zeros((1, 2, 3), np.float32)
    scores[0, :, 1] = [0.9, 0.8]   # class 1 on both anchors: they do not overlap, both kept
    scores[0, 0, 2] = 0.7          # class 2 on anchor 0: another class, NMS does not touch it
    rows = ssd.detection_output(codes, scores, anchors)
    assert [(int(r[1]), round(float(r[2]), 2)) for r in rows] == [(1, 0.9), (1, 0.8), (2, 0.7)]
    np.testing.assert_allclose(rows[0, 3:], [0, 0, 0.5, 1], atol=1e-6)
    codes[0, 1, 1] = -10.0  # cx += -10 * 0.1 * 0.5: anchor 1 moves onto anchor 0, suppressed (IoU 1 > 0.6)
    rows = ssd.detection_output(codes, scores, anchors)
    assert [(int(r[1]), round(float(r[2]), 2)) for r in rows] == [(1, 0.9), (2, 0.7)]


# ---- the real detector: onnxruntime against OpenCV, same frozen graph ------------------------------

@pytest.fixture(scope="module")
def real_photos() -> list[np.ndarray]:
    names = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg"]
    out = [np.asarray(Image.open(os.path.join(DATA, n)).convert("RGB")) for n in names
           if os.path.isfile(os.path.join(DATA, n))]
    assert len(out) >= 3
    return out


@pytest.mark.parametrize("min_confidence", [0.3, 0.05])
def test_onnxruntime_detector_matches_opencv(real_photos, min_confidence):
    fast = ssd.SSDMobileNetV2COCO(threads=2)
    reference = ssd.SSDMobileNetV2COCO(threads=2, runtime="opencv")
    got, want = fast.detect(real_photos, min_confidence), reference.detect(real_photos, min_confidence)
    assert sum(len(w) for w in want) >= 5
    assert_same_detections(got, want)
    assert "onnxruntime" in repr(fast) and "opencv" in repr(reference)


def test_unknown_runtime_is_a_clear_error():
    with pytest.raises(ViscurateError, match="unknown runtime"):
        ssd.SSDMobileNetV2COCO(runtime="tensorflow")  # type: ignore[arg-type]


def test_converted_model_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch, real_photos):
    monkeypatch.setenv("VISCURATE_MODEL_CACHE", str(tmp_path / "cache"))
    first = ssd.SSDMobileNetV2COCO(threads=1)
    converted = [p for p in (tmp_path / "cache").glob("ssd_mobilenet_v2_coco-*.onnx") if ".optimized." not in p.name]
    optimized = list((tmp_path / "cache").glob("ssd_mobilenet_v2_coco-*.optimized.onnx"))
    assert len(converted) == 1 and converted[0].stat().st_size > 60e6
    assert len(optimized) == 1 and optimized[0].stat().st_size > 60e6  # onnxruntime's own graph, kept too
    assert not list((tmp_path / "cache").glob(".*.tmp"))
    want = first.detect(real_photos[:2])
    assert [d.name for d in want[1]][:1] == ["cat"]
    assert ssd.SSDMobileNetV2COCO(threads=1).detect(real_photos[:2]) == want  # loaded from the optimized graph

    optimized[0].write_bytes(b"not an onnx model")  # damaged: the converted model is used, the graph rewritten
    assert ssd.SSDMobileNetV2COCO(threads=1).detect(real_photos[:2]) == want
    assert optimized[0].stat().st_size > 60e6
    for f in converted + optimized:
        f.write_bytes(b"not an onnx model")  # both damaged: converted again, not an error
    assert ssd.SSDMobileNetV2COCO(threads=1).detect(real_photos[:2]) == want
    assert converted[0].stat().st_size > 60e6 and optimized[0].stat().st_size > 60e6
    files = converted

    monkeypatch.setenv("VISCURATE_MODEL_CACHE", "off")  # no cache at all: converts in memory
    assert ssd.SSDMobileNetV2COCO(threads=1).detect(real_photos[:2]) == want
    monkeypatch.setenv("VISCURATE_MODEL_CACHE", str(files[0]))  # a cache that cannot be a directory: skipped
    assert ssd.SSDMobileNetV2COCO(threads=1).detect(real_photos[:2]) == want


# ---- few-class passes: the class predictors split off the graph ------------------------------------

def test_a_few_class_pass_finds_the_same_boxes_of_those_classes(tmp_path, monkeypatch, real_photos):
    """The label stage's augmented pass asks for the classes the plain pass found: on the shrunk views of
    real photos, the boxes of those classes are the full pass's, scores and all; the split body and head
    weights are kept in the model cache and reloaded from it."""
    from viscurate.models import quality

    monkeypatch.setenv("VISCURATE_MODEL_CACHE", str(tmp_path / "cache"))
    det = ssd.SSDMobileNetV2COCO(threads=1)
    compared = 0
    for photo in real_photos:
        found = {d.class_id for d in det.detect([photo], 0.3)[0]}
        views, _ = quality.tta_views(photo)
        for view in views.values():
            for classes in (found, found | {1, 3}, {18}):
                full = [d for d in det.detect([view], 0.1)[0] if d.class_id in classes]
                few = det.detect([view], 0.1, classes=classes)[0]
                assert [(d.name, d.bbox) for d in few] == [(d.name, d.bbox) for d in full]
                np.testing.assert_allclose([d.confidence for d in few], [d.confidence for d in full], atol=2e-4)
                compared += len(full)
    assert compared >= 5
    assert det.detect([real_photos[1]], 0.1, classes=set()) == [[]]
    assert det.detect([real_photos[1]], 0.1, classes={0, 500}) == [[]]  # the background, no such class
    shrunk = [quality.tta_views(p)[0]["scale"] for p in real_photos[:3]]
    several = det.detect(shrunk, 0.1, classes={1, 17, 47})  # one batch through the body, as one at a time
    assert several == [det.detect([v], 0.1, classes={1, 17, 47})[0] for v in shrunk] and any(several)
    cache = tmp_path / "cache"
    assert len(list(cache.glob("*.body.onnx"))) == 1 and len(list(cache.glob("*.heads.npy"))) == 1
    assert len(list(cache.glob("*.body.*.optimized.onnx"))) == 1
    assert len(list(cache.glob("ssd_mobilenet_v2_coco-*"))) == 5  # the converted model, its optimized graph, and these
    view = quality.tta_views(real_photos[1])[0]["scale"]
    again = ssd.SSDMobileNetV2COCO(threads=1)  # from the cache: the body's optimized graph, the heads memory-mapped
    assert again.detect([view], 0.1, classes={17}) == det.detect([view], 0.1, classes={17})
    assert isinstance(again._few_classes.packed, np.memmap)
    next(cache.glob("*.heads.npy")).write_bytes(b"damaged")  # rebuilt, not an error
    assert ssd.SSDMobileNetV2COCO(threads=1).detect([view], 0.1, classes={17}) == det.detect([view], 0.1, classes={17})


def test_a_graph_whose_class_scores_are_laid_out_otherwise_is_refused():
    from onnx import TensorProto, helper

    from viscurate.models.ssd_heads import split_class_heads

    x = helper.make_tensor_value_info("image_tensor", TensorProto.FLOAT, [1, 3, 4, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["image_tensor"], ["boxes"]),
                               helper.make_node("Sigmoid", ["image_tensor"], ["scores"])], "g", [x],
                              [helper.make_empty_tensor_value_info("boxes"), helper.make_empty_tensor_value_info("scores")])
    with pytest.raises(UnsupportedGraph, match="Concat"):
        split_class_heads(helper.make_model(graph), "boxes", "scores")
