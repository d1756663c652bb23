"""Does a selection beat random? A logistic regression on the embeddings, trained on the true labels of the
samples each strategy picks (1%, 2%, 5%, 10% of a pool), scored on a held-out test set.

    python bench/curate.py                                    # MNIST + Fashion-MNIST test, every strategy, 5 seeds
    python bench/curate.py --datasets fashion_mnist --strategies random,k_center --budgets 0.01 --seeds 2  # quick

Data: MNIST test and Fashion-MNIST test (10,000 labeled 28 x 28 images each; ``bench/labeled_sets.py`` builds the
arrays into ~/.cache/corpus/labeled or $CORPUS_DIR), written as ``<class>/<index>.png`` folders, imported with
``Dataset.import_classification`` (``ground_truth.label``) and embedded by the default embedder
(EfficientNet-Lite3, 1280-d). The built catalogs are cached under ~/.cache/viscurate-bench/curate/ (``--rebuild``
builds them again): this bench measures accuracy, not time, so the embedding is paid once.

Per dataset, a fixed stratified split (``--split-seed``): a pool of 8,000 (the slice ``bench-pool``: the
selection only ever sees it, and no strategy here reads a label) and a held-out test set of 2,000. Per
strategy, budget (a share of the pool) and seed (0..4), ``ds.select(n, strategy, query={"slices": "bench-pool"},
seed=s, write=False)`` — what users call — picks the samples; a ``LogisticRegression`` (scikit-learn, lbfgs,
``C`` 1.0, ``max_iter`` 2,000, on the L2-normalized embeddings standardized with the pool's statistics) is fitted on
their true labels and scored on the test set. Printed per (dataset, budget, strategy): mean and std of the
test accuracy, the margin over random in points and in random's std, and the classes the picks cover; the
same classifier on the whole pool gives the ceiling. Results: bench/results/curate-<date>.json.

Strategies left out (they need labels or predictions, which a first selection on an unlabeled pool does not
have): ``balance`` (balances a label field: the true labels would be cheating, and the predicted ImageNet
class needs ``viscurate label`` and means little on digits), ``uncertainty`` (needs a prediction field, e.g.
``fit_head`` on labels: that is the active-learning loop, bench/active_learning.py) and ``similarity`` (needs
examples of a concept).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(BENCH))

from labeled_sets import class_names, load  # noqa: E402

CACHE = Path(os.environ.get("VISCURATE_BENCH_CACHE", Path.home() / ".cache" / "viscurate-bench")) / "curate"
POOL_SLICE = "bench-pool"
STRATEGIES = ("random", "cluster_coverage", "k_center", "typicality", "edge_cases", "weighted")
#: The weighted strategy's mix: cover the clusters, prefer typical samples within them.
WEIGHTS = {"cluster_coverage": 0.5, "typicality": 0.5}
BUDGETS = (0.01, 0.02, 0.05, 0.10)


# ---------------------------------------------------------------------------------------------- data

def arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X uint8 n x 28 x 28, y)`` of ``name``'s test split, built by bench/labeled_sets.py."""
    try:
        return load(name)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None


def built_home(name: str, rebuild: bool = False) -> Path:
    """The workspace holding dataset ``name`` (every image, imported and embedded), built once.

    >>> built_home("mnist")                                                          # doctest: +SKIP
    PosixPath('/root/.cache/viscurate-bench/curate/mnist/home')
    """
    from PIL import Image

    from viscurate import Dataset

    home = CACHE / name / "home"
    if (home / ".built").is_file() and not rebuild:
        return home
    shutil.rmtree(home.parent, ignore_errors=True)
    home.mkdir(parents=True)
    x, y = arrays(name)
    names = class_names(name)
    images = home.parent / "images"
    for i in range(len(y)):
        folder = images / names[y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i:05d}.png")
    t = time.perf_counter()
    ds = Dataset.create(name, home=home)
    ds.import_classification(images, progress=sys.stderr.isatty())
    ds.embed(progress=sys.stderr.isatty())
    ds.close()
    print(f"[curate] built {name}: {len(y):,} images imported and embedded in {time.perf_counter() - t:.0f} s",
          file=sys.stderr, flush=True)
    (home / ".built").write_text("ok")
    return home


@dataclass
class Corpus:
    """One dataset as the bench sees it: ids, labels and normalized embeddings in one order, the split."""
    name: str
    ids: list[str]
    labels: np.ndarray            # class index per sample
    vectors: np.ndarray           # L2-normalized float32
    pool: np.ndarray              # row indexes of the pool
    test: np.ndarray              # row indexes of the held-out test set
    row_of: dict[str, int] = field(default_factory=dict)
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # the classifier's input


def load_corpus(ds, name: str, pool_size: int, test_size: int, split_seed: int) -> Corpus:
    """Read the catalog's embeddings and labels, draw the stratified pool/test split and save the pool as
    the slice ``bench-pool`` (the only thing a selection is allowed to see)."""
    from viscurate.store.catalog import Catalog

    names = class_names(name)
    labels_of = {d["_id"]: names.index(d["ground_truth"]["label"]) for d in ds.iter({}) if d.get("ground_truth")}
    ds.close()
    with Catalog(ds.directory, name) as cat:
        model = max(cat.vector_models(None).items(), key=lambda kv: kv[1])[0]
        ids, _, matrix = cat.read_vectors(model)
    keep = [i for i, sid in enumerate(ids) if sid in labels_of]
    ids = [ids[i] for i in keep]
    vectors = matrix[keep]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.array([labels_of[sid] for sid in ids], np.int64)
    pool, test = stratified_split(labels, pool_size, test_size, split_seed)
    ds.save_slice(POOL_SLICE, [ids[i] for i in pool])
    corpus = Corpus(name, ids, labels, vectors, pool, test, {sid: i for i, sid in enumerate(ids)})
    corpus.features = standardized(corpus)
    return corpus


def stratified_split(labels: np.ndarray, pool_size: int, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indexes of a pool and a test set, each class in its share of both (disjoint)."""
    rng = np.random.default_rng(seed)
    total = pool_size + test_size
    if total > len(labels):
        raise SystemExit(f"pool {pool_size} + test {test_size} > {len(labels)} samples")
    pool, test = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(test_size * len(members) / len(labels))
        n_pool = round(pool_size * len(members) / len(labels))
        test.append(members[:n_test])
        pool.append(members[n_test:n_test + n_pool])
    return np.sort(np.concatenate(pool)), np.sort(np.concatenate(test))


# ------------------------------------------------------------------------------------------ measure

def standardized(corpus: Corpus) -> np.ndarray:
    """The embeddings scaled to zero mean and unit variance per dimension, with the statistics of the pool
    (no labels: a user has them before labeling anything). On raw unit vectors every class sits in a narrow
    cone, and a fixed-C logistic regression is so over-regularized that it mostly predicts the commonest
    class of its training picks (measured: Fashion-MNIST, 80 k-center picks, 17% at C=1 on unit vectors,
    65% standardized), which would judge class balance instead of what was picked."""
    pool = corpus.vectors[corpus.pool]
    mean, std = pool.mean(axis=0), pool.std(axis=0)
    return ((corpus.vectors - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def accuracy(corpus: Corpus, train_rows: np.ndarray, c: float) -> float:
    """Test accuracy of a logistic regression fitted on ``train_rows``' true labels (one class: predicts it)."""
    from sklearn.linear_model import LogisticRegression

    y = corpus.labels[train_rows]
    truth = corpus.labels[corpus.test]
    if len(np.unique(y)) < 2:
        return float((truth == y[0]).mean())
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(corpus.features[train_rows], y)
    return float((clf.predict(corpus.features[corpus.test]) == truth).mean())


def run_one(ds, corpus: Corpus, strategy: str, n: int, seed: int, c: float) -> dict:
    """One selection through ``ds.select`` (nothing stored) and the classifier trained on it."""
    options = {"weights": WEIGHTS} if strategy == "weighted" else {}
    t = time.perf_counter()
    # keep_duplicates: find_duplicates groups most of these 28 x 28 digits by pHash (bench/README.md), which
    # would shrink the pool to a few thousand; no duplicate analysis is part of this comparison
    sel = ds.select(n, strategy, query={"slices": POOL_SLICE}, seed=seed, write=False, keep_duplicates=True,
                    **options)
    seconds = time.perf_counter() - t
    rows = np.array([corpus.row_of[sid] for sid in sel.ids], np.int64)
    if len(rows) != n or len(set(sel.ids)) != n:
        raise SystemExit(f"{strategy} returned {len(rows)} picks ({len(set(sel.ids))} distinct), asked {n}")
    outside = set(rows.tolist()) - set(corpus.pool.tolist())
    if outside:
        raise SystemExit(f"{strategy} picked {len(outside)} samples outside the pool")
    return {"seed": seed, "accuracy": accuracy(corpus, rows, c), "classes": int(len(np.unique(corpus.labels[rows]))),
            "largest_class_share": float(np.bincount(corpus.labels[rows]).max() / n),
            "select_s": seconds, "pool": sel.pool, "picks": [int(r) for r in rows]}


def summarize(runs: list[dict]) -> dict:
    acc = np.array([r["accuracy"] for r in runs])
    return {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "classes_mean": float(np.mean([r["classes"] for r in runs])),
            "classes_min": int(min(r["classes"] for r in runs)),
            "select_s_mean": float(np.mean([r["select_s"] for r in runs])), "runs": runs}


def with_margins(rows: list[dict]) -> None:
    """Add each row's margin over random (same dataset and budget) in points and in random's std."""
    base = {(r["dataset"], r["budget"]): r for r in rows if r["strategy"] == "random"}
    for r in rows:
        rnd = base.get((r["dataset"], r["budget"]))
        if rnd is None:
            continue
        margin = 100 * (r["accuracy_mean"] - rnd["accuracy_mean"])
        r["margin_points"] = margin
        r["margin_in_random_std"] = margin / (100 * rnd["accuracy_std"]) if rnd["accuracy_std"] > 0 else None


# ------------------------------------------------------------------------------------------- output

def table(rows: list[dict], ceilings: dict[str, float]) -> str:
    head = ("| dataset | budget | n | strategy | seeds | test accuracy % (mean ± std) | vs random (points) | "
            "vs random (random's std) | classes covered (mean, min) | select s |")
    out = [head, "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        best = r.get("best") and r["strategy"] != "random"
        acc = f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}"
        margin = "" if r["strategy"] == "random" else f"{r.get('margin_points', 0):+.1f}"
        in_std = "" if r["strategy"] == "random" or r.get("margin_in_random_std") is None \
            else f"{r['margin_in_random_std']:+.1f}"
        strat = f"**{r['strategy']}**" if best else r["strategy"]
        out.append(f"| {r['dataset']} | {100 * r['budget']:g}% | {r['n']} | {strat} | {len(r['runs'])} | {acc} | "
                   f"{margin} | {in_std} | "
                   f"{r['classes_mean']:.1f}, {r['classes_min']} | {r['select_s_mean']:.1f} |")
    out.append("")
    out += [f"Ceiling ({name}, the whole pool of labels): {100 * acc:.1f}%" for name, acc in ceilings.items()]
    return "\n".join(out)


def mark_best(rows: list[dict]) -> None:
    """Flag the best non-random strategy of each (dataset, budget)."""
    groups: dict = {}
    for r in rows:
        r.pop("best", None)
        if r["strategy"] != "random":
            groups.setdefault((r["dataset"], r["budget"]), []).append(r)
    for group in groups.values():
        max(group, key=lambda r: r["accuracy_mean"])["best"] = True


def machine() -> dict:
    from ingest import machine_info
    return machine_info()


def engine_fingerprint() -> str:
    """SHA-256 (12 hex) of the selection engine's source: which version of it the numbers are from."""
    import hashlib
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "viscurate" / "brain" / "selection").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def merge(paths: list[Path], out: Path | None) -> int:
    """Several result files (e.g. one per dataset, run apart) as one table and one file."""
    parts = [json.loads(p.read_text()) for p in paths]
    first = parts[0]
    rows = [r for part in parts for r in part["rows"]]
    with_margins(rows)
    mark_best(rows)
    ceilings = {k: v for part in parts for k, v in part["ceilings"].items()}
    print(table(rows, ceilings))
    if out:
        out.write_text(json.dumps({**first, "rows": rows, "ceilings": ceilings, "merged_from": [
            {"file": p.name, "date": part["date"], "engine": part.get("engine"), "seconds": part["seconds"]}
            for p, part in zip(paths, parts)]}, indent=1) + "\n")
        print(f"\nresults: {out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="mnist,fashion_mnist")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--budgets", default=",".join(str(b) for b in BUDGETS), help="shares of the pool")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per (strategy, budget)")
    ap.add_argument("--pool", type=int, default=8000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--split-seed", type=int, default=12345)
    ap.add_argument("--c", type=float, default=1.0, help="the logistic regression's C (fixed for every run)")
    ap.add_argument("--rebuild", action="store_true", help="build the cached catalogs again")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--merge", type=Path, nargs="+", help="only print (and with --out, join) these result files")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge, args.out)

    from viscurate import Dataset

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if "random" not in strategies:
        strategies.insert(0, "random")  # the margins are against it
    budgets = [float(b) for b in args.budgets.split(",")]
    rows, ceilings, started, engine = [], {}, time.perf_counter(), engine_fingerprint()
    out = args.out or BENCH / "results" / f"curate-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every row: a run cut short keeps what it measured
        with_margins(rows)
        out.write_text(json.dumps({
            "benchmark": "curate", "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
            "engine": engine, "pool": args.pool, "test": args.test, "split_seed": args.split_seed,
            "seeds": args.seeds, "classifier": {"kind": "sklearn LogisticRegression", "C": args.c, "max_iter": 2000,
                                                "features": "default embeddings, L2-normalized, then standardized with the pool's mean and std"},
            "weights": WEIGHTS, "ceilings": ceilings, "seconds": round(time.perf_counter() - started, 1),
            "rows": rows}, indent=1) + "\n")

    for name in [s.strip() for s in args.datasets.split(",") if s.strip()]:
        ds = Dataset.open(name, home=built_home(name, args.rebuild))
        corpus = load_corpus(ds, name, args.pool, args.test, args.split_seed)
        ceilings[name] = accuracy(corpus, corpus.pool, args.c)
        print(f"[curate] {name}: pool {len(corpus.pool)}, test {len(corpus.test)}, "
              f"ceiling {100 * ceilings[name]:.1f}%", file=sys.stderr, flush=True)
        for budget in budgets:
            n = round(budget * len(corpus.pool))
            for strategy in strategies:
                runs = [run_one(ds, corpus, strategy, n, seed, args.c) for seed in range(args.seeds)]
                row = {"dataset": name, "budget": budget, "n": n, "strategy": strategy, **summarize(runs)}
                rows.append(row)
                save()
                print(f"[curate] {name} {100 * budget:g}% {strategy:17s} {100 * row['accuracy_mean']:.1f} "
                      f"± {100 * row['accuracy_std']:.1f}  classes {row['classes_mean']:.1f}  "
                      f"select {row['select_s_mean']:.1f} s", file=sys.stderr, flush=True)
        ds.close()
    mark_best(rows)
    save()
    print(table(rows, ceilings))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
