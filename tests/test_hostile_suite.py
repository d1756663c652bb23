"""The hostile-request suite: generated deep, wide and long queries and bodies against a real server.

Whatever a client sends, the server answers: never a 5xx, never a hung thread, each answer within the
request time budget, and the process's memory stays bounded (issue 14: 43 bytes once took 32 s and
5.6 GB). Hypothesis generates the shapes; the server is the real app on loopback over a real catalog.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.test_server_api import _Server  # noqa: E402
from viscurate import Dataset  # noqa: E402
from viscurate.server.app import create_app  # noqa: E402

#: Seconds one answer may take: the query time limit (docs/server.md, budgets) plus the margin of a busy
#: 2-core machine. A request past it means a budget is missing.
ANSWER_SECONDS = 15.0
#: Growth of this process's resident memory over the whole suite (the server runs in it).
RSS_GROWTH_MB = 600
SEARCH = "/v1/datasets/d/search"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile") / "home"
    ds = Dataset.create("d", home=home)
    ds.add_documents({"filepath": f"/x/{i}.jpg", "width": 100 + i, "tags": ["a", "b"][: i % 3],
                      "meta": {"n": i, "deep": {"k": [i, {"v": i % 7}]}},
                      "object_analysis": [{"name": "cat", "confidence": 0.5 + i / 1000, "bbox": [1, 2, 3, 4]}]}
                     for i in range(300))
    with _Server(create_app(home)) as c:
        yield c


class _Budget:
    """Asserts that a request answered, below 500, in time."""

    rss0: float | None = None

    @classmethod
    def send(cls, client, method: str, path: str, **kw) -> httpx.Response:
        if cls.rss0 is None:
            cls.rss0 = _rss_mb()
        t = time.monotonic()
        r = client.request(method, path, timeout=ANSWER_SECONDS + 30, **kw)
        took = time.monotonic() - t
        assert r.status_code < 500, (r.status_code, r.text[:300])
        assert took < ANSWER_SECONDS, f"{method} {path} took {took:.1f} s"
        assert _rss_mb() - cls.rss0 < RSS_GROWTH_MB, f"server memory grew {_rss_mb() - cls.rss0:.0f} MB"
        return r


names = st.sampled_from(["width", "tags", "meta", "meta.n", "meta.deep.k", "object_analysis", "nope", "a.b.c",
                         "object_analysis.name", "_id"])
scalars = st.one_of(st.integers(-10**6, 10**6), st.text(max_size=8), st.booleans(), st.none(),
                    st.floats(allow_nan=False, allow_infinity=False))
operators = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$all", "$exists",
                             "$size", "$type", "$regex", "$not", "$elemMatch", "$gtee", "$where"])


def _nest(depth: int, kind: str) -> dict:
    q: dict = {"meta.n": 1}
    for i in range(depth):
        if kind == "elemMatch":
            q = {"object_analysis": {"$elemMatch": q}} if i % 2 else {"meta.deep.k": {"$elemMatch": q}}
        elif kind == "and":
            q = {"$and": [q, {"width": {"$gt": i}}]}
        elif kind == "or":
            q = {"$or": [q, {"nope": i}]}
        else:
            q = {"$nor": [q]}
    return q


queries = st.recursive(
    st.dictionaries(names, st.one_of(scalars, st.dictionaries(operators, scalars, max_size=2)), max_size=3),
    lambda inner: st.one_of(
        st.builds(lambda qs: {"$and": qs}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda qs: {"$or": qs}, st.lists(inner, min_size=1, max_size=4)),
        st.builds(lambda n, q: {n: {"$elemMatch": q}}, names, inner),
        st.builds(lambda n, q: {n: {"$not": q}}, names, inner)),
    max_leaves=30)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=queries, page=st.integers(-3, 10**6))
def test_generated_queries_never_fail_the_server(client, q, page):
    _Budget.send(client, "POST", SEARCH, json={"q": q, "page": page})


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(depth=st.integers(1, 400), kind=st.sampled_from(["elemMatch", "and", "or", "nor"]))
def test_deep_queries(client, depth, kind):
    _Budget.send(client, "POST", SEARCH, json={"q": _nest(depth, kind)})


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(parts=st.integers(1, 300), value=scalars)
def test_long_paths(client, parts, value):
    _Budget.send(client, "POST", SEARCH, json={"q": {".".join(f"f{i}" for i in range(parts)): value}})


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, 30_000), op=st.sampled_from(["$in", "$nin", "$all", "$or", "$and"]),
       field=st.sampled_from(["width", "meta.n", "nope.x", "tags"]))
def test_wide_lists(client, n, op, field):
    if op in ("$or", "$and"):
        q = {op: [{field: i} for i in range(n)]}
    else:
        q = {field: {op: list(range(n))}}
    _Budget.send(client, "POST", SEARCH, json={"q": q})


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(size=st.sampled_from([0, 1, 1023, 2**20 + 1, 8 * 2**20]),
       route=st.sampled_from([SEARCH, "/v1/datasets/d/samples/x/edits", "/v1/datasets/d/views/v"]),
       junk=st.sampled_from([b"{", b"[", b"\xff", b"0"]))
def test_bodies_of_any_size_and_shape(client, size, route, junk):
    body = (junk * (size // len(junk) + 1))[:size]
    _Budget.send(client, "POST", route, content=body, headers={"Content-Type": "application/json"})


def test_the_server_still_answers_normally_after_the_suite(client):
    r = client.post(SEARCH, json={"q": {"width": {"$gte": 300}}})
    assert r.status_code == 200 and r.json()["length"] == 100
    assert json.loads(client.get("/v1/datasets").text)
