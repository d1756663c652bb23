"""Run CleanVision on a folder; print one JSON line (see bench/peers/common.py).

    bench/.venvs/cleanvision/bin/python bench/peers/cleanvision_run.py INPUT WORKDIR [--threads 2] [--prescreen]

What runs: ``Imagelab(data_path=INPUT).find_issues(n_jobs=2)`` with CleanVision's default issue
types (dark, light, odd_aspect_ratio, low_information, exact_duplicates, near_duplicates, blurry,
grayscale, odd_size): one multiprocessing.Pool(2) pass that decodes every image and computes the
image-property scores, then a second pool pass that decodes every image again for the hashes.

Counts: ``images`` = files CleanVision picked up (it globs a fixed list of extensions: *.jpg,
*.jpeg, *.png, *.gif, *.jp2, *.tiff, *.webp and upper-case variants; not .tif, .bmp, .tga, .ppm;
those show as ``skipped``), ``failed`` = picked-up images it could not score.

CleanVision has no per-image error handling: one file that Pillow cannot decode (or an LA-mode PNG,
which breaks its brightness property) raises inside the pool and ends the whole run.  That is
reported as status "crashed" with the exception.  ``--prescreen`` is the workaround a user would
need: before the timed run (in the parent, untimed, reported as ``prescreen_seconds``) every
picked-up file is put through CleanVision's own per-image code (the image properties and both
hashes) in a try/except; the files that raise are ``excluded`` (counted as ``failed``) and the timed
run is ``Imagelab(filepaths=<the others>).find_issues(n_jobs=2)``.

Telemetry: CleanVision has none (no network code in the package); MPLCONFIGDIR points at a
folder inside the venv so matplotlib's font cache is built once, at setup, not during a timing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VENV = Path(sys.prefix)
os.environ.setdefault("MPLCONFIGDIR", str(VENV / ".mplconfig"))


def child(a) -> dict:
    import importlib.metadata as md

    t0 = time.perf_counter()
    from cleanvision import Imagelab

    t_import = time.perf_counter() - t0
    excluded: list = []
    t1 = time.perf_counter()
    if a.filepaths:
        screen = json.loads(Path(a.filepaths).read_text())
        excluded = screen["excluded"]
        lab = Imagelab(filepaths=screen["keep"])
        mode = "Imagelab(filepaths=pre-screened).find_issues() defaults"
    else:
        lab = Imagelab(data_path=os.path.abspath(a.input))
        mode = "Imagelab(data_path).find_issues() defaults"
    lab.find_issues(n_jobs=a.threads)
    work_seconds = time.perf_counter() - t1
    issues = lab.issues
    prop_cols = [c for c in issues.columns if c.endswith("_score")
                 and not c.startswith(("exact_duplicates", "near_duplicates"))]
    unscored = int(issues[prop_cols].isna().all(axis=1).sum()) if prop_cols else 0
    out_dir = Path(a.workdir) / "cleanvision"
    out_dir.mkdir(parents=True, exist_ok=True)
    lab.issue_summary.to_csv(out_dir / "issue_summary.csv", index=False)
    res = {
        "version": md.version("cleanvision"),
        "mode": mode,
        "images": int(len(issues)) + len(excluded),
        "failed": unscored + len(excluded),
        "work_seconds": round(work_seconds, 3),
        "import_seconds": round(t_import, 3),
    }
    if a.filepaths:
        res["excluded"] = len(excluded)
        kinds: dict[str, int] = {}
        for e in excluded:
            k = e["error"].split(":", 1)[0]
            kinds[k] = kinds.get(k, 0) + 1
        res["note"] = "pre-screen excluded: " + ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items()))
    return res


# ------------------------------------------------------------------------------ pre-screen
_SCREEN: dict = {}


def _screen_init(folder: str) -> None:
    import warnings

    warnings.simplefilter("ignore")  # Pillow's warnings about odd files: noise here
    from cleanvision.dataset.fsspec_dataset import FSDataset
    from cleanvision.issue_managers.duplicate_issue_manager import DuplicateIssueManager, get_hash
    from cleanvision.issue_managers.image_property_issue_manager import ImagePropertyIssueManager

    _SCREEN["ds"] = FSDataset(data_folder=folder, verbose=False)
    _SCREEN["props"] = ImagePropertyIssueManager().image_properties
    _SCREEN["hash_params"] = DuplicateIssueManager().get_default_params()
    _SCREEN["get_hash"] = get_hash


def _screen_one(path: str) -> tuple[str, str | None]:
    try:
        image = _SCREEN["ds"][path]
        if image:
            for prop in _SCREEN["props"].values():
                prop.calculate(image)
            for params in _SCREEN["hash_params"].values():
                _SCREEN["get_hash"](image, params)
        return path, None
    except Exception as e:  # noqa: BLE001
        return path, f"{type(e).__name__}: {e}"[:200]


def prepare(a, work: str) -> tuple[list[str], dict]:
    if not a.prescreen:
        return [], {}
    import multiprocessing

    from cleanvision.dataset.fsspec_dataset import FSDataset

    t0 = time.perf_counter()
    folder = os.path.abspath(a.input)
    paths = FSDataset(data_folder=folder, verbose=False).index
    with multiprocessing.Pool(a.threads, initializer=_screen_init, initargs=(folder,)) as pool:
        results = list(pool.imap_unordered(_screen_one, paths, chunksize=4))
    bad = {p: e for p, e in results if e}
    keep = [p for p in paths if p not in bad]
    screen = {"keep": keep, "excluded": [{"path": p, "error": e} for p, e in sorted(bad.items())]}
    out = Path(work) / "prescreen.json"
    out.write_text(json.dumps(screen, indent=1))
    return ["--filepaths", str(out)], {"prescreen_seconds": round(time.perf_counter() - t0, 3)}


def add_args(p) -> None:
    p.add_argument("--prescreen", action="store_true",
                   help="exclude files CleanVision's per-image code raises on (untimed) first")
    p.add_argument("--filepaths", help=argparse_suppress())


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(common.main("cleanvision", child, add_args=add_args, prepare=prepare,
                         extra_env={"MPLCONFIGDIR": str(VENV / ".mplconfig")}))
