"""The label and embed stages: real models on real photos (scikit-image), no mocks.

One dataset (chelsea, coffee with a ground-truth box, astronaut, and a broken file) is labelled once for
the module; the tests read what the run wrote, then re-run it (incremental, forced, from the CLI).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import skimage_photo, viscurate_cli
from viscurate import Dataset
from viscurate.pipeline.label import LABEL_KEYS, select_models
from viscurate.store.catalog import Catalog

EMBEDDER = "efficientnet_lite3@uint8-280-obj224"
CAT_QUERY = {"object_analysis": {"$elemMatch": {"name": "cat", "label_quality_estimation": {"$gte": 0.5}}}}


cli = viscurate_cli


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    home, photos = root / "home", root / "photos"
    home.mkdir()
    photos.mkdir()
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        shutil.copy(skimage_photo(name), photos / name)
    jpeg = (Path(__import__("sklearn").__file__).parent / "datasets" / "images" / "china.jpg").read_bytes()
    (photos / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    ds = Dataset.create("photos", home)
    ds.add_images(photos, progress=False, workers=0)
    ids = {Path(d["filepath"]).stem: d["_id"] for d in ds.iter()}
    ds.update(ids["coffee"], {"$set": {"ground_truth": {"detections": [
        {"name": "cup", "bbox": [170, 10, 245, 230]}, {"name": "dining table", "bbox": [0, 0, 600, 400]}]}}})
    report = ds.label(progress=False)
    return ds, report, ids, home


def doc_of(ds, ids, stem):
    return ds.get(ids[stem])


def test_first_run_report(labelled):
    ds, report, ids, _ = labelled
    assert report.processed == 3 and report.failed == 0 and report.corrupt == 1 and report.up_to_date == 0
    assert report.errors == []
    keys = set(report.models.values())
    assert keys == {"ssd_mobilenet_v2_coco@2018-03-29", EMBEDDER, "blazeface@full-range",
                    "movenet_lightning@singlepose-192"}
    for key in keys:
        assert report.model_seconds[key] > 0, key  # per-model timing
    assert report.images_per_s > 0 and report.objects >= 3 and report.faces >= 1 and report.poses >= 1


def test_chelsea_is_a_cat_with_a_label_quality(labelled):
    ds, _, ids, _ = labelled
    doc = doc_of(ds, ids, "chelsea")
    assert doc["object_analysis_processed"] is True
    cats = [o for o in doc["object_analysis"] if o["name"] == "cat"]
    assert cats and cats[0]["confidence"] > 0.5
    x, y, w, h = cats[0]["bbox"]
    assert 0 <= x and 0 <= y and x + w <= doc["width"] + 0.5 and y + h <= doc["height"] + 0.5 and w > 200
    for obj in doc["object_analysis"]:
        assert 0.0 <= obj["label_quality_estimation"] <= 1.0
        assert obj["model"] == "ssd_mobilenet_v2_coco@2018-03-29" and isinstance(obj["signals"], dict)
    assert 0.0 <= doc["label_quality_estimation"] <= 1.0
    tags = doc["classifications"]
    assert len(tags) == 5 and "cat" in tags[0]["name"] and tags[0]["confidence"] > 0.5
    assert doc["models"]["object_analysis"] == "ssd_mobilenet_v2_coco@2018-03-29"
    assert doc["models"]["classifications"] == EMBEDDER and doc["embeddings"] == [EMBEDDER]
    assert doc["face_analysis"] == [] and doc["pose_estimation"] == []
    assert "label_error" not in doc


def test_astronaut_has_a_person_one_face_and_a_pose(labelled):
    ds, _, ids, _ = labelled
    doc = doc_of(ds, ids, "astronaut")
    assert any(o["name"] == "person" and o["confidence"] > 0.5 for o in doc["object_analysis"])
    assert doc["face_analysis_processed"] is True and len(doc["face_analysis"]) == 1
    face = doc["face_analysis"][0]
    assert face["name"] == "face" and face["confidence"] > 0.5 and len(face["keypoints"]) == 6
    fx, fy, fw, fh = face["bbox"]
    assert 100 < fx + fw / 2 < 320 and 40 < fy + fh / 2 < 220  # Eileen Collins' face, upper middle
    assert doc["pose_estimation_processed"] is True and len(doc["pose_estimation"]) >= 1
    pose = doc["pose_estimation"][0]
    assert pose["name"] == "person" and len(pose["keypoints"]) == 17
    assert all(len(k) == 3 and 0 <= k[2] <= 1 for k in pose["keypoints"])
    nose = pose["keypoints"][0]
    assert fx - 20 <= nose[0] <= fx + fw + 20 and fy - 20 <= nose[1] <= fy + fh + 20  # the nose is in the face


def test_the_query_language_finds_the_cat(labelled):
    ds, _, ids, _ = labelled
    found = ds.find(CAT_QUERY)
    assert [d["_id"] for d in found["results"]] == [ids["chelsea"]]
    assert ds.count({"face_analysis.name": "face"}) == 1
    assert ds.count({"object_analysis_processed": True}) == 3


def test_vectors_are_stored_for_images_and_boxes(labelled):
    ds, _, ids, _ = labelled
    with Catalog(ds.directory, ds.name) as cat:
        img_ids, _, images = cat.read_vectors(EMBEDDER)
        box_ids, box_idx, boxes = cat.read_vectors(EMBEDDER, field="object_analysis")
        gt_ids, gt_idx, gt = cat.read_vectors(EMBEDDER, field="ground_truth.detections")
    assert sorted(img_ids) == sorted(ids[s] for s in ("chelsea", "coffee", "astronaut"))
    assert images.shape == (3, 1280) and np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-2)
    n_boxes = sum(len(d.get("object_analysis") or ()) for d in ds.iter())
    assert boxes.shape == (n_boxes, 1280) and len(set(zip(box_ids, box_idx))) == n_boxes
    assert gt_ids == [ids["coffee"]] * 2 and gt_idx == [0, 1] and gt.shape == (2, 1280)
    # a box crop is not the whole image: the cat crop is closer to chelsea's image than to coffee's
    cat_row = next(i for i, (s, k) in enumerate(zip(box_ids, box_idx))
                   if s == ids["chelsea"] and ds.get(s)["object_analysis"][k]["name"] == "cat")
    sims = images @ boxes[cat_row]
    assert img_ids[int(np.argmax(sims))] == ids["chelsea"]


def test_the_broken_file_is_skipped_and_left_alone(labelled):
    ds, _, ids, _ = labelled
    doc = doc_of(ds, ids, "broken")
    assert "corrupt" in doc["issues"]
    assert not any(k in doc for k in LABEL_KEYS)


def test_a_rerun_does_nothing_and_force_redoes(labelled):
    ds, _, ids, home = labelled
    before = ds.get(ids["coffee"])
    again = ds.label(progress=False)
    assert again.processed == 0 and again.up_to_date == 3 and again.corrupt == 1 and again.refined == 0
    assert ds.get(ids["coffee"]) == before
    # --force (from the command line) labels again what it matches, and keeps the other samples' vectors
    out = json.loads(cli(home, "label", "photos", "--force", "--json", "--query",
                         json.dumps({"_id": ids["chelsea"]})).stdout)
    assert out["processed"] == 1 and out["failed"] == 0 and out["image_vectors"] == 1 and out["box_vectors"] >= 1
    with Catalog(ds.directory, ds.name) as cat:
        assert len(cat.read_vectors(EMBEDDER)[0]) == 3
        assert len(cat.read_vectors(EMBEDDER, field="ground_truth.detections")[0]) == 2
    assert ds.find(CAT_QUERY)["length"] == 1
    after = ds.get(ids["coffee"])
    assert after["classifications"] == before["classifications"] and after["face_analysis"] == before["face_analysis"]


def test_the_neighbour_pass_refines_from_the_own_estimate_every_time(labelled):
    from viscurate.pipeline.label import refine
    ds, _, ids, _ = labelled
    before = {d["_id"]: d for d in ds.iter()}
    # three photos are too few boxes for neighbours to mean anything: the default pass left them alone
    for doc in before.values():
        for obj in doc.get("object_analysis") or ():
            assert obj["label_quality_estimation"] == obj["signals"]["lqe_own"]
            assert obj["signals"]["neighbour_agreement"] is None
    ds.close()  # let go of the cached reader: this process opens the catalog for writing
    with Catalog(ds.directory, ds.name, write=True) as cat:
        changed = refine(cat, EMBEDDER, k=2, min_boxes=0)
        assert changed > 0
        assert refine(cat, EMBEDDER, k=2, min_boxes=0) == 0  # idempotent: it starts from lqe_own
    refined = ds.get(ids["chelsea"])
    cat_box = next(o for o in refined["object_analysis"] if o["name"] == "cat")
    assert 0 <= cat_box["signals"]["neighbour_agreement"] <= 1 and 0 <= cat_box["label_quality_estimation"] <= 1
    assert refined["label_quality_estimation"] == pytest.approx(
        np.mean([o["label_quality_estimation"] for o in refined["object_analysis"]]), abs=1e-3)
    ds.close()
    with Catalog(ds.directory, ds.name, write=True) as cat:
        assert refine(cat, EMBEDDER) == changed  # the default again: back to the own estimates
    assert {d["_id"]: d for d in ds.iter()} == before
    with Catalog(ds.directory, ds.name) as cat:  # rewriting the documents kept every vector
        assert len(cat.read_vectors(EMBEDDER, field="object_analysis")[0]) == sum(
            len(d.get("object_analysis") or ()) for d in before.values())


def test_models_are_chosen_by_role_or_name():
    sel = select_models("detector,face")
    assert list(sel.roles) == ["detector", "face"] and not sel.crops
    sel = select_models(["efficientnet_lite3"])
    assert set(sel.roles) == {"classifier", "embedder"} and sel.crops
    assert set(select_models(None).roles) == {"detector", "classifier", "embedder", "face", "pose"}
    with pytest.raises(Exception, match="unknown model"):
        select_models("no_such_model")


def test_a_failing_image_is_flagged_and_embed_is_incremental(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(skimage_photo("chelsea.png"), photos / "chelsea.png")
    shutil.copy(skimage_photo("coffee.png"), photos / "gone.png")
    ds = Dataset.create("small", tmp_path / "home")
    ds.add_images(photos, progress=False, workers=0)
    (photos / "gone.png").write_bytes(b"no longer a png")  # ingested, then overwritten: it cannot be decoded
    # (a deleted file is skipped as missing, not failed: tests/test_ingest_missing.py)
    report = ds.label(models="face", workers=0, progress=False)
    assert report.processed == 2 and report.failed == 1 and len(report.errors) == 1
    gone = ds.find({"label_error": {"$exists": True}})["results"]
    assert len(gone) == 1 and gone[0]["filepath"].endswith("gone.png") and "decode_error" in gone[0]["label_error"]
    assert ds.count({"face_analysis_processed": True}) == 1
    # embed: only what lacks a vector, the broken file flagged again, never fatal
    first = ds.embed(workers=0, progress=False)
    assert first.processed == 2 and first.image_vectors == 1 and first.failed == 1
    second = ds.embed(workers=0, progress=False)
    assert second.processed == 1 and second.image_vectors == 0  # only the broken file is tried again
    chelsea = ds.find({"embeddings": EMBEDDER})["results"]
    assert len(chelsea) == 1 and chelsea[0]["face_analysis"] == []  # the face labels survived


def test_models_command_lists_the_defaults(tmp_path):
    rows = json.loads(cli(tmp_path, "models", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    for name in ("ssd_mobilenet_v2_coco", "efficientnet_lite3", "blazeface", "movenet_lightning"):
        assert by_name[name]["licence"] and by_name[name]["source"] and by_name[name]["runtime"]
    assert "detector" in by_name["ssd_mobilenet_v2_coco"]["default_for"]
    table = cli(tmp_path, "models").stdout
    assert "ssd_mobilenet_v2_coco" in table and "onnxruntime" in table


def test_an_interrupted_run_keeps_its_batches_and_the_next_one_continues(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        shutil.copy(skimage_photo(name), photos / name)
    ds = Dataset.create("resume", tmp_path / "home")
    ds.add_images(photos, progress=False, workers=0)

    class Stop(Exception):
        pass

    def stop_after_first_batch(report):
        raise Stop

    with pytest.raises(Stop):
        ds.label(models="face,embedder", workers=0, batch_size=1, progress=False, on_batch=stop_after_first_batch)
    assert ds.count({"face_analysis_processed": True}) == 1  # the committed batch
    with Catalog(ds.directory, ds.name) as cat:
        assert len(cat.read_vectors(EMBEDDER)[0]) == 1
    rest = ds.label(models="face,embedder", workers=0, progress=False)
    assert rest.processed == 2 and rest.up_to_date == 1
    assert ds.count({"face_analysis_processed": True}) == 3 and ds.count({"embeddings": EMBEDDER}) == 3


def test_boxes_are_in_pixels_of_the_upright_original(tmp_path):
    """A large photo stored sideways with EXIF orientation 6: the models see it upright and shrunk to
    1024 px, and the boxes come back in pixels of the upright full-size image."""
    from PIL import Image
    upright = Image.open(skimage_photo("astronaut.png")).convert("RGB").resize((2048, 2048)).crop((0, 0, 2048, 1536))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photos = tmp_path / "photos"
    photos.mkdir()
    stored.save(photos / "sideways.jpg", quality=92, exif=exif)
    ds = Dataset.create("exif", tmp_path / "home")
    ds.add_images(photos, progress=False, workers=0)
    report = ds.label(models="face", workers=0, progress=False)
    assert report.processed == 1 and report.failed == 0
    (doc,) = list(ds.iter())
    assert (doc["width"], doc["height"]) == (2048, 1536)
    (face,) = doc["face_analysis"]
    x, y, w, h = face["bbox"]  # the 512 px astronaut's face is at about [174, 70, 105, 105]
    assert abs(x - 4 * 174) < 60 and abs(y - 4 * 70) < 60 and abs(w - 4 * 105) < 80


def test_a_worker_caps_numpys_blas_threads_though_numpy_was_imported_first():
    """Workers import NumPy in the preload, before they set OPENBLAS_NUM_THREADS: the cap must still hold,
    or every matrix product in a worker wakes BLAS threads that spin on the other workers' cores."""
    code = ("import numpy, threadpoolctl\n"
            "from viscurate.pipeline.label.worker import init_worker\n"
            "init_worker({}, 1, 1024)\n"
            "print(max(p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'))\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1"]
