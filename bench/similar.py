"""similar(): query latency and recall of the similarity index, exact scan against the inverted file.

    python bench/similar.py                 # 200k clustered 1280-d vectors, 100 queries
    python bench/similar.py --n 100000 --queries 200 --nprobe 8,16,32

The vectors go through the real path: a catalog (DuckDB) stores them with ``write_vectors``, and
``SimilarityIndex.sync`` builds the float16 memory-mapped index from it (above ``APPROX_ABOVE`` it also
trains the inverted file). Each query is a stored vector plus noise; recall@10 is measured against the
exact scan of the same index. Clustered vectors (Gaussian blobs around 1,000 centres) stand in for real
embeddings, which are clustered too; uniformly random vectors have no neighbours worth finding.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def clustered(n: int, dim: int, spread: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    return (centres[rng.integers(0, 1000, n)] + spread * rng.normal(size=(n, dim))).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--nprobe", default="8,16,32")
    ap.add_argument("--spread", type=float, default=0.6,
                    help="noise around each of the 1,000 centres, per dimension (centres: unit normal); "
                         "1.2 makes the clusters overlap")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from viscurate.brain.index import APPROX_ABOVE, SimilarityIndex
    from viscurate.store.catalog import Catalog

    home = Path(tempfile.mkdtemp(prefix="vc-bench-similar-"))
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "n": args.n,
                     "dim": args.dim, "spread": args.spread, "approx_above": APPROX_ABOVE, "rows": []}
    try:
        x = clustered(args.n, args.dim, args.spread)
        ids = [f"s{i:07d}" for i in range(args.n)]
        t = time.perf_counter()
        with Catalog(home, "bench", write=True) as cat:
            for s in range(0, args.n, 20_000):
                cat.write([{"_id": i, "filepath": f"/x/{i}.jpg"} for i in ids[s:s + 20_000]])
                cat.write_vectors("bench@1", ids[s:s + 20_000], x[s:s + 20_000])
            results["catalog_write_s"] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            index = SimilarityIndex.sync(cat, "bench@1")
            results["index_build_s"] = round(time.perf_counter() - t, 1)
            results["nlist"] = index.meta.get("nlist")
        rng = np.random.default_rng(1)
        q = x[rng.choice(args.n, args.queries, replace=False)] + 0.3 * rng.normal(size=(args.queries, args.dim))
        q = q.astype(np.float32)

        def timed(**kw):
            index.search(q[0], 10, **kw)  # warm: the memory map and the inverted lists
            keys, lat = [], []
            for row in q:
                t0 = time.perf_counter()
                k, _ = index.search(row, 10, **kw)
                lat.append(time.perf_counter() - t0)
                keys.append(k[0])
            return keys, np.asarray(lat) * 1000

        exact_keys, exact_ms = timed(exact=True)
        results["rows"].append({"search": "exact scan", "p50_ms": round(float(np.median(exact_ms)), 1),
                                "p99_ms": round(float(np.percentile(exact_ms, 99)), 1), "recall@10": 1.0})
        if index.meta.get("nlist"):
            for nprobe in [int(v) for v in args.nprobe.split(",") if v.strip()]:
                keys, ms = timed(nprobe=nprobe)
                recall = float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(keys, exact_keys)]))
                results["rows"].append({"search": f"inverted file, nprobe {nprobe}",
                                        "p50_ms": round(float(np.median(ms)), 1),
                                        "p99_ms": round(float(np.percentile(ms, 99)), 1),
                                        "recall@10": round(recall, 3)})
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"{args.n:,} vectors of {args.dim} dims (clustered, spread {args.spread}), {args.queries} queries, k=10; catalog write "
          f"{results['catalog_write_s']} s, index build {results['index_build_s']} s, {results['nlist']} lists")
    print("| search | p50 ms | p99 ms | recall@10 |\n| --- | ---: | ---: | ---: |")
    for r in results["rows"]:
        print(f"| {r['search']} | {r['p50_ms']} | {r['p99_ms']} | {r['recall@10']} |")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"similar-{args.n}-spread{args.spread}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
