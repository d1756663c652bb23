"""Files that vanish (issue flag ``missing``, ``--prune``) and inputs that are wrong (nothing is written).

Real photos (scikit-image's), the real catalog, the real models and the real command line."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import skimage_photos
from tests.test_cli import run
from viscurate import Dataset
from viscurate.errors import ViscurateError
from viscurate.pipeline.ingest import ingest
from viscurate.store.catalog import Catalog

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "camera.png")


def _ingest(ds: Dataset, *paths, **kw):
    return ds.add_images([str(p) for p in paths], workers=0, progress=False, **kw)


def _issues(ds: Dataset) -> dict[str, list[str]]:
    """file name (or member name) -> issues."""
    return {d["origin"].rsplit("/", 1)[-1]: d["issues"] for d in ds.iter()}


def _vector_counts(ds: Dataset) -> tuple[int, int]:
    """(vectors, vectors whose sample is gone)."""
    ds.close()
    with Catalog(ds.directory, ds.name) as cat:
        total = cat._sql("SELECT count(*) FROM vectors")[0][0]
        dangling = cat._sql("SELECT count(*) FROM vectors v WHERE NOT EXISTS "
                           "(SELECT 1 FROM samples s WHERE s._seq = v.sample_seq)")[0][0]
    return total, dangling


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return skimage_photos(tmp_path / "photos", PHOTOS)


# ---- section 4: files that vanished ----------------------------------------------------------------


def test_a_deleted_file_is_flagged_missing_and_cleared_when_it_comes_back(tmp_path, photos):
    other = skimage_photos(tmp_path / "other", ("rocket.jpg",))
    ds = Dataset.create("pets", tmp_path / "home")
    assert _ingest(ds, photos).added == 4 and _ingest(ds, other).added == 1
    kept = tmp_path / "chelsea.png"
    shutil.move(photos / "chelsea.png", kept)  # (move keeps the mtime: it comes back unchanged)
    (other / "rocket.jpg").unlink()  # gone too, but not under the input of the next run

    report = _ingest(ds, photos)
    assert (report.missing, report.pruned, report.failed, report.unchanged) == (1, 0, 0, 3)
    assert report.as_dict()["missing"] == 1
    issues = _issues(ds)
    assert "missing" in issues["chelsea.png"]
    assert "missing" not in issues["rocket.jpg"]  # samples of other inputs are not touched
    assert all("missing" not in v for k, v in issues.items() if k != "chelsea.png")
    assert ds.count() == 5  # nothing is deleted without --prune
    assert _ingest(ds, photos).missing == 1  # still gone: still counted, flagged once
    assert _issues(ds)["chelsea.png"].count("missing") == 1

    shutil.move(kept, photos / "chelsea.png")  # back, same bytes and mtime
    back = _ingest(ds, photos)
    assert (back.missing, back.restored, back.unchanged, back.changed) == (0, 1, 4, 0)
    assert "missing" not in _issues(ds)["chelsea.png"]

    (photos / "coffee.png").unlink()
    assert _ingest(ds, photos).missing == 1
    shutil.copy(photos / "camera.png", photos / "coffee.png")  # back with other bytes: re-profiled
    again = _ingest(ds, photos)
    assert (again.restored, again.changed, again.missing) == (1, 1, 0)
    coffee = ds.find({"origin": str(photos / "coffee.png")})["results"][0]
    assert "missing" not in coffee["issues"] and coffee["hash"] == ds.find(
        {"origin": str(photos / "camera.png")})["results"][0]["hash"]


def test_a_file_now_excluded_is_left_alone_but_a_deleted_one_is_missing(tmp_path, photos):
    ds = Dataset.create("pets", tmp_path / "home")
    _ingest(ds, photos)
    report = _ingest(ds, photos, exclude=["chelsea*", "coffee*"])
    assert report.missing == 0 and report.files == 2
    assert not ds.count({"issues": "missing"}) and ds.count() == 4
    (photos / "coffee.png").unlink()  # excluded and gone: gone is gone
    assert _ingest(ds, photos, exclude=["chelsea*", "coffee*"]).missing == 1
    assert [Path(d["origin"]).name for d in ds.iter({"issues": "missing"})] == ["coffee.png"]


def test_a_member_that_left_its_archive_is_missing(tmp_path, photos):
    def make_zip(names):
        with zipfile.ZipFile(tmp_path / "set.zip", "w") as zf:
            for n in names:
                zf.write(photos / n, f"imgs/{n}")

    make_zip(PHOTOS)
    shutil.copy(photos / "camera.png", tmp_path / "loose.png")
    ds = Dataset.create("arc", tmp_path / "home")
    assert _ingest(ds, tmp_path / "set.zip", tmp_path / "loose.png").added == 5
    make_zip(PHOTOS[:3])
    report = _ingest(ds, tmp_path / "set.zip")
    assert report.missing == 1
    assert [d["origin"] for d in ds.iter({"issues": "missing"})] == [f"{tmp_path / 'set.zip'}!/imgs/camera.png"]
    assert "missing" not in _issues(ds)["loose.png"]  # a file input not given this time
    # members the filters now skip are not missing; members back in the archive clear the flag
    make_zip(PHOTOS)
    assert _ingest(ds, tmp_path / "set.zip", exclude=["astronaut*"]).restored == 1
    assert not ds.count({"issues": "missing"})


def test_a_damaged_archive_marks_nothing_missing(tmp_path, photos):
    arc = tmp_path / "set.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        for n in PHOTOS:
            tf.add(photos / n, n)
    ds = Dataset.create("arc", tmp_path / "home")
    assert _ingest(ds, arc).added == 4
    data = arc.read_bytes()
    arc.write_bytes(data[: len(data) // 2])  # cut: the members after the cut are unknown, not gone
    report = _ingest(ds, arc)
    assert report.missing == 0 and report.warnings
    assert not ds.count({"issues": "missing"}) and ds.count() == 4


def test_path_lists_cover_their_lines(tmp_path, photos):
    lst = tmp_path / "files.txt"
    lst.write_text("photos/astronaut.png\nphotos/chelsea.png\n")
    ds = Dataset.create("lst", tmp_path / "home")
    _ingest(ds, photos)
    (photos / "chelsea.png").unlink()
    (photos / "coffee.png").unlink()  # under the folder, but not on the list
    report = _ingest(ds, lst)
    assert report.missing == 1 and report.warnings  # the list's line naming nothing is also a warning
    assert [Path(d["origin"]).name for d in ds.iter({"issues": "missing"})] == ["chelsea.png"]


def test_prune_removes_the_samples_and_their_vectors(tmp_path, photos):
    ds = Dataset.create("pets", tmp_path / "home")
    _ingest(ds, photos)
    ds.embed(workers=0, progress=False)
    assert _vector_counts(ds) == (4, 0)
    (photos / "chelsea.png").unlink()
    report = _ingest(ds, photos, prune=True)
    assert (report.missing, report.pruned) == (1, 1)
    assert ds.count() == 3 and not ds.count({"origin": str(photos / "chelsea.png")})
    assert _vector_counts(ds) == (3, 0)  # its vector went with it, nothing dangles


def test_label_embed_and_analyses_skip_missing_files(tmp_path, photos):
    shutil.copy(photos / "chelsea.png", photos / "chelsea_copy.png")  # an exact duplicate
    ds = Dataset.create("pets", tmp_path / "home")
    _ingest(ds, photos)
    (photos / "coffee.png").unlink()  # gone after ingest: the label stage finds out
    report = ds.label(models="face", workers=0, progress=False)
    assert (report.processed, report.failed, report.missing) == (4, 0, 1) and not report.errors
    coffee = ds.find({"origin": str(photos / "coffee.png")})["results"][0]
    assert "missing" in coffee["issues"] and "label_error" not in coffee  # skipped, flagged, not failed
    again = ds.label(models="face", workers=0, progress=False)
    assert (again.processed, again.missing, again.failed) == (0, 1, 0)

    embedded = ds.embed(workers=0, progress=False)
    assert (embedded.image_vectors, embedded.missing, embedded.failed) == (4, 1, 0)

    assert {len(g.ids) for g in ds.find_duplicates(model=False).groups} == {2}
    (photos / "chelsea_copy.png").unlink()
    _ingest(ds, photos)
    dups = ds.find_duplicates(model=False)
    assert dups.groups == [] and dups.samples == 3  # the missing copy is out of scope
    analyses = ds.analyze()
    assert analyses["duplicates"].samples == 3
    assert ds.embed(workers=0, progress=False).missing == 2


def test_the_cli_says_how_many_are_missing_and_prunes(tmp_path, photos):
    home = tmp_path / "home"
    run(home, "ingest", photos, "-d", "pets", "--workers", "0", "--no-progress")
    (photos / "chelsea.png").unlink()
    text = run(home, "ingest", photos, "-d", "pets", "--workers", "0", "--no-progress").stdout
    assert "missing" in text and "--prune" in text
    labelled = run(home, "label", "pets", "--models", "face", "--workers", "0", "--no-progress").stdout
    assert "1 skipped: file missing" in labelled
    out = json.loads(run(home, "ingest", photos, "-d", "pets", "--prune", "--json").stdout)
    assert (out["missing"], out["pruned"]) == (1, 1)
    assert json.loads(run(home, "count", "pets").stdout) == 3


# ---- section 5: a wrong input writes nothing --------------------------------------------------------


def test_a_wrong_input_creates_no_dataset(tmp_path, photos):
    home = tmp_path / "home"
    bad = run(home, "ingest", tmp_path / "no" / "such", "--dataset", "brandnew", check=False)
    assert bad.returncode == 2 and "input not found" in bad.stderr
    assert json.loads(run(home, "list", "--json").stdout) == []

    run(home, "ingest", photos, "-d", "pets", "--workers", "0", "--no-progress")
    before = _tree_digest(home)
    again = run(home, "ingest", photos, tmp_path / "nope.zip", "-d", "pets", check=False)  # one good, one bad
    assert again.returncode == 2 and "input not found" in again.stderr
    assert _tree_digest(home) == before  # not even opened for writing
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    odd = run(home, "ingest", fifo, "-d", "fifo", check=False)
    assert odd.returncode == 2 and "not a folder or a regular file" in odd.stderr
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    fake = run(home, "ingest", tmp_path / "fake.zip", "-d", "fake", check=False)
    assert fake.returncode == 2 and "not a readable zip archive" in fake.stderr
    assert json.loads(run(home, "list", "--json").stdout) == ["pets"]


def test_the_python_api_checks_inputs_before_touching_the_catalog(tmp_path, photos):
    ds = Dataset.create("pets", tmp_path / "home")
    _ingest(ds, photos)
    before = _tree_digest(ds.directory)
    with pytest.raises(ViscurateError, match="input not found"):
        _ingest(ds, photos, tmp_path / "gone")
    with pytest.raises(ViscurateError, match="no input given"):
        _ingest(ds)
    assert _tree_digest(ds.directory) == before and ds.count() == 4
    with Catalog(ds.directory, "pets", write=True) as cat, pytest.raises(ViscurateError, match="input not found"):
        ingest(cat, iter([str(photos), str(tmp_path / "gone")]), workers=0, progress=False)


def test_importers_check_inputs_before_creating_the_dataset(tmp_path, photos):
    home = tmp_path / "home"
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "chelsea.png", "width": 451, "height": 300}],
                                "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
    (tmp_path / "results.json").write_text('{"not": "a list"}')
    cases = [
        (["import-coco", "c1", tmp_path / "nope.json"], "cannot read COCO file"),
        (["import-coco", "c2", coco, "--images", tmp_path / "nowhere"], "images folder not found"),
        (["import-coco", "c3", coco], "none of the 1 images"),  # the JSON's folder holds no photo
        (["import-coco", "c4", coco, "--images", photos, "--predictions", tmp_path / "results.json"],
         "not a COCO results file"),
        (["import-folders", "c5", tmp_path / "no_tree"], "input not found"),
        (["import-folders", "c6", photos / "chelsea.png"], "is not a folder"),
    ]
    for args, message in cases:
        bad = run(home, *args, check=False)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    assert json.loads(run(home, "list", "--json").stdout) == []
    # the Python API: a bad results file leaves the dataset as it was (no half-import of the ground truth)
    ds = Dataset.create("coco", home)
    with pytest.raises(ViscurateError, match="not a COCO results file"):
        ds.import_coco(coco, images=photos, predictions=tmp_path / "results.json", progress=False)
    assert ds.count() == 0
    counts = ds.import_coco(coco, images=photos, progress=False)
    assert counts["ground_truth"]["samples"] == 1
