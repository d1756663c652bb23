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
    with Catalog(ds.directory, "many") as cat:  # one thread: the reference
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
        assert cat._counts and cat._docs
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
        assert not cat._counts and not cat._docs


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
