"""Object-level near duplicates on real photos labelled by the real default models: the cat of
scikit-image's ``chelsea`` appears again in a resized, mirrored, re-framed copy pasted into another scene;
the two cat boxes must find each other and nothing else may pair up."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import skimage_photo
from viscurate import Dataset
from viscurate.brain.object_duplicates import MIN_SIMILARITY


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    photos = tmp_path_factory.mktemp("photos")
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        shutil.copy(skimage_photo(name), photos / name)
    # the same cat in another image: mirrored, shrunk to 70%, on a wider canvas of another photo's pixels
    cat = Image.open(skimage_photo("chelsea.png")).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    cat = cat.resize((cat.width * 7 // 10, cat.height * 7 // 10), Image.Resampling.LANCZOS)
    canvas = Image.open(skimage_photo("coffee.png")).convert("RGB").resize((cat.width + 160, cat.height + 60))
    canvas = Image.fromarray((np.asarray(canvas) // 3).astype(np.uint8))  # a dim, different background
    canvas.paste(cat, (140, 30))
    canvas.save(photos / "cat_elsewhere.jpg", quality=90)
    ds = Dataset.create("objects", home=home)
    ds.add_images(photos, progress=False)
    ds.label(progress=False)
    return ds


def _stem(ds, sid):
    return Path(ds.find({"_id": sid})["results"][0]["filepath"]).stem


def test_the_same_cat_in_two_images_is_found_and_marked(labelled):
    ds = labelled
    report = ds.find_object_duplicates()
    assert report.field == "object_analysis" and report.boxes >= 4
    pairs = {frozenset((_stem(ds, a), _stem(ds, b))) for a, _, b, _, _ in report.examples}
    assert pairs == {frozenset(("chelsea", "cat_elsewhere"))}, report.examples
    a, i, b, j, sim = report.examples[0]
    assert MIN_SIMILARITY <= sim <= 1.0
    for sid, idx, other, oidx in ((a, i, b, j), (b, j, a, i)):
        doc = ds.find({"_id": sid})["results"][0]
        box = doc["object_analysis"][idx]
        assert box["name"] == "cat" and box["object_duplicate"] == f"{other}#{oidx}"
        assert box["object_duplicate_similarity"] == pytest.approx(sim, abs=1e-3)
        assert "object_duplicate" in doc["issues"] and doc["object_duplicates"]["count"] >= 1
    # queryable: by issue, by sample count, and on the boxes themselves
    assert {_stem(ds, d["_id"]) for d in ds.find({"issues": "object_duplicate"})["results"]} == {"chelsea", "cat_elsewhere"}
    hits = ds.find({"object_analysis": {"$elemMatch": {"name": "cat", "object_duplicate_similarity": {"$gte": 0.92}}}})
    assert hits["length"] == 2
    # the box vectors survived the rewrite of the box lists (the geometry did not change)
    again = ds.find_object_duplicates(write=False)
    assert again.examples == report.examples


def test_a_stricter_threshold_clears_earlier_marks(labelled):
    ds = labelled
    ds.find_object_duplicates()
    assert ds.count({"issues": "object_duplicate"}) == 2
    ds.find_object_duplicates(min_similarity=0.9999)
    assert ds.count({"issues": "object_duplicate"}) == 0
    assert ds.count({"object_duplicates": {"$exists": True}}) == 0
    assert ds.count({"object_analysis": {"$elemMatch": {"object_duplicate": {"$exists": True}}}}) == 0
    with pytest.raises(Exception, match="min_similarity"):
        ds.find_object_duplicates(min_similarity=1.5)


def test_analyze_runs_it_when_boxes_have_vectors(labelled):
    reports = labelled.analyze()
    assert "object_duplicates" in reports and reports["object_duplicates"].duplicate_boxes == 2


def test_the_commands_print_and_store_the_same(labelled):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, VISCURATE_HOME=str(labelled.workspace.home), COLUMNS="200", NO_COLOR="1")
    exe = shutil.which("viscurate") or str(Path(sys.executable).with_name("viscurate"))
    out = subprocess.run([exe, "object-duplicates", labelled.name, "--json"], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    report = json.loads(out.stdout)
    assert report["duplicate_boxes"] == 2 and report["samples"] == 2
    text = subprocess.run([exe, "object-duplicates", labelled.name], capture_output=True, text=True, env=env,
                          timeout=300, check=True).stdout
    assert "with a twin in another image" in text and "the closest pairs" in text
    refused = subprocess.run([exe, "box-label-errors", labelled.name, "--field", "object_analysis"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode != 0 and "needs at least" in (refused.stdout + refused.stderr)
    assert "Traceback" not in refused.stderr
