"""Detection evaluation against pycocotools' COCOeval (the reference), through the COCO importers and the
catalog, on a generated COCO set; and the fields it stores."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from viscurate import Dataset
from viscurate.errors import ViscurateError

pytest.importorskip("pycocotools")


def _coco_set(root, n_images=40, seed=0):
    """Images with 0-6 boxes of 3 classes (a few crowd regions), and predictions: jittered copies of the
    boxes (some missed), duplicates, wrong classes and stray boxes, with scores loosely tied to quality."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, anns, results = [], [], []
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 7, "name": "car"}]
    aid = 1
    for i in range(1, n_images + 1):
        w, h = int(rng.integers(200, 400)), int(rng.integers(200, 400))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i:03d}.png")
        images.append({"id": i, "file_name": f"{i:03d}.png", "width": w, "height": h})
        for _ in range(int(rng.integers(0, 7))):
            bw, bh = rng.uniform(10, w / 2), rng.uniform(10, h / 2)
            box = [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), float(bw), float(bh)]
            cat = int(rng.choice([1, 2, 7]))
            crowd = int(rng.random() < 0.08)
            anns.append({"id": aid, "image_id": i, "category_id": cat, "bbox": box, "area": bw * bh,
                         "iscrowd": crowd})
            aid += 1
            if rng.random() < 0.8:  # found, more or less well
                jitter = rng.normal(scale=rng.choice([0.02, 0.1, 0.3]), size=4) * [bw, bh, bw, bh]
                pred = [box[0] + jitter[0], box[1] + jitter[1], max(1.0, bw + jitter[2]), max(1.0, bh + jitter[3])]
                q = float(np.clip(0.9 - abs(jitter).sum() / (bw + bh), 0.05, 0.99))
                results.append({"image_id": i, "category_id": cat, "bbox": pred, "score": round(q * rng.uniform(0.7, 1), 4)})
                if rng.random() < 0.15:  # a duplicate
                    results.append({"image_id": i, "category_id": cat, "bbox": [v + 2 for v in pred],
                                    "score": round(q * 0.5, 4)})
            if rng.random() < 0.1:  # the wrong class
                results.append({"image_id": i, "category_id": int(rng.choice([1, 2, 7])), "bbox": box,
                                "score": round(float(rng.uniform(0.1, 0.6)), 4)})
        for _ in range(int(rng.integers(0, 3))):  # stray boxes
            results.append({"image_id": i, "category_id": int(rng.choice([1, 2, 7])),
                            "bbox": [float(rng.uniform(0, w - 30)), float(rng.uniform(0, h - 30)), 30.0, 30.0],
                            "score": round(float(rng.uniform(0.01, 0.7)), 4)})
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (root / "results.json").write_text(json.dumps(results))
    return root / "instances.json", root / "results.json"


def _cocoeval(gt_path, res_path, iou_type="bbox"):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(res_path))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", [0, 1])
def test_map_equals_pycocotools(tmp_path, seed):
    gt_path, res_path = _coco_set(tmp_path / "coco", seed=seed)
    ds = Dataset.create("eval", tmp_path / "home")
    counts = ds.import_coco(gt_path, images=gt_path.parent / "images", predictions=res_path, progress=False)
    assert counts["ground_truth"]["samples"] == 40 and counts["ground_truth"]["missing"] == 0
    report = ds.evaluate()
    stats = _cocoeval(gt_path, res_path)
    assert report.map == pytest.approx(stats[0], abs=1e-6)
    assert report.ap50 == pytest.approx(stats[1], abs=1e-6)
    assert report.ap75 == pytest.approx(stats[2], abs=1e-6)
    assert report.samples == 40 and set(report.per_class) == {"cat", "dog", "car"}


def test_eval_marks_are_queryable(tmp_path):
    gt_path, res_path = _coco_set(tmp_path / "coco", seed=2)
    ds = Dataset.create("eval", tmp_path / "home")
    ds.import_coco(gt_path, images=gt_path.parent / "images", predictions=res_path, progress=False)
    report = ds.evaluate(iou=0.5)
    totals = report.totals
    assert totals["tp"] > 0 and totals["fp"] > 0 and totals["fn"] > 0
    docs = ds.find({}, page_size=100)["results"]
    assert sum(d["eval"]["tp"] for d in docs) == totals["tp"]
    assert sum(d["eval"]["fn"] for d in docs) == totals["fn"]
    # per box: a tp prediction overlaps a ground-truth box of its class at IoU >= 0.5
    for d in docs:
        for p in d.get("predictions", []):
            assert p.get("eval") in ("tp", "fp", None)  # None: matched a crowd region (ignored)
            if p.get("eval") == "tp":
                assert p["eval_iou"] >= 0.5
        assert all(g.get("eval") in ("tp", "fn") for g in d["ground_truth"]["detections"] if not g.get("iscrowd"))
    worst = ds.find({"eval.fp": {"$gt": 2}})["length"]
    assert worst == sum(1 for d in docs if d["eval"]["fp"] > 2)
    confident_mistakes = ds.count({"predictions": {"$elemMatch": {"eval": "fp", "confidence": {"$gt": 0.5}}}})
    assert confident_mistakes == sum(1 for d in docs if any(p.get("eval") == "fp" and p["confidence"] > 0.5
                                                            for p in d.get("predictions", [])))
    # stricter IoU: fewer true positives; the marks follow the last run
    strict = ds.evaluate(iou=0.9)
    assert strict.totals["tp"] < totals["tp"] and strict.map == pytest.approx(report.map)
    assert sum(d["eval"]["tp"] for d in ds.find({}, page_size=100)["results"]) == strict.totals["tp"]
    info = ds.info()["evaluation"]
    assert info == {"samples": 40, **strict.totals, "errors": strict.errors}
    assert sum(strict.errors.values()) == strict.totals["fp"]
    with pytest.raises(ViscurateError, match="not a box list"):
        ds.evaluate(pred_field="width")


def test_importing_twice_changes_nothing_and_missing_files_are_counted(tmp_path):
    gt_path, res_path = _coco_set(tmp_path / "coco", n_images=6, seed=3)
    ds = Dataset.create("eval", tmp_path / "home")
    first = ds.import_coco(gt_path, images=gt_path.parent / "images", predictions=res_path, progress=False)
    again = ds.import_coco(gt_path, images=gt_path.parent / "images", predictions=res_path, progress=False)
    assert first == again and ds.count() == 6
    (tmp_path / "coco" / "images" / "006.png").unlink()
    data = json.loads(gt_path.read_text())
    data["images"].append({"id": 99, "file_name": "nope.png"})
    gt_path.write_text(json.dumps(data))
    assert ds.import_coco(gt_path, images=gt_path.parent / "images", progress=False)["ground_truth"]["missing"] == 2
    with pytest.raises(ViscurateError, match="not a COCO"):
        (tmp_path / "bad.json").write_text("[1, 2]")
        ds.import_coco(tmp_path / "bad.json")


def test_cli(tmp_path):
    from tests.test_cli import run

    gt_path, res_path = _coco_set(tmp_path / "coco", n_images=10, seed=4)
    home = tmp_path / "home"
    counts = json.loads(run(home, "import-coco", "val", gt_path, "--images", gt_path.parent / "images",
                            "--predictions", res_path, "--json").stdout)
    assert counts["ground_truth"]["samples"] == 10 and counts["predictions"]["boxes"] > 0
    report = json.loads(run(home, "evaluate", "val", "--json").stdout)
    assert report["map"] == pytest.approx(_cocoeval(gt_path, res_path)[0], abs=1e-4)  # JSON: 4 decimals
    text = run(home, "evaluate", "val", "--iou", "0.75").stdout
    assert "mAP@[.5:.95]" in text and "per class" in text
    bad = run(home, "evaluate", "val", "--pred", "nope", check=False)
    assert bad.returncode == 2 and "not a box list" in bad.stdout + bad.stderr


def test_false_positives_say_what_kind_of_mistake_they_are(tmp_path):
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.full((400, 400, 3), 90, np.uint8)).save(root / "images" / "one.png")
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100], "area": 1e4, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [200, 10, 100, 100], "area": 1e4, "iscrowd": 0}]
    (root / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "one.png", "width": 400, "height": 400}], "annotations": anns,
        "categories": cats}))
    preds = [([10, 10, 100, 100], 1, 0.9),   # the cat: tp
             ([12, 12, 100, 100], 1, 0.5),   # the cat again: duplicate
             ([10, 10, 100, 100], 2, 0.6),   # the cat called a dog: wrong_class
             ([60, 10, 100, 100], 1, 0.4),   # half on the cat (IoU 0.33): badly_placed
             ([300, 300, 30, 30], 1, 0.3)]   # nothing there: spurious
    (root / "results.json").write_text(json.dumps(
        [{"image_id": 1, "category_id": c, "bbox": b, "score": s} for b, c, s in preds]))
    ds = Dataset.create("kinds", tmp_path / "home")
    ds.import_coco(root / "instances.json", images=root / "images", predictions=root / "results.json", progress=False)
    report = ds.evaluate()
    assert report.totals == {"tp": 1, "fp": 4, "fn": 1}  # the dog was missed
    assert report.errors == {"duplicate": 1, "wrong_class": 1, "badly_placed": 1, "spurious": 1}
    doc = ds.find({})["results"][0]
    by_score = {p["confidence"]: (p["eval"], p.get("eval_error")) for p in doc["predictions"]}
    assert by_score == {0.9: ("tp", None), 0.5: ("fp", "duplicate"), 0.6: ("fp", "wrong_class"),
                        0.4: ("fp", "badly_placed"), 0.3: ("fp", "spurious")}
    assert {k: doc["eval"][k] for k in ("duplicate", "wrong_class", "badly_placed", "spurious", "fn")} == \
        {"duplicate": 1, "wrong_class": 1, "badly_placed": 1, "spurious": 1, "fn": 1}
    assert ds.count({"predictions": {"$elemMatch": {"eval_error": "badly_placed"}}}) == 1
    assert ds.count({"eval.badly_placed": {"$gt": 0}}) == 1
    # a looser IoU turns the badly placed box into a duplicate of the matched cat: the marks follow
    loose = ds.evaluate(iou=0.3)
    assert loose.errors["badly_placed"] == 0 and loose.errors["duplicate"] == 2
    assert ds.count({"predictions": {"$elemMatch": {"eval_error": "badly_placed"}}}) == 0
