"""Autotag from a few examples: how much of the top k is the taught class? Fashion-MNIST test, every class.

    python bench/autotag.py                         # all 10,000 images, precision@500, 5 seeds per class
    python bench/autotag.py --pool 3000             # a stratified 3,000 (300 per class), precision@150:
                                                    # the scale tests/test_autotag.py runs at in CI

Data: Fashion-MNIST test (10,000 labeled 28 x 28 images, 1,000 per class), imported and embedded by the
default embedder, the catalog cached by ``bench/curate.py`` (``built_home``). Per class and seed (0..4): 10
random members of the class are the only examples, ``ds.autotag(cls, examples, write=False, query=pool)``
(what users call) scores every sample of the pool, and the share of the class among the best-scored ``k``
is its precision@k, where ``k`` is half a class (500 of 1,000; 150 of 300 at ``--pool 3000``), so the two
scales ask the same. Beside it: the model without the neighbour smoothing (``neighbours=0``), and the
plain baseline a user could do by hand, cosine similarity to the examples' centroid.

The issue's goal: from 10 examples of one class, at least 90% of the top 500 is that class. Results:
bench/results/autotag-<date>[-pool<N>].json, and the table in docs/curation.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

from curate import built_home, machine  # noqa: E402
from labeled_sets import FASHION_CLASSES, stratified  # noqa: E402

EXAMPLES = 10


def precision_at(ids: list[str], scores: np.ndarray, label: dict[str, str], cls: str, k: int) -> float:
    top = np.argsort(-scores, kind="stable")[:k]
    return float(np.mean([label[ids[j]] == cls for j in top]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=int, default=10_000, help="a stratified pool of this many (all: 10,000)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--classes", default=",".join(FASHION_CLASSES))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from viscurate import Dataset
    from viscurate.store.catalog import Catalog

    ds = Dataset.open("fashion_mnist", home=built_home("fashion_mnist"))
    docs = sorted(ds.iter({}), key=lambda d: int(Path(d["filepath"]).stem))
    all_labels = np.array([d["ground_truth"]["label"] for d in docs])
    rows = stratified(np.array([FASHION_CLASSES.index(c) for c in all_labels]), args.pool)
    pool_ids = [docs[r]["_id"] for r in rows]
    label = {docs[r]["_id"]: all_labels[r] for r in rows}
    query = None if len(rows) == len(docs) else {"_id": {"$in": pool_ids}}
    k = len(rows) // len(FASHION_CLASSES) // 2
    ds.close()
    with Catalog(ds.directory, "fashion_mnist") as cat:
        model = max(cat.vector_models(None).items(), key=lambda kv: kv[1])[0]
        vec_ids, _, matrix = cat.read_vectors(model)
    keep = set(pool_ids)
    in_pool = [i for i, sid in enumerate(vec_ids) if sid in keep]
    vec_ids = [vec_ids[i] for i in in_pool]
    vectors = matrix[in_pool] / np.linalg.norm(matrix[in_pool], axis=1, keepdims=True)
    row_of = {sid: i for i, sid in enumerate(vec_ids)}
    ds = Dataset.open("fashion_mnist", home=built_home("fashion_mnist"))

    members: dict[str, list[str]] = {}
    for sid in pool_ids:
        members.setdefault(label[sid], []).append(sid)
    results, started = [], time.perf_counter()
    print(f"[autotag] pool {len(rows):,}, precision@{k}, {EXAMPLES} examples, {args.seeds} seeds", file=sys.stderr)
    for cls in [c.strip() for c in args.classes.split(",") if c.strip()]:
        runs = {"smoothed": [], "no smoothing": [], "centroid similarity": []}
        seconds = []
        for seed in range(args.seeds):
            examples = np.random.default_rng(seed).choice(members[cls], size=EXAMPLES, replace=False).tolist()
            t = time.perf_counter()
            smoothed = ds.autotag(cls, examples, query=query, write=False)
            seconds.append(time.perf_counter() - t)
            plain = ds.autotag(cls, examples, query=query, write=False, neighbours=0)
            runs["smoothed"].append(precision_at(smoothed.scored_ids, smoothed.scores, label, cls, k))
            runs["no smoothing"].append(precision_at(plain.scored_ids, plain.scores, label, cls, k))
            centroid = vectors[[row_of[i] for i in examples]].mean(axis=0)
            sims = vectors @ centroid
            sims[[row_of[i] for i in examples]] = -np.inf  # the examples themselves are not findings
            runs["centroid similarity"].append(precision_at(vec_ids, sims, label, cls, k))
        row = {"class": cls, **{f"{name} mean": round(float(np.mean(v)), 3) for name, v in runs.items()},
               **{f"{name} worst": round(float(np.min(v)), 3) for name, v in runs.items()},
               "per seed": {name: [round(x, 3) for x in v] for name, v in runs.items()},
               "seconds per autotag": round(float(np.mean(seconds)), 2)}
        results.append(row)
        print(f"[autotag] {cls:11s} {row['smoothed mean']:.3f} / worst {row['smoothed worst']:.3f}", file=sys.stderr)
    ds.close()

    names = ("smoothed", "no smoothing", "centroid similarity")
    lines = [f"| class | precision@{k}: autotag mean / worst | no smoothing | centroid similarity | s per autotag |",
             "| --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['class']} | {r['smoothed mean']:.3f} / {r['smoothed worst']:.3f} | "
                     f"{r['no smoothing mean']:.3f} | {r['centroid similarity mean']:.3f} | {r['seconds per autotag']} |")
    means = {n: float(np.mean([r[f'{n} mean'] for r in results])) for n in names}
    lines.append(f"| mean | {means['smoothed']:.3f} | {means['no smoothing']:.3f} | {means['centroid similarity']:.3f} | |")
    print("\n".join(lines))
    held = [r["class"] for r in results if r["smoothed worst"] >= 0.9]
    print(f"\nat least 0.9 on every seed: {', '.join(held) or 'none'}")
    suffix = "" if len(rows) == len(docs) else f"-pool{len(rows)}"
    out = args.out or BENCH / "results" / f"autotag-{dt.date.today().isoformat()}{suffix}.json"
    out.write_text(json.dumps({"benchmark": "autotag", "date": dt.datetime.now().isoformat(timespec="seconds"),
                               "machine": machine(), "pool": len(rows), "k": k, "examples": EXAMPLES,
                               "seeds": args.seeds, "seconds": round(time.perf_counter() - started, 1),
                               "rows": results}, indent=1) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
