"""Perceptual-hash pair search at scale: exact (every pair) against the binary inverted file.

    python bench/hash_pairs.py                 # 200k and 1M hashes, radius 10
    python bench/hash_pairs.py --sizes 200000 --exact-up-to 200000

Uniformly random 64-bit hashes (the hardest case for the inverted lists: no structure to follow) plus
1% planted near copies, each 1-10 bits from its original; recall is of the planted pairs, which the exact
search finds by construction. The exact search is run only up to ``--exact-up-to`` (it is quadratic).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def planted_hashes(n: int, seed: int = 0) -> tuple[list[str], set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    m = n // 100
    base = rng.integers(0, 256, (n - m, 8), dtype=np.uint8)
    src = rng.choice(len(base), m, replace=False)
    bits = np.unpackbits(base[src], axis=1)
    flips = rng.integers(1, 11, m)
    for row, f in zip(bits, flips):
        row[rng.choice(64, int(f), replace=False)] ^= 1
    codes = np.concatenate([base, np.packbits(bits, axis=1)])
    return [c.tobytes().hex() for c in codes], {(int(s), len(base) + k) for k, s in enumerate(src)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200000,1000000")
    ap.add_argument("--radius", type=int, default=10)
    ap.add_argument("--exact-up-to", type=int, default=200_000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from viscurate.brain.neighbours import hamming_pairs

    rows = []
    for n in [int(v) for v in args.sizes.split(",") if v.strip()]:
        hashes, planted = planted_hashes(n)
        for exact in ([True, False] if n <= args.exact_up_to else [False]):
            t = time.perf_counter()
            i, j, _ = hamming_pairs(hashes, args.radius, exact=exact, threads=os.cpu_count())
            seconds = time.perf_counter() - t
            found = set(zip(i.tolist(), j.tolist()))
            rows.append({"hashes": n, "search": "exact" if exact else "inverted file", "seconds": round(seconds, 1),
                         "pairs": len(found), "planted_recall": round(len(found & planted) / len(planted), 4)})
            print(rows[-1], flush=True)
    print(f"\n| hashes | search | seconds | pairs within {args.radius} bits | recall of planted pairs |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['hashes']:,} | {r['search']} | {r['seconds']} | {r['pairs']:,} | {r['planted_recall']} |")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / "hash-pairs.json"
    out.write_text(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                               "radius": args.radius, "rows": rows}, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
