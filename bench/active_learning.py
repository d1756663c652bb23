"""The active-learning loop at full size: Fashion-MNIST test (10,000 images: a pool of 8,000, 2,000 held out),
rounds of 1% of the pool (80 labels), uncertainty vs random vs cluster-coverage-then-uncertainty, several
seeds. Every round is the real round trip of examples/active_learning.py: ``ds.select`` -> Label Studio
tasks (every other round CVAT) with the head's pre-annotations -> the corpus answers in the returned file ->
``ds.import_labels`` -> ``ds.fit_head`` -> accuracy on the held-out 2,000.

    python bench/active_learning.py                       # 8 rounds of 80, seeds 0,1,2, all three arms, margin
    python bench/active_learning.py --measure entropy --out bench/results/active-learning-entropy.json
    python bench/active_learning.py --rounds 4 --seeds 0  # quicker

The catalog (ingest + embed of 10,000 images, ~3 minutes on 2 cores) is built once into
``~/.cache/viscurate-bench/active-learning`` (``--rebuild`` builds it again); each arm runs on a copy.
Accuracy is what is measured, not time. Writes ``bench/results/active-learning.json`` and the curves as
``bench/results/active-learning.svg``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "viscurate-bench" / "active-learning"


def _example():
    spec = importlib.util.spec_from_file_location("active_learning_example", ROOT / "examples" / "active_learning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


al = _example()


def prepared(dataset: str, n: int, test: int, rebuild: bool):
    """The built catalog and its truth, from the cache when it was built with the same sizes."""
    home, meta = CACHE / f"{dataset}-{n}-{test}", CACHE / f"{dataset}-{n}-{test}.json"
    if meta.is_file() and home.is_dir() and not rebuild:
        p = json.loads(meta.read_text())
        return al.Prepared(home, p["name"], p["truth"], p["holdout"], p["classes"])
    shutil.rmtree(home, ignore_errors=True)
    t0 = time.monotonic()
    corpus = al.corpus_from_npz(dataset, CACHE / f"{dataset}-images", n)
    p = al.prepare(corpus, home, test=test)
    meta.write_text(json.dumps({"name": p.name, "truth": p.truth, "holdout": p.holdout, "classes": p.classes}))
    print(f"[bench] built {n} images in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=("fashion_mnist", "mnist"), default="fashion_mnist")
    ap.add_argument("--n", type=int, default=10_000, help="images in all (pool + held out)")
    ap.add_argument("--test", type=int, default=2_000, help="held-out images")
    ap.add_argument("--batch", type=int, default=80, help="labels per round (1%% of an 8,000 pool)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--arms", default="random,uncertainty,coverage+uncertainty")
    ap.add_argument("--measure", choices=("entropy", "least_confidence", "margin"), default="margin",
                    help="the uncertainty measure of the uncertainty rounds")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "active-learning.json")
    args = ap.parse_args()

    p = prepared(args.dataset, args.n, args.test, args.rebuild)
    work = CACHE / "runs"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.monotonic()
    runs: list = []
    for seed in [int(s) for s in args.seeds.split(",")]:  # a seed at a time: what is done is written
        runs += al.experiment(p, arms=args.arms.split(","), seeds=[seed], rounds=args.rounds, batch=args.batch,
                              tool=["labelstudio", "cvat"], work=work, measure=args.measure)
        _write(args, p, runs, time.monotonic() - t0)
    seconds = time.monotonic() - t0
    print(al.table(runs, args.batch))
    curves = al.mean_curves(runs)
    best_other = {r: max(c[r] for a, c in curves.items() if a != "random") for r in range(args.rounds)} \
        if "random" in curves and len(curves) > 1 else {}
    if best_other:
        print("\nbest arm minus random, per round: "
              + " ".join(f"{best_other[r] - curves['random'][r]:+.3f}" for r in range(args.rounds)))
    print(f"\n{len(runs)} runs in {seconds:.0f} s -> {args.out}")
    return 0


def _write(args: argparse.Namespace, p, runs: list, seconds: float) -> None:
    """The results so far: the JSON (every round of every run, the mean curves) and the SVG."""
    curves = al.mean_curves(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    al.write_svg(curves, args.out.with_suffix(".svg"), batch=args.batch,
                 title=f"{args.dataset}: held-out accuracy ({len(p.holdout)} images), "
                       f"mean of {len({r.seed for r in runs})} seeds")
    args.out.write_text(json.dumps({
        "dataset": args.dataset, "pool": len(p.truth) - len(p.holdout), "held_out": len(p.holdout),
        "batch": args.batch, "rounds": args.rounds, "measure": args.measure, "table": al.table(runs, args.batch), "mean": curves,
        "runs": [asdict(r) for r in runs], "seconds": round(seconds, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}},
        indent=1))


if __name__ == "__main__":
    sys.exit(main())
