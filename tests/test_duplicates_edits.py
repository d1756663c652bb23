"""Near duplicates under the edits people make (issue 16): letterbox bars, a 90-degree turn, a caption, a
screenshot of the photo, a crop saved as JPEG, on real photos (scikit-image, scikit-learn), through the real
ingest, embeddings and the duplicate finder; and two different pictures of the same kind stay apart."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.conftest import skimage_photo
from viscurate import Dataset
from viscurate.media.align import alignment
from viscurate.media.borders import content_box
from viscurate.media.decode import to_small_8bit
from viscurate.media.hashes import dct_block, hamming, phash, turned_from_block, turns


def _china() -> Image.Image:
    from sklearn.datasets import load_sample_image
    return Image.fromarray(load_sample_image("china.jpg"))


def _letterbox(im: Image.Image) -> Image.Image:
    """The photo in the middle of a black 9:16 canvas (bars above and below)."""
    canvas = Image.new("RGB", (im.width, round(im.width * 16 / 9)), (0, 0, 0))
    canvas.paste(im, (0, (canvas.height - im.height) // 2))
    return canvas


def _caption(im: Image.Image) -> Image.Image:
    out = im.copy()
    size = im.height // 8
    ImageDraw.Draw(out).text((im.width // 8, im.height - 1.6 * size), "Summer 2019",
                             font=ImageFont.load_default(size=size), fill=(255, 255, 255), stroke_width=2,
                             stroke_fill=(0, 0, 0))
    return out


def _window(title: str, albums: bool = True) -> Image.Image:
    """An image viewer's empty window, 1280 x 800: title bar with a title, toolbar icons, a side panel of
    album names."""
    out = Image.new("RGB", (1280, 800), (236, 236, 236))
    d = ImageDraw.Draw(out)
    d.rectangle((0, 0, 1280, 32), fill=(60, 60, 66))
    d.text((640, 16), title, font=ImageFont.load_default(size=16), fill=(240, 240, 240), anchor="mm")
    for k in range(8):
        d.rounded_rectangle((14 + 40 * k, 42, 38 + 40 * k, 66), 5, outline=(40, 40, 40), width=2)
    for k in range(10 if albums else 0):
        d.text((16, 100 + 28 * k), f"Album {k + 1}", font=ImageFont.load_default(size=14), fill=(40, 40, 40))
    return out


def _screenshot(im: Image.Image) -> Image.Image:
    """The photo shown smaller in a window, with margins."""
    out = _window("china.jpg - Photos")
    out.paste(im.resize((800, round(800 * im.height / im.width)), Image.Resampling.LANCZOS), (330, 110))
    return out


def _ingest(root, name: str, files: dict[str, Image.Image], embed: bool = False) -> tuple[Dataset, dict[str, str]]:
    """The pictures saved under ``root/images`` and ingested (and embedded): (dataset, file name -> sample id)."""
    images = root / "images"
    images.mkdir()
    for file, im in files.items():
        im.save(images / file, quality=92)
    ds = Dataset.create(name, root / "home")
    ds.add_images(images, progress=False)
    if embed:
        ds.embed(progress=False)
    ids = {os.path.basename(d["filepath"]): d["_id"] for d in ds.find({}, projection={"filepath": 1})["results"]}
    return ds, ids


@pytest.fixture(scope="module")
def edited(tmp_path_factory) -> tuple[Dataset, dict[str, str]]:
    """Originals, edited copies and look-alikes, ingested: (dataset, file name -> sample id)."""
    astronaut = Image.open(skimage_photo("astronaut.png")).convert("RGB")
    coffee = Image.open(skimage_photo("coffee.png")).convert("RGB")
    rocket = Image.open(skimage_photo("rocket.jpg")).convert("RGB")
    china = _china()
    brick = Image.open(skimage_photo("brick.png")).convert("L")
    files = {
        "astronaut.png": astronaut, "astronaut_letterbox.jpg": _letterbox(astronaut),
        "coffee.png": coffee, "coffee_rot90.jpg": coffee.transpose(Image.Transpose.ROTATE_90),
        "rocket.jpg": rocket, "rocket_caption.jpg": _caption(rocket),
        "china.jpg": china, "china_screenshot.png": _screenshot(china),
        # different pictures of the same kind: two halves of one brick wall, the two halves of the temple
        "brick_left.png": brick.crop((0, 0, 256, 512)), "brick_right.png": brick.crop((256, 0, 512, 512)),
        "china_left.jpg": china.crop((0, 0, 320, 427)), "china_right.jpg": china.crop((320, 0, 640, 427)),
    }
    return _ingest(tmp_path_factory.mktemp("edits"), "edits", files)


def _pairs(ds: Dataset, ids: dict[str, str], write: bool = False, **options) -> dict[frozenset, str]:
    """Every pair of files the duplicate finder (``options``: its rules, the model) puts in a group -> why;
    ``write``: the finder also flags the copies (their ``issues``)."""
    names = {v: k for k, v in ids.items()}
    report = ds.find_duplicates(write=write, **options)
    return {frozenset((names[g.representative], names[m["_id"]])): m["reason"]
            for g in report.groups for m in g.members}


@pytest.mark.parametrize("copy, original, reason", [
    ("astronaut_letterbox.jpg", "astronaut.png", "trimmed"),
    ("coffee_rot90.jpg", "coffee.png", "rotated"),
    ("rocket_caption.jpg", "rocket.jpg", "phash"),
    ("china_screenshot.png", "china.jpg", "trimmed"),
])
def test_edited_copies_are_near_duplicates(edited, copy, original, reason):
    ds, ids = edited
    assert _pairs(ds, ids, write=True, model=False).get(frozenset((copy, original))) == reason
    # the one with fewer pixels is the copy to review (a letterboxed copy has more than its original)
    assert sum("near_duplicate" in ds.get(ids[f])["issues"] for f in (copy, original)) == 1


def test_pictures_of_the_same_kind_are_not(edited):
    ds, ids = edited
    pairs = _pairs(ds, ids, write=True, model=False)
    assert len(pairs) == 4, pairs  # the four edited copies, nothing else
    for look_alikes in (("brick_left.png", "brick_right.png"), ("china_left.jpg", "china_right.jpg")):
        assert frozenset(look_alikes) not in pairs


def test_catalog_without_the_trimmed_hash_still_finds_duplicates(edited):
    """A catalog written before ``phash_trim`` existed has it empty: the other rules still run."""
    ds, ids = edited
    ds.update({}, {"$unset": {"phash_trim": ""}})
    assert ds.count({"phash_trim": {"$exists": True}}) == 0
    pairs = _pairs(ds, ids, write=True, model=False)
    assert pairs.get(frozenset(("coffee_rot90.jpg", "coffee.png"))) == "rotated"
    assert frozenset(("astronaut_letterbox.jpg", "astronaut.png")) not in pairs  # that one needs the frame trimmed


def _small_grey(im: Image.Image) -> np.ndarray:
    """The grey small image the profile measures (longer side 256)."""
    return np.asarray(to_small_8bit(im).convert("L"))


def test_content_box_trims_bars_and_window_not_photos():
    china = _small_grey(_china())
    assert content_box(china) == (0, 0, china.shape[1], china.shape[0])
    shot = _small_grey(_screenshot(_china()))  # 1280 x 800 -> 256 x 160: the photo at (66, 22)-(226, 129)
    x0, y0, x1, y1 = content_box(shot)
    assert abs(x0 - 66) <= 2 and abs(y0 - 22) <= 2 and abs(x1 - 226) <= 2 and abs(y1 - 129) <= 2, (x0, y0, x1, y1)


def test_turned_hashes_follow_the_pixels():
    """The hashes of the turned and mirrored picture, from the block of the unturned one, are those of the
    turned and mirrored pixels (up to resampling)."""
    photo = Image.open(skimage_photo("coffee.png")).convert("L")
    derived = turns(turned_from_block(dct_block(photo)))
    for t in (Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270,
              Image.Transpose.FLIP_LEFT_RIGHT):
        actual = phash(photo.transpose(t))
        assert min(hamming(actual, d) for d in derived) <= 2
        assert hamming(actual, phash(photo)) >= 16


def _crop_jpeg(im: Image.Image, keep: float = 0.7) -> Image.Image:
    """The top right corner holding ``keep`` of the photo's area, saved as JPEG quality 40."""
    side = keep ** 0.5
    w, h = round(im.width * side), round(im.height * side)
    buf = io.BytesIO()
    im.crop((im.width - w, 0, im.width, h)).save(buf, "JPEG", quality=40)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _screenshot_zoomed(im: Image.Image) -> Image.Image:
    """A viewer window showing the photo zoomed to fill a wide area: its top and bottom are cut off, so the
    picture inside the window is a crop of the photo."""
    out = _window("coffee.png - Viewer", albums=False)
    zoomed = im.resize((900, round(im.height * 900 / im.width)), Image.Resampling.LANCZOS)
    top = (zoomed.height - 480) // 2
    out.paste(zoomed.crop((0, top, 900, top + 480)), (190, 120))
    return out


@pytest.fixture(scope="module")
def cropped(tmp_path_factory) -> tuple[Dataset, dict[str, str]]:
    """Crops that move the hashes, and look-alikes, ingested and embedded: (dataset, file name -> sample id)."""
    chelsea = Image.open(skimage_photo("chelsea.png")).convert("RGB")
    coffee = Image.open(skimage_photo("coffee.png")).convert("RGB")
    china = _china()
    brick = Image.open(skimage_photo("brick.png")).convert("L")
    files = {
        "chelsea.png": chelsea, "chelsea_crop.jpg": _crop_jpeg(chelsea),
        "coffee.png": coffee, "coffee_screenshot.png": _screenshot_zoomed(coffee),
        # different pictures of one kind: the two halves of one brick wall, of one temple (each a scaled crop
        # of the whole photo, but of half its area)
        "china.jpg": china,
        "china_left.jpg": china.crop((0, 0, 320, 427)), "china_right.jpg": china.crop((320, 0, 640, 427)),
        "brick_left.png": brick.crop((0, 0, 256, 512)), "brick_right.png": brick.crop((256, 0, 512, 512)),
    }
    return _ingest(tmp_path_factory.mktemp("crops"), "crops", files, embed=True)


def test_crops_and_zoomed_screenshots_are_aligned(cropped):
    """A 70% crop saved as JPEG 40 and a screenshot of a viewer that zoomed the photo: the hashes and the
    embedding rule miss both (their hashes are 20+ bits apart), laying one picture over the other finds them;
    the halves of one photo, scaled crops of it too but of half its area, and halves of a brick wall stay
    apart."""
    ds, ids = cropped
    crop, shot = frozenset(("chelsea.png", "chelsea_crop.jpg")), frozenset(("coffee.png", "coffee_screenshot.png"))
    found = _pairs(ds, ids)
    assert found.get(crop) == "aligned" and found.get(shot) == "aligned", found
    assert set(found) == {crop, shot}, found  # nothing else: no half, no brick
    without = _pairs(ds, ids, aligned_similarity=1.0)  # the aligned rule off (no pair is that similar)
    assert crop not in without and shot not in without
    assert not _pairs(ds, ids, model=False)  # hashes only: nothing


def test_aligned_rule_skips_missing_files(cropped, tmp_path):
    """A file gone since ingest gives no verification (and no error): its pair is not aligned."""
    ds, ids = cropped
    path = ds.get(ids["chelsea_crop.jpg"])["filepath"]
    moved = tmp_path / "away.jpg"
    os.replace(path, moved)
    try:
        assert frozenset(("chelsea.png", "chelsea_crop.jpg")) not in _pairs(ds, ids)
    finally:
        os.replace(moved, path)


def test_alignment_measures_the_share_covered():
    """The share of the larger picture a crop covers is measured, so tiles of a third of a photo (which are
    scaled crops too) can be told from the crops people keep."""
    photo = np.asarray(Image.open(skimage_photo("astronaut.png")).convert("L"), np.float32)
    crop = photo[40:470, 30:460]  # 70% of the area
    tile = photo[:300, :300]  # 34%
    found = alignment(photo, crop)
    assert found.score >= 0.95 and abs(found.share - 0.70) <= 0.05, found
    found = alignment(photo, tile, min_share=0.2)
    assert found.score >= 0.95 and abs(found.share - 0.34) <= 0.05, found
    found = alignment(photo, tile)  # by default only placements covering 0.6 of the area or about are tried
    assert not (found.score >= 0.92 and found.share >= 0.6), found


def _in_viewer(im: Image.Image) -> Image.Image:
    """A screenshot of the viewer showing the photo at 80% of its viewing area: the same window for every
    photo."""
    out = _window("Image Viewer")
    left, top, right, bottom = 224, 88, 1280 - 24, 800 - 36
    scale = min((right - left) * 0.8 / im.width, (bottom - top) * 0.8 / im.height)
    photo = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    out.paste(photo, (left + (right - left - photo.width) // 2, top + (bottom - top - photo.height) // 2))
    return out


def test_screenshots_of_different_photos_in_one_window_are_not_duplicates(tmp_path):
    """The window makes most of both pictures' hash (8 bits apart here: the hash rule alone joins them);
    only the photos inside their frames count (26 bits apart)."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("hubble_deep_field.jpg", "moon.png"):
        _in_viewer(Image.open(skimage_photo(name)).convert("RGB")).save(images / f"{name[:-4]}_screenshot.png")
    ds = Dataset.create("shots", tmp_path / "home")
    ds.add_images(images, progress=False)
    ds.embed(progress=False)
    assert ds.find_duplicates().groups == []
