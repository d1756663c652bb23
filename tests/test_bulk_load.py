"""Arrow tables, record batch streams, pandas frames and Parquet files loaded straight into the catalog
(store/bulk.py) give what ``add_documents(list of dicts)`` gives: the same documents, the same answers
to queries, the same modes and errors, whole batches or nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import skimage_photos
from viscurate.dataset import Dataset
from viscurate.errors import DatasetExists, FieldTypeError, ViscurateError

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "motorcycle_left.png")


def arrow_of(docs: list[dict]) -> pa.Table:
    """The documents as an Arrow table, every key of every row kept (``Table.from_pylist`` would read
    the keys of the first row only)."""
    return pa.Table.from_batches([pa.RecordBatch.from_struct_array(pa.array(docs))])


@pytest.fixture(scope="module")
def real_docs(tmp_path_factory) -> list[dict]:
    """Documents of real photos as ingest profiles them, with what people add: boxes with attributes
    of their own (nested, unicode), free-form metadata with lists and unicode, fields a document lacks
    (Arrow fills them with nulls), declared fields set to None."""
    root = tmp_path_factory.mktemp("bulk")
    ds = Dataset.create("profiled", home=root / "home")
    ds.add_images(skimage_photos(root / "photos", PHOTOS), progress=False)
    docs = list(ds.iter())
    assert len(docs) == len(PHOTOS) and all("histogram" in d and "quality" in d for d in docs)
    for i, doc in enumerate(docs):
        doc["tags"] = ["réviewed", f"batch-{i % 2}"] if i % 3 else []
        doc["split"] = None if i == 2 else ("train" if i % 2 else "val")  # None: missing
        doc["ground_truth"] = {"label": ["cat", "coffee", "people"][i % 3],
                               "detections": [{"name": "chat ☕", "bbox": [1.5, 2.0, 30.25, 40.0],
                                               "iscrowd": 0, "attributes": {"occluded": i % 2 == 0, "note": "ça"}},
                                              {"name": "dog", "bbox": [5.0, 5.0, 10.0, 12.5], "iscrowd": 1,
                                               "attributes": {"occluded": False, "note": "日本"}}][: i % 3]}
        doc["object_analysis"] = [{"name": "person", "confidence": 0.5 + i / 100, "bbox": [0.0, 1.0, 2.0, 3.0],
                                   "label_quality_estimation": 0.9, "doubts": ["small"] if i % 2 else [],
                                   "track": {"id": i, "frames": [1, 2, None]}}] if i % 2 else []
        if i != 3:  # one document without metadata at all
            doc["metadata"] = {"camera": f"cam-{i}", "site": i * 7, "lens": {"mm": 35.0 + i, "tags": ["a", None, "ç"]},
                               "history": [{"by": "ana", "at": 1}, {"by": "bo"}][: 1 + i % 2]}
        if i in (1, 5):  # a key some documents lack: Arrow gives the others a null there
            doc["metadata"]["operator"] = "zoë"
    return docs


def loaded(home: Path, name: str, data, **kw) -> Dataset:
    ds = Dataset.create(name, home=home)
    ds.add_documents(data, **kw)
    return ds


QUERIES = [
    {}, {"width": {"$gt": 400}}, {"tags": "réviewed"}, {"split": {"$exists": False}},
    {"ground_truth.detections": {"$elemMatch": {"name": "chat ☕", "iscrowd": 0}}},
    {"ground_truth.detections.attributes.note": "日本"}, {"object_analysis.track.frames": 2},
    {"metadata.lens.tags": None}, {"metadata.operator": {"$exists": True}}, {"metadata.history.by": "bo"},
    {"object_analysis": {"$size": 1}}, {"quality.blur": {"$gte": 0}}, {"metadata.camera": {"$in": ["cam-1", "cam-4"]}},
]


def test_arrow_parquet_pandas_and_streams_store_what_dicts_store(real_docs, tmp_path):
    home = tmp_path / "home"
    by_dicts = loaded(home, "dicts", [dict(d) for d in real_docs])
    table = arrow_of(real_docs)
    pq.write_table(table, tmp_path / "docs.parquet", row_group_size=2)  # several row groups, one transaction
    others = {
        "table": loaded(home, "table", table),
        "batches": loaded(home, "batches", pa.RecordBatchReader.from_batches(table.schema, table.to_batches(2)),
                          batch_size=4),
        "parquet": loaded(home, "parquet", tmp_path / "docs.parquet"),
        "parquet_str": loaded(home, "parquet_str", str(tmp_path / "docs.parquet"), batch_size=3),
    }
    try:
        import pandas
    except ImportError:  # not a dependency of viscurate: the Arrow inputs are tested without it
        pandas = None
    if pandas is not None and hasattr(pandas.DataFrame, "__arrow_c_stream__"):
        others["pandas"] = loaded(home, "pandas", table.to_pandas())
    for doc in real_docs:
        want = by_dicts.get(doc["_id"])
        assert "split" not in want or doc["split"] is not None
        for how, ds in others.items():
            assert ds.get(doc["_id"]) == want, how
    sort = [("width", -1)]
    for q in QUERIES:
        want = by_dicts.find(q, sort=sort, page_size=100)
        assert want["length"] >= 1 or q in ({"split": {"$exists": False}},), q
        for how, ds in others.items():
            got = ds.find(q, sort=sort, page_size=100)
            assert [d["_id"] for d in got["results"]] == [d["_id"] for d in want["results"]], (how, q)
            assert got["results"] == want["results"], (how, q)
    for typo in ({"metadata.camra": "cam-1"}, {"ground_truth.detections.atributes.note": "x"}, {"isues": "dark"}):
        want = by_dicts.check_query(typo)
        assert want  # the misspelled field is noticed (known paths recorded by the write, #24)
        for how, ds in others.items():
            assert ds.check_query(typo) == want, (how, typo)


def test_a_null_is_a_missing_field_except_inside_a_list(tmp_path):
    table = pa.table({"_id": ["a", "b"], "width": pa.array([None, 3], pa.int64()),
                      "metadata": [{"k": None, "l": [1, None], "m": {"n": None}}, None]})
    ds = loaded(tmp_path / "home", "nulls", table)
    assert ds.get("a") == {"_id": "a", "metadata": {"l": [1, None], "m": {}}}
    assert ds.get("b") == {"_id": "b", "width": 3}
    assert ds.count({"metadata.k": {"$exists": True}}) == 0


def test_ids_are_generated_checked_and_never_twice(tmp_path):
    home = tmp_path / "home"
    ds = loaded(home, "ids", pa.table({"width": [1, 2, 3]}))
    ids = ds.ids()
    assert len(set(ids)) == 3 and all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    ds.add_documents(pa.table({"_id": ["x", None], "width": [4, 5]}))
    assert ds.count() == 5 and ds.get("x")["width"] == 4
    with pytest.raises(DatasetExists, match="same _id twice"):
        ds.add_documents(pa.table({"_id": ["y", "y"], "width": [1, 2]}))
    with pytest.raises(FieldTypeError, match="_id must be a non-empty string"):
        ds.add_documents(pa.table({"_id": ["", "z"]}))
    with pytest.raises(FieldTypeError, match="_id: expected a string, got 7"):
        ds.add_documents(pa.table({"_id": [7]}))
    assert ds.count() == 5


@pytest.mark.parametrize("mode", ["error", "skip", "replace", "merge"])
def test_modes_act_as_with_dicts(real_docs, tmp_path, mode):
    """A second load of changed documents, half of them new, in each mode: the same outcome (counts,
    documents, boxes) as the same two loads as dicts."""
    first, second = real_docs[:4], real_docs[2:]
    changed = [{"_id": d["_id"], "width": 7, "tags": ["again"], "metadata": {"camera": "new"},
                "object_analysis": [{"name": "cat", "confidence": 0.75, "bbox": [1.0, 1.0, 2.0, 2.0]}]}
               for d in second]
    home = tmp_path / "home"
    outcome = {}
    for how in ("dicts", "arrow"):
        ds = loaded(home, how, [dict(d) for d in first] if how == "dicts" else arrow_of(first))
        before = {d["_id"]: ds.get(d["_id"]) for d in first}
        again = [dict(d) for d in changed] if how == "dicts" else arrow_of(changed)
        if mode == "error":
            with pytest.raises(DatasetExists, match="already exist"):
                ds.add_documents(again, mode=mode)
            assert ds.count() == len(first)  # the new documents of that batch were not written either
            assert {d["_id"]: ds.get(d["_id"]) for d in first} == before
            outcome[how] = None
            continue
        counts = ds.add_documents(again, mode=mode)
        outcome[how] = (counts, [ds.get(d["_id"]) for d in real_docs], ds.count({"object_analysis.name": "cat"}))
    assert outcome["arrow"] == outcome["dicts"]
    if mode != "error":
        counts = outcome["arrow"][0]
        assert counts == ({"inserted": 2, "updated": 0, "skipped": 2} if mode == "skip"
                          else {"inserted": 2, "updated": 2, "skipped": 0})


@pytest.mark.parametrize("column, values, message", [  # the first value is the bad one
    ("width", ["12", "640", None], "width: expected an integer, got '12'"),
    ("width", [2.5, 640.0, 3.0], "width: expected an integer, got 2.5"),
    ("quality", [{"blur": float("nan")}, {"blur": 1.0}, None], "NaN and infinity cannot be stored"),
    ("quality", [{"blurr": 1.0}, None, None], "quality.blurr is not a field of quality"),
    ("object_analysis", [[{"name": "dog", "confidence": "high"}], [], None], "confidence: expected a number, got 'high'"),
    ("tags", [["b", None], ["a"], []], "tags: list elements cannot be null"),
    ("metadata", [{"a.b": 1}, None, None], "invalid field name 'a.b'"),
    ("metadata", [{"x": float("inf")}, None, None], "metadata.x: NaN and infinity cannot be stored"),
    ("a.b", [1, 2, 3], "invalid field name 'a.b'"),
])
def test_a_bad_value_names_its_field_and_writes_nothing_of_its_batch(tmp_path, column, values, message):
    ds = Dataset.create("bad", home=tmp_path / "home")
    # the first batch of three lacks the field (nulls), the second has the bad value
    table = pa.table({"_id": ["g1", "g2", "g3", "b1", "b2", "b3"], column: pa.array([None] * 3 + values)})
    with pytest.raises(FieldTypeError) as caught:
        ds.add_documents(table, batch_size=3)
    assert message in str(caught.value)
    assert "documents 4-6 of the input; nothing of them was written" in str(caught.value)
    assert sorted(ds.ids()) == ["g1", "g2", "g3"]  # the batch before it is stored, nothing of its own
    with pytest.raises(FieldTypeError):  # the same value as a dict is refused too
        ds.add_documents([{"_id": "d", column: values[0]}])


def test_odd_arrow_types_convert_as_the_document_path_converts(tmp_path):
    import datetime as dt
    when = dt.datetime(2024, 5, 1, 12, 30, 5, 250)
    table = pa.table({"_id": ["a"], "datetime": pa.array([when], pa.timestamp("us")),
                      "metadata": pa.array([{"taken": when, "day": dt.date(2024, 5, 1)}]),
                      "format": pa.array(["JPEG"]).dictionary_encode(), "size_bytes": pa.array([5], pa.uint8())})
    ds = loaded(tmp_path / "home", "odd", table)
    want = Dataset.create("dicts", home=tmp_path / "home")
    want.add_documents([{"_id": "a", "datetime": when, "metadata": {"taken": when, "day": dt.date(2024, 5, 1)},
                         "format": "JPEG", "size_bytes": 5}])
    assert ds.get("a") == want.get("a") == {"_id": "a", "datetime": when.isoformat(), "format": "JPEG",
                                            "size_bytes": 5, "metadata": {"taken": when.isoformat(), "day": "2024-05-01"}}
    with pytest.raises(FieldTypeError, match="cannot store a value of type bytes"):
        ds.add_documents(pa.table({"blob": [b"\x00"]}))


def test_a_missing_parquet_file_or_an_unknown_mode_is_a_clear_error(tmp_path):
    ds = Dataset.create("none", home=tmp_path / "home")
    with pytest.raises(ViscurateError, match="unknown mode 'upsert'"):
        ds.add_documents(pa.table({"width": [1]}), mode="upsert")
    with pytest.raises(ViscurateError, match="no such file or folder"):
        ds.add_documents(tmp_path / "nope.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ViscurateError, match="cannot be read as Parquet"):
        ds.add_documents(tmp_path / "junk.parquet")
    assert ds.count() == 0


def test_a_killed_load_leaves_whole_batches_and_a_rerun_finishes_it(tmp_path):
    """SIGKILL in the middle of a Parquet load, then the same load with mode='skip': every document
    once, and what the killed run left was whole batches."""
    rows, batch = 60_000, 2_000
    table = pa.table({"_id": [f"{i:024x}" for i in range(rows)], "width": list(range(rows)),
                      "metadata": [{"n": i, "s": "é" * (i % 5)} for i in range(rows)],
                      "object_analysis": [[{"name": "dog", "confidence": 0.5, "bbox": [1.0, 2.0, 3.0, 4.0]}]] * rows})
    pq.write_table(table, tmp_path / "big.parquet")
    home = tmp_path / "home"
    Dataset.create("killed", home=home)
    script = textwrap.dedent(f"""
        import sys
        from viscurate.dataset import Dataset
        def told(done, total):
            print(done, flush=True)
        Dataset("killed", home={str(home)!r}).add_documents({str(tmp_path / "big.parquet")!r}, batch_size={batch},
                                                           progress=told)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    seen = 0
    deadline = time.monotonic() + 120
    while seen < 3 * batch and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 * batch <= seen < rows, "the load should be killed in its middle"
    ds = Dataset("killed", home=home)
    left = ds.count()
    assert left % batch == 0 and left >= seen
    assert ds.count({"object_analysis": {"$size": 1}}) == left  # each sample came with its boxes
    counts = ds.add_documents(tmp_path / "big.parquet", mode="skip")
    assert counts == {"inserted": rows - left, "updated": 0, "skipped": left}
    assert ds.count() == rows and len(set(ds.ids())) == rows
    assert ds.get(f"{rows - 1:024x}") == {"_id": f"{rows - 1:024x}", "width": rows - 1,
                                           "object_analysis": [{"name": "dog", "confidence": 0.5,
                                                                "bbox": [1.0, 2.0, 3.0, 4.0]}],
                                           "metadata": {"n": rows - 1, "s": "é" * ((rows - 1) % 5)}}


def test_replacing_the_last_sample_beside_a_new_one_keeps_their_boxes_apart(tmp_path):
    """Regression (dict path): a replaced sample that was the last one gave its _seq to a new sample of
    the same batch, so both showed both samples' boxes."""
    ds = loaded(tmp_path / "home", "seq", [{"_id": "a"}, {"_id": "b", "object_analysis": [{"name": "dog"}]}])
    ds.add_documents([{"_id": "b", "object_analysis": [{"name": "cat"}]},
                      {"_id": "c", "object_analysis": [{"name": "cow"}]}], mode="replace")
    assert ds.get("b")["object_analysis"] == [{"name": "cat"}]
    assert ds.get("c")["object_analysis"] == [{"name": "cow"}]


def test_iterating_in_insertion_order_pages_by_seq_through_gaps(tmp_path):
    """``iter`` without a sort (what exports read) pages by ``_seq``: every match once, in insertion order,
    across batches, deleted samples' gaps and replaced samples (which keep their place)."""
    n = 2_500
    ds = loaded(tmp_path / "home", "iter", pa.table({"_id": [f"s{i:05d}" for i in range(n)],
                                                     "width": list(range(n)), "metadata": [{"i": i} for i in range(n)]}))
    ds.delete_samples({"width": {"$in": list(range(900, 1200))}})
    ds.add_documents([{"_id": "s00005", "width": 5, "metadata": {"i": -5}}], mode="replace")
    want = [f"s{i:05d}" for i in range(n) if (i < 700 or i >= 2000) and not 900 <= i < 1200]
    got = [d["_id"] for d in ds.iter({"$or": [{"width": {"$lt": 700}}, {"width": {"$gte": 2000}}]}, batch_size=400)]
    assert got == want
    assert [d["_id"] for d in ds.iter(batch_size=700)] == [f"s{i:05d}" for i in range(n) if not 900 <= i < 1200]
    assert ds.get("s00005")["metadata"] == {"i": -5}
    assert [d["_id"] for d in ds.iter({"width": {"$lt": 4}}, sort=[("width", -1)], batch_size=2)] == [
        "s00003", "s00002", "s00001", "s00000"]
