"""Image-classification folders into ground_truth.label and split, on real (tiny) digit images."""
from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from viscurate import Dataset


def _tree(root, with_splits: bool, n: int = 60):
    x, y = load_digits(return_X_y=True)
    for i in range(n):
        split = ("train" if i % 4 else "val") if with_splits else None
        folder = root / split / str(y[i]) if split else root / str(y[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[i].reshape(8, 8) * 16).astype(np.uint8)).resize((32, 32)).save(folder / f"{i:04d}.png")
    return y[:n]


def test_split_and_class_folders(tmp_path):
    y = _tree(tmp_path / "data", with_splits=True)
    (tmp_path / "data" / "train" / "3" / "broken.png").write_bytes(b"\x89PNG not really")
    ds = Dataset.create("digits", tmp_path / "home")
    report = ds.import_classification(tmp_path / "data", progress=False)
    assert report.images == 61 and report.classes == len(set(y.tolist())) and report.failed == 1
    assert report.splits == {"train": 46, "val": 15}
    assert ds.count({"split": "val"}) == 15
    assert ds.count({"ground_truth.label": "3"}) == int((y == 3).sum()) + 1
    assert ds.count({"issues": "corrupt", "ground_truth.label": "3"}) == 1  # kept, flagged, still labeled

    # move an image to another class folder and import again: only its label changes
    src = next((tmp_path / "data" / "train" / "1").glob("*.png"))
    (tmp_path / "data" / "train" / "7").mkdir(exist_ok=True)
    shutil.move(str(src), tmp_path / "data" / "train" / "7" / src.name)
    again = ds.import_classification(tmp_path / "data", progress=False)
    assert again.images == 61 + 1  # the moved file is a new sample (new path); the old one stays catalogued
    moved = ds.find({"filepath": {"$regex": f"/train/7/{src.name}$"}})["results"][0]
    assert moved["ground_truth"]["label"] == "7" and moved["split"] == "train"


def test_class_folders_without_splits_and_cli(tmp_path):
    from tests.test_cli import run

    y = _tree(tmp_path / "data", with_splits=False, n=30)
    Image.new("RGB", (16, 16)).save(tmp_path / "data" / "loose.png")
    out = json.loads(run(tmp_path / "home", "import-folders", "digits", tmp_path / "data", "--json").stdout)
    assert out == {"images": 30, "classes": len(set(y.tolist())), "splits": {}, "unlabeled": 1, "failed": 0}
    ds = Dataset.open("digits", tmp_path / "home")
    assert ds.count({"split": {"$exists": True}}) == 0
    assert ds.count({"ground_truth.label": {"$exists": False}}) == 1
