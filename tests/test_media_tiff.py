"""TIFFs Pillow cannot decode (float64, float16, many channels, codecs it lacks), read with tifffile.

Real files: scikit-image's ``multipage_rgb.tif`` and TIFFs written here with tifffile from scikit-image's
photos, so that what the profile decodes can be compared with the same photo decoded from a PNG.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import skimage
import tifffile
from PIL import Image

from viscurate import Dataset
from viscurate.media import hamming, profile_bytes, profile_file
from viscurate.media.draw import draw_sample, load_upright

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
VISCURATE = shutil.which("viscurate") or str(Path(sys.executable).parent / "viscurate")


def photo(name: str) -> np.ndarray:
    with Image.open(SKIMAGE_DATA / name) as im:
        return np.asarray(im.convert("RGB" if im.mode != "L" else "L"))


def png_profile(arr: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return profile_bytes(buf.getvalue())


def tiff_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def with_tags(data: bytes, **values: int) -> bytes:
    """``data`` with tags of its first page overwritten (the pixel data left as it is)."""
    buf = io.BytesIO(data)
    with tifffile.TiffFile(buf, mode="r+b") as tif:
        for name, value in values.items():
            tif.pages[0].tags[name].overwrite(value)
    return buf.getvalue()


def pillow_decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return True
    except Exception:  # noqa: BLE001
        return False


def assert_same_picture(doc: dict, ref: dict, bits: int = 6) -> None:
    assert "corrupt" not in doc["issues"] and "unsupported" not in doc["issues"], doc.get("error")
    assert (doc["width"], doc["height"]) == (ref["width"], ref["height"])
    assert hamming(doc["phash"], ref["phash"]) <= bits
    assert abs(doc["quality"]["brightness"] - ref["quality"]["brightness"]) < 0.01
    assert abs(doc["quality"]["contrast"] - ref["quality"]["contrast"]) < 0.01


# --------------------------------------------------------------------------------------------------
# decoded


def test_scikit_image_multipage_rgb_is_decoded_not_corrupt():
    path = SKIMAGE_DATA / "multipage_rgb.tif"
    with pytest.raises(Exception):  # the premise: Pillow cannot open it at all
        Image.open(path)
    doc = profile_file(path)
    assert doc["issues"] == ["odd_size"], doc.get("error")  # 10 x 10 pixels: small, not broken
    assert (doc["format"], doc["width"], doc["height"], doc["frames"]) == ("TIFF", 10, 10, 2)
    assert doc["tiff"] == {"dtype": "float64", "channels": 3, "compression": "NONE"}
    assert "mode" not in doc and "error" not in doc
    # the first page (3 x 10 x 10, planar, values in 0..1), independently: x 255, ITU-R 601 luma
    page = tifffile.imread(path, key=0).transpose(1, 2, 0)
    grey = np.floor(page @ [0.299, 0.587, 0.114] * 255 + 0.5)
    assert doc["quality"]["brightness"] == pytest.approx(grey.mean() / 255, abs=0.005)
    assert sum(doc["histogram"]["r"]) == pytest.approx(1.0)


ASTRONAUT = photo("astronaut.png")  # 512 x 512 RGB
CAMERA = photo("camera.png")  # 512 x 512 grey
NOISE = np.random.default_rng(7).random((512, 512))

CASES = {
    "float64 RGB in 0..1": (tiff_bytes(ASTRONAUT / 255.0, photometric="rgb"), ASTRONAUT, ("float64", 3)),
    "float32 RGB planar": (tiff_bytes((ASTRONAUT / 255.0).astype(np.float32).transpose(2, 0, 1), photometric="rgb",
                                      planarconfig="separate"), ASTRONAUT, ("float32", 3)),
    "float16 grey": (tiff_bytes((CAMERA / 255.0).astype(np.float16)), CAMERA, ("float16", 1)),
    "float64 grey in -1000..1000 (stretched)": (tiff_bytes(CAMERA / 255.0 * 2000 - 1000), CAMERA, ("float64", 1)),
    "float64 with NaN": (tiff_bytes(np.where(CAMERA == 0, np.nan, CAMERA / 255.0)), CAMERA, ("float64", 1)),
    "uint16, 5 channels": (tiff_bytes(np.dstack([ASTRONAUT.astype(np.uint16) * 257, NOISE * 65535, NOISE * 65535])
                                      .astype(np.uint16), photometric="minisblack", planarconfig="contig"),
                           ASTRONAUT, ("uint16", 5)),
    "float64, 2 channels": (tiff_bytes(np.dstack([CAMERA / 255.0, NOISE]), photometric="minisblack",
                                       planarconfig="contig"), CAMERA, ("float64", 2)),
    "float64 BigTIFF": (tiff_bytes(ASTRONAUT / 255.0, photometric="rgb", bigtiff=True), ASTRONAUT, ("float64", 3)),
    "float64 zlib, tiled": (tiff_bytes(ASTRONAUT / 255.0, photometric="rgb", compression="zlib", tile=(128, 128)),
                            ASTRONAUT, ("float64", 3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tiffs_pillow_cannot_open_are_decoded_by_tifffile(case):
    data, pixels, (dtype, channels) = CASES[case]
    assert not pillow_decodes(data)  # the premise
    doc = profile_bytes(data)
    assert_same_picture(doc, png_profile(pixels))
    assert doc["format"] == "TIFF" and doc["frames"] == 1
    assert doc["tiff"]["dtype"] == dtype and doc["tiff"]["channels"] == channels
    assert doc["quality"]["grayscale"] is (pixels.ndim == 2)


def test_multi_page_tiff_profiles_its_first_page_and_counts_the_pages():
    pages = np.stack([ASTRONAUT / 255.0, np.zeros_like(ASTRONAUT, float), np.ones_like(ASTRONAUT, float)])
    doc = profile_bytes(tiff_bytes(pages, photometric="rgb"))
    assert_same_picture(doc, png_profile(ASTRONAUT))
    assert doc["frames"] == 3


def test_orientation_tag_turns_the_picture_upright():
    chelsea = photo("chelsea.png")  # 451 x 300
    data = with_tags(tiff_bytes(chelsea / 255.0, photometric="rgb", extratags=[(274, "H", 1, 1, True)]),
                     Orientation=6)
    doc = profile_bytes(data)
    upright = np.asarray(Image.fromarray(chelsea).transpose(Image.Transpose.ROTATE_270))
    assert_same_picture(doc, png_profile(upright))
    assert doc["exif"]["orientation"] == 6


def test_tiffs_pillow_decodes_are_left_to_pillow():
    doc = profile_bytes(tiff_bytes((CAMERA.astype(np.uint16) * 257)))
    assert doc["mode"] == "I;16" and "tiff" not in doc
    assert_same_picture(doc, png_profile(CAMERA))


# --------------------------------------------------------------------------------------------------
# refused, with the reason


def _profile_with_peak_memory(data: bytes) -> tuple[dict, int]:
    """The profile of ``data`` and the most bytes Python allocated while making it."""
    tracemalloc.start()
    try:
        doc = profile_bytes(data)
        return doc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_declared_page_is_refused_before_anything_is_allocated():
    data = with_tags(tiff_bytes(np.zeros((4, 5))), ImageWidth=100_000, ImageLength=100_000)
    doc, peak = _profile_with_peak_memory(data)
    assert peak < 20 * 2**20  # the page would take 80 GB
    assert doc["issues"] == ["corrupt", "decompression_bomb", "odd_size"]
    assert (doc["width"], doc["height"]) == (100_000, 100_000) and doc["tiff"]["dtype"] == "float64"
    assert "exceeds limit" in doc["error"]


def test_page_within_the_pixel_limit_but_too_many_bytes_is_refused():
    # 81 MP is under Pillow's 89.5 MP limit, but three float64 channels would take 1.9 GB
    data = with_tags(tiff_bytes(np.zeros((4, 5, 3)), photometric="rgb"), ImageWidth=9000, ImageLength=9000)
    doc, peak = _profile_with_peak_memory(data)
    assert peak < 20 * 2**20
    assert doc["issues"] == ["corrupt", "decompression_bomb"]
    assert "1944000000 bytes" in doc["error"]


def test_truncated_float_tiff_is_truncated():
    data = CASES["float64 RGB in 0..1"][0]
    doc = profile_bytes(data[: len(data) // 2])
    assert doc["issues"] == ["corrupt", "truncated"] and doc["tiff"]["dtype"] == "float64"


def test_broken_data_in_a_codec_pillow_has_stays_corrupt_even_if_tifffile_lacks_it():
    buf = io.BytesIO()
    Image.fromarray(ASTRONAUT[:48, :64]).save(buf, "TIFF", compression="tiff_lzw")  # tifffile: LZW needs imagecodecs
    data = bytearray(buf.getvalue())
    assert "corrupt" not in profile_bytes(bytes(data))["issues"]
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        start, size = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    data[start:start + size] = (bytes(range(256)) * (size // 256 + 1))[:size]
    doc = profile_bytes(bytes(data))
    assert doc["issues"] == ["corrupt", "decode_error"]


def test_garbage_after_a_tiff_magic_is_not_an_image():
    doc = profile_bytes(b"II*\x00" + bytes(range(256)) * 4)
    assert doc["issues"] == ["corrupt", "not_an_image"]


def _needs_imagecodecs_missing() -> None:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return
    pytest.skip("imagecodecs is installed: every codec below is decodable")


@pytest.mark.parametrize("compression, name, pillow_opens", [(34712, "JPEG2000", False), (50001, "WEBP", True)])
def test_codec_neither_decoder_has_is_unsupported_not_corrupt(compression, name, pillow_opens):
    _needs_imagecodecs_missing()
    data = with_tags(tiff_bytes(ASTRONAUT[:48, :64], photometric="rgb"), Compression=compression)
    doc = profile_bytes(data)
    assert doc["issues"] == ["unsupported"]
    assert doc["error"].startswith(f"unsupported: TIFF compression {name} needs the imagecodecs package")
    assert ("Pillow: " in doc["error"]) is pillow_opens
    assert (doc["format"], doc["width"], doc["height"]) == ("TIFF", 64, 48)
    assert doc["hash"] and doc["tiff"]["compression"] == name
    assert "phash" not in doc and "quality" not in doc


# --------------------------------------------------------------------------------------------------
# the rest of viscurate reads them the same way


def test_drawing_and_thumbnails_use_the_same_decode(tmp_path):
    path = tmp_path / "astronaut-float64.tif"
    path.write_bytes(CASES["float64 RGB in 0..1"][0])
    im = load_upright(path)
    assert im.mode == "RGB" and im.size == (512, 512)
    assert np.abs(np.asarray(im, dtype=int) - ASTRONAUT).mean() < 1.0
    drawn = draw_sample({"width": 512, "height": 512, "object_analysis": [
        {"name": "person", "confidence": 0.9, "bbox": [100, 50, 300, 450]}]}, path)
    assert drawn.size == (512, 512)

    import httpx
    import uvicorn

    from viscurate.server.app import create_app
    ds = Dataset.create("tiffs", tmp_path / "home")
    ds.add_images(path, progress=False, workers=0)
    sid = ds.find({})["results"][0]["_id"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(tmp_path / "home"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        r = httpx.get(f"http://127.0.0.1:{port}/v1/datasets/tiffs/samples/{sid}/thumbnail",
                      params={"size": 64}, timeout=30)
    finally:
        server.should_exit = True
        thread.join(10)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(r.content)) as thumb:
        assert thumb.size == (64, 64)
        small = np.asarray(Image.fromarray(ASTRONAUT).resize((64, 64), Image.Resampling.BOX), dtype=int)
        assert np.abs(np.asarray(thumb.convert("RGB"), dtype=int) - small).mean() < 8


def test_label_stage_labels_a_float64_tiff(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "astronaut-float64.tif").write_bytes(CASES["float64 RGB in 0..1"][0])
    ds = Dataset.create("tiffs", tmp_path / "home")
    ds.add_images(photos, progress=False, workers=0)
    report = ds.label(models="detector", workers=1, progress=False)
    assert report.processed == 1 and report.failed == 0, report.errors
    doc = ds.find({})["results"][0]
    assert any(o["name"] == "person" and o["confidence"] > 0.5 for o in doc["object_analysis"])


def test_demo_photos_are_no_longer_flagged_corrupt_but_for_the_broken_copies(tmp_path):
    from viscurate.cli.demo import build_demo_folder
    folder = build_demo_folder(tmp_path / "demo-photos")
    ds = Dataset.create("demo", tmp_path / "home")
    ds.add_images(folder, progress=False, workers=1)
    broken = {Path(d["filepath"]).name for d in ds.find({"issues": "corrupt"}, page_size=100)["results"]}
    assert broken == {"chelsea-truncated.jpg", "empty.jpg"}
    tif = ds.find({"filepath": {"$regex": "multipage_rgb"}})["results"][0]
    assert tif["tiff"]["dtype"] == "float64" and tif["frames"] == 2 and "phash" in tif


def test_libtiff_warnings_are_recorded_on_the_sample_not_printed(tmp_path):
    """A WEBP-compressed TIFF makes libtiff (without WEBP support) print to the process's stderr."""
    _needs_imagecodecs_missing()
    photos = tmp_path / "photos"
    photos.mkdir()
    webp = photos / "webp.tif"
    webp.write_bytes(with_tags(tiff_bytes(ASTRONAUT[:48, :64], photometric="rgb"), Compression=50001))
    shutil.copy(SKIMAGE_DATA / "camera.png", photos / "camera.png")
    said = subprocess.run([sys.executable, "-c", "import sys; from PIL import Image; im = Image.open(sys.argv[1])\n"
                           "try: im.load()\nexcept OSError: pass", str(webp)], capture_output=True, text=True).stderr
    if "tempfile.tif: " not in said:
        pytest.skip(f"this Pillow's libtiff decodes (or fails quietly on) WEBP: {said!r}")
    libtiff_lines = [ln.strip() for ln in said.splitlines() if ln.strip()]

    env = dict(os.environ, VISCURATE_HOME=str(tmp_path / "home"), COLUMNS="200", NO_COLOR="1")
    proc = subprocess.run([VISCURATE, "ingest", str(photos), "-d", "tiffs", "--workers", "1", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "tempfile.tif" not in proc.stderr and "compression support" not in proc.stderr, proc.stderr
    assert "tempfile.tif" not in proc.stdout

    ds = Dataset.open("tiffs", tmp_path / "home")
    doc = ds.find({"filepath": str(webp)})["results"][0]
    assert doc["issues"] == ["unsupported"]
    recorded = doc["decode_warnings"]
    assert recorded and all(ln.removeprefix("tempfile.tif: ") in recorded for ln in libtiff_lines)
    assert "decode_warnings" not in ds.find({"filepath": str(photos / "camera.png")})["results"][0]
    report = json.loads(proc.stdout)
    assert (report["added"], report["failed"], report["unsupported"]) == (2, 0, 1)
