"""The k-nearest-neighbour graph at scale: random 1280-d vectors (the size of EfficientNet-Lite3's
embeddings), stored as a float16 memory-mapped file as viscurate's similarity index stores them.

    python bench/brain.py                  # 100,000 and 1,000,000 vectors; a table + bench/results/brain-<date>.json
    python bench/brain.py --sizes 100000

Per size, in a fresh process (so that its peak memory is its own): the index build (exact below 50,000
vectors, else FAISS IVF + 8-bit scalar quantization, trained on a sample), the k=10 graph of every
vector, the near-duplicate pairs it implies (similarity >= 0.9), the peak memory (anonymous: what the
process allocated; resident: that plus the cached pages of the memory-mapped vector file), and the
recall@10 of the graph against exact search on 200 random rows. Random vectors are the hard case for an
approximate index (no structure to exploit: all neighbours are about equally far), so the recall here is
a floor. Goal (issue 4): the 1M graph in under 10 minutes on 2 cores, peak RAM under 4 GB.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DIM = 1280


class MemoryWatch:
    """Peak anonymous memory (RssAnon: what the process allocated) next to the peak resident set, which
    also counts the pages of the memory-mapped vector file the kernel keeps cached (reclaimable)."""

    def __init__(self) -> None:
        import threading
        self.peak_anon_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                for line in open("/proc/self/status"):
                    if line.startswith("RssAnon:"):
                        self.peak_anon_kb = max(self.peak_anon_kb, int(line.split()[1]))
            except OSError:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_anon_kb / 1024, 0)


def child(n: int, path: str) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from viscurate.brain.knn_graph import knn_graph

    watch = MemoryWatch()

    x = np.memmap(path, dtype="<f2", mode="r", shape=(n, DIM))
    timings: dict = {}
    t = time.perf_counter()
    sims, idx = knn_graph(x, k=10, threads=os.cpu_count(), timings=timings)
    total = time.perf_counter() - t
    t = time.perf_counter()
    pairs = int((sims >= 0.9).sum())
    t_dups = time.perf_counter() - t
    rng = np.random.default_rng(1)
    queries = rng.choice(n, size=200, replace=False)
    q = np.asarray(x[np.sort(queries)], np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    best = np.full((len(q), 11), -np.inf, np.float32)
    best_i = np.full((len(q), 11), -1, np.int64)
    for s in range(0, n, 65536):
        b = np.asarray(x[s:s + 65536], np.float32)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        sc = q @ b.T
        allv = np.hstack([best, sc])
        alli = np.hstack([best_i, np.broadcast_to(np.arange(s, s + len(b)), sc.shape)])
        top = np.argsort(-allv, axis=1)[:, :11]
        best, best_i = np.take_along_axis(allv, top, 1), np.take_along_axis(alli, top, 1)
    hits = 0
    for row, qi in enumerate(np.sort(queries)):
        exact = [j for j in best_i[row] if j != qi][:10]
        hits += len(set(exact) & set(idx[qi].tolist()))
    return {"vectors": n, "dim": DIM, "kind": timings["kind"], "build_s": round(timings["build"], 1),
            "graph_s": round(timings["search"], 1), "total_s": round(total, 1), "duplicate_pairs_s": round(t_dups, 3),
            "pairs_at_0.9": pairs, "recall_at_10": round(hits / (10 * len(queries)), 3),
            "peak_anon_mb": watch.stop(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)}


def make_vectors(n: int, path: Path, kind: str) -> None:
    """``random``: i.i.d. Gaussian (the hard case); ``clustered``: 1,000 Gaussian blobs, closer to real
    embeddings (images come in kinds)."""
    rng = np.random.default_rng(0)
    x = np.memmap(path, dtype="<f2", mode="w+", shape=(n, DIM))
    centres = rng.standard_normal((1000, DIM), dtype=np.float32) if kind == "clustered" else None
    for s in range(0, n, 50_000):
        m = min(50_000, n - s)
        block = rng.standard_normal((m, DIM), dtype=np.float32)
        if centres is not None:
            block = centres[rng.integers(0, len(centres), m)] + 0.6 * block
        x[s:s + m] = block
    x.flush()
    del x


def run_fastdup(path: Path, n: int, tmp: Path, timeout: float) -> dict:
    """fastdup 2.54 on the same vectors (bench/peers/knn_fastdup.py in its venv): its whole run, which
    builds the graph and the similarity outputs."""
    py = BENCH / ".venvs" / "fastdup" / "bin" / "python"
    if not py.exists():
        return {"tool": "fastdup", "error": "not installed: bash bench/setup_peers.sh"}
    try:
        proc = subprocess.run([str(py), str(BENCH / "peers" / "knn_fastdup.py"), str(path), str(tmp / "fd"),
                               "--rows", str(n), "--dim", str(DIM), "--timeout", str(timeout)],
                              capture_output=True, text=True, timeout=timeout + 120)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return {"tool": "fastdup", "error": f"no result within {timeout:.0f} s"}
    if res.get("status") != "ok":
        return {"tool": f"fastdup {res.get('version', '')}".strip(),
                "error": f"{res.get('status')}: {str(res.get('error', ''))[:200]}", "total_s": res.get("seconds")}
    return {"tool": f"fastdup {res['version']}", "kind": "fastdup run(embeddings=...)",
            "total_s": round(res["seconds"], 1), "peak_rss_mb": res.get("peak_rss_mb")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--kinds", default="random,clustered", help="random (the spec), clustered (closer to real data)")
    ap.add_argument("--peers", default="fastdup", help="peers to run on the same vectors (fastdup), or ''")
    ap.add_argument("--peer-timeout", type=float, default=900.0, help="seconds before a peer run is stopped")
    ap.add_argument("--skip-viscurate", action="store_true", help="only the peers")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="vc-bench-brain-") as tmp:
        for n, kind in [(int(v), k) for v in args.sizes.split(",") if v.strip()
                        for k in args.kinds.split(",") if k.strip()]:
            path = Path(tmp) / f"v{n}.f16"
            print(f"{n:,} {kind} vectors: writing them ({n * DIM * 2 / 1e9:.1f} GB float16)...", file=sys.stderr,
                  flush=True)
            make_vectors(n, path, kind)
            if not args.skip_viscurate:
                proc = subprocess.run([sys.executable, __file__, "--child", str(n), str(path)], capture_output=True,
                                      text=True, timeout=3600)
                if proc.returncode != 0:
                    rows.append({"vectors": n, "data": kind, "tool": "viscurate", "error": proc.stderr[-500:]})
                else:
                    rows.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "data": kind, "tool": "viscurate"})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if "fastdup" in args.peers.split(","):
                rows.append({"vectors": n, "data": kind, **run_fastdup(path, n, Path(tmp), args.peer_timeout)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            path.unlink()
    keys = ["vectors", "data", "tool", "kind", "build_s", "graph_s", "total_s", "recall_at_10", "pairs_at_0.9", "duplicate_pairs_s",
            "peak_anon_mb", "peak_rss_mb"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, r.get("error", ""))) for k in keys) + " |")
    out = args.out or BENCH / "results" / f"brain-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "rows": rows},
                              indent=1))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
