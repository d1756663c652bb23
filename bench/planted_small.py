"""A planted near-duplicate set of *small pictures*: 28 x 28 digits (MNIST test) or garments (Fashion-MNIST
test), where a perceptual hash sees little but a glyph on a plain ground.

    python bench/planted_small.py OUT mnist           # OUT/images/* and OUT/ground_truth.json (deterministic)
    python bench/planted_small.py OUT fashion_mnist --n 1000

A stratified ``--n`` of the set's test images (``bench/labeled_sets.py``) are the originals; every third gets
one edited copy, the edits in turn: JPEG quality 30, twice the size, 20 x 20, +30% brightness, 70% contrast,
a blur, crops keeping 85% and 70% of the area (the second resized back), a mirror and a 90-degree turn.
The other originals are the hard negatives: many digits of one class are as alike to a hash as copies.
The small-picture thresholds (``DuplicateRules.small_*``) were chosen on MNIST; Fashion-MNIST is the set
they are measured on.

``ground_truth.json``: ``n_images``, ``groups`` (original first), ``dup_pairs``, ``edits`` (pair -> edit).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labeled_sets import load, stratified  # noqa: E402


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


EDITS = {
    "jpeg30": lambda im: _jpeg(im, 30),
    "double": lambda im: im.resize((56, 56), Image.BICUBIC),
    "shrunk20": lambda im: im.resize((20, 20), Image.LANCZOS),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast70": lambda im: ImageEnhance.Contrast(im).enhance(0.7),
    "blur": lambda im: im.filter(ImageFilter.GaussianBlur(0.7)),
    "crop85": lambda im: im.crop((1, 1, 27, 27)),
    "crop70+resize": lambda im: im.crop((2, 1, 26, 25)).resize((28, 28), Image.BICUBIC),
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "turn90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
}


def build(out: Path, name: str, n: int = 1000, seed: int = 0) -> dict:
    """Write ``out/images`` and ``out/ground_truth.json``; return the ground truth."""
    x, y = load(name)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    groups, pairs, edits = [], [], {}
    kinds = list(EDITS)
    for m, i in enumerate(stratified(y, n, seed).tolist()):
        original = f"{i:05d}.png"
        im = Image.fromarray(x[i])
        im.save(images / original)
        if m % 3:
            continue
        kind = kinds[(m // 3) % len(kinds)]
        copy = f"{i:05d}-{kind}.png"
        EDITS[kind](im).save(images / copy)
        groups.append([{"file": original, "kind": "original"}, {"file": copy, "kind": kind}])
        pairs.append([original, copy])
        edits[f"{original}|{copy}"] = kind
    truth = {"n_images": len(list(images.iterdir())), "set": name, "groups": groups, "dup_pairs": pairs,
             "edits": edits}
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("set", choices=("mnist", "fashion_mnist"))
    ap.add_argument("--n", type=int, default=1000, help="originals, stratified (default %(default)s)")
    args = ap.parse_args(argv)
    truth = build(args.out, args.set, args.n)
    print(f"{truth['n_images']} images, {len(truth['dup_pairs'])} planted pairs in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
