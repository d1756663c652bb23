"""Label errors: confident learning (viscurate.brain.label_errors) vs cleanlab 2.9's default
``find_label_issues``, on the *same* out-of-sample probabilities, with 5% of the labels flipped at random.

    python bench/label_errors.py                     # MNIST test + Fashion-MNIST test (10k each) + sklearn digits
    python bench/label_errors.py --datasets digits   # the quick one (no corpus needed)

Data: the corpus's ``labeled/mnist_test.npz`` and ``labeled/fashion_mnist_test.npz`` (shared/corpus/build.py;
~/.cache/corpus or $CORPUS_DIR) and scikit-learn's digits. 5% of the labels are moved to another class,
uniformly at random (seeded). Probabilities: 5-fold cross-validated logistic regression on the first 64
principal components of the pixels (each image predicted by the fold that did not train on it); their
accuracy on the *true* labels is printed too. cleanlab runs in its own venv (bench/.venvs/cleanlab, made
by bench/setup_peers.sh; it is AGPL and never a viscurate dependency) on the same probabilities, with its
defaults (``filter_by="prune_by_noise_rate"``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))
CLEANLAB_PY = BENCH / ".venvs" / "cleanlab" / "bin" / "python"
CLEANLAB_RUN = """
import sys, json, time, numpy as np, importlib.metadata as md
from cleanlab.filter import find_label_issues
d = np.load(sys.argv[1])
t = time.perf_counter()
mask = find_label_issues(labels=d["labels"], pred_probs=d["probs"])
np.save(sys.argv[2], mask)
print(json.dumps({"version": md.version("cleanlab"), "seconds": time.perf_counter() - t}))
"""


def load(name: str, corpus: Path) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        from sklearn.datasets import load_digits
        x, y = load_digits(return_X_y=True)
        return x.astype(np.float32), y.astype(np.int64)
    path = corpus / "labeled" / f"{name}_test.npz"
    if not path.exists():
        raise SystemExit(f"{path} not found: build the corpus (shared/corpus/build.py) or use --datasets digits")
    d = np.load(path)
    keys = list(d.keys())
    xk = next(k for k in keys if k.lower() in ("x", "images", "x_test", "data"))
    yk = next(k for k in keys if k.lower() in ("y", "labels", "y_test", "targets"))
    x = d[xk].reshape(len(d[xk]), -1).astype(np.float32) / 255.0
    return x, d[yk].astype(np.int64)


def flip(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    k = int(y.max()) + 1
    for i in rng.choice(len(y), size=int(round(fraction * len(y))), replace=False):
        noisy[i] = (y[i] + rng.integers(1, k)) % k  # any other class, uniformly
    return noisy


def probabilities(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    from viscurate.brain.label_errors import cross_validated_probabilities
    feats = PCA(n_components=min(64, x.shape[1]), random_state=0).fit_transform(x)
    return cross_validated_probabilities(feats, labels)


def scores(mask: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((mask & truth).sum())
    p = tp / max(1, int(mask.sum()))
    r = tp / max(1, int(truth.sum()))
    return {"flagged": int(mask.sum()), "precision": round(p, 3), "recall": round(r, 3),
            "f1": round(2 * p * r / max(1e-12, p + r), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="mnist,fashion_mnist,digits")
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("CORPUS_DIR", "~/.cache/corpus")).expanduser())
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from viscurate.brain.label_errors import confident_learning

    rows = []
    for name in [s.strip() for s in args.datasets.split(",") if s.strip()]:
        x, y = load(name, args.corpus)
        noisy = flip(y, args.noise, args.seed)
        truth = noisy != y
        t = time.perf_counter()
        probs = probabilities(x, noisy)
        t_probs = time.perf_counter() - t
        accuracy = float((probs.argmax(1) == y).mean())
        t = time.perf_counter()
        ours = confident_learning(noisy, probs).issues
        t_ours = time.perf_counter() - t
        base = {"dataset": name, "images": len(y), "flipped": int(truth.sum()),
                "probs_accuracy": round(accuracy, 3), "probs_seconds": round(t_probs, 1)}
        rows.append({**base, "tool": "viscurate", **scores(ours, truth), "seconds": round(t_ours, 3)})
        if CLEANLAB_PY.exists():
            with tempfile.TemporaryDirectory() as tmp:
                np.savez(Path(tmp) / "in.npz", labels=noisy, probs=probs)
                proc = subprocess.run([str(CLEANLAB_PY), "-c", CLEANLAB_RUN, str(Path(tmp) / "in.npz"),
                                       str(Path(tmp) / "mask.npy")], capture_output=True, text=True, timeout=1800)
                if proc.returncode == 0:
                    info = json.loads(proc.stdout.strip().splitlines()[-1])
                    mask = np.load(Path(tmp) / "mask.npy")
                    rows.append({**base, "tool": f"cleanlab {info['version']}", **scores(mask, truth),
                                 "seconds": round(info["seconds"], 3),
                                 "agreement": round(float((mask == ours).mean()), 4)})
                else:
                    rows.append({**base, "tool": "cleanlab", "status": proc.stderr[-300:]})
        else:
            rows.append({**base, "tool": "cleanlab", "status": "not installed: bash bench/setup_peers.sh"})
    keys = ["dataset", "images", "flipped", "probs_accuracy", "tool", "flagged", "precision", "recall", "f1", "seconds"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, r.get("status", "") if k == "flagged" else "")) for k in keys) + " |")
    out = args.out or BENCH / "results" / f"label-errors-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                               "noise": args.noise, "seed": args.seed, "rows": rows}, indent=1))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
