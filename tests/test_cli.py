"""The `viscurate` command line, run as a user runs it: a subprocess of the installed console script."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import viscurate_cli
from viscurate import Dataset

run = viscurate_cli


@pytest.fixture
def photos(tmp_path):
    """Real photos bundled with scikit-image and scikit-learn, plus a broken one."""
    import skimage
    import sklearn
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    data = Path(skimage.__file__).parent / "data"
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "camera.png"):
        shutil.copy(data / name, folder / name)
    for name in ("china.jpg", "flower.jpg"):
        shutil.copy(Path(sklearn.__file__).parent / "datasets" / "images" / name, folder / "sub" / name)
    blob = (folder / "sub" / "china.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(blob[: len(blob) // 3])
    return folder


def test_ingest_find_info_tag(home, photos):
    out = json.loads(run(home, "ingest", photos, "--dataset", "pets", "--json").stdout)
    assert out["added"] == 7 and out["failed"] == 1 and out["unchanged"] == 0
    again = json.loads(run(home, "ingest", photos, "-d", "pets", "--json").stdout)
    assert again["added"] == 0 and again["unchanged"] == 7

    page = json.loads(run(home, "find", "pets", '{"issues": "corrupt"}', "--json").stdout)
    assert page["length"] == 1 and page["results"][0]["filepath"].endswith("broken.jpg")
    assert page["results"][0]["error"]

    grey = json.loads(run(home, "find", "pets", '{"quality.grayscale": true}', "--json", "--fields", "filepath").stdout)
    assert {Path(d["filepath"]).name for d in grey["results"]} == {"camera.png"}

    big = json.loads(run(home, "find", "pets", '{"width": {"$gte": 500}}', "--sort", "width:-1", "--json").stdout)
    widths = [d["width"] for d in big["results"]]
    assert widths == sorted(widths, reverse=True) and len(widths) == big["length"] >= 4

    table = run(home, "find", "pets", "{}", "--page-size", "3", "--page", "2").stdout
    assert "7 match(es)" in table and "page 2 of 3" in table

    assert "tagged 2 sample(s)" in run(home, "tag", "pets", '{"format": "JPEG", "issues": {"$ne": "corrupt"}}', "jpeg").stdout
    assert run(home, "count", "pets", '{"tags": "jpeg"}').stdout.strip() == "2"
    assert "updated 7 sample(s)" in run(home, "update", "pets", "{}", '{"$set": {"split": "train"}}').stdout

    info = run(home, "info", "pets").stdout
    assert "7 samples" in info and "corrupt" in info and "PNG" in info
    data = json.loads(run(home, "info", "pets", "--json").stdout)
    assert data["samples"] == 7 and data["issues"]["corrupt"] == 1 and data["splits"] == {"train": 7}

    one = json.loads(run(home, "get", "pets", page["results"][0]["_id"]).stdout)
    assert one["issues"][0] == "corrupt"


def test_errors_are_one_line_and_exit_2(home):
    for args, text in [(("find", "nope", "{}"), "no dataset named 'nope'"),
                       (("create", "../x"), "invalid dataset name"),
                       (("find", "x", "{bad json"), "not valid JSON"),
                       (("find", "x", '{"a": {"$where": "1"}}'), "$where")]:
        if args[0] == "find" and args[1] == "x" and not Dataset.exists("x", home):
            Dataset.create("x", home)
        proc = run(home, *args, check=False)
        assert proc.returncode == 2, proc
        assert text in proc.stderr and "Traceback" not in proc.stderr


def test_ingest_of_a_missing_path_fails_before_work(home):
    proc = run(home, "ingest", "/no/such/folder", "-d", "x", check=False)
    assert proc.returncode == 2 and "/no/such/folder" in proc.stderr


def test_dataset_management(home, tmp_path):
    run(home, "create", "a")
    assert json.loads(run(home, "list", "--json").stdout) == ["a"]
    run(home, "rename", "a", "b")
    other = tmp_path / "other-home"
    run(other, "--home", other, "create", "c")
    assert json.loads(run(home, "--home", other, "list", "--json").stdout) == ["c"]
    run(home, "delete", "b", "--yes")
    assert json.loads(run(home, "list", "--json").stdout) == []


def test_demo_runs_offline(home):
    proc = run(home, "demo", timeout=600)
    text = proc.stdout
    assert "catalogued" in text and "corrupt" in text and "chelsea-mirrored.jpg" in text
    ds = Dataset.open("demo", home)
    assert ds.count() >= 20
    assert ds.count({"issues": "corrupt", "filepath": {"$regex": "made-by-demo"}}) == 2
    original = ds.find({"filepath": {"$regex": "chelsea\\.png$"}})["results"][0]
    mirrored = ds.find({"filepath": {"$regex": "chelsea-mirrored"}})["results"][0]
    from viscurate.cli.demo import hamming
    assert hamming(original["phash_flip"], mirrored["phash_flip"]) <= 4
    assert hamming(original["phash"], mirrored["phash"]) >= 16
    assert "flip-invariant distance" in text
    # auto-labeled: the cat is found, with a label quality estimate, and drawn
    cats = [o for o in original["object_analysis"] if o["name"] == "cat"]
    assert cats and 0.5 <= cats[0]["label_quality_estimation"] <= 1
    assert "auto-labeling" in text and "labels to review first" in text
    picture = Path(home) / "demo-pictures" / "chelsea-labels.png"
    with Image.open(picture) as im:
        assert max(im.size) == 451 and im.mode == "RGB"


def test_thresholds_from_the_command_line(home, photos):
    out = json.loads(run(home, "ingest", photos, "-d", "strict", "--json", "--threshold", "dark=0.9",
                         "-t", "odd_size_min_side=600").stdout)
    assert out["added"] == 7
    ds = Dataset.open("strict", home)
    assert ds.count({"issues": "dark"}) >= 5          # almost everything is "dark" below 0.9
    assert ds.count({"issues": "odd_size"}) >= 3      # shorter side under 600 px
    proc = run(home, "ingest", photos, "-d", "strict", "--threshold", "darkness=1", check=False)
    assert proc.returncode == 2 and "dark, bright" in proc.stderr
