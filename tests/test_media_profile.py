"""viscurate.media: every profile field of real photos checked against an independent computation.

The photos are the ones bundled inside installed packages (scikit-image's ``data`` folder,
scikit-learn's ``datasets/images``); nothing is downloaded. "Independent" means another decoder
(OpenCV when installed, else Pillow without draft mode), another resampler (OpenCV's INTER_AREA)
and other implementations of the measures (cv2.Laplacian / scipy.ndimage, skimage's entropy,
imagehash, hashlib).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from pathlib import Path

import imagehash
import numpy as np
import pytest
import skimage
import sklearn
from PIL import Image, ImageOps
from scipy import ndimage
from skimage.measure import shannon_entropy

from viscurate.media import (
    QualityThresholds,
    decode_image,
    dhash,
    hamming,
    phash,
    phash_flip,
    profile_bytes,
    profile_file,
)
from viscurate.media.small import small_size

try:
    import cv2
except ImportError:  # pragma: no cover - opencv is in the test extra; fall back to Pillow
    cv2 = None

SK = Path(os.path.dirname(skimage.__file__)) / "data"
SL = Path(os.path.dirname(sklearn.__file__)) / "datasets" / "images"

#: Real photos (colour and grey, PNG and JPEG, sizes that need 1x, 2x and non-integer downscales).
PHOTOS = [
    p
    for p in [
        SK / "astronaut.png",
        SK / "chelsea.png",
        SK / "coffee.png",
        SK / "camera.png",
        SK / "rocket.jpg",
        SK / "retina.jpg",
        SK / "motorcycle_left.png",
        SL / "china.jpg",
        SL / "flower.jpg",
    ]
    if p.exists()
]
COLOUR = [p for p in PHOTOS if p.name != "camera.png"]
KEYS = ["type", "width", "height", "format", "mode", "frames", "size_bytes", "hash", "phash", "dhash",
        "phash_flip", "phash_trim", "phash_turns", "histogram", "quality", "exif", "issues", "error"]

pytestmark = pytest.mark.skipif(len(PHOTOS) < 5, reason="bundled photos of scikit-image/scikit-learn missing")


def _ids(paths):
    return [p.name for p in paths]


@pytest.fixture(scope="module")
def docs():
    return {p: profile_file(p) for p in PHOTOS}


def independent_rgb(path: Path) -> np.ndarray:
    """Full-resolution upright RGB pixels, decoded without viscurate (OpenCV if available)."""
    if cv2 is not None:
        a = cv2.imread(str(path), cv2.IMREAD_COLOR)  # applies EXIF orientation itself
        if a is not None:
            return cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def area_resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if cv2 is not None:
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def independent_small(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(small RGB, small grey) made independently: full decode, area downscale, BT.601 luma."""
    rgb = independent_rgb(path)
    h, w = rgb.shape[:2]
    small = area_resize(rgb, small_size(w, h))
    grey = np.round(small @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)
    return small, grey


# --------------------------------------------------------------------------------------------------
# document shape


@pytest.mark.parametrize("path", PHOTOS, ids=_ids(PHOTOS))
def test_document_shape_and_types(docs, path):
    doc = docs[path]
    assert list(doc) == [k for k in KEYS if k in doc], "keys out of the schema's order"
    assert {"type", "width", "height", "format", "mode", "frames", "size_bytes", "hash", "phash", "dhash",
            "phash_flip", "histogram", "quality", "issues"} <= set(doc)
    assert "error" not in doc and "corrupt" not in doc["issues"]
    assert doc["type"] == "image"
    for k in ("width", "height", "frames", "size_bytes"):
        assert type(doc[k]) is int
    for k in ("phash", "dhash", "phash_flip"):
        assert len(doc[k]) == 16 and set(doc[k]) <= set("0123456789abcdef")
    q = doc["quality"]
    assert list(q) == ["blur", "brightness", "contrast", "entropy", "grayscale", "aspect_ratio"]
    assert all(type(q[k]) is float for k in q if k != "grayscale") and type(q["grayscale"]) is bool
    h = doc["histogram"]
    assert h["bins"] == 16 and all(len(h[c]) == 16 and all(type(x) is float for x in h[c]) for c in "rgb")
    assert all(abs(sum(h[c]) - 1) < 1e-4 for c in "rgb")
    assert all(isinstance(i, str) for i in doc["issues"])
    assert json.loads(json.dumps(doc)) == doc  # plain JSON types only
    assert not any(v is None for v in doc.values())


@pytest.mark.parametrize("path", PHOTOS, ids=_ids(PHOTOS))
def test_bytes_and_header_fields(docs, path):
    doc = docs[path]
    data = path.read_bytes()
    assert doc["hash"] == hashlib.sha256(data).hexdigest()
    assert doc["size_bytes"] == len(data) == path.stat().st_size
    ref = Image.open(path)
    assert doc["format"] == ref.format and doc["mode"] == ref.mode and doc["frames"] == 1
    assert (doc["width"], doc["height"]) == ImageOps.exif_transpose(ref).size
    if cv2 is not None:
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert (doc["width"], doc["height"]) == (a.shape[1], a.shape[0])
    assert doc["quality"]["aspect_ratio"] == pytest.approx(doc["width"] / doc["height"], abs=1e-5)
    assert profile_bytes(data) == doc  # same bytes, same profile, whichever entry point


# --------------------------------------------------------------------------------------------------
# pixel measures


@pytest.mark.parametrize("path", PHOTOS, ids=_ids(PHOTOS))
def test_measures_exact_on_the_small_image(docs, path):
    """The formulas, checked with other implementations on the very same small image."""
    doc = docs[path]
    small = decode_image(path.read_bytes()).small
    assert max(small.size) == 256 and small.size == small_size(doc["width"], doc["height"])
    grey = np.asarray(small.convert("L"), dtype=np.float64)
    lap = ndimage.laplace(grey)[1:-1, 1:-1]  # the 4-neighbour kernel, valid region
    q = doc["quality"]
    assert q["blur"] == pytest.approx(lap.var(), rel=1e-6)
    if cv2 is not None:
        assert q["blur"] == pytest.approx(cv2.Laplacian(grey, cv2.CV_64F, ksize=1)[1:-1, 1:-1].var(), rel=1e-6)
    assert q["brightness"] == pytest.approx(grey.mean() / 255, abs=1e-5)
    assert q["contrast"] == pytest.approx(grey.std() / 255, abs=1e-5)
    assert q["entropy"] == pytest.approx(shannon_entropy(grey.astype(np.uint8), base=2), abs=1e-5)
    rgb = np.asarray(small.convert("RGB"))
    for i, c in enumerate("rgb"):
        ref = np.histogram(rgb[..., i], bins=16, range=(0, 256))[0] / rgb[..., i].size
        assert np.allclose(doc["histogram"][c], ref, atol=2e-6)


@pytest.mark.parametrize("path", PHOTOS, ids=_ids(PHOTOS))
def test_measures_against_independent_pipeline(docs, path):
    """End to end: another decoder and an area resampler give (nearly) the same numbers."""
    doc = docs[path]
    small, grey = independent_small(path)
    for i, c in enumerate("rgb"):
        ref = np.histogram(small[..., i], bins=16, range=(0, 256))[0] / small[..., i].size
        assert np.abs(np.array(doc["histogram"][c]) - ref).sum() < 0.06, c  # L1 distance
    q = doc["quality"]
    g = grey.astype(np.float64)
    assert q["brightness"] == pytest.approx(g.mean() / 255, abs=0.01)
    assert q["contrast"] == pytest.approx(g.std() / 255, abs=0.01)
    assert q["entropy"] == pytest.approx(shannon_entropy(grey, base=2), abs=0.1)
    blur = ndimage.laplace(g)[1:-1, 1:-1].var()
    # Pillow's BOX at a non-integer scale averages whole pixels where INTER_AREA weights partial
    # ones, so sharpness agrees exactly at 2x and within a factor ~1.6 otherwise.
    w, h = doc["width"], doc["height"]
    if w == 2 * small.shape[1] and h == 2 * small.shape[0] and doc["format"] != "JPEG":
        assert q["blur"] == pytest.approx(blur, rel=0.02)
    else:
        assert blur / 1.6 < q["blur"] < blur * 1.6


def test_grey_photo_is_grayscale_and_colour_photos_are_not(docs):
    cam = SK / "camera.png"
    if cam in docs:
        assert docs[cam]["quality"]["grayscale"] is True and "grayscale" in docs[cam]["issues"]
        h = docs[cam]["histogram"]
        assert h["r"] == h["g"] == h["b"]
    for p in COLOUR:
        assert docs[p]["quality"]["grayscale"] is False, p.name


def test_sharp_photos_have_no_quality_issue(docs):
    for p in (SK / "astronaut.png", SK / "coffee.png", SL / "china.jpg"):
        if p in docs:
            assert docs[p]["issues"] == [], (p.name, docs[p]["issues"])


# --------------------------------------------------------------------------------------------------
# hashes


@pytest.mark.parametrize("path", PHOTOS, ids=_ids(PHOTOS))
def test_hashes_are_imagehash_on_the_small_image(path):
    """Same definition and bit order as imagehash: identical hex on the same pixels."""
    small = decode_image(path.read_bytes()).small
    assert phash(small) == str(imagehash.phash(small))
    assert dhash(small) == str(imagehash.dhash(small))


@pytest.mark.parametrize("path", PHOTOS, ids=_ids(PHOTOS))
def test_hashes_close_to_imagehash_on_the_full_image(docs, path):
    """Computed on the 256 px image instead of the full one: a few bits may differ.

    Bound: a coefficient (pHash) or a neighbour difference (dHash) that is within resampling noise
    of its threshold can flip. Measured on ~400 images of the real corpus, 99% of pHashes are within
    4 bits and of dHashes within 4 bits; on these photos the maximum is 4 (pHash) and 10 (dHash of
    the near-uniform brick texture). 8 bits of 64 is still far below the ~32 of unrelated images.
    """
    doc = docs[path]
    full = ImageOps.exif_transpose(Image.open(path))
    assert hamming(doc["phash"], str(imagehash.phash(full))) <= 6
    assert hamming(doc["dhash"], str(imagehash.dhash(full))) <= 8


@pytest.mark.parametrize("path", COLOUR, ids=_ids(COLOUR))
def test_phash_flip_is_mirror_invariant(docs, path):
    doc = docs[path]
    mirrored = ImageOps.mirror(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    buf = io.BytesIO()
    mirrored.save(buf, "BMP")  # uncompressed: fast to write and to read
    m = profile_bytes(buf.getvalue())
    assert hamming(doc["phash_flip"], m["phash_flip"]) <= 2
    assert hamming(doc["phash"], m["phash"]) >= 16  # the plain pHash does see the mirror


def test_phash_flip_definition():
    """Mirroring negates exactly the odd horizontal frequencies of the DCT block."""
    from viscurate.media.hashes import dct_block

    small = decode_image((SK / "astronaut.png").read_bytes()).small
    a = dct_block(small)
    b = dct_block(ImageOps.mirror(small))
    sign = np.where(np.arange(8) % 2 == 1, -1.0, 1.0)[None, :]
    assert np.allclose(b, a * sign, atol=1e-6 * np.abs(a).max() + 1e-3)
    assert phash_flip(small) == phash_flip(ImageOps.mirror(small))


def test_unrelated_photos_have_distant_hashes(docs):
    hs = [docs[p]["phash"] for p in COLOUR]
    d = [hamming(a, b) for i, a in enumerate(hs) for b in hs[i + 1:]]
    assert min(d) >= 14 and np.mean(d) > 24


# --------------------------------------------------------------------------------------------------
# big JPEGs: draft decoding, orientation


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory):
    """A 2048x1536 JPEG of a real photo with EXIF orientation 6 (so the upright image is 1536x2048)."""
    im = Image.open(SK / "astronaut.png").convert("RGB").resize((2048, 1536), Image.Resampling.LANCZOS)
    ex = Image.Exif()
    ex[0x0112] = 6
    p = tmp_path_factory.mktemp("big") / "big.jpg"
    im.save(p, "JPEG", quality=90, exif=ex)
    return p


def test_big_jpeg_is_draft_decoded_upright(big_jpeg):
    data = big_jpeg.read_bytes()
    d = decode_image(data)
    assert (d.width, d.height) == (1536, 2048) and d.small.size == (192, 256)
    doc = profile_bytes(data)
    assert (doc["width"], doc["height"]) == (1536, 2048) and doc["exif"] == {"orientation": 6}
    upright = ImageOps.exif_transpose(Image.open(big_jpeg))
    assert upright.size == (1536, 2048)
    assert hamming(doc["phash"], str(imagehash.phash(upright))) <= 6
    assert hamming(doc["dhash"], str(imagehash.dhash(upright))) <= 8
    small, grey = independent_small(big_jpeg)
    assert small.shape[:2] == (256, 192)
    assert doc["quality"]["brightness"] == pytest.approx(grey.mean() / 255, abs=0.01)
    for i, c in enumerate("rgb"):
        ref = np.histogram(small[..., i], bins=16, range=(0, 256))[0] / small[..., i].size
        assert np.abs(np.array(doc["histogram"][c]) - ref).sum() < 0.06


# --------------------------------------------------------------------------------------------------
# thresholds


def test_thresholds_are_frozen_documented_and_configurable(docs):
    t = QualityThresholds()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.dark = 0.5  # type: ignore[misc]
    with pytest.raises(ValueError):
        QualityThresholds(blurry=float("nan"))
    astro = SK / "astronaut.png"
    assert docs[astro]["issues"] == []
    doc = profile_file(astro, thresholds=QualityThresholds(dark=0.9, blurry=1e9, odd_aspect_ratio=1.0,
                                                           odd_size_min_side=1000))
    assert doc["issues"] == ["dark", "blurry", "odd_size"]
    assert doc["quality"] == docs[astro]["quality"]  # thresholds never change the measures
    # square: min(ar, 1/ar) == 1.0 is not < 1.0; blurry is not reported with low_information
    doc = profile_file(astro, thresholds=QualityThresholds(blurry=1e9, low_information=7.9))
    assert doc["issues"] == ["low_information"]
    doc = profile_file(astro, thresholds=QualityThresholds(bright=0.1, grayscale_tolerance=255))
    assert "bright" in doc["issues"] and "grayscale" in doc["issues"]


def test_every_threshold_field_is_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "profile.md").read_text()
    for f in dataclasses.fields(QualityThresholds):
        assert f"`{f.name}`" in doc, f.name
        assert str(f.default) in doc, (f.name, f.default)


# --------------------------------------------------------------------------------------------------
# file access


def test_too_large_is_not_read_nor_hashed(tmp_path):
    p = tmp_path / "big.jpg"
    p.write_bytes((SL / "china.jpg").read_bytes() if (SL / "china.jpg").exists() else (SK / "rocket.jpg").read_bytes())
    size = p.stat().st_size
    doc = profile_file(p, max_bytes=size - 1)
    assert doc["issues"][:2] == ["corrupt", "too_large"] and "hash" not in doc
    assert doc["size_bytes"] == size and doc["error"].startswith("too_large")
    ref = Image.open(p)
    assert (doc["width"], doc["height"], doc["format"]) == (*ref.size, ref.format)  # from the header
    assert "phash" not in doc and "quality" not in doc
    assert "corrupt" not in profile_file(p, max_bytes=size)["issues"]


def test_unreadable_paths(tmp_path):
    for p in (tmp_path / "missing.jpg", tmp_path):
        doc = profile_file(p)
        assert doc["issues"] == ["corrupt", "unreadable"] and doc["error"].startswith("unreadable")


def test_extension_is_ignored(tmp_path):
    p = tmp_path / "photo.gif"
    p.write_bytes((SK / "coffee.png").read_bytes())
    doc = profile_file(p)
    assert doc["format"] == "PNG" and doc["hash"] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_speed_smoke():
    """Not a benchmark: a 512 px PNG profiles in well under 50 ms on one core."""
    import time

    data = (SK / "astronaut.png").read_bytes()
    profile_bytes(data)
    t = time.perf_counter()
    for _ in range(5):
        profile_bytes(data)
    assert (time.perf_counter() - t) / 5 < 0.05 * max(1.0, float(os.environ.get("VISCURATE_SLOW_FACTOR", "1")))
    assert math.isfinite(t)
