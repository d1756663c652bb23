"""fastdup's near-duplicate pairs on a folder (full run: its ONNX embeddings + nearest neighbours); print
one JSON line with the pairs (see bench/peers/common.py and fastdup_run.py for telemetry).

    bench/.venvs/fastdup/bin/python bench/peers/dups_fastdup.py INPUT WORKDIR --min-similarity 0.9

Pairs: ``fd.similarity()`` rows (from, to, distance = cosine similarity) at or above the threshold.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def child(a) -> dict:
    import importlib.metadata as md

    import fastdup

    work = Path(a.workdir) / "fastdup-dups"
    if work.exists():
        shutil.rmtree(work)
    t0 = time.perf_counter()
    fd = fastdup.create(work_dir=str(work), input_dir=os.path.abspath(a.input))
    fd.run(num_threads=a.threads, run_sentry=False, overwrite=True)
    sim = fd.similarity()
    seconds = time.perf_counter() - t0
    cols = {c.lower(): c for c in sim.columns}
    a_col, b_col = cols.get("filename_from", cols.get("from")), cols.get("filename_to", cols.get("to"))
    d_col = cols.get("distance")
    pairs = set()
    for x, y, d in zip(sim[a_col], sim[b_col], sim[d_col]):
        if float(d) >= a.min_similarity:
            pairs.add(tuple(sorted((os.path.basename(str(x)), os.path.basename(str(y))))))
    return {"version": md.version("fastdup"), "mode": f"similarity >= {a.min_similarity}",
            "images": len(common.input_files(a.input)), "failed": 0, "work_seconds": round(seconds, 3),
            "pairs": sorted(pairs), "params": {"min_similarity": a.min_similarity}}


def add_args(p) -> None:
    p.add_argument("--min-similarity", type=float, default=0.9)


if __name__ == "__main__":
    sys.exit(common.main("fastdup", child, add_args=add_args))
