"""Model throughput: images/s of each default model on the CPU (1 and 2 threads), of the whole
`label` stage, and, with --gpu on a machine that has one, of the torch (CLIP) path on the GPU.

    python bench/models.py                 # CPU: every default model (40 real photos) + the label stage (40, 120)
    python bench/models.py --images 80 --stage-images 200 --label-only
    python bench/models.py --gpu-only      # on a GPU machine: CLIP ViT-B/32 image embedding, fp32 and fp16

Photos: JPEGs from ~/.cache/corpus/real (the corpus /work/shared/corpus builds), else the photos bundled
with scikit-image. Images are decoded before timing (model time only) except for the label stage,
which is timed end to end as `viscurate label` runs it (start-up, decode, TTA, every model, quality,
writes; the converted detector already in the model cache, as on every run after the first).
The CLIP model on the GPU has ViT-B/32's architecture with random weights: the same arithmetic as the
real model, so the same speed, without shipping or downloading weights.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def photos(n: int) -> list[Path]:
    corpus = Path(os.environ.get("CORPUS_DIR", Path.home() / ".cache" / "corpus")) / "real"
    found = sorted(p for p in corpus.rglob("*.jpg"))[:: max(1, len(list(corpus.rglob("*.jpg"))) // max(n, 1))] if corpus.exists() else []
    if len(found) < n:
        import skimage
        data = Path(skimage.__file__).parent / "data"
        found += sorted(p for p in data.iterdir() if p.suffix in (".png", ".jpg"))
    return found[:n]


def load_rgb(paths: list[Path], max_side: int = 1024) -> list[np.ndarray]:
    from PIL import Image, ImageOps
    out = []
    for p in paths:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((max_side, max_side))
            out.append(np.asarray(im))
    return out


def timed(fn, repeats: int = 3) -> float:
    """Best of ``repeats`` wall times of fn() (after one warm-up), seconds."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cpu_models(images: list[np.ndarray]) -> list[dict]:
    from viscurate.models import registry
    rows = []
    n = len(images)
    for threads in (1, 2):
        det = registry.get_model("ssd_mobilenet_v2_coco", threads=threads)
        cls = registry.get_model("efficientnet_lite3", threads=threads)
        face = registry.get_model("blazeface", threads=threads)
        pose = registry.get_model("movenet_lightning", threads=threads)
        detections = det.detect(images)
        persons = [[d.bbox for d in ds if d.name == "person"] for ds in detections]
        n_persons = sum(len(p) for p in persons)
        cases = [
            ("detector", det.spec.key, lambda: det.detect(images), n),
            # the label stage's augmented pass: only the classes the plain pass found (here: each image's own)
            ("detector, few classes", det.spec.key,
             lambda: [det.detect([im], classes={d.class_id for d in ds}) for im, ds in zip(images, detections) if ds],
             sum(1 for ds in detections if ds)),
            ("classifier + embedding", cls.spec.key, lambda: cls.classify_and_embed(images), n),
            ("faces", face.spec.key, lambda: face.faces(images), n),
            ("pose (per person box)", pose.spec.key, lambda: [pose.poses(im, b) for im, b in zip(images, persons) if b],
             n_persons),
        ]
        for role, key, fn, count in cases:
            if not count:
                continue
            s = timed(fn)
            rows.append({"model": key, "role": role, "threads": threads, "items": count,
                         "seconds": round(s, 3), "per_s": round(count / s, 1), "ms_each": round(1000 * s / count, 1)})
        registry.close_all()
    return rows


def label_stage(paths: list[Path]) -> dict:
    import viscurate
    home = tempfile.mkdtemp(prefix="vc-bench-models-")
    try:
        folder = Path(home) / "photos"
        folder.mkdir()
        for i, p in enumerate(paths):
            shutil.copy(p, folder / f"{i:04d}{p.suffix}")
        ds = viscurate.Dataset.create("bench", home=home)
        ds.add_images(folder, progress=False)
        t = time.perf_counter()
        report = ds.label(progress=False)
        seconds = time.perf_counter() - t
        out = {"images": len(paths), "seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 2)}
        if hasattr(report, "as_dict"):
            out["report"] = report.as_dict()
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def label_stage_runs(paths: list[Path], repeats: int) -> dict:
    """:func:`label_stage` ``repeats`` times: the median run, with every run's seconds and the range of
    images/s (this machine is shared: single runs vary by 10-20%)."""
    runs = sorted((label_stage(paths) for _ in range(max(1, repeats))), key=lambda r: r["seconds"])
    median = runs[len(runs) // 2]
    rates = [r["images_per_s"] for r in runs]
    return {**median, "range_images_per_s": f"{min(rates)}-{max(rates)}", "runs": [r["seconds"] for r in runs]}


def steady_rate(runs: list[dict]) -> dict | None:
    """The label stage's fixed cost per run (start-up, the last items, the neighbour pass) and its rate after
    it: a least-squares line through (images, seconds) of the median runs; ``None`` with fewer than 2 sizes."""
    if len({r["images"] for r in runs}) < 2:
        return None
    slope, intercept = np.polyfit([r["images"] for r in runs], [r["seconds"] for r in runs], 1)
    return {"fixed_seconds": round(float(intercept), 2), "ms_per_image": round(1000 * float(slope), 1),
            "images_per_s": round(1 / float(slope), 2) if slope > 0 else None}


def gpu_clip(n: int = 2048, batch: int = 256) -> list[dict]:
    import torch
    import transformers
    rows = []
    config = transformers.CLIPConfig()  # ViT-B/32 defaults
    model = transformers.CLIPModel(config).eval()
    pixels = torch.rand(n, 3, 224, 224)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for dtype in (torch.float32, torch.float16):
        if device == "cpu" and dtype == torch.float16:
            continue
        m = model.to(device=device, dtype=dtype)
        with torch.inference_mode():
            def run():
                for i in range(0, n, batch):
                    x = pixels[i:i + batch].to(device=device, dtype=dtype, non_blocking=True)
                    m.get_image_features(pixel_values=x)
                if device == "cuda":
                    torch.cuda.synchronize()
            s = timed(run, repeats=3)
        rows.append({"model": "clip-vit-b32 (random weights)", "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
                     "dtype": str(dtype).replace("torch.", ""), "batch": batch, "images": n,
                     "seconds": round(s, 3), "images_per_s": round(n / s, 1)})
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    print(f"\n{title}")
    print("| " + " | ".join(keys) + " |")
    print("| " + " | ".join("---" for _ in keys) + " |")
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU (torch) measurements")
    ap.add_argument("--skip-label", action="store_true")
    ap.add_argument("--label-only", action="store_true", help="only the whole label stage")
    ap.add_argument("--stage-images", default="40,120,400",
                    help="photos per label-stage run, comma-separated (start-up weighs more on small runs)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="label-stage runs per size; the table shows the median (default %(default)s)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    if args.gpu_only:
        results["gpu"] = gpu_clip()
        print_rows("torch path (CLIP ViT-B/32 image embedding)", results["gpu"])
    else:
        paths = photos(args.images)
        images = load_rgb(paths)
        print(f"{len(images)} photos, mean {statistics.mean(i.shape[0] * i.shape[1] for i in images) / 1e6:.2f} MP "
              f"after capping the longer side at 1024")
        if not args.label_only:
            results["cpu"] = cpu_models(images)
            print_rows("CPU, per model (decoded images; best of 3)", results["cpu"])
        if not args.skip_label:
            sizes = [int(v) for v in args.stage_images.split(",") if v.strip()] or [len(paths)]
            results["label_stage"] = [label_stage_runs(photos(n), args.repeats) for n in sizes]
            print_rows(f"the whole label stage (end to end, 2 cores; median of {args.repeats} runs; model seconds "
                       "summed over both workers, of the median run)",
                       [{**{k: v for k, v in r.items() if k not in ("report", "runs")},
                         "model_seconds": {k: round(v, 1) for k, v in r.get("report", {}).get("model_seconds", {}).items()}}
                        for r in results["label_stage"]])
            steady = steady_rate(results["label_stage"])
            if steady:
                results["label_stage_steady"] = steady
                print(f"\nsteady state (a line through the medians of the sizes): {steady['fixed_seconds']} s of fixed "
                      f"cost per run, then {steady['ms_per_image']} ms per image = {steady['images_per_s']} images/s")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"models-{time.strftime('%Y-%m-%d')}{'-gpu' if args.gpu_only else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
