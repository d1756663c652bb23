"""Export benchmark: peak memory and time of exporting a large catalog (default 1M samples) as JSON Lines
and COCO.

    python bench/export.py [--n 1000000] [--formats jsonl coco] [--home DIR]

1. Builds a catalog of N synthetic sample documents (bench/synthetic.py: ~3.5 auto-label boxes per
   sample, free-form metadata) with the bulk loader (``add_documents`` of Arrow batches), or reuses the
   one under ``--home`` (kept when given, so that several runs share one build).
2. Each export runs in a fresh child process, ``Dataset(...).export(path, format=F)``, measured from the
   outside (bench/proctree.py: peak RSS of the process tree, sampled, and the kernel's ru_maxrss).
   A child that only opens the dataset and counts it gives the floor (interpreter, DuckDB, viscurate).
3. Prints one row per format: samples written, seconds, samples/s, output MB, peak RSS MB, and the
   peak above the floor; writes bench/results/export-<date>-n<N>.json.

An export streams when its peak stays flat as N grows: compare ``--n 100000`` with ``--n 1000000``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from proctree import run_measured  # noqa: E402
from query import synthetic_batches, synthetic_schema, viscurate_env, viscurate_python  # noqa: E402

MIB = 1024 * 1024
NAME = "bench-export"

CHILD = """
import json, sys, time
from viscurate.dataset import Dataset
home, fmt, out, result = sys.argv[1:5]
ds = Dataset({name!r}, home=home)
t = time.perf_counter()
if fmt == "count":
    report = {{"samples": ds.count()}}
else:
    report = ds.export(out, format=fmt)
report["seconds"] = time.perf_counter() - t
open(result, "w").write(json.dumps(report, default=str))
""".format(name=NAME)


def build(home: Path, n: int, seed: int) -> dict:
    """The catalog of N synthetic documents under ``home`` (built once: a catalog of N is reused)."""
    import pyarrow as pa

    sys.path.insert(0, str(BENCH.parent / "src"))

    from viscurate.dataset import Dataset

    if Dataset.exists(NAME, home=home):
        ds = Dataset(NAME, home=home)
        if ds.count() == n:
            return {"built": False, "samples": n}
        ds.delete()
    ds = Dataset.create(NAME, home=home)
    t = time.perf_counter()
    reader = pa.RecordBatchReader.from_batches(synthetic_schema(), synthetic_batches(n, seed))
    ds.add_documents(reader, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - t
    print(f"[export] built {n:,} samples in {seconds:.1f} s (documents generated as it loads)", file=sys.stderr)
    return {"built": True, "samples": ds.count(), "build_seconds": round(seconds, 1)}


def measure(home: Path, fmt: str, out_dir: Path, timeout: float) -> dict:
    out = out_dir / ("export.jsonl" if fmt == "jsonl" else f"export-{fmt}")
    if fmt == "coco":
        out = out_dir / "coco.json"
    result = out_dir / f"result-{fmt}.json"
    m = run_measured([viscurate_python(), "-c", CHILD, str(home), fmt, str(out), str(result)],
                     env=viscurate_env(), timeout=timeout)
    row: dict = {"format": fmt, "peak_rss_mb": round(m.peak_rss_mb, 1), "process_seconds": round(m.seconds, 1)}
    try:
        report = json.loads(result.read_text())
    except (OSError, ValueError):
        row.update(status="timeout" if m.timed_out else "crashed", error=m.stderr.strip()[-500:])
        return row
    row.update(status="ok", report=report, seconds=round(report.pop("seconds"), 1))
    if out.exists():
        size = out.stat().st_size if out.is_file() else sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        row["output_mb"] = round(size / MIB, 1)
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    written = report.get("samples") or report.get("images")
    if written:
        row["samples_per_s"] = round(written / max(row["seconds"], 1e-9))
    print(f"[export] {fmt:6s} {row['seconds']:>7.1f} s  peak RSS {row['peak_rss_mb']:>7.0f} MB  {report}",
          file=sys.stderr, flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", nargs="+", default=["jsonl", "coco"])
    ap.add_argument("--home", help="workspace to build the catalog in and keep (default: a temporary one)")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--out", help="results JSON (default bench/results/export-<date>-n<N>.json)")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.build_only:  # a child: the parent stays small (a child forked from a big parent starts out big)
        print(json.dumps(build(Path(a.home), a.n, a.seed)))
        return 0
    home = Path(a.home) if a.home else Path(tempfile.mkdtemp(prefix="vc-bench-export-"))
    out_dir = Path(tempfile.mkdtemp(prefix="vc-bench-export-out-"))
    try:
        built = subprocess.run([viscurate_python(), __file__, "--n", str(a.n), "--seed", str(a.seed), "--home",
                                str(home), "--build-only"], env=viscurate_env(), check=True, capture_output=True,
                               text=True)
        res: dict = {"benchmark": "export", "date": dt.datetime.now().isoformat(timespec="seconds"), "n": a.n,
                     "catalog": json.loads(built.stdout.strip().splitlines()[-1])}
        sys.stderr.write(built.stderr)
        from ingest import machine_info  # noqa: PLC0415
        res["machine"] = machine_info()
        floor = measure(home, "count", out_dir, a.timeout)
        res["floor"] = floor
        res["exports"] = [measure(home, fmt, out_dir, a.timeout) for fmt in a.formats]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        if not a.home:
            shutil.rmtree(home, ignore_errors=True)
    out = Path(a.out) if a.out else BENCH / "results" / f"export-{dt.date.today().isoformat()}-n{a.n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\nExport of {a.n:,} samples; floor (open + count): peak RSS {floor['peak_rss_mb']:.0f} MB")
    print(f"{'format':8s} {'samples':>10s} {'s':>8s} {'samples/s':>10s} {'out MB':>8s} {'peak RSS MB':>12s} {'above floor':>12s}")
    for row in res["exports"]:
        if row["status"] != "ok":
            print(f"{row['format']:8s} {row['status']}: {row.get('error', '')[-200:]}")
            continue
        rep = row["report"]
        print(f"{row['format']:8s} {rep.get('samples') or rep.get('images') or 0:>10,} {row['seconds']:>8.1f} "
              f"{row.get('samples_per_s', 0):>10,} {row.get('output_mb', 0):>8.1f} {row['peak_rss_mb']:>12.0f} "
              f"{row['peak_rss_mb'] - floor['peak_rss_mb']:>12.0f}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
