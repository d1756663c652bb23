"""Hostile queries (issue 14, items 2, 3 and 8): a few bytes of MongoDB query must compile in linear time
and space, stay within the documented budgets, answer a 400 past them (never a RecursionError or a 500),
and run no longer than the query time limit. Real DuckDB catalogs over real photos, a real server.
"""
from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import skimage_photos
from viscurate import Dataset
from viscurate.errors import QueryError
from viscurate.store.query.budget import MAX_DEPTH, MAX_SQL_BYTES, QueryBudget, QueryTimeout, check_query
from viscurate.store.query.compiler import compile_query

PATH10 = "f0.f1.f2.f3.f4.f5.f6.f7.f8.f9"


def elem_match(depth: int, inner: dict | None = None) -> dict:
    """``{"a": {"$elemMatch": {"a": {"$elemMatch": ... {"a": 1}}}}}``, ``depth`` $elemMatch deep."""
    q = inner if inner is not None else {"a": 1}
    for _ in range(depth):
        q = {"a": {"$elemMatch": q}}
    return q


def nested_arrays(depth: int) -> list:
    """A value of ``a`` that ``elem_match(depth)`` matches: ``[{"a": [{"a": ... [{"a": 1}]}]}]``."""
    x: dict = {"a": 1}
    for _ in range(depth):
        x = {"a": [x]}
    return x["a"]


def path_through_arrays(leaf: object) -> dict:
    """``f0`` of a document where every other step of PATH10 crosses an array of documents."""
    value: object = leaf
    for i in range(9, 0, -1):
        value = {f"f{i}": value}
        if i % 2:
            value = [1, value]  # a scalar element contributes nothing, the document is descended into
    return value  # type: ignore[return-value]


def compiled(query: dict) -> tuple[str, float, int]:
    """SQL, seconds and peak Python memory (bytes) of compiling ``query``."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        sql, _ = compile_query(query)
    finally:
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return sql, seconds, peak


# ---- compilation: linear, small, fast ----------------------------------------------------------


def test_a_ten_part_undeclared_path_compiles_small_and_fast():
    # was 32 s and 5 GB of server memory: the SQL grew ~4x per path part
    sql, seconds, peak = compiled({PATH10: 1})
    assert seconds < 2 and len(sql) < 10_000 and peak < 5_000_000, (seconds, len(sql), peak)
    # linear: each further part costs about the same
    longer = [len(compiled({".".join(f"f{i}" for i in range(n)): None})[0]) for n in (10, 20, 30)]
    assert longer[2] - longer[1] < 1.2 * (longer[1] - longer[0]), longer


@pytest.mark.parametrize("depth", [6, 7])
def test_nested_elem_match_compiles_small_and_fast(depth):
    # depth 6 was 7 s and 2.5 GB, depth 7 passed 6 GB: $elemMatch compiled its sub-query twice
    sql, seconds, peak = compiled(elem_match(depth))
    assert seconds < 2 and len(sql) < 5_000 and peak < 5_000_000, (seconds, len(sql), peak)
    step = len(compiled(elem_match(depth))[0]) - len(compiled(elem_match(depth - 1))[0])
    assert step < 600, step  # a constant per level, not a factor


def test_ten_thousand_in_values_on_an_undeclared_field_are_one_parameter():
    # was 24 s and 3.3 GB (~480 characters of SQL per value)
    for values in (list(range(10_000)), [i + 0.5 for i in range(10_000)], [f"v{i}" for i in range(10_000)]):
        sql, seconds, peak = compiled({"metadata.size": {"$in": values}})
        assert seconds < 2 and len(sql) < 3_000 and peak < 20_000_000, (seconds, len(sql), peak)


def test_ten_thousand_or_branches_are_refused_before_compiling():
    # was 16 s
    query = {"$or": [{"metadata.size": i} for i in range(10_000)]}
    t = time.perf_counter()
    with pytest.raises(QueryError, match=r"\$or has 10000 branches; the limit is 1000 \(max_branches"):
        compile_query(query)
    assert time.perf_counter() - t < 0.5


@pytest.mark.parametrize("query, budget", [
    (elem_match(300), "max_depth"),
    ({".".join(["p"] * 40): 1}, "max_path_parts"),
    ({"tags": {"$all": [f"t{i}" for i in range(2_000)]}}, "max_list"),
    ({"metadata.box": {"$in": [[i] for i in range(2_000)]}}, "max_list"),
    ({"$and": [{"metadata.a": i} for i in range(1_001)]}, "max_branches"),
    ({"$or": [{"metadata.a.b": i} for i in range(500)]}, "max_sql_bytes"),
])
def test_each_budget_is_a_query_error_naming_it(query, budget):
    with pytest.raises(QueryError, match=rf"query over budget: .*\({budget}, VISCURATE_QUERY_{budget.upper()}\)"):
        compile_query(query)


def test_budgets_can_be_changed_by_environment(monkeypatch):
    monkeypatch.setenv("VISCURATE_QUERY_MAX_PATH_PARTS", "5")
    with pytest.raises(QueryError, match="the limit is 5"):
        compile_query({"a.b.c.d.e.f": 1})
    monkeypatch.setenv("VISCURATE_QUERY_MAX_PATH_PARTS", "many")
    with pytest.raises(QueryError, match="VISCURATE_QUERY_MAX_PATH_PARTS='many' is not a number"):
        compile_query({"a": 1})


def test_plain_id_lists_are_not_limited_by_the_list_budget():
    # the Python API selects samples by ids: any number of them is one parameter
    ids = [f"{i:024x}" for i in range(50_000)]
    sql, params = compile_query({"_id": {"$in": ids}})
    assert len(sql) < 200 and params == [ids]


# ---- property: whatever the shape, a QueryError or small SQL, quickly ----------------------------

LEAVES = st.one_of(
    st.builds(lambda n, v: {".".join(["f", *map(str, range(n))]): v}, st.integers(1, 40), st.none() | st.integers()),
    st.builds(lambda n: {"metadata.x": {"$in": list(range(n))}}, st.integers(0, 20_000)),
    st.builds(lambda n: {"metadata.x": {"$nin": [[i] for i in range(n)]}}, st.integers(0, 1_500)),
    st.builds(lambda n: {"tags": {"$all": [f"t{i}" for i in range(n)]}}, st.integers(0, 1_500)),
    st.builds(lambda p: {p: {"$exists": True}}, st.sampled_from(["width", "quality.blur", "object_analysis.name", "a.0.b"])),
)
WRAPPERS = [
    lambda q: {"a": {"$elemMatch": q}},
    lambda q: {"object_analysis": {"$elemMatch": q}},
    lambda q: {"$and": [q]},
    lambda q: {"$or": [q, {"b.c": 1}]},
    lambda q: {"$nor": [q]},
    lambda q: {"a.b": {"$not": {"$elemMatch": q}}},
    lambda q: {"x.0": {"$all": [{"$elemMatch": q}]}},
]
DEEP = st.builds(lambda leaf, wraps: _wrap(leaf, wraps), LEAVES, st.lists(st.sampled_from(WRAPPERS), max_size=40))
WIDE = st.builds(lambda op, n, leaf: {op: [leaf] * n}, st.sampled_from(["$and", "$or", "$nor"]),
                 st.integers(1, 1_500), LEAVES)
HOSTILE = st.one_of(DEEP, WIDE, LEAVES)


def _wrap(query: dict, wrappers: list) -> dict:
    for w in wrappers:
        query = w(query)
    return query


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(query=HOSTILE)
def test_compiling_a_hostile_query_is_bounded(query):
    t = time.perf_counter()
    try:
        sql, _ = compile_query(query)
    except QueryError:
        pass
    else:
        assert len(sql) <= MAX_SQL_BYTES
    assert time.perf_counter() - t < 2.0


# ---- running them: real catalogs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three photos: one with PATH10 = 1 through arrays and ``a`` nested 7 deep, one with PATH10 = 2, one
    with nothing, and one big array for queries that take long."""
    root = tmp_path_factory.mktemp("hostile-queries")
    photos = skimage_photos(root / "photos", ("astronaut.png", "camera.png", "coffee.png"))
    ds = Dataset.create("photos", home=root / "home")
    ds.add_images(photos, progress=False)
    first, second, _ = ds.ids()
    ds.update([first], {"$set": {"f0": path_through_arrays(1), "a": nested_arrays(7)}})
    ds.update([second], {"$set": {"f0": path_through_arrays(2), "a": nested_arrays(6),
                                  "big": [{"x": [{"y": i} for i in range(30)]} for i in range(3_000)]}})
    return ds, first, second


def test_the_reproductions_run_and_match_exactly(dataset):
    ds, first, second = dataset
    assert [d["_id"] for d in ds.find({PATH10: 1})["results"]] == [first]
    assert [d["_id"] for d in ds.find({PATH10: {"$in": list(range(2, 10_002))}})["results"]] == [second]
    assert ds.count({PATH10: {"$in": [1, 2]}}) == 2
    assert [d["_id"] for d in ds.find(elem_match(7))["results"]] == [first]
    assert ds.count(elem_match(6)) == 1  # the second's is 6 deep: elem_match(6) needs [{"a": 1}] at the bottom
    assert ds.count({"$or": [{PATH10: i} for i in range(1, 3)]}) == 2


def test_the_largest_queries_within_budget_run(dataset):
    ds, first, _ = dataset
    deepest = elem_match((MAX_DEPTH - 1) // 2)
    assert len(compile_query(deepest)[0]) < MAX_SQL_BYTES
    t = time.perf_counter()
    assert [d["_id"] for d in ds.find(deepest)["results"]] == [first]  # $elemMatch 7 deep
    assert ds.count({".".join(f"f{i}" for i in range(32)): None}) == 3
    assert ds.count({"$or": [{"width": i} for i in range(1_000)]}) == 3
    assert time.perf_counter() - t < 20


def test_a_query_over_the_time_limit_is_stopped(dataset, monkeypatch):
    ds, _, second = dataset
    slow = {"$or": [{"big.x.y": -i} for i in range(1, 16)]}  # each branch re-reads the big array: 2 s
    monkeypatch.setenv("VISCURATE_QUERY_TIME_LIMIT_S", "0.3")
    t = time.perf_counter()
    with pytest.raises(QueryTimeout, match=r"time limit of 0.3 s .*VISCURATE_QUERY_TIME_LIMIT_S"):
        ds.count(slow)
    assert time.perf_counter() - t < 2.0
    # the reader's cursor is fine afterwards, and a quick query is not stopped
    assert ds.count({"big.x.y": 29}) == 1


# ---- through the REST API: 400, never a 500 --------------------------------------------------------


@pytest.fixture(scope="module")
def client(dataset):
    pytest.importorskip("fastapi")
    from tests.test_server_api import _Server
    from viscurate.server.app import create_app
    ds, _, _ = dataset
    with _Server(create_app(ds.directory.parent.parent)) as c:
        yield c


@pytest.mark.parametrize("query, budget", [
    (elem_match(300), "max_depth"),
    ({"$or": [{"metadata.size": i} for i in range(10_000)]}, "max_branches"),
])
def test_hostile_searches_are_400_naming_the_budget(client, query, budget):
    r = client.post("/v1/datasets/photos/search", json={"q": query})
    assert r.status_code == 400, r.text[:300]
    assert budget in r.json()["error"]


def test_the_reproductions_answer_quickly_over_http(client, dataset):
    _, first, _ = dataset
    for query in ({PATH10: 1}, elem_match(7), {PATH10: {"$in": [1] + list(range(-10_000, 0))}}):
        t = time.perf_counter()
        r = client.post("/v1/datasets/photos/search", json={"q": query})
        assert r.status_code == 200, r.text[:300]
        assert [d["_id"] for d in r.json()["results"]] == [first]
        assert time.perf_counter() - t < 5


def test_check_query_walks_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(QueryError, match="max_depth"):
        check_query({"a": deep}, QueryBudget())
