"""Detection label errors from box-embedding neighbours, on real photos: a COCO detection set whose boxes
are pieces of eight scikit-image photos (the class is the photo), embedded by the real default model;
a few boxes carry the wrong class and must be the ones flagged, with the right class suggested."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from viscurate import Dataset
from viscurate.brain.box_label_errors import neighbour_votes
from viscurate.errors import ViscurateError

CLASSES = ["brick", "grass", "gravel", "coins", "coffee", "chelsea", "rocket", "camera"]
FLIPPED = {3: "grass", 17: "coins", 30: "camera", 52: "brick"}  # box number -> the wrong class it gets


def _detection_set(root, images=24, per_image=3, seed=0):
    import skimage

    from viscurate.models.litert import as_rgb
    rng = np.random.default_rng(seed)
    photos = {n: as_rgb(getattr(skimage.data, n)()) for n in CLASSES}
    (root / "images").mkdir(parents=True)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    cat_id = {n: i + 1 for i, n in enumerate(CLASSES)}
    imgs, anns, truth = [], [], {}
    box = 0
    for i in range(images):
        canvas = np.full((480, 480, 3), 128, np.uint8)
        for slot in range(per_image):
            name = CLASSES[box % len(CLASSES)]
            src = photos[name]
            h, w = src.shape[:2]
            s = int(rng.integers(min(h, w) // 3, min(h, w) // 1.5))
            y0, x0 = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            side = int(rng.integers(100, 150))
            tile = np.asarray(Image.fromarray(src[y0:y0 + s, x0:x0 + s]).resize((side, side)))
            x, y = 10 + slot * 155, int(rng.integers(10, 480 - side - 10))
            canvas[y:y + side, x:x + side] = tile
            label = FLIPPED.get(box, name)
            anns.append({"id": box + 1, "image_id": i + 1, "category_id": cat_id[label],
                         "bbox": [x, y, side, side], "area": side * side, "iscrowd": 0})
            truth[(f"{i:03d}.png", slot)] = (name, label)
            box += 1
        Image.fromarray(canvas).save(root / "images" / f"{i:03d}.png")
        imgs.append({"id": i + 1, "file_name": f"{i:03d}.png", "width": 480, "height": 480})
    (root / "instances.json").write_text(json.dumps({"images": imgs, "annotations": anns, "categories": cats}))
    return root / "instances.json", truth


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    gt_path, truth = _detection_set(root)
    ds = Dataset.create("boxes", tmp_path_factory.mktemp("home"))
    ds.import_coco(gt_path, images=root / "images", progress=False)
    ds.embed(boxes=True, progress=False)
    return ds, truth


def test_the_wrong_boxes_are_flagged_with_the_right_class(dataset):
    ds, truth = dataset
    report = ds.find_box_label_errors()
    assert report.boxes == 72 and report.classes == len(CLASSES)
    files = {d["_id"]: d["filepath"].rsplit("/", 1)[-1] for d in ds.find({}, page_size=100)["results"]}
    flagged = {(files[sid], idx): (label, suggested) for sid, idx, label, suggested, _ in report.flagged}
    wrong = {key: (label, name) for key, (name, label) in truth.items() if name != label}
    assert len(wrong) == len(FLIPPED)
    assert flagged == wrong  # every flipped box, nothing else, and the class it really is
    assert all(score >= 0.9 for *_, score in report.flagged)
    # stored: on the boxes, on the samples, queryable
    hits = ds.find({"ground_truth.detections": {"$elemMatch": {"mislabel_score": {"$gte": 0.7}}}}, page_size=100)
    assert {files[d["_id"]] for d in hits["results"]} == {f for f, _ in wrong}
    assert ds.count({"issues": "mislabeled_box"}) == len({f for f, _ in wrong})
    doc = next(d for d in ds.find({}, page_size=100)["results"] if (files[d["_id"]], 0) in wrong
               or (files[d["_id"]], 1) in wrong or (files[d["_id"]], 2) in wrong)
    boxes = doc["ground_truth"]["detections"]
    assert all("mislabel_score" in b for b in boxes) and doc["box_mislabel"]["count"] >= 1
    marked = [b for b in boxes if b.get("mislabel_suggested") and b["mislabel_score"] >= 0.7]
    assert all(b["mislabel_suggested"] != b["name"] for b in marked)


def test_a_stricter_run_replaces_the_marks_and_small_sets_are_refused(dataset):
    ds, _ = dataset
    ds.find_box_label_errors()
    assert ds.count({"issues": "mislabeled_box"}) > 0
    report = ds.find_box_label_errors(min_score=1.0, k=5)
    assert ds.count({"issues": "mislabeled_box"}) == len({sid for sid, *_ in report.flagged})
    with pytest.raises(ViscurateError, match="needs at least"):
        ds.find_box_label_errors(k=30)
    with pytest.raises(ViscurateError, match="min_score"):
        ds.find_box_label_errors(min_score=0)


def test_neighbour_votes_weighs_by_similarity():
    labels = np.array([0, 1, 1, 0])
    sims = np.array([[0.9, 0.1], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    nbrs = np.array([[1, 3], [2, -1], [1, 0], [0, 1]])
    score, best, share = neighbour_votes(labels, sims, nbrs)
    assert score.round(3).tolist() == [0.9, 0.0, 0.5, 0.5]
    assert best.tolist() == [1, -1, 0, 1] and share.round(3).tolist() == [0.9, 0.0, 0.5, 0.5]
