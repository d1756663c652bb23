"""The curation routes against a running server: views, slices, selection and tags, review queues, label
edits and their audit trail, the map, facets, jobs with progress and export downloads, upload pixel limits,
and a CLI write that meets a dataset the server is working on."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from tests.conftest import skimage_photos  # noqa: E402
from tests.test_server_api import _Server  # noqa: E402
from viscurate import Dataset  # noqa: E402
from viscurate.server.app import API_KEY_HEADER, USER_HEADER, create_app  # noqa: E402
from viscurate.server.keys import KeyStore  # noqa: E402

NAMES = ("chelsea.png", "coffee.png", "astronaut.png", "horse.png", "camera.png", "rocket.jpg", "coins.png",
         "ihc.png", "color.png", "brick.png", "gravel.png", "moon.png")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("curation")
    photos = skimage_photos(root / "photos", NAMES, {"coffee_again.png": "coffee.png"})  # one exact duplicate
    ds = Dataset.create("photos", home=root / "home")
    ds.add_images(photos, progress=False)
    for i, sid in enumerate(ds.ids()):
        ds.set_field(sid, "split", "train" if i % 2 else "val")
    ds.embed(progress=False)
    ds.find_duplicates()
    return root / "home"


@pytest.fixture(scope="module")
def client(home):
    with _Server(create_app(home)) as c:
        yield c


def _ids(client, q):
    return set(client.post("/v1/datasets/photos/select", json={"q": q}).json()["ids"])


def test_views_are_saved_queries(client):
    r = client.put("/v1/datasets/photos/views/wide", json={"q": {"width": {"$gt": 500}}, "sort": {"width": -1}},
                   headers={USER_HEADER: "ana"})
    assert r.status_code == 200 and r.json()["created_by"] == "ana"
    views = client.get("/v1/datasets/photos/views").json()["views"]
    assert views["wide"]["query"] == {"width": {"$gt": 500}} and views["wide"]["sort"] == {"width": -1}
    bad = client.put("/v1/datasets/photos/views/broken", json={"q": {"width": {"$nope": 1}}})
    assert bad.status_code == 400 and "$nope" in bad.json()["error"]
    assert client.put("/v1/datasets/photos/views/..%2Fx", json={"q": {}}).status_code in (400, 404)
    assert client.put("/v1/datasets/photos/views/trailing%0A", json={"q": {}}).status_code == 400  # no "\n" in names
    assert client.delete("/v1/datasets/photos/views/wide").json() == {"deleted": "wide"}
    assert client.delete("/v1/datasets/photos/views/wide").status_code == 400


def test_slices_freeze_the_samples_of_the_moment(client):
    val = _ids(client, {"split": "val"})
    r = client.put("/v1/datasets/photos/slices/val-v1", json={"q": {"split": "val"}})
    assert r.json() == {"name": "val-v1", "samples": len(val)}
    moved = sorted(val)[0]
    client.post("/v1/datasets/photos/tags", json={"ids": [moved], "add": ["moved"]})
    assert _ids(client, {"slices": "val-v1"}) == val
    assert client.get("/v1/datasets/photos/slices").json()["slices"] == {"val-v1": len(val)}
    assert client.put("/v1/datasets/photos/slices/x", json={"q": {}, "ids": ["a"]}).status_code == 400
    assert client.delete("/v1/datasets/photos/slices/val-v1").json()["samples"] == len(val)
    assert client.get("/v1/datasets/photos/slices").json()["slices"] == {}


def test_select_and_tag_a_whole_selection(client):
    train = _ids(client, {"split": "train"})
    r = client.post("/v1/datasets/photos/tags", json={"q": {"split": "train"}, "add": ["batch-7"]}).json()
    assert r == {"added": len(train), "removed": 0}
    assert _ids(client, {"tags": "batch-7"}) == train
    client.post("/v1/datasets/photos/tags", json={"q": {}, "remove": ["batch-7"]})
    assert _ids(client, {"tags": "batch-7"}) == set()
    assert client.post("/v1/datasets/photos/tags", json={"q": {}, "add": ["bad\ntag"]}).status_code == 400


def test_review_queue_and_verdicts(client):
    queues = client.get("/v1/datasets/photos/review").json()["queues"]
    assert queues["duplicates"] == {"open": 1, "decided": 0}
    page = client.get("/v1/datasets/photos/review/duplicates").json()
    assert page["length"] == 1
    flagged = page["results"][0]
    assert flagged["duplicates"]["reason"] == "exact"
    r = client.post("/v1/datasets/photos/review/duplicates", json={"ids": [flagged["_id"]], "decision": "ignore"},
                    headers={USER_HEADER: "bo"})
    assert r.json() == {"changed": 1}
    assert client.get("/v1/datasets/photos/review/duplicates").json()["length"] == 0
    decided = client.get("/v1/datasets/photos/review/duplicates", params={"state": "decided"}).json()["results"]
    assert "review:duplicates:ignored" in decided[0]["tags"]
    client.post("/v1/datasets/photos/review/duplicates", json={"ids": [flagged["_id"]], "decision": "accept"})
    tags = client.get(f"/v1/datasets/photos/samples/{flagged['_id']}").json()["tags"]
    assert "review:duplicates:accepted" in tags and "review:duplicates:ignored" not in tags
    # a verdict only lands on samples that the queue holds
    other = sorted(_ids(client, {"issues": {"$ne": "duplicate"}}))[0]
    assert client.post("/v1/datasets/photos/review/duplicates", json={"ids": [other], "decision": "accept"}).json() == {"changed": 0}
    trail = client.get("/v1/datasets/photos/edits", params={"sample_id": flagged["_id"]}).json()["results"]
    assert [(e["action"], e["by"]) for e in trail] == [("review:accept", "local"), ("review:ignore", "bo")]
    assert client.get("/v1/datasets/photos/review/nope").status_code == 422


def test_label_edits_with_audit_and_conflicts(client):
    sid = sorted(_ids(client, {"issues": {"$ne": "duplicate"}}))[0]  # a sample no review test touched
    url = f"/v1/datasets/photos/samples/{sid}/edits"
    doc = client.post(url, json={"action": "add_box", "bbox": [10, 10, 50, 40], "name": "cat"},
                      headers={USER_HEADER: "ana"}).json()
    assert doc["ground_truth"]["detections"] == [{"name": "cat", "bbox": [10.0, 10.0, 50.0, 40.0]}]
    r = client.post(url, json={"action": "relabel", "index": 0, "name": "dog", "expect": {"name": "cat"}})
    assert r.status_code == 200 and r.json()["ground_truth"]["detections"][0]["name"] == "dog"
    stale = client.post(url, json={"action": "relabel", "index": 0, "name": "fox", "expect": {"name": "cat"}})
    assert stale.status_code == 409 and "changed" in stale.json()["error"]
    assert client.post(url, json={"action": "delete_box", "index": 5}).status_code == 400
    assert client.post(url, json={"action": "add_box", "bbox": [0, 0, 99999, 5], "name": "x"}).status_code == 400
    assert client.post(url, json={"action": "add_box", "bbox": [0, 0, 5], "name": "x"}).status_code == 422
    assert client.post(url, json={"action": "explode"}).status_code == 422
    assert client.post(url, json={"action": "delete_box", "index": 0, "expect": {"name": "dog"}}).status_code == 200
    client.post(url, json={"action": "mark_reviewed"})
    assert client.get(f"/v1/datasets/photos/samples/{sid}").json()["tags"].count("reviewed") == 1
    trail = client.get("/v1/datasets/photos/edits", params={"sample_id": sid}).json()
    assert [e["action"] for e in trail["results"]] == ["mark_reviewed", "delete_box", "relabel", "add_box"]
    assert trail["results"][-1]["by"] == "ana" and trail["results"][-1]["after"]["name"] == "cat"
    assert trail["results"][1]["before"]["name"] == "dog"
    assert client.post("/v1/datasets/photos/samples/nope/edits", json={"action": "mark_reviewed"}).status_code == 404


def test_edits_through_an_api_key_are_signed_by_the_key(home):
    key = KeyStore(home).create("labeler-1")
    with _Server(create_app(home, require_key=True)) as c:
        sid = sorted(c.post("/v1/datasets/photos/select", json={"q": {}}, headers={API_KEY_HEADER: key}).json()["ids"])[1]
        r = c.post(f"/v1/datasets/photos/samples/{sid}/edits", json={"action": "mark_reviewed"},
                   headers={API_KEY_HEADER: key, USER_HEADER: "someone-else"})
        assert r.status_code == 200
        trail = c.get("/v1/datasets/photos/edits", params={"sample_id": sid}, headers={API_KEY_HEADER: key}).json()
        assert trail["results"][0]["by"] == "key:labeler-1"
        assert c.get("/v1/datasets/photos/edits").status_code == 401


def _wait(client, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen.append(job)
        if job["state"] in ("done", "failed"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {seen[-1]}")


def test_map_job_then_points(client):
    r = client.post("/v1/datasets/photos/jobs", json={"kind": "map"})
    assert r.status_code == 202 and r.json()["state"] in ("queued", "running")
    job, _ = _wait(client, r.json()["id"])
    assert job["state"] == "done" and job["result"]["samples"] == 13 and job["result"]["method"] == "tsne"
    points = client.get("/v1/datasets/photos/map", params={"color_by": "split"}).json()
    assert len(points["ids"]) == len(points["x"]) == len(points["color"]) == 13
    assert all(0 <= v <= 1 for v in points["x"] + points["y"])
    assert set(points["color"]) == {"train", "val"}
    # the exact duplicates share a vector, so each is the other's nearest neighbour on the map
    dup = client.get("/v1/datasets/photos/review/duplicates", params={"state": "all"}).json()["results"][0]
    at = {i: (x, y) for i, x, y in zip(points["ids"], points["x"], points["y"])}
    here = at[dup["_id"]]
    nearest = min((i for i in at if i != dup["_id"]), key=lambda i: (at[i][0] - here[0]) ** 2 + (at[i][1] - here[1]) ** 2)
    assert nearest == dup["duplicates"]["group"]


def test_export_jobs_report_progress_and_serve_their_file(client):
    r = client.post("/v1/datasets/photos/jobs", json={"kind": "export", "format": "jsonl", "q": {"split": "val"}})
    job, _ = _wait(client, r.json()["id"])
    assert job["state"] == "done" and job["progress"]["done"] == job["progress"]["total"] == job["result"]["samples"]
    body = client.get(job["result"]["download"])
    docs = [json.loads(line) for line in body.text.splitlines()]
    assert {d["_id"] for d in docs} == _ids(client, {"split": "val"})
    coco = client.post("/v1/datasets/photos/jobs", json={"kind": "export", "format": "coco"}).json()
    job, _ = _wait(client, coco["id"])
    data = client.get(job["result"]["download"]).json()
    assert len(data["images"]) == 13 and all(os.path.isabs(im["file_name"]) for im in data["images"])
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.post("/v1/datasets/photos/jobs", json={"kind": "export", "q": {"$where": "1"}}).status_code == 400
    listed = client.get("/v1/jobs", params={"dataset_name": "photos"}).json()["jobs"]
    assert listed[0]["id"] == coco["id"]


def test_export_jobs_of_folder_formats_serve_a_zip_of_labels(client):
    import io
    import zipfile
    r = client.post("/v1/datasets/photos/jobs", json={"kind": "export", "format": "voc", "field": "object_analysis"})
    job, _ = _wait(client, r.json()["id"])
    assert job["state"] == "done", job
    body = client.get(job["result"]["download"])
    names = zipfile.ZipFile(io.BytesIO(body.content)).namelist()
    xmls = [n for n in names if n.startswith("Annotations/") and n.endswith(".xml")]
    assert len(xmls) == job["result"]["images"] > 0 and not any(n.startswith("JPEGImages/") for n in names)
    bad = client.post("/v1/datasets/photos/jobs", json={"kind": "export", "format": "exe"})
    assert bad.status_code in (400, 422)


def test_label_job_counts_its_images(client):
    r = client.post("/v1/datasets/photos/jobs", json={"kind": "label", "q": {"split": "train"}, "model": "detector"})
    job, seen = _wait(client, r.json()["id"], timeout=300)
    train = len(_ids(client, {"split": "train"}))
    assert job["state"] == "done", job
    assert job["progress"]["total"] == train and job["progress"]["done"] == train
    assert job["progress"]["rate"] > 0
    assert _ids(client, {"object_analysis_processed": True}) == _ids(client, {"split": "train"})


def test_facets_for_the_quick_filters(client):
    f = client.get("/v1/datasets/photos/facets").json()
    assert f["samples"] == 13 and set(f["splits"]) == {"train", "val"}
    assert f["issues"].get("duplicate") == 1


def test_upload_over_the_pixel_limit_is_refused_before_decoding(home):
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buffer, "PNG")  # 36 MP in 35 KB
    with _Server(create_app(home, max_pixels=20_000_000)) as c:
        r = c.post("/v1/analyze/upload", files={"file": ("big.png", buffer.getvalue(), "image/png")})
    assert r.status_code == 413 and "36,000,000 pixels" in r.json()["error"]


def test_a_cli_write_to_a_dataset_the_server_works_on_says_so(home):
    """While a server job holds the dataset for writing, a CLI write waits, then names the server and its
    jobs API instead of failing obscurely (the job is held open by an event, so the test is not a race)."""
    import threading

    from viscurate.store.workspace import SERVER_FILE
    announce = Path(home) / SERVER_FILE
    announce.parent.mkdir(parents=True, exist_ok=True)
    app = create_app(home)
    holding, release = threading.Event(), threading.Event()

    def long_write(progress):
        with Dataset.open("photos", home).session(write=True):
            holding.set()
            release.wait(60)
        return {"held": True}

    with _Server(app) as c:
        announce.write_text(json.dumps({"pid": os.getpid(), "url": str(c.base_url), "since": time.time()}))
        try:
            job = app.state.jobs.submit("label", "photos", long_write)
            assert holding.wait(30)
            assert c.get(f"/v1/jobs/{job.id}").json()["state"] == "running"
            cli = subprocess.run([sys.executable, "-m", "viscurate.cli.app", "--home", str(home), "--wait", "0.5",
                                  "tag", "photos", "{}", "cli-tag"], capture_output=True, text=True, timeout=120)
        finally:
            release.set()
            announce.unlink(missing_ok=True)
        assert _wait(c, job.id)[0]["state"] == "done"
    assert cli.returncode != 0, cli.stdout
    assert f"the viscurate server at {c.base_url}" in cli.stderr and "/v1/datasets/photos/jobs" in cli.stderr
    # once the job is done, the same command goes through
    again = subprocess.run([sys.executable, "-m", "viscurate.cli.app", "--home", str(home), "tag", "photos", "{}",
                            "cli-tag"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
