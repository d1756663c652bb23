"""Does a second detector help? SSD-MobileNetV3-Large COCO (its boxes cached by bench/second_opinion.py) beside
the default SSD-MobileNetV2 COCO, on the photos with hand-drawn ground truth.

    python bench/second_opinion.py --datasets labeled,voc,arc2017,deepforest,quokka --out /tmp/ow/ssd_v3_outputs.pkl
    python bench/second_opinion_eval.py --v3 /tmp/ow/ssd_v3_outputs.pkl --lqe-cache /tmp/lqe_cache.pkl

1. **Each detector alone** on bench/data/labeled/coco.json (57 photos, 101 boxes, iscrowd regions ignored):
   COCO mAP, AP50 and, at IoU 0.5, precision and recall of the boxes at confidence >= 0.3 (what the label
   stage writes) and >= 0.1, with viscurate's own evaluation (``Dataset.evaluate``, pycocotools' rules).
   Both run as the label stage runs the default one: the photo decoded upright, longest side <= 1024, boxes
   mapped back to original pixels.
2. **The second opinion as a signal** on every default-detector box bench/lqe_eval.py scores (its
   ``collect``: correct = same class and IoU >= 0.5 with a ground-truth box; ``deepforest``/``quokka`` photos
   have no COCO object, so every box there is wrong): ``so_iou``, the best IoU with a v3 box of the same
   class (v3 boxes >= 0.1; 0 when none), ``so_conf``, that v3 box's confidence, and ``so_agree``, the best
   confidence of a same-class v3 box at IoU >= 0.5. AUROC of each for correct vs wrong, beside the
   detector's confidence and the shipped LQE (fitted on these photos: in-sample, flattering); then the
   question that matters, out of sample: a logistic regression on the LQE's own features, with and without
   the three signals, cross-validated grouped by image (5 folds, 10 fold assignments), and a cluster
   bootstrap over images of the AUROC gain.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

import lqe_eval  # noqa: E402
from second_opinion import MIN_CONFIDENCE, file_key  # noqa: E402
from viscurate.common.geometry import iou_matrix_xywh  # noqa: E402
from viscurate.models import quality  # noqa: E402
from viscurate.models.base import Detection  # noqa: E402

SIGNALS = ("so_iou", "so_conf", "so_agree")
AGREE_IOU = 0.5


# ---- 1. each detector against the hand-drawn boxes -----------------------------------------------

def default_detections(recs: Sequence[lqe_eval.ImageRec], threads: int) -> dict[str, list[Detection]]:
    """The default detector's boxes (>= 0.1, original pixels) per image key, as the label stage finds them."""
    from viscurate.models import get_model
    det = get_model("ssd_mobilenet_v2_coco", threads=threads)
    out = {}
    for rec in recs:
        img, width, height = lqe_eval.decode(rec.path)
        h, w = img.shape[:2]
        found = det.detect([img], min_confidence=MIN_CONFIDENCE)[0]
        out[rec.key] = quality.scale_detections(found, width / w, height / h)
    return out


def _objects(dets: Sequence[Detection], floor: float) -> list[dict[str, Any]]:
    return [{"name": d.name, "bbox": [float(v) for v in d.bbox], "confidence": float(d.confidence)}
            for d in dets if d.confidence >= floor]


def detector_scores(recs: Sequence[lqe_eval.ImageRec], preds: dict[str, dict[str, list[Detection]]],
                    floors: Sequence[float]) -> dict[str, dict[str, Any]]:
    """``{"<detector> >= <floor>": {map, ap50, ap75, tp, fp, fn, precision, recall}}`` with viscurate's
    evaluation, each on a throwaway dataset (a temporary directory) whose ``predictions`` are its boxes."""
    from viscurate import Dataset
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="second-opinion-") as home:
        for model, by_key in preds.items():
            for floor in floors:
                ds = Dataset.create(f"{model}_{int(round(floor * 100))}", home=home)
                ds.add_documents([{"filepath": str(rec.path), "predictions": _objects(by_key[rec.key], floor),
                                   "ground_truth": {"detections": _truth(rec, preds)}} for rec in recs])
                r = ds.evaluate(write=False)
                ds.close()
                t = r.totals
                out[f"{model} >= {floor}"] = {
                    "map": r.map, "ap50": r.ap50, "ap75": r.ap75, **t,
                    "precision": t["tp"] / max(1, t["tp"] + t["fp"]), "recall": t["tp"] / max(1, t["tp"] + t["fn"])}
    return out


def _truth(rec: lqe_eval.ImageRec, preds: dict[str, dict[str, list[Detection]]]) -> list[dict[str, Any]]:
    """The hand-drawn boxes and ignore regions; a region of any class ("any", category 0) is one for every
    class predicted in the photo (COCO's crowd regions are per class)."""
    predicted = sorted({d.name for by_key in preds.values() for d in by_key[rec.key]})
    ignores = [{"name": c, "bbox": b, "iscrowd": True} for n, b in rec.ignores for c in ([n] if n else predicted)]
    return [{"name": n, "bbox": b} for n, b in rec.gts] + ignores


# ---- 2. the second opinion as a signal on the default detector's boxes --------------------------

def second_opinion(box: Detection | dict, others: Sequence[Detection]) -> dict[str, float]:
    """``so_iou``, ``so_conf``, ``so_agree`` of one default-detector box (see the module doc).

    >>> a = Detection("cat", 0.9, [0, 0, 10, 10]); b = Detection("cat", 0.7, [0, 0, 10, 5])
    >>> second_opinion(a, [b, Detection("dog", 0.8, [0, 0, 10, 10])])
    {'so_iou': 0.5, 'so_conf': 0.7, 'so_agree': 0.7}
    """
    name, bbox = (box.name, box.bbox) if isinstance(box, Detection) else (box["name"], box["bbox"])
    same = [d for d in others if d.name == name]
    if not same:
        return {"so_iou": 0.0, "so_conf": 0.0, "so_agree": 0.0}
    ious = iou_matrix_xywh(np.asarray([bbox], np.float64), np.asarray([d.bbox for d in same], np.float64))[0]
    best = int(np.argmax(ious))
    agree = [d.confidence for d, v in zip(same, ious) if v >= AGREE_IOU]
    return {"so_iou": round(float(ious[best]), 4), "so_conf": float(same[best].confidence),
            "so_agree": float(max(agree, default=0.0))}


def signal_rows(recs: Sequence[lqe_eval.ImageRec], v3: dict[str, list[Detection]], threads: int,
                cache: Path | None) -> list[dict]:
    """bench/lqe_eval.py's rows (boxes >= 0.1 with their label and LQE signals), each with the second opinion."""
    rows = lqe_eval.collect(list(recs), MIN_CONFIDENCE, threads, cache)
    by_key = {rec.key: v3[file_key(rec.path)] for rec in recs}
    for r in rows:
        r["so"] = second_opinion({"name": r["name"], "bbox": r["bbox"]}, by_key[r["image"]])
    return rows


def _with_so(rows: list[dict], feats: Sequence[str], extra: Sequence[str]) -> np.ndarray:
    x = lqe_eval.design(rows, feats)
    return np.column_stack([x] + [np.array([r["so"][s] for r in rows], float) for s in extra]) if extra else x


def cross_validated(rows: list[dict], feats: Sequence[str], extra: Sequence[str], k: int, repeats: int) -> np.ndarray:
    """Out-of-fold probability of every row, averaged over ``repeats`` image-grouped fold assignments."""
    x, y = _with_so(rows, feats, extra), np.array([r["label"] for r in rows])
    images = [r["image"] for r in rows]
    names = tuple(feats) + tuple(extra)
    out = np.zeros(len(rows))
    for seed in range(repeats):
        f = lqe_eval.folds_of(images, k, seed)
        for i in range(k):
            tr, te = f != i, f == i
            if te.any():
                out[te] += lqe_eval.fit_lr(x[tr], y[tr], names).predict(x[te]) / repeats
    return out


def signal_report(rows: list[dict], floors: Sequence[float], k: int, repeats: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    feats = lqe_eval.MODEL_FEATURES["crop"]
    cv = {"confidence only, CV": cross_validated(rows, ("logit_confidence",), (), k, repeats),
          "confidence + second opinion, CV": cross_validated(rows, ("logit_confidence",), SIGNALS, k, repeats),
          "LQE features, CV": cross_validated(rows, feats, (), k, repeats),
          "LQE features + second opinion, CV": cross_validated(rows, feats, SIGNALS, k, repeats)}
    y_all = np.array([r["label"] for r in rows])
    for floor in floors:
        m = np.array([r["signals"]["confidence"] >= floor for r in rows])
        sub = [r for r, keep in zip(rows, m) if keep]
        y = y_all[m]
        groups = {"all": np.ones(len(sub), bool)}
        for g in sorted({r["group"] for r in sub}):
            groups[g] = np.array([r["group"] == g for r in sub])
        scores = {"detector confidence": np.array([r["signals"]["confidence"] for r in sub]),
                  "shipped LQE (in-sample)": np.array([quality.predict(r["signals"], r["name"]) for r in sub]),
                  **{s: np.array([r["so"][s] for r in sub]) for s in SIGNALS},
                  **{name: v[m] for name, v in cv.items()}}
        block: dict[str, Any] = {}
        for g, gm in groups.items():
            block[g] = {"images": len({r["image"] for r, keep in zip(sub, gm) if keep}),
                        "correct": int(y[gm].sum()), "wrong": int((y[gm] == 0).sum()),
                        "auroc": {name: lqe_eval.auroc(y[gm], s[gm]) for name, s in scores.items()}}
        images = [r["image"] for r in sub]
        block["delta_ci"] = {
            "confidence + second opinion vs confidence": lqe_eval.bootstrap_delta(
                y, scores["confidence + second opinion, CV"], scores["confidence only, CV"], images),
            "LQE + second opinion vs LQE": lqe_eval.bootstrap_delta(
                y, scores["LQE features + second opinion, CV"], scores["LQE features, CV"], images)}
        res[str(floor)] = block
    return res


# ---- report -------------------------------------------------------------------------------------

def print_detectors(scores: dict[str, dict[str, Any]]) -> None:
    print("\n1. Each detector on bench/data/labeled/coco.json (COCO rules, viscurate's evaluation):\n")
    body = [[k, lqe_eval._f(v["map"]), lqe_eval._f(v["ap50"]), v["tp"], v["fp"], v["fn"],
             lqe_eval._f(v["precision"]), lqe_eval._f(v["recall"])] for k, v in scores.items()]
    print(lqe_eval.table(["detector, boxes", "mAP", "AP50", "TP", "FP", "FN", "precision@.5", "recall@.5"], body))


def print_signals(res: dict[str, Any]) -> None:
    for floor, block in res.items():
        print(f"\n2. The second opinion on the default detector's boxes >= {floor} (AUROC, correct vs wrong):\n")
        groups = [g for g in block if g != "delta_ci"]
        names = list(block["all"]["auroc"])
        head = ["score"] + [f"{g} ({block[g]['correct']}/{block[g]['wrong']})" for g in groups]
        print(lqe_eval.table(head, [[n] + [lqe_eval._f(block[g]["auroc"][n]) for g in groups] for n in names]))
        for name, (lo, hi) in block["delta_ci"].items():
            print(f"   95% CI of the AUROC gain, {name}: [{lo:+.3f}, {hi:+.3f}]")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--v3", type=Path, required=True, help="bench/second_opinion.py's pickle")
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("CORPUS_DIR", "~/.cache/corpus")).expanduser())
    ap.add_argument("--datasets", default="labeled,voc,arc2017,deepforest,quokka",
                    help="bench/lqe_eval.py datasets for the signal (default %(default)s)")
    ap.add_argument("--lqe-cache", type=Path, default=None, help="bench/lqe_eval.py's --cache (model outputs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None, help="results as a pickle-free JSON")
    args = ap.parse_args(argv)
    v3: dict[str, list[Detection]] = pickle.loads(args.v3.read_bytes())
    recs = lqe_eval.load_datasets([d.strip() for d in args.datasets.split(",") if d.strip()], args.corpus)
    missing = [str(r.path) for r in recs if file_key(r.path) not in v3]
    if missing:
        raise SystemExit(f"{len(missing)} photo(s) have no v3 boxes in {args.v3}, e.g. {missing[0]}: run "
                         f"bench/second_opinion.py --datasets {args.datasets} --out {args.v3}")
    t0 = time.perf_counter()
    labeled = [r for r in recs if r.dataset == "labeled"]
    preds = {"v2": default_detections(labeled, args.threads),  # the default detector
             "v3": {r.key: v3[file_key(r.path)] for r in labeled}}
    det_scores = detector_scores(labeled, preds, (0.3, 0.1))
    print_detectors(det_scores)
    rows = signal_rows(recs, v3, args.threads, args.lqe_cache)
    res = signal_report(rows, (0.3, 0.1), args.folds, args.repeats)
    print_signals(res)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.out:
        import json
        args.out.write_text(json.dumps({"detectors": det_scores, "signal": res}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
