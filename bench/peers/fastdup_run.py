"""Run fastdup on a folder; print one JSON line (see bench/peers/common.py).

    bench/.venvs/fastdup/bin/python bench/peers/fastdup_run.py INPUT WORKDIR [--threads 2] [--mode stats]

Mode ``stats`` (default): fastdup's image statistics only, no embeddings / similarity graph:
``fastdup.create(input_dir, work_dir).run(run_stats_only=True, num_threads=2, run_sentry=False)``.
``run_stats_only`` is a turi_param of the C++ engine (listed in fastdup_controller.set_fastdup_kwargs);
fastdup then decodes every image and writes atrain_stats.csv (width, height, unique, blur, mean,
min, max, stdv, file_size, contrast) without running the ONNX feature model.
Mode ``full``: the default full run (ONNX embeddings + nearest neighbours + connected components).

Counts: ``images`` = files fastdup picked up (rows of atrain_features.dat.csv + rows of
atrain_features.bad.csv), ``failed`` = rows of atrain_features.bad.csv.  fastdup only picks up
files whose extension it knows (it ignores .gif, for one); the rest show as ``skipped``.

Telemetry: SENTRY_OPT_OUT=1 (Python-side Sentry), FASTDUP_PRODUCTION=1 (no PyPI latest-version
check at import), run_sentry=0 (the C++ engine's sentry-native).  Verified with
``strace -f -e trace=connect``: no connect() call at all.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

LICENSE_LIMIT_MARK = "unlicensed software version allows up to"


def _rows(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


def child(a) -> dict:
    import importlib.metadata as md

    work = Path(a.workdir) / "fastdup"
    if work.exists():
        shutil.rmtree(work)
    t0 = time.perf_counter()
    import fastdup

    t_import = time.perf_counter() - t0
    kwargs = dict(num_threads=a.threads, run_sentry=False, overwrite=True)
    if a.mode == "stats":
        kwargs["run_stats_only"] = True
    t1 = time.perf_counter()
    fd = fastdup.create(work_dir=str(work), input_dir=os.path.abspath(a.input))
    fd.run(**kwargs)
    work_seconds = time.perf_counter() - t1
    ok = _rows(work / "atrain_features.dat.csv")
    bad = _rows(work / "atrain_features.bad.csv")
    mode = ("stats-only: fastdup.create().run(run_stats_only=True)" if a.mode == "stats"
            else "full: fastdup.create().run() (embeddings + NN + components)")
    return {
        "version": md.version("fastdup"),
        "mode": mode,
        "images": ok + bad,
        "failed": bad,
        "work_seconds": round(work_seconds, 3),
        "import_seconds": round(t_import, 3),
    }


def output_notes(text: str) -> str | None:
    for line in text.splitlines():
        if LICENSE_LIMIT_MARK in line:
            return line.strip()[:300]
    return None


def add_args(p) -> None:
    p.add_argument("--mode", choices=["stats", "full"], default="stats")


if __name__ == "__main__":
    sys.exit(common.main("fastdup", child, add_args=add_args, output_notes=output_notes))
