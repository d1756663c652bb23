"""Faces only where a person is (pipeline/label/faces.py): BlazeFace scores a spoonbill's head and a minaret
at 0.6-0.7, and the label stage must not write those faces, while a person's face stays. Real models on
real photos: scikit-image's astronaut, and GCompris photos (bench/gcompris.py's cache, see conftest)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import skimage_photo
from viscurate import Dataset
from viscurate.pipeline.label.faces import ALONE_MIN_CONFIDENCE, PERSON_EVIDENCE

SPOONBILLS = "gcompris/erase/spoonbills.webp"  # BlazeFace: 0.60 on a spoonbill's head
MINARET = "gcompris/explore_monuments/india/qutubMinar.webp"  # 0.68 on the tower's balcony


@pytest.fixture(scope="module")
def models():
    from viscurate.models import get_model
    return get_model("blazeface", threads=2), get_model("ssd_mobilenet_v2_coco", threads=2)


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _face_crop(folder: Path) -> Path:
    """The astronaut's face alone at 28 x 28 pixels (an LFW-like face crop): no body for a detector."""
    image = Image.open(skimage_photo("astronaut.png")).convert("RGB")
    path = folder / "face_crop.png"
    image.crop((164, 60, 289, 185)).resize((28, 28)).save(path)
    return path


@pytest.fixture
def photos(tmp_path, gcompris_photo):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(skimage_photo("astronaut.png"), folder / "astronaut.png")
    shutil.copy(gcompris_photo(SPOONBILLS), folder / "spoonbills.webp")
    shutil.copy(gcompris_photo(MINARET), folder / "minaret.webp")
    return folder


def _faces_by_file(ds: Dataset) -> dict[str, list]:
    return {d["filepath"].rsplit("/", 1)[-1]: d["face_analysis"] for d in ds.iter()}


def test_blazeface_alone_finds_faces_on_the_photos_without_people(models, gcompris_photo):
    """The premise: without the filter, these photos get a face (else the tests below prove nothing)."""
    face, detector = models
    for ref in (SPOONBILLS, MINARET):
        pixels = _pixels(gcompris_photo(ref))
        assert face.faces([pixels], min_confidence=0.5)[0], f"BlazeFace no longer fires on {ref}"
        people = [d for d in detector.detect([pixels], min_confidence=PERSON_EVIDENCE)[0] if d.name == "person"]
        assert people == [], f"the detector now sees a person in {ref}"


def test_the_label_stage_keeps_faces_on_people_only(photos, tmp_path):
    ds = Dataset.create("faces", tmp_path / "home")
    ds.add_images(photos, progress=False, workers=0)
    ds.label(models="detector,face", workers=0, progress=False)
    faces = _faces_by_file(ds)
    assert faces["spoonbills.webp"] == [] and faces["minaret.webp"] == []
    (astronaut,) = faces["astronaut.png"]
    x, y, w, h = astronaut["bbox"]
    assert astronaut["confidence"] > 0.9 and 100 < x + w / 2 < 320 and 40 < y + h / 2 < 220
    assert ds.count({"face_analysis_processed": True}) == 3


def test_a_face_only_run_judges_by_the_stored_person_boxes(photos, tmp_path):
    """Faces labeled after the detector (another run) are judged by the person boxes it stored; and a new
    detector run labels the faces again (their evidence changed)."""
    ds = Dataset.create("later", tmp_path / "home")
    ds.add_images(photos, progress=False, workers=0)
    ds.label(models="detector", workers=0, progress=False)
    assert ds.count({"face_analysis_processed": True}) == 0
    ds.label(models="face", workers=0, progress=False)
    faces = _faces_by_file(ds)
    assert faces["spoonbills.webp"] == [] and faces["minaret.webp"] == [] and len(faces["astronaut.png"]) == 1
    (sid,) = ds.ids({"filepath": {"$regex": "astronaut"}})
    ds.update(sid, {"$set": {"object_analysis_processed": False, "face_analysis": []}})  # boxes to redo
    report = ds.label(models="detector,face", workers=0, progress=False)
    assert report.processed == 1 and len(ds.get(sid)["face_analysis"]) == 1  # the faces were redone with them


def test_without_any_detector_output_a_face_needs_a_higher_score(photos, tmp_path):
    ds = Dataset.create("alone", tmp_path / "home")
    ds.add_images(photos, progress=False, workers=0)
    ds.label(models="face", workers=0, progress=False)
    faces = _faces_by_file(ds)
    assert faces["spoonbills.webp"] == []  # 0.60 < ALONE_MIN_CONFIDENCE
    assert len(faces["astronaut.png"]) == 1 and faces["astronaut.png"][0]["confidence"] >= ALONE_MIN_CONFIDENCE


def test_a_face_crop_keeps_its_face_though_no_body_is_in_view(models, tmp_path):
    face, detector = models
    crop = _face_crop(tmp_path)
    pixels = _pixels(crop)
    assert face.faces([pixels], min_confidence=0.5)[0], "BlazeFace no longer finds the cropped face"
    assert not [d for d in detector.detect([pixels], min_confidence=PERSON_EVIDENCE)[0] if d.name == "person"]
    ds = Dataset.create("crops", tmp_path / "home")
    ds.add_images([crop], progress=False, workers=0)
    ds.label(models="detector,face", workers=0, progress=False)
    (doc,) = list(ds.iter())
    assert len(doc["face_analysis"]) == 1


def test_analyze_writes_no_face_on_a_spoonbill(home, gcompris_photo):
    """``/v1/analyze`` labels through the same stage: the same rule."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from viscurate.server.app import create_app
    with TestClient(create_app(home)) as client:
        data = gcompris_photo(SPOONBILLS).read_bytes()
        r = client.post("/v1/analyze/upload", files={"file": ("spoonbills.webp", data, "image/webp")})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["face_analysis_processed"] is True and doc["face_analysis"] == []
        assert any(o["name"] == "bird" for o in doc["object_analysis"])
