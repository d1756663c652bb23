"""Deterministic synthetic sample documents shaped like the ones viscurate stores.

    from synthetic import generate_chunks
    for chunk in generate_chunks(n=1_000_000, seed=0):   # lists of CHUNK dicts
        ...

Document ``i`` depends only on (seed, i // CHUNK) and its position in the chunk, so the same
seed gives the same documents whatever N is (document i is the same in a 20k and a 1M run).
Standard library only.

Distributions (meant to look like a real detection dataset after ingest + a detector pass):
* resolutions from a mix of common camera / web / dataset sizes, 5 % arbitrary sizes;
* format: JPEG 72 %, PNG 18 %, WEBP 5 %, GIF 2 %, TIFF 2 %, BMP 1 %; size_bytes follows w*h*format;
* quality: blur ~ lognormal (median ~245), brightness ~ N(118, 38), entropy mostly ~7 bits;
  ``issues`` derived from the quality values with the usual thresholds, 0.3 % corrupt files
  (which have no width/height/format/quality/phash, only ``issues: ["corrupt"]`` and ``error``);
* split train/val/test 70/15/10, missing on 5 %; tags: independent per tag (reviewed 30 %, ...),
  the field missing on 15 %;
* object_analysis_processed: True 85 %, False 10 %, missing 5 %; when True, 0..20 objects
  (geometric, mean ~3.5), COCO class names with a Zipf(1.1) skew (person >> car > chair > ...),
  confidence skewed high, bbox [x, y, w, h] in pixels, per-object label_quality_estimation;
* metadata (free-form, undeclared in viscurate's schema): camera (Zipf over 24), site 1..40 on
  90 %, plus an operator on some and a note on a few.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Iterator

CHUNK = 10_000

COCO = [
    "person", "car", "chair", "book", "bottle", "cup", "dining table", "bowl", "traffic light",
    "handbag", "umbrella", "bird", "boat", "truck", "bench", "sheep", "banana", "kite",
    "motorcycle", "backpack", "potted plant", "cow", "wine glass", "carrot", "donut", "clock",
    "bicycle", "cell phone", "tv", "vase", "orange", "broccoli", "pizza", "skis", "cake",
    "horse", "knife", "couch", "surfboard", "sports ball", "spoon", "bus", "dog", "tie",
    "elephant", "remote", "laptop", "keyboard", "zebra", "giraffe", "teddy bear", "sink",
    "oven", "cat", "train", "bed", "skateboard", "suitcase", "baseball glove", "fork", "airplane",
    "sandwich", "apple", "frisbee", "snowboard", "baseball bat", "mouse", "toilet", "tennis racket",
    "fire hydrant", "refrigerator", "stop sign", "hot dog", "bear", "microwave", "parking meter",
    "toothbrush", "scissors", "hair drier", "toaster",
]
CLASS_WEIGHTS = [1.0 / (r + 1) ** 1.1 for r in range(len(COCO))]

RESOLUTIONS = [
    ((640, 480), 15), ((1280, 720), 15), ((1920, 1080), 20), ((4032, 3024), 10), ((3024, 4032), 5),
    ((1024, 768), 5), ((512, 512), 5), ((224, 224), 3), ((800, 600), 5), ((2048, 1536), 4),
    ((1080, 1920), 4), ((3840, 2160), 4),
]
RES_SIZES = [r for r, _ in RESOLUTIONS]
RES_WEIGHTS = [w for _, w in RESOLUTIONS]

FORMATS = [("JPEG", "jpg", 0.25, 72), ("PNG", "png", 1.5, 18), ("WEBP", "webp", 0.15, 5),
           ("GIF", "gif", 0.5, 2), ("TIFF", "tif", 3.0, 2), ("BMP", "bmp", 3.0, 1)]
FMT_WEIGHTS = [f[3] for f in FORMATS]

TAGS = [("reviewed", 0.30), ("needs_review", 0.08), ("outdoor", 0.25), ("indoor", 0.20),
        ("night", 0.05), ("day", 0.20), ("synthetic", 0.02), ("crowd", 0.03), ("hard", 0.04),
        ("flagged", 0.01)]
CAMERAS = [f"cam-{k:02d}" for k in range(1, 25)]
CAM_WEIGHTS = [1.0 / (r + 1) for r in range(len(CAMERAS))]
OPERATORS = ["alice", "bob", "carol", "dave", "erin"]

EPOCH = dt.datetime(2019, 1, 1)
SPAN_S = 6 * 365 * 86400


def _hex(rng: random.Random, nbits: int) -> str:
    return format(rng.getrandbits(nbits), f"0{nbits // 4}x")


def make_doc(rng: random.Random, i: int) -> dict:
    r = rng.random
    if r() < 0.05:
        w, h = rng.randint(32, 6000), rng.randint(32, 6000)
    else:
        w, h = rng.choices(RES_SIZES, RES_WEIGHTS)[0]
    fmt, ext, bpp, _ = rng.choices(FORMATS, FMT_WEIGHTS)[0]
    split = rng.choices(["train", "val", "test", None], [70, 15, 10, 5])[0]
    corrupt = r() < 0.003

    doc: dict = {"_id": format(0x5F000000 + i, "08x") + _hex(rng, 64)}
    doc["filepath"] = f"/data/{split or 'unsorted'}/img_{i:07d}.{ext}"
    doc["source"] = "local" if r() < 0.9 else "s3"
    ts = EPOCH + dt.timedelta(seconds=rng.randrange(SPAN_S))
    doc["datetime"] = ts.isoformat()
    doc["type"] = "image"
    size_bytes = int(w * h * bpp * rng.lognormvariate(0.0, 0.4)) + 200
    if not corrupt:
        doc["width"] = w
        doc["height"] = h
        doc["format"] = fmt
    doc["size_bytes"] = size_bytes
    doc["hash"] = _hex(rng, 256)
    issues: list[str] = []
    if corrupt:
        issues.append("corrupt")
        doc["error"] = rng.choice(["truncated file", "cannot identify image file",
                                   "decompression bomb"])
    else:
        doc["phash"] = _hex(rng, 64)
        blur = round(rng.lognormvariate(5.5, 1.2), 3)
        brightness = round(min(255.0, max(0.0, rng.gauss(118, 38))), 3)
        contrast = round(min(1.0, max(0.0, rng.gauss(0.55, 0.15))), 4)
        entropy = round(min(8.0, max(0.0, 8.0 - rng.lognormvariate(-0.2, 0.7))), 4)
        gray = r() < 0.04
        ar = round(w / h, 4)
        doc["quality"] = {"blur": blur, "brightness": brightness, "contrast": contrast,
                          "entropy": entropy, "grayscale": gray, "aspect_ratio": ar}
        if brightness < 35:
            issues.append("dark")
        if brightness > 225:
            issues.append("bright")
        if blur < 40:
            issues.append("blurry")
        if entropy < 4.5:
            issues.append("low_information")
        if gray:
            issues.append("grayscale")
        if ar > 2.2 or ar < 0.45:
            issues.append("odd_aspect_ratio")
        if w * h < 64 * 64 or r() < 0.01:
            issues.append("odd_size")
    doc["issues"] = issues
    if split is not None:
        doc["split"] = split
    if r() >= 0.15:
        doc["tags"] = [t for t, p in TAGS if r() < p]

    state = rng.choices([True, False, None], [85, 10, 5])[0]
    if corrupt:
        state = False
    if state is not None:
        doc["object_analysis_processed"] = state
    if state:
        n = 0
        while n < 20 and r() > 0.22:
            n += 1
        names = rng.choices(COCO, CLASS_WEIGHTS, k=n)
        objs = []
        for name in names:
            bw = w * rng.uniform(0.02, 0.6)
            bh = h * rng.uniform(0.02, 0.6)
            objs.append({
                "name": name,
                "confidence": round(0.05 + 0.95 * rng.betavariate(2.5, 1.2), 4),
                "bbox": [round(rng.uniform(0, w - bw), 1), round(rng.uniform(0, h - bh), 1),
                         round(bw, 1), round(bh, 1)],
                "label_quality_estimation": round(rng.betavariate(5, 1.5), 4),
            })
        doc["object_analysis"] = objs
        if objs:
            doc["label_quality_estimation"] = round(
                sum(o["label_quality_estimation"] for o in objs) / len(objs), 4)
    if r() < 0.9:
        md: dict = {"camera": rng.choices(CAMERAS, CAM_WEIGHTS)[0], "site": rng.randint(1, 40)}
        if r() < 0.2:
            md["operator"] = rng.choice(OPERATORS)
        if r() < 0.05:
            md["note"] = rng.choice(["re-shoot", "lens smudge", "customer sample", "calibration"])
        doc["metadata"] = md
    return doc


def generate_chunk(seed: int, chunk_index: int, start: int, stop: int) -> list[dict]:
    rng = random.Random((seed << 32) ^ chunk_index)
    return [make_doc(rng, i) for i in range(start, stop)]


def generate_chunks(n: int, seed: int = 0, chunk: int = CHUNK) -> Iterator[list[dict]]:
    if chunk != CHUNK:
        raise ValueError("chunk size is part of the determinism contract; use CHUNK")
    for c, start in enumerate(range(0, n, chunk)):
        yield generate_chunk(seed, c, start, min(n, start + chunk))
