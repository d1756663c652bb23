"""The workspace, the catalog and the Python API: lifecycle, typed writes, updates, locking, safety."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

import viscurate
from viscurate import Dataset
from viscurate.errors import (DatasetBusy, DatasetExists, DatasetNotFound, FieldTypeError, QueryError,
                              SchemaVersionError, UnsupportedOperator, ViscurateError)
from viscurate.store.catalog import Catalog


def docs(n=10):
    return [{"_id": f"id{i:03d}", "filepath": f"/data/{i}.jpg", "width": 100 * i, "height": 50,
             "format": "PNG" if i % 2 else "JPEG", "tags": ["even"] if i % 2 == 0 else [],
             "quality": {"blur": float(i), "grayscale": i % 3 == 0},
             "object_analysis": [{"name": "cat" if i % 2 else "dog", "confidence": i / 10,
                                  "bbox": [0, 0, 10, 10], "note": {"k": i}}],
             "metadata": {"camera": f"cam{i % 3}", "site": i}} for i in range(n)]


def test_workspace_lifecycle(home):
    assert Dataset.list() == []
    ds = Dataset.create("pets")
    assert Dataset.list() == ["pets"] and Dataset.exists("pets")
    assert (ds.directory / "catalog.duckdb").exists()
    for sub in ("indexes", "media", "thumbnails"):
        assert (ds.directory / sub).is_dir()
    with pytest.raises(DatasetExists):
        Dataset.create("pets")
    Dataset.create("pets", exist_ok=True)
    ds.add_documents(docs(3))
    ds.rename("animals")
    assert Dataset.list() == ["animals"]
    assert Dataset.open("animals").count() == 3
    with pytest.raises(DatasetNotFound, match="pets"):
        Dataset.open("pets")
    Dataset.open("animals").delete()
    assert Dataset.list() == []


def test_home_flag_env_and_default(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("VISCURATE_HOME", str(a))
    Dataset.create("x")
    Dataset.create("y", home=b)
    assert Dataset.list() == ["x"] and Dataset.list(home=b) == ["y"]
    monkeypatch.delenv("VISCURATE_HOME")
    from viscurate.store.workspace import default_home
    assert "viscurate" in str(default_home())


@pytest.mark.parametrize("bad", ["", "../evil", "a/b", ".hidden", "x" * 200, "name with space"])
def test_dataset_names_cannot_escape_the_workspace(home, bad):
    with pytest.raises(ViscurateError, match="invalid dataset name"):
        Dataset.create(bad)


def test_schema_version_is_checked(home):
    ds = Dataset.create("v")
    with Catalog(ds.directory, "v", write=True) as cat:
        cat.meta_set("schema_version", "999")
    with pytest.raises(SchemaVersionError, match="999"):
        ds.count()


def test_round_trip_and_types(home):
    ds = Dataset.create("t")
    ds.add_documents(docs(4))
    d = ds.get("id003")
    assert d["quality"] == {"blur": 3.0, "grayscale": True}
    assert d["object_analysis"][0] == {"name": "cat", "confidence": 0.3, "bbox": [0.0, 0.0, 10.0, 10.0], "note": {"k": 3}}
    assert d["metadata"] == {"camera": "cam0", "site": 3}
    assert list(d)[:3] == ["_id", "filepath", "width"]
    with pytest.raises(FieldTypeError, match="width"):
        ds.add_documents([{"width": "wide"}])
    with pytest.raises(FieldTypeError, match="quality.sharpness is not a field"):
        ds.add_documents([{"quality": {"sharpness": 1}}])
    with pytest.raises(FieldTypeError, match="invalid field name"):
        ds.add_documents([{"a.b": 1}])
    with pytest.raises(FieldTypeError):
        ds.add_documents([{"object_analysis": [{"name": 5}]}])
    with pytest.raises(DatasetExists):
        ds.add_documents([{"_id": "id001"}])
    assert ds.count() == 4  # a refused batch writes nothing
    assert ds.add_documents([{"_id": "id001", "width": 7}], mode="merge") == {"inserted": 0, "updated": 1, "skipped": 0}
    assert ds.get("id001")["width"] == 7 and ds.get("id001")["format"] == "PNG"
    ds.add_documents([{"_id": "id001", "width": 8}], mode="replace")
    assert ds.get("id001") == {"_id": "id001", "width": 8}
    assert ds.add_documents([{"_id": "id001"}], mode="skip")["skipped"] == 1


def test_updates_fast_and_general_paths_agree(home):
    ds = Dataset.create("u")
    ds.add_documents(docs(10))
    assert ds.tag({"format": "PNG"}, "odd", "x") == 5
    assert ds.tag({"format": "PNG"}, "odd") == 0  # already there: nothing changes
    assert ds.count({"tags": {"$all": ["odd", "x"]}}) == 5
    assert ds.untag({}, "x") == 5
    assert ds.get("id001")["tags"] == ["odd"]
    assert ds.set_field({"width": {"$gte": 500}}, "split", "val") == 5
    assert ds.count({"split": "val"}) == 5
    assert ds.update(["id000", "id001"], {"$unset": {"split": ""}}) == 0  # those were not set
    assert ds.update({}, {"$set": {"metadata.reviewer": "ann"}}) == 10  # free-form: general path
    assert ds.get("id004")["metadata"] == {"camera": "cam1", "site": 4, "reviewer": "ann"}
    assert ds.update("id004", {"$set": {"quality.blur": 99}}) == 1
    assert ds.get("id004")["quality"]["blur"] == 99.0
    assert ds.update("id004", {"$set": {"quality.blur": 99}}) == 0
    with pytest.raises(FieldTypeError):
        ds.update({}, {"$set": {"width": "x"}})
    with pytest.raises(QueryError, match=r"\$inc"):
        ds.update({}, {"$inc": {"width": 1}})
    with pytest.raises(QueryError, match="_id"):
        ds.update({}, {"$set": {"_id": "x"}})
    assert ds.delete_samples({"format": "JPEG"}) == 5
    assert ds.count() == 5


def test_find_pages_sort_projection(home):
    ds = Dataset.create("f")
    ds.add_documents(docs(60))
    res = ds.find({"width": {"$gt": 0}}, page=2, page_size=25)
    assert res["length"] == 59 and res["page"] == 2 and len(res["results"]) == 25
    assert [d["_id"] for d in res["results"]][0] == "id026"
    assert ds.find({}, page=4)["results"] == [] and ds.find({}, page=4)["length"] == 60
    top = ds.find({}, sort=[("width", -1)], page_size=3, projection={"width": 1})["results"]
    assert top == [{"_id": "id059", "width": 5900}, {"_id": "id058", "width": 5800}, {"_id": "id057", "width": 5700}]
    assert ds.find({}, sort={"metadata.site": -1}, page_size=1)["results"][0]["_id"] == "id059"
    with pytest.raises(QueryError):
        ds.find({}, page=0)
    with pytest.raises(QueryError):
        ds.find({}, page_size=0)


@pytest.mark.parametrize("query,word", [
    ({"width": {"$where": "1"}}, "$where"), ({"$expr": {}}, "$expr"), ({"$text": {"$search": "x"}}, "$text"),
    ({"width": {"$mod": [2, 0]}}, "$mod"), ({"tags.$": "x"}, "'$'"),
])
def test_unsupported_operators_are_named(home, query, word):
    ds = Dataset.create("e")
    with pytest.raises(UnsupportedOperator, match=word.replace("$", r"\$")):
        ds.find(query)


@pytest.mark.parametrize("query", [{"width": {"$in": 5}}, {"$or": []}, {"$and": {}}, {"width": {"$size": -1}},
                                   {"width": {"$type": "nonsense"}}, {"a..b": 1}, {"width": {"$gt": 1, "x": 2}},
                                   {"name": {"$regex": "(?<=a)b"}}, {"name": {"$options": "i"}}])
def test_malformed_queries_are_clear_errors(home, query):
    ds = Dataset.create("m")
    ds.add_documents([{"metadata": {"name": "ab"}, "format": "ab"}])
    with pytest.raises(QueryError):
        ds.find({k.replace("name", "format") if k == "name" else k: v for k, v in query.items()})


def test_values_never_reach_sql_text(home):
    ds = Dataset.create("inj")
    evil = "x'); DROP TABLE samples; --"
    ds.add_documents([{"format": evil, "metadata": {evil: evil}, "object_analysis": [{"name": evil}]}])
    assert ds.count({"format": evil}) == 1
    assert ds.count({f"metadata.{evil}": evil}) == 1  # field names travel as parameters too
    assert ds.count({"metadata": {"$elemMatch": {"x": 1}}}) == 0
    assert ds.count({"object_analysis.name": {"$in": [evil, "'"]}}) == 1
    assert ds.count({"format": {"$regex": "DROP"}}) == 1
    assert ds.count() == 1


def test_large_update_is_one_statement(home):
    ds = Dataset.create("big")
    ds.add_documents(({"width": i, "tags": []} for i in range(20000)), batch_size=5000)
    t = time.time()
    assert ds.tag({"width": {"$lt": 15000}}, "first") == 15000
    assert time.time() - t < 5
    assert ds.count({"tags": "first"}) == 15000


HOLDER = textwrap.dedent("""
    import sys, time
    from viscurate.store.catalog import Catalog
    cat = Catalog(sys.argv[1], "busy", write=True)
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    cat.close()
""")


def test_second_process_gets_a_clear_message_or_waits(home):
    ds = Dataset.create("busy")
    ds.add_documents(docs(2))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ds.directory), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        impatient = Dataset.open("busy", lock_timeout=0.3)
        assert impatient.count() == 2  # a writer between two calls lets readers in (decisions #22)
        impatient.close()
        with pytest.raises(DatasetBusy) as err:  # but not another writer
            impatient.tag({}, "x")
        assert f"process {proc.pid}" in str(err.value) and "--wait" in str(err.value)
        patient = Dataset.open("busy", lock_timeout=30)
        assert patient.tag({}, "x") == 2  # waited for the writer to finish
    finally:
        proc.wait(timeout=30)


def test_readers_share_and_writers_wait(home):
    ds = Dataset.create("share")
    ds.add_documents(docs(3))
    with Catalog(ds.directory, "share") as r1, Catalog(ds.directory, "share") as r2:
        assert r1.count() == r2.count() == 3
        with pytest.raises(DatasetBusy):
            Catalog(ds.directory, "share", write=True, timeout=0.2)
    with ds.session():
        assert ds.count() == 3
        ds.tag({}, "upgraded")  # a read session upgrades to write when needed
    assert ds.count({"tags": "upgraded"}) == 3


def test_info_summarizes(home):
    ds = Dataset.create("info")
    ds.add_documents(docs(10))
    info = ds.info()
    assert info["samples"] == 10
    assert info["formats"] == {"JPEG": 5, "PNG": 5}
    assert info["width"]["max"] == 900.0
    assert info["labels"]["object_analysis"]["classes"] == {"cat": 5, "dog": 5}
    assert info["tags"] == {"even": 5}
    json.dumps(info)


def test_public_api_exports():
    assert viscurate.Dataset is Dataset
    assert issubclass(viscurate.UnsupportedOperator, viscurate.QueryError)


def test_a_reader_keeps_the_catalog_open_but_lets_a_writer_in(home, monkeypatch):
    monkeypatch.setenv("VISCURATE_IDLE_RELEASE", "120")  # only the writer's signal can release it
    ds = Dataset.create("cache")
    ds.add_documents(docs(2))
    assert ds.count() == 2
    assert ds._access.reader is not None  # kept open between calls
    code = "import viscurate; print(viscurate.Dataset('cache', lock_timeout=20).tag({}, 'w'))"
    t = time.time()
    writer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert writer.returncode == 0, writer.stderr
    assert writer.stdout.strip() == "2" and time.time() - t < 15
    assert ds.count({"tags": "w"}) == 2  # and the reader sees the write afterwards
    ds.close()
    assert ds._access.reader is None


def test_vectors_are_stored_per_model_and_follow_their_samples(home):
    import numpy as np
    ds = Dataset.create("vec")
    ds.add_documents(docs(3))
    rng = np.random.default_rng(0)
    with Catalog(ds.directory, "vec", write=True) as cat:
        image = rng.standard_normal((3, 16)).astype(np.float32)
        cat.write_vectors("m@1", ["id000", "id001", "id002"], image)
        cat.write_vectors("m@1", ["id000", "id000"], np.ones((2, 16)), field="object_analysis", idxs=[0, 1])
        cat.write_vectors("m@1", ["id001"], np.zeros((1, 16)))  # replaces, does not add
        ids, idxs, matrix = cat.read_vectors("m@1")
        assert ids == ["id000", "id001", "id002"] and idxs == [None] * 3
        assert np.allclose(matrix[0], image[0], atol=1e-2) and not matrix[1].any()
        assert cat.read_vectors("m@1", field="object_analysis")[1] == [0, 1]
        assert cat.read_vectors("m@1", query={"format": "PNG"})[0] == ["id001"]
        assert cat.vector_models() == {"m@1": 5}
        with pytest.raises(ViscurateError, match="nope"):
            cat.write_vectors("m@1", ["nope"], np.ones((1, 16)))
    ds.delete_samples("id000")
    with Catalog(ds.directory, "vec") as cat:
        assert cat.vector_models() == {"m@1": 2}


def test_new_declared_fields_are_added_to_old_catalogs(home):
    import duckdb
    ds = Dataset.create("old")
    ds.add_documents(docs(2))
    con = duckdb.connect(str(ds.directory / "catalog.duckdb"))
    con.execute('ALTER TABLE samples DROP COLUMN "models.face_analysis"')  # as if made by an older version
    con.close()
    (ds.directory / ".schema-stamp").write_text("signature of an older version")
    assert ds.count({"models.face_analysis": None}) == 2
    ds.set_field("id000", "models.face_analysis", "blazeface@1")
    assert ds.get("id000")["models"] == {"face_analysis": "blazeface@1"}


def test_a_catalog_without_a_newer_box_attribute_gets_its_column_on_a_read(home):
    """A catalog written before a box attribute was declared (object_analysis.doubts came with issue 16):
    reading it must add the column, since a query on the attribute names it."""
    import duckdb

    from viscurate.store.connection import SCHEMA_STAMP
    ds = Dataset.create("old")
    ds.add_documents([{**d, "object_analysis": [{**d["object_analysis"][0], "doubts": ["open_set"]}]}
                      for d in docs(3)])
    path, directory = ds.directory / "catalog.duckdb", ds.directory
    del ds
    import gc
    gc.collect()
    con = duckdb.connect(str(path))
    con.execute('ALTER TABLE objects DROP COLUMN "doubts"')  # as an older version wrote it
    con.close()
    (directory / SCHEMA_STAMP).unlink(missing_ok=True)
    reopened = Dataset.open("old")
    assert reopened.count({"object_analysis.doubts": "open_set"}) == 0  # the values of a dropped column are gone
    assert reopened.count({"object_analysis.name": "cat"}) == 1
