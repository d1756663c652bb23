"""The img2dataset URL list (img2dataset itself downloads from it, over loopback, where its venv is) and the plain
image folder (copies and links under names that never collide, by class on demand)."""
from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.conftest import skimage_photos
from viscurate.errors import ViscurateError
from viscurate.formats.imagefolder import looks_like_imagefolder, read_imagefolder, write_imagefolder
from viscurate.formats.records import LabeledImage
from viscurate.formats.urllist import looks_like_urllist, read_urllist, write_urllist

I2D = Path(__file__).resolve().parent.parent / "bench" / ".venvs" / "img2dataset" / "bin" / "img2dataset"


def _url_records(local: Path) -> list[LabeledImage]:
    return [LabeledImage("https://example.org/a.jpg", "s1", fields={"url": "https://example.org/a.jpg", "caption": "a cat"}),
            LabeledImage(str(local), "s2", label="dog"),
            LabeledImage("/x/b.jpg", "s3", fields={"url": "http://example.org/b.png"}, label="bird")]


@pytest.mark.parametrize("name", ["urls.parquet", "urls.csv"])
def test_url_list_keeps_urls_captions_and_sample_ids_and_counts_local_files(tmp_path, name):
    report = write_urllist(_url_records(tmp_path / "c.jpg"), tmp_path / name)
    assert report["images"] == 2 and report["dropped"] == {"local file (no URL)": 1}
    back = list(read_urllist(tmp_path / name))
    assert [(r.file, r.sample_id, r.fields.get("metadata.caption")) for r in back] == [
        ("https://example.org/a.jpg", "s1", "a cat"), ("http://example.org/b.png", "s3", "bird")]
    assert looks_like_urllist(tmp_path / name)
    if name.endswith(".parquet"):
        assert pq.read_schema(tmp_path / name).names == ["url", "caption", "viscurate_id"]


def test_local_files_as_file_urls_and_plain_text_lists(tmp_path):
    write_urllist(_url_records(tmp_path / "c é.jpg"), tmp_path / "out", local="file")
    urls = [r.file for r in read_urllist(tmp_path / "out" / "urls.parquet")]
    assert urls[1] == (tmp_path / "c é.jpg").as_uri() and urls[1].startswith("file:///")
    (tmp_path / "list.txt").write_text("# mine\nhttps://a.org/1.jpg\n\nftp://nope\nhttp://b.org/2.png\n")
    labels = read_urllist(tmp_path / "list.txt")
    assert [r.file for r in labels] == ["https://a.org/1.jpg", "http://b.org/2.png"]
    assert labels.skipped == {"row without an http(s) URL": 1}
    with pytest.raises(ViscurateError, match="media none"):
        write_urllist([], tmp_path / "x.parquet", media="copy")


@pytest.fixture
def photo_server(tmp_path):
    photos = skimage_photos(tmp_path / "served", ("astronaut.png", "coffee.png", "chelsea.png"))
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(photos))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", photos
    server.shutdown()


def test_img2dataset_downloads_our_url_list(tmp_path, photo_server):
    if not I2D.is_file():
        pytest.skip(f"{I2D} is missing: bash bench/setup_peers.sh builds img2dataset's venv")
    base, photos = photo_server
    records = [LabeledImage(f"{base}/{p.name}", f"sid-{p.stem}", fields={"caption": f"photo of {p.stem}"})
               for p in sorted(photos.iterdir())]
    write_urllist(records, tmp_path / "urls.parquet")
    env = dict(os.environ, WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1", DO_NOT_TRACK="1")
    proc = subprocess.run(
        [str(I2D), "--url_list", str(tmp_path / "urls.parquet"), "--input_format", "parquet", "--url_col", "url",
         "--caption_col", "caption", "--save_additional_columns", '["viscurate_id"]', "--output_folder",
         str(tmp_path / "shards"), "--output_format", "files", "--resize_mode", "no", "--skip_reencode", "True", "--encode_format", "png", "--encode_quality", "9", "--processes_count", "1",
         "--thread_count", "4", "--enable_wandb", "False", "--timeout", "10"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metas = [json.loads(p.read_text()) for p in (tmp_path / "shards").rglob("*.json") if not p.name.endswith("_stats.json")]
    got = {m["viscurate_id"]: m for m in metas if m.get("status") == "success"}
    assert sorted(got) == sorted(r.sample_id for r in records)
    for rec in records:
        assert got[rec.sample_id]["caption"] == rec.fields["caption"]
        key = got[rec.sample_id]["key"]
        image = next((tmp_path / "shards").rglob(f"{key}.png"))  # the downloaded photo, pixel for pixel
        with Image.open(image) as got_im, Image.open(photos / Path(rec.file).name) as want_im:
            assert np.array_equal(np.asarray(got_im), np.asarray(want_im))


def test_image_folder_copies_links_and_never_overwrites_a_different_image(tmp_path):
    a = skimage_photos(tmp_path / "a", ("coffee.png", "chelsea.png"))
    b = skimage_photos(tmp_path / "b", ("astronaut.png",))
    (b / "astronaut.png").rename(b / "coffee.png")  # same name, other bytes
    records = [LabeledImage(str(a / "coffee.png"), "sample-one", label="cup"),
               LabeledImage(str(b / "coffee.png"), "sample-two", label="cup/mug", detections=[{"name": "x", "bbox": [0, 0, 1, 1]}]),
               LabeledImage(str(a / "chelsea.png"), "sample-3"),
               LabeledImage("https://example.org/x.jpg", "sample-4"),
               LabeledImage(str(a / "gone.png"), "sample-5")]
    report = write_imagefolder(records, tmp_path / "flat")
    assert report == {"images": 3, "boxes": 0, "classes": 0, "path": str(tmp_path / "flat"),
                      "dropped": {"boxes": 1, "image given by URL": 1, "image file missing": 1}}
    names = sorted(p.name for p in (tmp_path / "flat").iterdir())
    assert names == ["chelsea.png", "coffee.png", "coffee_sample-two.png"]
    assert (tmp_path / "flat" / "coffee_sample-two.png").read_bytes() == (b / "coffee.png").read_bytes()
    again = write_imagefolder(records, tmp_path / "flat")  # a re-export adds nothing
    assert again["images"] == 3 and len(list((tmp_path / "flat").iterdir())) == 3

    write_imagefolder(records, tmp_path / "classes", media="symlink", by_class=True)
    assert sorted(str(p.relative_to(tmp_path / "classes")) for p in (tmp_path / "classes").rglob("*.png")) == [
        "_unlabeled/chelsea.png", "cup/coffee.png", "cup_mug/coffee.png"]
    assert (tmp_path / "classes" / "cup" / "coffee.png").is_symlink()
    labels = read_imagefolder(tmp_path / "classes", by_class=True)
    assert [(r.file, r.label) for r in labels] == [("_unlabeled/chelsea.png", None), ("cup/coffee.png", "cup"),
                                                   ("cup_mug/coffee.png", "cup_mug")]
    assert looks_like_imagefolder(tmp_path / "classes") and not looks_like_imagefolder(tmp_path / "nothing")
    with pytest.raises(ViscurateError, match="copy or symlink"):
        write_imagefolder(records, tmp_path / "x", media="none")
