"""Selection at scale: ``ds.select(10_000, strategy=S)`` from 1,000,000 candidates: time and peak memory.

    python bench/select_scale.py                                  # 1M samples x 1280-d, four strategies
    python bench/select_scale.py --n 100000 --strategies random,k_center      # a quick one
    # more: --dim 512  --picks 10000  --components 1000  --home DIR (kept: a later run reuses the catalog)
    #       --timeout 1500  --asks 1 (the first ask only)  --out FILE

1. A real catalog (``Dataset.create``) of N sample documents bulk-loaded as Arrow batches
   (``Dataset.add_documents``; ``_id``, ``filepath``, ``width``, ``height``) and N image vectors written through
   the catalog's own ``write_vectors`` (stored float16, as the embedder's are) under the model name
   ``synthetic-gmm``. The vectors are **synthetic**: a Gaussian mixture of ``--components`` (1,000)
   components with Zipf-like weights (a few big kinds of images, a long tail of rare ones), unit-normalized,
   of EfficientNet-Lite3's dimension (1280) by default. Real embeddings of 1M images would take days to
   compute on 2 cores; the selection code cannot tell the difference, and what it costs depends on N, the
   dimension and how clustered the data is, which the mixture imitates. Building the catalog is not timed
   against the selection (it is reported apart).
2. Per strategy, in a fresh process (so that its peak memory is its own and nothing of an earlier strategy is
   in its memory): ``Dataset(...)`` then ``ds.select(picks, strategy, slice="scale-<strategy>", write=True)``
   twice: the **first ask** (a fresh process: nothing computed yet in memory; the catalog file may be in the
   OS page cache, as it is after any recent use) and a **second ask** in the same process (whatever the engine
   keeps between calls). Measured from the outside (bench/proctree.py: peak RSS of the process tree, sampled
   every 50 ms, at least the kernel's ru_maxrss) and from the inside (ru_maxrss after the first ask). A child
   that only opens the dataset and counts it gives the floor (interpreter, DuckDB, viscurate).
3. Prints a table and writes bench/results/select-scale-<date>-n<N>.json. A strategy that does not finish
   within ``--timeout`` seconds is reported as such, not left out.

Disk: about N x dim x 2 bytes for the vectors (2.6 GB at 1M x 1280) plus whatever the engine persists; the
script checks the free space first and deletes the catalog at the end unless ``--home`` was given.
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

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from proctree import run_measured  # noqa: E402
from query import viscurate_env, viscurate_python  # noqa: E402

NAME = "bench-select"
MODEL = "synthetic-gmm"
STRATEGIES = ("random", "cluster_coverage", "k_center", "typicality")
CHUNK = 50_000
GIB = 1024 ** 3

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from viscurate.dataset import Dataset
home, strategy, picks, result, asks = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ds = Dataset({name!r}, home=home)
out = {{"import_s": time.perf_counter() - t0, "asks": []}}
if strategy == "count":
    t = time.perf_counter()
    out["samples"] = ds.count()
    out["asks"].append({{"seconds": time.perf_counter() - t}})
    open(result, "w").write(json.dumps(out))
    raise SystemExit(0)
for ask in ("first", "second")[:asks]:
    t = time.perf_counter()
    sel = ds.select(picks, strategy, slice="scale-" + strategy, seed=0, write=True)
    out["asks"].append({{"ask": ask, "seconds": time.perf_counter() - t, "picks": len(sel.ids),
                        "distinct": len(set(sel.ids)), "pool": sel.pool, "dropped": sel.dropped,
                        "engine_seconds": sel.seconds,
                        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}})
    open(result, "w").write(json.dumps(out, default=str))  # a timeout in the second ask keeps the first
out["slice_size"] = ds.count({{"slices": "scale-" + strategy}})
open(result, "w").write(json.dumps(out, default=str))
""".format(name=NAME)


# --------------------------------------------------------------------------------------------- build

def mixture_blocks(n: int, dim: int, components: int, seed: int):
    """Unit vectors from a Gaussian mixture, ``CHUNK`` rows at a time (memory stays flat).

    Component ``k`` has weight proportional to ``1 / (k + 1) ** 0.8`` (Zipf-like: cluster sizes from ~30 to
    ~20,000 at 1M); a sample is its centre plus isotropic noise of 0.6 the centre's scale, so members of a
    component are ~0.7 cosine-similar and components nearly orthogonal, like embeddings of kinds of images.

    >>> next(mixture_blocks(10, 8, 3, 0)).shape                                      # doctest: +SKIP
    (10, 8)
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((components, dim), dtype=np.float32)
    weights = 1.0 / np.arange(1, components + 1) ** 0.8
    weights /= weights.sum()
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        block = centres[rng.choice(components, size=m, p=weights)]
        block += 0.6 * rng.standard_normal((m, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        yield block


def sample_ids(start: int, stop: int) -> list[str]:
    return [f"{i:024x}" for i in range(start, stop)]


def build(home: Path, n: int, dim: int, components: int, seed: int) -> dict:
    """The catalog of ``n`` documents and ``n`` vectors under ``home`` (reused when it is already there)."""
    import pyarrow as pa

    sys.path.insert(0, str(BENCH.parent / "src"))
    from viscurate.dataset import Dataset
    from viscurate.store.catalog import Catalog

    if Dataset.exists(NAME, home=home):
        ds = Dataset(NAME, home=home)
        with Catalog(ds.directory, NAME) as cat:
            stored = cat.vector_models(None).get(MODEL, 0)
            dims = cat.meta_get(f"vector_dim:{MODEL}")
        if ds.count() == n and stored == n and str(dims) == str(dim):
            first = home / "build.json"  # what the first build cost, kept beside the catalog
            return {**(json.loads(first.read_text()) if first.is_file() else {}), "built": False}
        ds.delete()
    ds = Dataset.create(NAME, home=home)
    t = time.perf_counter()
    for start in range(0, n, 250_000):
        stop = min(n, start + 250_000)
        ds.add_documents(pa.table({
            "_id": sample_ids(start, stop),
            "filepath": [f"/data/scale/{i // 1000:04d}/{i:07d}.jpg" for i in range(start, stop)],
            "width": pa.array(np.full(stop - start, 640), pa.int64()),
            "height": pa.array(np.full(stop - start, 480), pa.int64())}))
    docs_s = time.perf_counter() - t
    ds.close()
    t = time.perf_counter()
    with Catalog(ds.directory, NAME, write=True) as cat:
        start = 0
        for block in mixture_blocks(n, dim, components, seed):
            cat.write_vectors(MODEL, sample_ids(start, start + len(block)), block)
            start += len(block)
            print(f"[select_scale] vectors {start:,}/{n:,} ({time.perf_counter() - t:.0f} s)", file=sys.stderr,
                  flush=True)
    vectors_s = time.perf_counter() - t
    info = {"built": True, "samples": ds.count(), "vectors": n, "dim": dim, "components": components,
            "documents_s": round(docs_s, 1), "vectors_s": round(vectors_s, 1),
            "catalog_gb": round(folder_bytes(ds.directory) / GIB, 2)}
    (home / "build.json").write_text(json.dumps(info))
    return info


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------- measure

def measure(home: Path, strategy: str, picks: int, work: Path, timeout: float, asks: int = 2) -> dict:
    """One strategy (or ``count``: the floor) in a fresh child process, measured from the outside."""
    result = work / f"result-{strategy}.json"
    result.unlink(missing_ok=True)
    dataset_dir = home / "datasets" / NAME  # the workspace layout (store/workspace.py)
    dataset_dir = dataset_dir if dataset_dir.is_dir() else home
    before = folder_bytes(dataset_dir)
    m = run_measured([viscurate_python(), "-c", CHILD, str(home), strategy, str(picks), str(result), str(asks)],
                     env=viscurate_env(), timeout=timeout)
    row: dict = {"strategy": strategy, "peak_rss_mb": round(m.peak_rss_mb), "peak_pss_mb": round(m.peak_pss_mb),
                 "process_s": round(m.seconds, 1), "disk_added_mb": round((folder_bytes(dataset_dir) - before) / 2**20)}
    try:
        report = json.loads(result.read_text())
    except (OSError, ValueError):
        report = {"asks": []}
    row.update(report)
    done = len(report["asks"])
    row["status"] = "ok" if m.returncode == 0 else ("timeout" if m.timed_out else f"exit {m.returncode}")
    if row["status"] != "ok":
        row["error"] = m.stderr.strip()[-800:]
        row["status"] += f" after {done} ask(s)"
    print(f"[select_scale] {strategy:17s} {row['status']:>8s}  " + "  ".join(
        f"{a.get('ask', 'count')} {a['seconds']:.1f} s" for a in report["asks"]) +
        f"  peak RSS {row['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    return row


def table(res: dict) -> str:
    floor = res["floor"]["peak_rss_mb"]
    out = ["| strategy | first ask s | second ask s | peak RSS MB (process) | above floor MB | "
           "RSS after first ask MB | picks | pool | status |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in res["strategies"]:
        asks = {a.get("ask"): a for a in r.get("asks", [])}
        first, second = asks.get("first", {}), asks.get("second", {})

        def s(a: dict) -> str:
            return f"{a['seconds']:.1f}" if a else "-"
        out.append(f"| {r['strategy']} | {s(first)} | {s(second)} | {r['peak_rss_mb']:,} | "
                   f"{r['peak_rss_mb'] - floor:,} | {first.get('ru_maxrss_mb', 0):,.0f} | {first.get('picks', '-')} | "
                   f"{first.get('pool', '-')} | {r['status']} |")
    out.append("")
    out.append(f"Floor (open + count): peak RSS {floor:,} MB.")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--picks", type=int, default=10_000)
    ap.add_argument("--components", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--home", help="workspace to build the catalog in and keep (default: a temporary one, deleted)")
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds per strategy (both asks)")
    ap.add_argument("--asks", type=int, choices=(1, 2), default=2, help="1: the first ask only (a fresh process)")
    ap.add_argument("--out", help="results JSON (default bench/results/select-scale-<date>-n<N>.json)")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.build_only:  # a child: the parent stays small
        print(json.dumps(build(Path(a.home), a.n, a.dim, a.components, a.seed)))
        return 0
    home = Path(a.home) if a.home else Path(tempfile.mkdtemp(prefix="vc-bench-select-", dir="/tmp"))
    need = a.n * a.dim * 2 * 1.6  # the vectors, float16, plus DuckDB's overhead and the engine's files
    free = shutil.disk_usage(home).free
    if free < need:
        shutil.rmtree(home, ignore_errors=True) if not a.home else None
        raise SystemExit(f"{free / GIB:.1f} GiB free under {home}, about {need / GIB:.1f} GiB needed: "
                         "free some space, or use --dim 512 / a smaller --n")
    work = Path(tempfile.mkdtemp(prefix="vc-bench-select-out-"))
    try:
        built = subprocess.run([viscurate_python(), __file__, "--n", str(a.n), "--dim", str(a.dim), "--components",
                                str(a.components), "--seed", str(a.seed), "--home", str(home), "--build-only"],
                               env=viscurate_env(), capture_output=True, text=True)
        if built.returncode != 0:
            raise SystemExit(f"building the catalog failed:\n{built.stderr[-2000:]}")
        from ingest import machine_info  # noqa: PLC0415
        res: dict = {"benchmark": "select_scale", "date": dt.datetime.now().isoformat(timespec="seconds"),
                     "machine": machine_info(), "n": a.n, "dim": a.dim, "picks": a.picks,
                     "vectors": f"synthetic Gaussian mixture, {a.components} components, Zipf-like weights, "
                                "unit-normalized, stored float16",
                     "catalog": json.loads(built.stdout.strip().splitlines()[-1])}
        print(f"[select_scale] catalog: {res['catalog']}", file=sys.stderr, flush=True)
        res["floor"] = measure(home, "count", a.picks, work, a.timeout)
        res["strategies"] = [measure(home, s.strip(), a.picks, work, a.timeout, a.asks)
                             for s in a.strategies.split(",") if s.strip()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not a.home:
            shutil.rmtree(home, ignore_errors=True)
    out = Path(a.out) if a.out else BENCH / "results" / f"select-scale-{dt.date.today().isoformat()}-n{a.n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\nSelect {a.picks:,} of {a.n:,} candidates ({a.dim}-d synthetic vectors)")
    print(table(res))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
