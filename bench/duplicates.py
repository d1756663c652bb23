"""Near-duplicate finding on the planted-duplicate corpus: pair-level precision and recall, viscurate
next to imagededup, fastdup and CleanVision (each in its own venv, telemetry off; bash bench/setup_peers.sh).

    python bench/duplicates.py                       # every tool; a table + bench/results/duplicates-<date>.json
    python bench/duplicates.py --tools viscurate     # only ours
    python bench/duplicates.py --set edits           # the edits users make, on GCompris photos (issue 16)
    python bench/duplicates.py --set small-fashion   # 28 x 28 garments and their edited copies (small-mnist: digits)

The corpus (tests/fixtures/planted_duplicates.py, a copy of the team's shared/corpus script): 200 images
built deterministically from the photos inside scikit-image and scikit-learn, 40 groups holding 60 known
duplicate pairs (exact copies, half size, JPEG quality 25, 90% crops, +30% brightness, blur 1.5,
mirror) and tiles of the same photos as hard negatives. A tool's pairs are every pair of files it puts
together (pairs it reports, or every pair inside a group it reports); precision = planted pairs among
them, recall = planted pairs found.

``--set edits`` (bench/planted_edits.py): ~600 images from GCompris's photos, each edited the way people
edit photos (letterbox/pillarbox bars, captions, watermarks, crops with another edit, mirror, 90/180/270
degree turns, screenshots, and the edits above), with different photos of the same kind and small tiles as
hard negatives. The set is split by photo into a tuning half and a test half: scores are given per half
(a predicted pair counts in a half when one of its files is there) and recall per edit.

viscurate is timed per step (ingest, which computes the hashes; embed, the embeddings; duplicates) and
runs twice: with its default rules (hashes + embeddings) and with hashes only.

``--set small-mnist`` / ``small-fashion`` (bench/planted_small.py): 1,000 28 x 28 digits or garments, a third
of them with one edited copy (JPEG, resize, brightness, contrast, blur, crops, mirror, a turn); the other
digits of a class are the hard negatives. The small-picture rule was tuned on the digits: the garments are
the measure.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))
GENERATORS = {"planted": [ROOT / "tests" / "fixtures" / "planted_duplicates.py"], "edits": [BENCH / "planted_edits.py"],
              "small-mnist": [BENCH / "planted_small.py", "{out}", "mnist"],
              "small-fashion": [BENCH / "planted_small.py", "{out}", "fashion_mnist"]}
PEERS = {  # tool -> (venv, runner, extra args)
    "imagededup-phash": ("imagededup", "dups_imagededup.py", ["--method", "phash", "--max-distance", "10"]),
    "imagededup-dhash": ("imagededup", "dups_imagededup.py", ["--method", "dhash", "--max-distance", "10"]),
    "fastdup": ("fastdup", "dups_fastdup.py", ["--min-similarity", "0.9"]),
    "cleanvision": ("cleanvision", "dups_cleanvision.py", []),
}


def score(pairs, truth, gt: dict | None = None) -> dict:
    """Pair-level precision and recall; with the edits set's ground truth, also per half and per edit."""
    predicted = {frozenset(p) for p in pairs if len(set(p)) == 2}
    tp = len(predicted & truth)
    out = {"pairs": len(predicted), "true_pairs": tp,
           "precision": round(tp / len(predicted), 3) if predicted else None,
           "recall": round(tp / len(truth), 3)}
    if gt and "half" in gt:
        for h in ("tune", "test"):
            t = {p for p in truth if all(gt["half"][f] == h for f in p)}
            pr = {p for p in predicted if any(gt["half"].get(f) == h for f in p)}
            hit = len(pr & t)
            out[h] = {"precision": round(hit / len(pr), 3) if pr else None, "recall": round(hit / len(t), 3)}
        per: dict[str, list[int]] = {}
        for p in truth:
            a, b = sorted(p)
            if gt["half"][a] != "test":  # per edit: the held-out half only
                continue
            edit = gt["edits"][f"{a}|{b}"]
            edit = "copy+copy" if "+" in edit else edit
            n = per.setdefault(edit, [0, 0])
            n[0] += p in predicted
            n[1] += 1
        out["per_edit"] = {e: f"{a}/{b}" for e, (a, b) in sorted(per.items())}
    elif gt and "edits" in gt:  # the small sets: every pair is held out from nothing but its set
        per = {}
        for p in truth:
            a, b = sorted(p)
            n = per.setdefault(gt["edits"].get(f"{a}|{b}") or gt["edits"].get(f"{b}|{a}"), [0, 0])
            n[0] += p in predicted
            n[1] += 1
        out["per_edit"] = {e: f"{a}/{b}" for e, (a, b) in sorted(per.items())}
    return out


def run_viscurate(images: Path, home: Path, truth, gt: dict | None = None) -> list[dict]:
    import viscurate

    ds = viscurate.Dataset.create("planted", home)
    t = time.perf_counter()
    ds.add_images(images, progress=False)
    t_ingest = time.perf_counter() - t
    t = time.perf_counter()
    ds.embed(progress=False)
    t_embed = time.perf_counter() - t
    names = {d["_id"]: os.path.basename(d["filepath"])
             for d in ds.find({}, projection={"filepath": 1}, page_size=10_000)["results"]}
    rows = []
    for label, model, steps in (("viscurate (hashes + embeddings, defaults)", None, t_ingest + t_embed),
                                ("viscurate (hashes only)", False, t_ingest)):
        t = time.perf_counter()
        report = ds.find_duplicates(model=model)
        t_dups = time.perf_counter() - t
        pairs = [tuple(names[i] for i in p) for p in report.pairs()]
        rows.append({"tool": label, "version": viscurate.__version__ if hasattr(viscurate, "__version__") else "",
                     **score(pairs, truth, gt), "seconds": round(steps + t_dups, 2),
                     "detail": f"ingest {t_ingest:.1f} s" + (f", embed {t_embed:.1f} s" if model is None else "")
                               + f", duplicates {t_dups:.2f} s"})
    return rows


def run_peer(name: str, images: Path, work: Path, truth, gt: dict | None = None) -> dict:
    venv, runner, extra = PEERS[name]
    py = BENCH / ".venvs" / venv / "bin" / "python"
    if not py.exists():
        return {"tool": name, "status": f"not installed: bash bench/setup_peers.sh ({venv})"}
    proc = subprocess.run([str(py), str(BENCH / "peers" / runner), str(images), str(work / name), *extra],
                          capture_output=True, text=True, timeout=3600)
    try:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"tool": name, "status": "crashed", "error": (proc.stderr or proc.stdout)[-400:]}
    if res.get("status") != "ok":
        return {"tool": name, "status": res.get("status"), "error": res.get("error")}
    return {"tool": f"{name} {res.get('version')}", "mode": res.get("mode"),
            **score([tuple(p) for p in res.get("pairs", [])], truth, gt), "seconds": res.get("seconds"),
            "peak_rss_mb": res.get("peak_rss_mb")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tools", default="viscurate," + ",".join(PEERS))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", choices=sorted(GENERATORS), default="planted",
                    help="planted: the scikit-image/scikit-learn set; edits: GCompris photos edited (issue 16); "
                         "small-mnist, small-fashion: 28 x 28 pictures and their edited copies")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="vc-bench-dups-") as tmp:
        tmp = Path(tmp)
        script, *extra = GENERATORS[args.set]
        extra = [a.format(out=tmp / "corpus") for a in extra] or [str(tmp / "corpus")]
        subprocess.run([sys.executable, str(script), *extra], check=True, capture_output=True)
        gt = json.loads((tmp / "corpus" / "ground_truth.json").read_text())
        truth = {frozenset(p) for p in gt["dup_pairs"]}
        images = tmp / "corpus" / "images"
        rows: list[dict] = []
        for tool in tools:
            print(f"running {tool}...", file=sys.stderr, flush=True)
            if tool == "viscurate":
                rows += run_viscurate(images, tmp / "home", truth, gt)
            elif tool in PEERS:
                rows.append(run_peer(tool, images, tmp / "work", truth, gt))
            else:
                raise SystemExit(f"unknown tool {tool!r}; choose from viscurate, {', '.join(PEERS)}")
    keys = ["tool", "pairs", "true_pairs", "precision", "recall", "seconds"]
    if args.set == "edits":
        keys[3:5] = ["precision", "recall", "tune P/R", "test P/R"]
        for r in rows:
            for h in ("tune", "test"):
                if h in r:
                    r[f"{h} P/R"] = f"{r[h]['precision']} / {r[h]['recall']}"
    print(f"\nplanted duplicates ({args.set}): {gt['n_images']} images, {len(truth)} planted pairs\n")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, r.get("status", ""))) if k != "tool" else r["tool"] for k in keys) + " |")
    edits = sorted({e for r in rows for e in r.get("per_edit", {})})
    if edits:
        tools = [r for r in rows if "per_edit" in r]
        where = "on the test half" if args.set == "edits" else "(all pairs)"
        print(f"\nrecall per edit {where} (found / planted pairs; copy+copy: two copies of one photo)\n")
        print("| edit | " + " | ".join(r["tool"] for r in tools) + " |")
        print("|---|" + "---|" * len(tools))
        for e in edits:
            print(f"| {e} | " + " | ".join(r["per_edit"].get(e, "") for r in tools) + " |")
    suffix = "" if args.set == "planted" else f"-{args.set}"
    out = args.out or BENCH / "results" / f"duplicates{suffix}-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                               "set": args.set,
                               "images": gt["n_images"], "planted_pairs": len(truth), "rows": rows}, indent=1))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
