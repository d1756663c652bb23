"""A read-only catalog under several threads (a server's requests): a cursor per thread, cached counts and
documents, and the same answers as one thread reading alone."""
from __future__ import annotations

import threading
import time

import pytest

from viscurate import Dataset, DatasetBusy
from viscurate.store.catalog import Catalog


def _docs(n: int) -> list[dict]:
    return [{"_id": f"s{i:04d}", "width": 100 + i, "split": ["train", "val"][i % 2], "tags": ["a"] if i % 3 else [],
             "quality": {"blur": i / 7},
             "object_analysis": [{"name": ["cat", "dog"][(i + k) % 2], "confidence": k / 4, "bbox": [0, 0, 5, 5]}
                                 for k in range(i % 4)],
             "metadata": {"site": i % 5}} for i in range(n)]


QUERIES = [({}, None), ({"object_analysis.name": "cat"}, None), ({"width": {"$gt": 150}}, {"width": -1}),
           ({"split": "val", "tags": "a"}, {"quality.blur": 1}), ({"object_analysis": {"$size": 0}}, None)]


def test_threads_read_at_once_and_agree_with_one_reader(home):
    ds = Dataset.create("many")
    ds.add_documents(_docs(300))
    ds.close()
    with Catalog(ds.directory, "many", write=True) as cat:  # one thread, no caches: the reference
        expected = [(cat.count(q), cat.find(q, sort=s, page=p, page_size=7)) for q, s in QUERIES for p in (1, 3, 40)]
    with Catalog(ds.directory, "many") as cat:
        failures: list = []
        start = threading.Barrier(8)

        def read(k: int) -> None:
            try:
                start.wait()
                for _ in range(3):
                    got = [(cat.count(q), cat.find(q, sort=s, page=p, page_size=7))
                           for q, s in QUERIES for p in (1, 3, 40)]
                    if got != expected:
                        failures.append(k)
                    got[0][1]["results"][0]["width"] = -1  # a caller's change never reaches the cache
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

        threads = [threading.Thread(target=read, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert len(cat._thread_cursors) >= 2  # each thread had a cursor of its own
        assert cat._cache.counts and cat._cache.docs
        assert len(cat._cache.lists) == len(QUERIES)  # each asked often: later pages were slices of one list
        assert cat.get("s0000") == expected[0][1]["results"][0]
    ds.add_documents([{"_id": "new", "width": 1}])  # the write lock waits for no reader: all closed
    assert ds.count({}) == 301 and ds.find({"_id": "new"})["length"] == 1


def test_a_writable_catalog_caches_nothing(home):
    ds = Dataset.create("w")
    with Catalog(ds.directory, "w", write=True) as cat:
        cat.write(_docs(5))
        assert cat.count({"width": {"$gt": 101}}) == 3
        cat.write([{"_id": "x", "width": 500}])
        assert cat.count({"width": {"$gt": 101}}) == 4
        assert cat.find({"_id": "x"})["results"][0]["width"] == 500
        cat.update({"_id": "x"}, {"$set": {"width": 7}})
        assert cat.find({"_id": "x"})["results"][0]["width"] == 7
        assert cat._cache is None


def test_a_write_goes_through_while_other_threads_keep_reading(home):
    """A server's edit while its other requests keep reading: the write holds new reads back and waits
    for those in flight, instead of waiting for a quiet moment that never comes (and failing busy)."""
    ds = Dataset.create("busy", lock_timeout=5)
    ds.add_documents(_docs(400))
    stop = threading.Event()
    reads: list[int] = []
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                reads.append(ds.find({"width": {"$gt": 120}}, page=2, page_size=7)["length"])
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        while len(reads) < 20:  # the readers are going
            threading.Event().wait(0.01)
        t0 = time.monotonic()
        for k in range(5):
            assert ds.tag({"width": 100 + k}, "edited") == 1
        took = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert took < 5, f"5 writes took {took:.1f}s under reads"
    assert ds.count({"tags": "edited"}) == 5
    # and iterating while writing from the same thread still fails fast with a clear error, not a hang
    quick = Dataset.open("busy", lock_timeout=0.5)
    with pytest.raises(DatasetBusy):
        for _ in quick.iter({}):
            quick.tag({"width": 100}, "inside")


def _reader_docs(directory, name: str) -> dict[str, dict]:
    with Catalog(directory, name) as cat:
        return {d["_id"]: d for d in cat.find({}, page_size=1000)["results"]}


def _writer_docs(directory, name: str) -> dict[str, dict]:
    with Catalog(directory, name, write=True) as cat:  # reads every column
        return {d["_id"]: d for d in cat.find({}, page_size=1000)["results"]}


def test_a_reader_fetches_only_filled_columns_and_misses_no_value(home):
    """Readers select the columns the writes filled (listed in meta); every write path must keep that
    list whole, or a reader would silently drop a field."""
    from viscurate.store.catalog import FILLED_COLUMNS

    ds = Dataset.create("filled")
    ds.add_documents(_docs(30))
    with Catalog(ds.directory, "filled") as cat:
        select = cat._filled_select("samples")
        assert select != "*" and '"width"' in select and '"object_analysis#n"' in select
        assert '"label_quality_estimation"' not in select  # never written: not fetched
        assert '"eval"' not in cat._filled_select("objects") and '"attrs"' not in cat._filled_select("objects")
    ds.update({"width": {"$lt": 110}}, {"$set": {"label_quality_estimation": 0.25}})  # one-statement update
    ds.update({"width": 111}, {"$set": {"ground_truth": {"label": "cat"}}})  # read-modify-write update
    ds.add_documents([{"_id": "s0005", "faces": [{"confidence": 0.9, "bbox": [1, 2, 3, 4]}]}], mode="merge")
    ds.add_documents([{"_id": "s0006", "object_analysis": [{"name": "dog", "bbox": [0, 0, 2, 2], "eval": "fp",
                                                             "note": "free-form"}]}], mode="merge")
    ds.close()
    assert _reader_docs(ds.directory, "filled") == _writer_docs(ds.directory, "filled")
    got = _reader_docs(ds.directory, "filled")
    assert got["s0001"]["label_quality_estimation"] == 0.25 and got["s0011"]["ground_truth"] == {"label": "cat"}
    assert got["s0005"]["faces"][0]["confidence"] == 0.9
    assert got["s0006"]["object_analysis"] == [{"name": "dog", "bbox": [0, 0, 2, 2], "eval": "fp", "note": "free-form"}]

    # a catalog from before the list: readers fetch every column, and its next write lists what is filled
    with Catalog(ds.directory, "filled", write=True) as cat:
        cat.con.execute("DELETE FROM meta WHERE key IN (SELECT unnest(?))", [list(FILLED_COLUMNS.values())])
    with Catalog(ds.directory, "filled") as cat:
        assert cat._filled_select("samples") == "*" and cat._filled_select("objects") == "*"
    ds.tag({"_id": "s0002"}, "late")
    ds.add_documents([{"_id": "s0007", "object_analysis": [{"name": "cat", "bbox": [1, 1, 2, 2]}]}], mode="merge")
    with Catalog(ds.directory, "filled") as cat:
        samples = cat._filled_select("samples")
        assert '"label_quality_estimation"' in samples and '"tags"' in samples
        assert '"eval"' in cat._filled_select("objects") and '"attrs"' in cat._filled_select("objects")
    assert _reader_docs(ds.directory, "filled") == _writer_docs(ds.directory, "filled")


def test_match_lists_are_built_once_and_bounded():
    """A query's whole list is built by one thread on its third asking (the others keep asking for their
    own page meanwhile: no stampede), then serves every page; one too large to keep is not kept."""
    import pyarrow as pa

    from viscurate.store.read_cache import MATCH_LIST_AFTER, ReadCache

    cache = ReadCache(match_bytes=4096)
    key = ("w", "[]", "s._seq")
    building, release = threading.Event(), threading.Event()
    builds: list[int] = []

    def slow_build() -> pa.Array:
        builds.append(1)
        building.set()
        release.wait(5)
        return pa.array([f"id{i}" for i in range(100)])

    for _ in range(MATCH_LIST_AFTER - 1):
        assert cache.page(key, slow_build, 0, 5) is None
    got: list = []
    builder = threading.Thread(target=lambda: got.append(cache.page(key, slow_build, 10, 5)))
    builder.start()
    assert building.wait(5)
    assert cache.page(key, slow_build, 0, 5) is None  # being built elsewhere: ask for the page alone
    release.set()
    builder.join()
    assert got == [([f"id{i}" for i in range(10, 15)], 100)]
    assert cache.page(key, slow_build, 95, 25) == ([f"id{i}" for i in range(95, 100)], 100)
    assert builds == [1]

    big = ("big", "[]", "s._seq")
    huge = pa.array([f"{i:0100d}" for i in range(100)])  # ~10 kB, over a quarter of the budget
    for _ in range(MATCH_LIST_AFTER - 1):
        cache.page(big, lambda: huge, 0, 1)
    assert cache.page(big, lambda: huge, 0, 1) == (["0" * 100], 100)  # served from the list just built
    assert big not in cache.lists and cache.page(big, lambda: huge, 0, 1) is None  # but never kept
