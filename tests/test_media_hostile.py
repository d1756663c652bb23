"""viscurate.media on hostile files: nothing raises, every failure is named, safety limits hold."""
from __future__ import annotations

import io
import os
import random
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from tests.fixtures.hostile import check_profile, photo, write_hostile_set
from viscurate.media import FAILURE_FLAGS, profile_bytes, profile_file

PIXEL_KEYS = ("phash", "dhash", "phash_flip", "phash_turns", "histogram", "quality")
STRESS = Path(os.path.expanduser("~/.cache/corpus/stress"))


def assert_invariants(doc: dict, where: str = "") -> None:
    """What every profile, good or bad, must satisfy."""
    assert isinstance(doc, dict) and doc.get("type") == "image", where
    assert isinstance(doc.get("issues"), list), where
    assert not any(v is None for v in doc.values()), where
    has_pixels = all(k in doc for k in PIXEL_KEYS)
    if "corrupt" in doc["issues"]:
        assert not any(k in doc for k in PIXEL_KEYS), where
        reasons = [i for i in doc["issues"] if i in FAILURE_FLAGS]
        assert len(reasons) == 1, (where, doc["issues"])
        assert isinstance(doc.get("error"), str) and doc["error"].startswith(reasons[0] + ": "), (where, doc)
    elif "unsupported" in doc["issues"]:  # a valid file in an encoding we cannot decode (decisions, issue 13)
        assert not any(k in doc for k in PIXEL_KEYS), where
        assert isinstance(doc.get("error"), str) and doc["error"].startswith("unsupported: "), (where, doc)
    else:
        assert has_pixels and "error" not in doc, (where, doc)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    expected = write_hostile_set(d)
    docs = {name: profile_file(d / name) for name in expected}
    return d, expected, docs


def test_every_hostile_file_profiles_as_expected(hostile):
    _, expected, docs = hostile
    assert len(expected) >= 30
    failures = {name: errs for name in expected if (errs := check_profile(docs[name], expected[name], docs))}
    assert failures == {}
    for name, doc in docs.items():
        assert_invariants(doc, name)


def test_hostile_set_covers_the_brief(hostile):
    _, expected, _ = hostile
    for name in ["empty.jpg", "text.jpg", "random.png", "truncated.jpg", "truncated.png", "corrupt_header.jpg",
                 "bomb.png", "cmyk.jpg", "gradient16.png", "palette_transparent.png", "la.png", "rgba.png",
                 "bilevel.png", "float.tif", "animated.gif", "animated.png", "multipage.tif", "rotated_exif6.jpg",
                 "png_named.jpg", "corrupt_exif.jpg", "one_pixel.png", "wide_4000x10.png", "black.png",
                 "white.png", "blurred.jpg", "grey_rgb.png"]:
        assert name in expected


def test_failure_reasons_and_messages(hostile):
    _, _, docs = hostile
    assert docs["empty.jpg"]["issues"] == ["corrupt", "empty_file"] and docs["empty.jpg"]["size_bytes"] == 0
    assert docs["truncated.jpg"]["error"].startswith("truncated: image file is truncated")
    for name in ("bomb.png", "bomb_warning.png", "bomb.gif", "bomb.jpg"):
        assert docs[name]["issues"][:2] == ["corrupt", "decompression_bomb"], name
        assert "hash" in docs[name]  # the bytes were read and hashed; only the pixels were refused


def test_exif_rotation_matches_physical_rotation(hostile):
    _, _, docs = hostile
    a, b = docs["rotated_exif6.jpg"], docs["rotated_physical.jpg"]
    assert (a["width"], a["height"]) == (b["width"], b["height"]) == (480, 640)
    assert (int(a["phash"], 16) ^ int(b["phash"], 16)).bit_count() <= 4
    assert (int(a["dhash"], 16) ^ int(b["dhash"], 16)).bit_count() <= 6
    assert a["quality"]["aspect_ratio"] == pytest.approx(0.75)


def test_sixteen_bit_is_scaled_not_clipped(hostile):
    _, _, docs = hostile
    h = docs["gradient16.png"]["histogram"]["r"]
    assert max(h) < 0.1 and min(h) > 0.03  # the ramp fills all 16 bins evenly
    assert docs["float.tif"]["histogram"]["r"][0] < 0.2


def test_bombs_are_cheap(tmp_path):
    """Refusing a bomb reads the header only: no 900-megapixel allocation, no time spent."""
    from tests.fixtures.hostile import png_bomb

    data = png_bomb(30000, 30000)
    t = time.perf_counter()
    doc = profile_bytes(data)
    assert time.perf_counter() - t < 0.5
    assert (doc["width"], doc["height"]) == (30000, 30000)


def test_global_pillow_state_is_untouched(hostile):
    d, expected, _ = hostile
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    for name in expected:
        profile_file(d / name)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters)) == before
    assert Image.MAX_IMAGE_PIXELS is not None and ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_profile_bytes_accepts_buffers():
    data = (Path(__file__).parent / "fixtures" / "__init__.py").read_bytes()  # not an image
    for buf in (bytearray(data), memoryview(data)):
        assert profile_bytes(buf)["issues"][:1] == ["corrupt"]


# --------------------------------------------------------------------------------------------------
# fuzzing: cut and flipped bytes of real encodings never raise


def _seeds() -> list[bytes]:
    im = photo("astronaut.png").resize((96, 72))
    out = []
    for fmt, kw in (("JPEG", {"quality": 80}), ("PNG", {}), ("GIF", {}), ("WEBP", {"quality": 70}), ("TIFF", {}),
                    ("BMP", {})):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        out.append(b.getvalue())
    prog = io.BytesIO()
    im.save(prog, "JPEG", progressive=True)
    out.append(prog.getvalue())
    return out


SEEDS = _seeds()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, len(SEEDS) - 1),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8),
)
def test_mutated_files_never_raise(seed, cut, flips):
    data = bytearray(SEEDS[seed])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    data = bytes(data[: max(0, int(len(data) * cut)) if cut < 0.98 else len(data)])
    doc = profile_bytes(data)
    assert_invariants(doc, f"seed={seed} cut={cut} flips={flips}")


def test_random_garbage_with_real_magic_numbers():
    rng = random.Random(7)
    magics = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"II*\x00",
              b"MM\x00*", b"BM", b"P6\n", b"\x00\x00\x01\x00"]
    for m in magics:
        for n in (0, 10, 100, 1000):
            assert_invariants(profile_bytes(m + bytes(rng.getrandbits(8) for _ in range(n))), repr(m))


# --------------------------------------------------------------------------------------------------
# the stress corpus (Pillow's own test images: fuzzer crashes, odd modes, broken files)


@pytest.mark.skipif(not STRESS.is_dir(), reason="~/.cache/corpus/stress not present")
def test_stress_corpus_never_raises():
    files = sorted(p for p in STRESS.rglob("*") if p.is_file() and p.suffix != ".csv")
    assert files
    decoded = 0
    for p in files:
        doc = profile_file(p)
        assert_invariants(doc, str(p))
        decoded += "corrupt" not in doc["issues"]
    assert decoded > len(files) // 2
