"""imagededup's hashing duplicate finders on a folder; print one JSON line with the pairs they report
(see bench/peers/common.py).

    bench/.venvs/imagededup/bin/python bench/peers/dups_imagededup.py INPUT WORKDIR --method phash --max-distance 10

``PHash().find_duplicates(image_dir=INPUT, max_distance_threshold=N)`` (its documented default is 10),
likewise DHash. Pairs are file names; a pair found from both ends counts once.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def child(a) -> dict:
    import importlib.metadata as md

    from imagededup.methods import DHash, PHash

    method = {"phash": PHash, "dhash": DHash}[a.method]()
    t0 = time.perf_counter()
    found = method.find_duplicates(image_dir=os.path.abspath(a.input), max_distance_threshold=a.max_distance)
    seconds = time.perf_counter() - t0
    pairs = sorted({tuple(sorted((k, v))) for k, vs in found.items() for v in vs})
    return {"version": md.version("imagededup"), "mode": f"{a.method} <= {a.max_distance}", "images": len(found),
            "failed": 0, "work_seconds": round(seconds, 3), "pairs": pairs,
            "params": {"method": a.method, "max_distance_threshold": a.max_distance}}


def add_args(p) -> None:
    p.add_argument("--method", choices=["phash", "dhash"], default="phash")
    p.add_argument("--max-distance", type=int, default=10)


if __name__ == "__main__":
    sys.exit(common.main("imagededup", child, add_args=add_args))
