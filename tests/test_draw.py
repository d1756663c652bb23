"""Drawing a sample's labels: the astronaut, labelled by the real models, drawn and checked pixel by pixel."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viscurate import Dataset
from viscurate.media.draw import class_colour, draw_sample

VISCURATE = shutil.which("viscurate") or str(Path(sys.executable).parent / "viscurate")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    import skimage
    root = tmp_path_factory.mktemp("draw")
    photos = root / "photos"
    photos.mkdir()
    shutil.copy(Path(skimage.__file__).parent / "data" / "astronaut.png", photos / "astronaut.png")
    ds = Dataset.create("astro", root / "home")
    ds.add_images(photos, progress=False, workers=0)
    ds.label(models="detector,face,pose", workers=0, progress=False)
    (doc,) = list(ds.iter())
    return ds, doc, root


def outline_pixels(box, width, height, inset=1):
    """Pixel coordinates along the rectangle of ``box`` ([x, y, w, h]), ``inset`` px inside its edge."""
    x0, y0 = int(round(box[0])) + inset, int(round(box[1])) + inset
    x1 = min(int(round(box[0] + box[2])) - inset, width - 1)
    y1 = min(int(round(box[1] + box[3])) - inset, height - 1)
    xs = np.arange(x0, x1 + 1)
    ys = np.arange(y0, y1 + 1)
    return ([(x, y0) for x in xs] + [(x, y1) for x in xs] + [(x0, y) for y in ys] + [(x1, y) for y in ys])


def test_the_astronaut_is_drawn_with_her_labels(astronaut, artifacts_dir):
    ds, doc, root = astronaut
    out = root / "astronaut.png"
    picture = ds.draw(doc["_id"], out)
    assert out.is_file()
    shutil.copy(out, artifacts_dir / "draw_astronaut.png")
    written = np.asarray(Image.open(out).convert("RGB")).astype(int)
    original = np.asarray(Image.open(doc["filepath"]).convert("RGB")).astype(int)
    assert written.shape == original.shape == (512, 512, 3) and picture.size == (512, 512)
    h, w = original.shape[:2]

    person = max((o for o in doc["object_analysis"] if o["name"] == "person"), key=lambda o: o["confidence"])
    edge = outline_pixels(person["bbox"], w, h)
    changed = [np.abs(written[y, x] - original[y, x]).sum() > 30 for x, y in edge]
    assert np.mean(changed) > 0.6  # the box outline is drawn (labels of other boxes may cover some of it)
    colour = np.array(class_colour("person"))
    on_colour = [np.abs(written[y, x] - colour).sum() < 60 for x, y in edge]
    assert np.mean(on_colour) > 0.5  # in the person class colour

    x, y, bw, bh = (int(v) for v in person["bbox"])
    inside = (slice(y + bh // 3, y + 2 * bh // 3), slice(x + bw // 3, x + 2 * bw // 3))
    assert np.abs(written[inside] - original[inside]).mean() > 1  # the box's translucent fill

    (face,) = doc["face_analysis"]
    face_edge = outline_pixels(face["bbox"], w, h)
    assert np.mean([np.abs(written[y, x] - original[y, x]).sum() > 30 for x, y in face_edge]) > 0.6
    kx, ky = (int(round(v)) for v in face["keypoints"][2])  # nose tip: a dot
    assert np.abs(written[ky, kx] - original[ky, kx]).sum() > 30


def test_draw_from_the_command_line(astronaut, tmp_path):
    ds, doc, root = astronaut
    out = tmp_path / "sub" / "astro.jpg"
    env = dict(os.environ, VISCURATE_HOME=str(root / "home"), NO_COLOR="1")
    proc = subprocess.run([VISCURATE, "draw", "astro", doc["_id"], "-o", str(out), "--max-side", "256"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (256, 256)
    bad = subprocess.run([VISCURATE, "draw", "astro", "nope", "-o", str(out)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_ground_truth_is_dashed_and_boxes_scale_to_the_picture():
    image = np.full((100, 200, 3), 128, np.uint8)
    doc = {"width": 400, "height": 200,  # the document describes a picture twice this size
           "ground_truth": {"detections": [{"name": "dog", "bbox": [40, 40, 320, 120]}]}}
    drawn = np.asarray(draw_sample(doc, image, show=["ground_truth"], line_width=2)).astype(int)
    top = drawn[21, 30:170]  # the GT box's top edge, scaled by 1/2: y = 20..21, x = 20..180
    changed = np.abs(top - 128).sum(axis=1) > 30
    assert 0.3 < changed.mean() < 0.95  # dashes and gaps
    assert np.abs(drawn[60, 100] - 128).sum() == 0  # no fill inside a ground-truth box
    with pytest.raises(ValueError, match="unknown layer"):
        draw_sample(doc, image, show=["boxes"])


def test_colours_are_stable_per_class():
    assert class_colour("cat") == class_colour("cat")
    names = ["person", "cat", "dog", "car", "cup", "bowl", "bed", "chair"]
    assert len({class_colour(n) for n in names}) == len(names)


def test_label_tags_of_boxes_sharing_a_corner_do_not_cover_each_other():
    from viscurate.media.draw import place_labels
    boxes = [((100, 50, 300, 250), False), ((102, 52, 290, 240), False), ((98, 49, 310, 260), False),
             ((0, 0, 400, 300), False), ((100, 50, 300, 250), True)]
    sizes = [(120, 16)] * len(boxes)
    spots = place_labels(boxes, sizes, (400, 300))
    rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(spots, sizes)]
    for i, a in enumerate(rects):
        assert 0 <= a[0] and a[2] <= 400 and 0 <= a[1] and a[3] <= 300
        for b in rects[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    assert spots[-2] == (0, 0)  # the whole-image box: its tag inside its top-left corner
