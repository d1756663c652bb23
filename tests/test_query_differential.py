"""Differential tests: the same documents in viscurate and in a real MongoDB server, the same
hypothesis-generated queries on both, identical result sets, counts and sort orders."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from viscurate.errors import QueryError, UnsupportedOperator
from viscurate.store.catalog import Catalog

from . import query_gen as qg

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Pair:
    """One corpus loaded in both stores; the documents given to MongoDB are the ones viscurate returns,
    so both sides hold exactly the same data."""

    def __init__(self, tmp, mongo_client, name, docs):
        self.cat = Catalog(tmp / name, name, write=True)
        self.cat.write(docs)
        self.docs = list(self.cat.iter_docs())
        self.col = mongo_client.viscurate_test[name]
        self.col.drop()
        self.col.insert_many([dict(d) for d in self.docs])
        self.unsupported = 0
        self.total = 0
        self.nonempty = 0

    def check(self, query):
        self.total += 1
        try:
            expected = sorted(d["_id"] for d in self.col.find(query, {"_id": 1}))
            mongo_error = None
        except Exception as e:  # the server refused the query
            expected, mongo_error = None, e
        try:
            got = self.cat.find(query, page=1, page_size=10_000)
        except UnsupportedOperator:
            self.unsupported += 1
            return
        except QueryError as e:
            assert mongo_error is not None, f"viscurate refused a query MongoDB accepts: {query}: {e}"
            return
        assert mongo_error is None, f"MongoDB refused {query} ({mongo_error}) but viscurate answered"
        ids = sorted(d["_id"] for d in got["results"])
        assert ids == expected, f"query {query}\n viscurate-only {sorted(set(ids) - set(expected))}\n mongo-only {sorted(set(expected) - set(ids))}"
        assert got["length"] == len(expected) == self.cat.count(query)
        if expected:
            self.nonempty += 1

    def check_sort(self, path, direction):
        import pymongo.errors
        try:
            expected = [d["_id"] for d in self.col.find({}, {"_id": 1}).sort([(path, direction), ("_id", 1)])]
        except pymongo.errors.OperationFailure as e:
            pytest.skip(f"MongoDB itself refuses this sort on this corpus: {e.details.get('errmsg', '')[:120]}")
        try:
            got = self.cat.find({}, sort=[(path, direction), ("_id", 1)], page_size=10_000)
        except UnsupportedOperator:
            self.unsupported += 1
            return
        assert [d["_id"] for d in got["results"]] == expected, f"sort {path} {direction}"


@pytest.fixture(scope="module")
def free_pair(tmp_path_factory, mongo_client):
    docs = qg.free_form_docs(seed=7, n=300)
    pair = Pair(tmp_path_factory.mktemp("free"), mongo_client, "free", docs)
    yield pair
    pair.cat.close()


@pytest.fixture(scope="module")
def sample_pair(tmp_path_factory, mongo_client):
    docs = qg.sample_docs(seed=11, n=300)
    pair = Pair(tmp_path_factory.mktemp("samples"), mongo_client, "samples", docs)
    yield pair
    pair.cat.close()


def test_free_form_round_trip_is_exact(free_pair):
    originals = {d["_id"]: d for d in qg.free_form_docs(seed=7, n=300)}
    for d in free_pair.docs:
        assert d == originals[d["_id"]]
        assert list(d) == list(originals[d["_id"]])


@SETTINGS
@given(query=qg.queries(qg.free_paths, qg.free_values))
def test_free_form_queries_match_mongodb(free_pair, query):
    free_pair.check(query)


@SETTINGS
@given(query=qg.queries(qg.sample_paths, qg.sample_values))
def test_sample_queries_match_mongodb(sample_pair, query):
    sample_pair.check(query)


def test_generated_queries_were_meaningful(free_pair, sample_pair):
    """Guards the two tests above against passing vacuously: most queries ran and many matched."""
    for pair in (free_pair, sample_pair):
        assert pair.total >= 300
        assert pair.unsupported <= 0.15 * pair.total, (pair.unsupported, pair.total)
        assert pair.nonempty >= 0.3 * pair.total, (pair.nonempty, pair.total)


HAND_WRITTEN = [
    {"a.b": None}, {"a.b": {"$ne": None}}, {"a": []}, {"a": {"$gte": None}}, {"a.0": 1}, {"a.0.b": 1},
    {"a": {"$elemMatch": {"b": None}}}, {"a": {"$elemMatch": {}}}, {"a": {"$type": "array"}},
    {"a": {"$all": []}}, {"a": {"$in": []}}, {"a": {"$nin": []}}, {"a": {"$gt": [1]}}, {"a": {"$gt": {}}},
    {"a": {"$size": 0}}, {"a.1": {"$exists": True}}, {"a": 2**53 + 1}, {"a": 2.0**53},
    {"a": {"$gt": 2**53}}, {"a": {"$lt": 1.5}}, {"m.a.b": {"$exists": False}},
]


@pytest.mark.parametrize("query", HAND_WRITTEN, ids=[str(q) for q in HAND_WRITTEN])
def test_known_edge_cases(free_pair, query):
    free_pair.check(query)


@pytest.mark.parametrize("path", ["a", "b", "a.b", "a.0", "m.a", "c.b.a", "nothing"])
@pytest.mark.parametrize("direction", [1, -1])
def test_free_form_sort_matches_mongodb(free_pair, path, direction):
    free_pair.check_sort(path, direction)


@pytest.mark.parametrize("path", ["width", "format", "tags", "issues", "quality.blur", "quality.grayscale",
                                  "object_analysis.confidence", "object_analysis.name", "metadata.a",
                                  "label_quality_estimation", "quality.zz"])
@pytest.mark.parametrize("direction", [1, -1])
def test_sample_sort_matches_mongodb(sample_pair, path, direction):
    sample_pair.check_sort(path, direction)


def test_paging_visits_every_match_once(sample_pair):
    query = {"width": {"$gte": 32}}
    total = sample_pair.cat.count(query)
    seen = []
    page = 1
    while True:
        res = sample_pair.cat.find(query, page=page, page_size=25)
        assert res["length"] == total
        if not res["results"]:
            break
        seen += [d["_id"] for d in res["results"]]
        page += 1
    assert len(seen) == len(set(seen)) == total
    expected = sorted(d["_id"] for d in sample_pair.col.find(query, {"_id": 1}))
    assert sorted(seen) == expected


@pytest.mark.parametrize("projection", [{"width": 1}, {"quality.blur": 1, "_id": 0}, {"object_analysis.name": 1},
                                        {"histogram": 0, "object_analysis": 0}, {"metadata.a": 1}])
def test_projection_matches_mongodb(sample_pair, projection):
    expected = {d["_id"] if "_id" in d else i: d for i, d in enumerate(
        sample_pair.col.find({}, projection).sort("_id", 1))}
    got = sample_pair.cat.find({}, projection=projection, sort=[("_id", 1)], page_size=10_000)["results"]
    got = {d["_id"] if "_id" in d else i: d for i, d in enumerate(got)}
    assert got == expected
