"""fastdup's nearest-neighbour graph on precomputed embeddings; print one JSON line (see common.py).

    bench/.venvs/fastdup/bin/python bench/peers/knn_fastdup.py VECTORS.f16 WORKDIR --rows N --dim D

``fastdup.create(work_dir).run(annotations=<names>, embeddings=<n x d float32>, num_threads=2, ...)``:
its documented way to skip feature extraction. The vectors are read from the float16 file bench/brain.py
writes and converted to float32 (fastdup requires float32 in memory). Telemetry off as in fastdup_run.py.
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

    import numpy as np

    import fastdup

    x = np.asarray(np.memmap(a.input, dtype="<f2", mode="r", shape=(a.rows, a.dim)), dtype=np.float32)
    names = [f"/nonexistent/v{i:08d}.jpg" for i in range(a.rows)]
    work = Path(a.workdir) / "fastdup-knn"
    if work.exists():
        shutil.rmtree(work)
    t = time.perf_counter()
    fd = fastdup.create(work_dir=str(work))
    fd.run(annotations=names, embeddings=x, num_threads=a.threads, run_sentry=False, overwrite=True,
           print_summary=False)
    seconds = time.perf_counter() - t
    sim = work / "similarity.csv"
    pairs = sum(1 for _ in open(sim)) - 1 if sim.exists() else None
    return {"version": md.version("fastdup"), "mode": "precomputed embeddings", "images": a.rows, "failed": 0,
            "work_seconds": round(seconds, 1), "params": {"similarity_rows": pairs}}


def add_args(p) -> None:
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--dim", type=int, default=1280)


if __name__ == "__main__":
    sys.exit(common.main("fastdup", child, add_args=add_args))
