"""CleanVision's exact and near duplicate sets on a folder, with its default settings; print one JSON line
with the pairs (every pair inside a reported set; see bench/peers/common.py).

    bench/.venvs/cleanvision/bin/python bench/peers/dups_cleanvision.py INPUT WORKDIR
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def child(a) -> dict:
    import importlib.metadata as md

    from cleanvision import Imagelab

    t0 = time.perf_counter()
    lab = Imagelab(data_path=os.path.abspath(a.input))
    lab.find_issues({"exact_duplicates": {}, "near_duplicates": {}})
    seconds = time.perf_counter() - t0
    pairs = set()
    for kind in ("exact_duplicates", "near_duplicates"):
        for group in lab.info.get(kind, {}).get("sets", []):
            names = sorted(os.path.basename(p) for p in group)
            pairs.update((names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names)))
    return {"version": md.version("cleanvision"), "mode": "exact + near duplicates, defaults",
            "images": len(common.input_files(a.input)), "failed": 0, "work_seconds": round(seconds, 3),
            "pairs": sorted(pairs), "params": {}}


if __name__ == "__main__":
    sys.exit(common.main("cleanvision", child))
