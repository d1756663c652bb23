"""CSV and Parquet tables: samples, objects and embeddings round trip (generated edge cases), other tools read
them (pandas, DuckDB), and box tables made elsewhere import (deepforest's CSVs, checked against its COCO file)."""
from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from tests.format_records import assert_same_boxes, corpus_set, label_sets
from viscurate.errors import ViscurateError
from viscurate.formats.coco import read_coco_set
from viscurate.formats.records import Category, LabeledImage
from viscurate.formats.tables import (looks_like_csv, looks_like_parquet, read_csv, read_embeddings, read_parquet,
                                      write_csv, write_parquet)

KINDS = {"csv": (write_csv, read_csv), "parquet": (write_parquet, read_parquet)}


@pytest.mark.parametrize("kind", list(KINDS))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=label_sets(crowd=True))
def test_round_trip_keeps_every_box_key_class_split_and_empty_image(tmp_path_factory, kind, case):
    classes, records = case
    write, read = KINDS[kind]
    out = tmp_path_factory.mktemp(kind) / "tables"
    report = write(records, out, classes=classes)
    assert report["dropped"] == {} and report["images"] == len(records)
    back = read(out)
    assert [(c.id, c.name) for c in back.classes] == [(c.id, c.name) for c in classes]
    got = list(back)
    assert [r.sample_id for r in got] == [r.sample_id for r in records]
    for g, w in zip(got, records):
        assert (g.file, g.width, g.height, g.split, g.label) == (w.file, w.width, w.height, w.split, w.label)
        assert_same_boxes(g.detections, w.detections, rel=0, abs_px=0, where=w.sample_id)  # repr() of floats: exact
    assert not back.skipped


def _doc_records() -> list[LabeledImage]:
    doc = {"_id": "s1", "filepath": "/x/a.jpg", "profile": {"brightness": 0.5, "tags": ["a", "b"]},
           "caption": "007", "score": 3, "ground_truth": {"detections": [{"name": "cat", "bbox": [1, 2, 3, 4]}]}}
    return [LabeledImage("/x/a.jpg", "s1", 4, 3, detections=[{"name": "cat", "bbox": [1.0, 2.0, 3.0, 4.0]}], fields=doc),
            LabeledImage("https://example.org/b.jpg", "s2", 5, 5, detections=[], label="indoor",
                         fields={"_id": "s2", "url": "https://example.org/b.jpg", "caption": 5,
                                 "profile": {"brightness": 1}}),
            LabeledImage("/x/c.jpg", "s3", 1, 1, detections=None, fields={"_id": "s3"})]


def test_samples_are_flattened_with_native_types_in_parquet_and_json_text_in_csv(tmp_path):
    records = _doc_records()
    write_parquet(records, tmp_path / "pq", classes=[Category(1, "cat")])
    table = pq.read_table(tmp_path / "pq" / "samples.parquet")
    assert str(table.schema.field("profile.tags").type) == "list<element: string>"
    assert str(table.schema.field("profile.brightness").type) == "double"
    assert "ground_truth.detections" not in table.schema.names  # the boxes are the objects table
    got = list(read_parquet(tmp_path / "pq"))
    assert [r.file for r in got] == ["/x/a.jpg", "https://example.org/b.jpg", "/x/c.jpg"]
    assert got[0].fields == {"profile.brightness": 0.5, "profile.tags": ["a", "b"], "caption": "007", "score": 3}
    assert got[1].fields == {"profile.brightness": 1.0, "caption": 5} and got[1].label == "indoor"
    assert [r.detections for r in got[1:]] == [[], None]

    write_csv(records, tmp_path / "csv", classes=[Category(1, "cat")])
    header = (tmp_path / "csv" / "samples.csv").read_text().splitlines()[0].split(",")
    assert {"profile.tags", "caption", "n_objects"} <= set(header)
    got = list(read_csv(tmp_path / "csv"))
    # CSV has no types: a text our export writes that reading would type ("007") is written as a JSON string
    assert got[0].fields == {"profile.brightness": 0.5, "profile.tags": ["a", "b"], "caption": "007", "score": 3}


def test_other_tools_read_the_tables(tmp_path):
    pandas = pytest.importorskip("pandas")
    import duckdb

    write_csv(_doc_records(), tmp_path / "csv", classes=[Category(1, "cat")])
    frame = pandas.read_csv(tmp_path / "csv" / "objects.csv")
    assert list(frame[["x", "y", "w", "h"]].iloc[0]) == [1.0, 2.0, 3.0, 4.0]
    write_parquet(_doc_records(), tmp_path / "pq", classes=[Category(1, "cat")])
    rows = duckdb.sql(f"SELECT name, count(*) FROM '{tmp_path / 'pq' / 'objects.parquet'}' GROUP BY name").fetchall()
    assert rows == [("cat", 1)]


def test_embeddings_are_a_list_of_float32_in_parquet_and_counted_as_dropped_in_csv(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(2, 4))
    report = write_parquet(_doc_records(), tmp_path / "pq", classes=[], embeddings=[("clip", ["s1", "s2", "s3"], a),
                                                                                     ("tiny", ["s1", "s2"], b)])
    assert report["vectors"] == 5
    schema = pq.read_schema(tmp_path / "pq" / "embeddings.parquet")
    assert str(schema.field("vector").type) == "list<element: float>"
    blocks = list(read_embeddings(tmp_path / "pq" / "embeddings.parquet"))
    assert [(m, ids) for m, ids, _ in blocks] == [("clip", ["s1", "s2", "s3"]), ("tiny", ["s1", "s2"])]
    np.testing.assert_array_equal(blocks[0][2], a)
    np.testing.assert_array_equal(blocks[1][2], b.astype(np.float32))
    report = write_csv(_doc_records(), tmp_path / "csv", classes=[], embeddings=[("clip", ["s1"], a[:1])])
    assert report["dropped"] == {"embeddings (CSV has no list type: export as parquet)": 1}


def test_a_box_table_from_elsewhere_imports(tmp_path):
    (tmp_path / "boxes.csv").write_text(
        "file_name,class,x,y,width,height,score\n"
        "b.jpg,dog,1,2,3,4,0.5\n"
        "a.jpg,cat,0,0,10,10,\n"
        "b.jpg,NA,5,5,1,1,0.25\n"
        "a.jpg,cat,oops,0,1,1,\n")
    labels = read_csv(tmp_path / "boxes.csv")
    got = {r.file: r.detections for r in labels}
    assert got == {"b.jpg": [{"name": "dog", "bbox": [1.0, 2.0, 3.0, 4.0], "confidence": 0.5},
                             {"name": "NA", "bbox": [5.0, 5.0, 1.0, 1.0], "confidence": 0.25}],
                   "a.jpg": [{"name": "cat", "bbox": [0.0, 0.0, 10.0, 10.0]}]}
    assert [c.name for c in labels.classes] == ["dog", "cat", "NA"]
    assert sum(labels.skipped.values()) == 1  # the malformed row, counted
    assert labels.root == tmp_path.resolve()


def test_tables_without_an_image_column_or_boxes_are_clear_errors(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ViscurateError, match="no image column"):
        read_csv(tmp_path / "x.csv")
    with pytest.raises(ViscurateError, match="no samples.parquet or objects.parquet"):
        read_parquet(tmp_path)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ViscurateError):
        read_parquet(tmp_path / "bad.parquet")


def test_sniffing(tmp_path):
    write_parquet(_doc_records(), tmp_path / "pq", classes=[])
    write_csv(_doc_records(), tmp_path / "csv", classes=[])
    assert looks_like_parquet(tmp_path / "pq") and not looks_like_csv(tmp_path / "pq")
    assert looks_like_csv(tmp_path / "csv") and looks_like_csv(tmp_path / "csv" / "objects.csv")
    (tmp_path / "plain.csv").write_text("a,b\n1,2\n")
    assert not looks_like_csv(tmp_path / "plain.csv")


def test_a_big_export_streams_with_progress(tmp_path):
    calls = []

    def records():
        for i in range(20_000):
            yield LabeledImage(f"/d/{i}.jpg", f"s{i}", 100, 100, detections=[{"name": f"c{i % 7}", "bbox": [1, 1, 5, 5]}])

    report = write_parquet(records(), tmp_path / "big", classes=[], progress=calls.append)
    assert report["images"] == 20_000 and report["boxes"] == 20_000 and calls[-1] == 20_000
    assert pq.read_metadata(tmp_path / "big" / "objects.parquet").num_rows == 20_000
    assert pq.read_metadata(tmp_path / "big" / "objects.parquet").num_row_groups > 1  # written in batches


@pytest.mark.parametrize("csv_name,image", [("testfile_deepforest.csv", "OSBS_029.png"),
                                            ("testfile_multi.csv", "SOAP_061.png")])
def test_deepforest_csv_gives_the_boxes_of_its_coco_file(csv_name, image):
    folder = corpus_set("deepforest")
    from_csv = {r.file: r.detections for r in read_csv(folder / csv_name)}[image]
    from_coco = next(r.detections for r in read_coco_set(folder / "coco.json") if r.file == image)
    key = lambda b: (b["name"], *b["bbox"])  # noqa: E731
    assert sorted(map(key, from_csv)) == sorted(map(key, from_coco))
    assert all(math.isfinite(v) for b in from_csv for v in b["bbox"])


@pytest.mark.parametrize("kind", list(KINDS))
def test_real_detection_set_round_trips(tmp_path, kind):
    folder = corpus_set("deepforest")
    source = read_coco_set(folder / "coco.json")
    records = []
    for n, rec in enumerate(source):
        rec.file, rec.sample_id = source.path_of(rec), f"s{n}"
        records.append(rec)
    write, read = KINDS[kind]
    write(records, tmp_path / "t", classes=source.classes)
    back = read(tmp_path / "t")
    assert [(c.id, c.name) for c in back.classes] == [(c.id, c.name) for c in source.classes]
    for g, w in zip(back, records):
        assert g.file == w.file
        assert_same_boxes(g.detections, w.detections, rel=0, abs_px=0, where=w.file)


def test_csv_keeps_texts_that_look_like_numbers_or_booleans_as_texts(tmp_path):
    from viscurate.formats.records import LabeledImage
    from viscurate.formats.tables import read_csv, write_csv
    values = ["007", "2024", "true", "[1]", '"quoted"', "plain", "1e5"]
    records = [LabeledImage(f"/x/{n}.png", f"s{n}", width=4, height=3, detections=[],
                            fields={"metadata": {"code": v, "count": n, "flag": n % 2 == 0}})
               for n, v in enumerate(values)]
    write_csv(iter(records), tmp_path / "t", classes=[])
    back = {r.sample_id: r.fields for r in read_csv(tmp_path / "t")}
    for n, v in enumerate(values):
        assert back[f"s{n}"]["metadata.code"] == v
        assert back[f"s{n}"]["metadata.count"] == n and back[f"s{n}"]["metadata.flag"] is (n % 2 == 0)
