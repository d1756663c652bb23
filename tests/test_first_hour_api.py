"""A new user's first hour in Python and over REST, on real photos: a misspelled field is a warning that
names the closest real one (never for fields that exist on some samples only, box attributes, ``_id`` or
``$elemMatch``'s inner paths), an unknown operator is an error naming the closest valid one, and
``POST /v1/analyze`` takes an uploaded image as well as a URL, keeping the file's original name."""
from __future__ import annotations

import shutil

import pytest

from tests.conftest import skimage_photo
from viscurate import Dataset, QueryError
from viscurate.store import catalog


@pytest.fixture
def docs_ds(home):
    ds = Dataset.create("docs")
    ds.add_documents([
        {"_id": "a", "width": 10, "issues": ["dark"], "tags": ["x"],
         "metadata": {"camera": {"make": "Canon"}, "shots": [{"iso": 100}, {"iso": 200, "flash": True}]},
         "object_analysis": [{"name": "cat", "bbox": [0, 0, 5, 5], "keypoints": {"nose": [1, 2]}}]},
        {"_id": "b", "width": 20, "owner": "ann"},  # 'owner' exists on one sample only
    ])
    return ds


@pytest.mark.parametrize("query", [
    {"owner": "bob"}, {"owner": {"$exists": False}}, {"_id": "zzz"}, {"tags.0": "x"}, {"metadata.camera.make": "Nikon"},
    {"metadata.shots.iso": {"$gt": 150}}, {"metadata.shots.1.flash": True}, {"object_analysis.name": "dog"},
    {"object_analysis.keypoints.nose": 1}, {"object_analysis.0.bbox.2": 5},
    {"object_analysis": {"$elemMatch": {"nmae": "cat"}}}, {"metadata.shots": {"$elemMatch": {"isoo": 1}}},
    {"$or": [{"width": 1}, {"$and": [{"issues": "dark"}, {"metadata": {"$exists": True}}]}]}, {},
])
def test_no_warning_for_fields_some_sample_has(docs_ds, query):
    assert docs_ds.check_query(query) == []
    assert "warnings" not in docs_ds.find(query)


@pytest.mark.parametrize("query,warning", [
    ({"isues": "dark"}, "no sample has field 'isues' — did you mean 'issues'?"),
    ({"ownr": "ann"}, "no sample has field 'ownr' — did you mean 'owner'?"),
    ({"metadata.camra.make": "x"}, "no sample has field 'metadata.camra.make' — did you mean 'metadata.camera.make'?"),
    ({"$or": [{"width": 1}, {"object_analysis.nmae": "x"}]},
     "no sample has field 'object_analysis.nmae' — did you mean 'object_analysis.name'?"),
    ({"face_analysis.name": "x"}, "no sample has field 'face_analysis.name' yet (the label step writes it)"),
])
def test_a_field_no_sample_has_is_a_warning(docs_ds, query, warning):
    assert docs_ds.check_query(query) == [warning]
    found = docs_ds.find(query)
    assert found["warnings"] == [warning] and found["length"] == 0


def test_unknown_operators_are_errors_naming_the_closest(docs_ds):
    with pytest.raises(QueryError, match=r"unknown operator \$gtee on field width — did you mean \$gte\?"):
        docs_ds.find({"width": {"$gtee": 1}})
    with pytest.raises(QueryError, match=r"unknown operator \$gtee on field width — did you mean \$gte\?"):
        docs_ds.check_query({"width": {"$gtee": 1}})
    with pytest.raises(QueryError, match=r"unknown operator \$ro — did you mean \$or\?"):
        docs_ds.count({"$ro": [{"width": 1}]})


def test_warnings_follow_writes_and_catalogs_from_before_the_path_list(docs_ds):
    assert docs_ds.check_query({"rating": 5})
    docs_ds.update("b", {"$set": {"rating": 5, "metadata.lens": "50mm"}})
    assert docs_ds.check_query({"rating": 5}) == [] and docs_ds.check_query({"metadata.lens": "x"}) == []
    # a catalog written before the free-form paths were noted: its top-level keys, read once, open below
    docs_ds.close()
    with catalog.Catalog(docs_ds.directory, "docs", write=True) as cat:
        cat.con.execute("DELETE FROM meta WHERE key = ?", [catalog.FREE_PATHS])
    assert docs_ds.check_query({"metadata.anything.below": 1}) == []
    assert docs_ds.check_query({"ownr": 1}) == ["no sample has field 'ownr' — did you mean 'owner'?"]
    docs_ds.add_documents([{"_id": "c", "extra_field": 1}])
    assert docs_ds.check_query({"metadata.anything.below": 1}) == [] and docs_ds.check_query({"extra_field": 1}) == []


def test_an_empty_dataset_warns_about_nothing(home):
    assert Dataset.create("empty").check_query({"isues": "dark"}) == []


# ---- REST ---------------------------------------------------------------------------------------------

@pytest.fixture
def client(home, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from viscurate.server.app import create_app
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "coffee.png", "camera.png"):
        shutil.copy(skimage_photo(name), photos / name)
    Dataset.create("photos").add_images(photos, progress=False)
    with TestClient(create_app(home)) as c:
        yield c


def test_search_carries_warnings_only_when_there_are_some(client):
    r = client.post("/v1/datasets/photos/search", json={"q": {"isues": "dark"}})
    assert r.status_code == 200 and r.json()["warnings"] == ["no sample has field 'isues' — did you mean 'issues'?"]
    r = client.post("/v1/datasets/photos/search", json={"q": {"width": {"$gt": 100}}})
    assert r.status_code == 200 and r.json()["length"] == 3 and "warnings" not in r.json()
    r = client.post("/v1/datasets/photos/search", json={"q": {"width": {"$gtee": 100}}})
    assert r.status_code == 400 and "did you mean $gte?" in r.json()["error"]


def test_analyze_takes_an_upload_on_the_url_route_and_keeps_its_name(client):
    photo = skimage_photo("chelsea.png").read_bytes()
    r = client.post("/v1/analyze", files={"image": ("../../holiday/Chelsea the cat.png", photo, "image/png")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["metadata"]["original_filename"] == "Chelsea the cat.png" and "filepath" not in doc
    assert any(o["name"] == "cat" for o in doc["object_analysis"])

    r = client.post("/v1/analyze", data={"dataset": "uploads"},
                    files={"file": ("C:\\Users\\me\\cup.png", skimage_photo("coffee.png").read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    kept = client.get(f"/v1/datasets/uploads/samples/{r.json()['_id']}").json()
    assert kept["metadata"]["original_filename"] == "cup.png"
    r = client.post("/v1/analyze/upload", data={"dataset": "uploads"},
                    files={"file": ("camera.png", skimage_photo("camera.png").read_bytes(), "image/png")})
    assert r.status_code == 200 and r.json()["metadata"]["original_filename"] == "camera.png"

    r = client.post("/v1/analyze", files={"photo": ("a.png", photo, "image/png")})  # not 'file' nor 'image'
    assert r.status_code == 400 and "'file' (or 'image')" in r.json()["error"]
    r = client.post("/v1/analyze", json={"url": "file:///etc/passwd"})  # the JSON form as before
    assert r.status_code == 400
