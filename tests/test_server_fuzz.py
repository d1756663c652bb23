"""Fuzzing the REST API from its own OpenAPI document (schemathesis, in process over ASGI): whatever a client
sends, the answer is never a 5xx, a 4xx is a JSON error object, and a 200 is JSON or a file.

Every operation in ``/openapi.json`` is fuzzed, so routes added later are covered without touching this file.
Only the ML routes are held back: ``/v1/analyze`` (it would fetch the generated URL) is not fuzzed at all,
``/v1/analyze/upload`` (it runs the models) gets a handful of examples in its own test. Generation is
deterministic (``derandomize``), so what fails in CI fails the same way on a laptop. Hooks steer part of the
cases to real values (the dataset, sample ids, job ids, valid view, slice and tag names, MongoDB queries over
real fields), so the fuzzer gets past the 404s and 422s into the code behind them; fuzzed jobs are exports,
never the models' work. A new route that runs models belongs with the ML routes (or in HEAVY_JOBS).

A longer, random exploration (not for CI): ``VISCURATE_FUZZ_EXAMPLES=500 pytest tests/test_server_fuzz.py``.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from viscurate import Dataset  # noqa: E402
from viscurate.server.app import create_app  # noqa: E402

DATASET = "photos"
ANALYZE_URL = "/v1/analyze"
ANALYZE_UPLOAD = "/v1/analyze/upload"
SEARCH_PATH = "/v1/datasets/{name}/search"

_EXPLORE = int(os.environ.get("VISCURATE_FUZZ_EXAMPLES", "0"))
FUZZ_SETTINGS = {"deadline": None, "database": None, "derandomize": not _EXPLORE, "print_blob": True,
                 "suppress_health_check": list(HealthCheck)}

# MongoDB queries over the real fields of a sample document (and some that are not), with operators and
# operands valid or not: the query compiler must answer each with results or a 400, never a crash.
FIELDS = ("_id", "filepath", "width", "height", "format", "mode", "size_bytes", "hash", "tags", "issues",
          "quality.blur", "quality.grayscale", "histogram.r", "histogram.r.0", "duplicates.group", "embeddings",
          "split", "object_analysis.name", "metadata.nothing", "")
OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex", "$options",
             "$size", "$all", "$elemMatch", "$not", "$type", "$mod", "$where", "$nope")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6) | st.sampled_from(["PNG", "L", "RGB", "grayscale", "string", "double", "^a", "[", "\\"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS + OPERATORS), inner, max_size=2),
    max_leaves=6)
CONDITION = (st.builds(lambda f, v: {f: v}, st.sampled_from(FIELDS), JSON)
             | st.builds(lambda f, op, v: {f: {op: v}}, st.sampled_from(FIELDS), st.sampled_from(OPERATORS), JSON))
QUERY = st.recursive(CONDITION, lambda inner: st.builds(
    lambda op, parts: {op: parts}, st.sampled_from(("$and", "$or", "$nor", "$not")), st.lists(inner, max_size=3)),
    max_leaves=4)
SEARCH = st.fixed_dictionaries({"q": QUERY}, optional={
    "page": st.integers(1, 3),
    "sort": st.none() | st.dictionaries(st.sampled_from(FIELDS), st.sampled_from([1, -1, 0, 2]), max_size=2)})


def _openapi_document() -> dict:
    """The app's own OpenAPI document. It depends on the code, not on the data, and the operations must be
    known when pytest collects, before any fixture runs: so it comes from an app over an empty workspace."""
    with tempfile.TemporaryDirectory(prefix="vc-openapi-") as tmp:
        return create_app(tmp).openapi()


schema = schemathesis.openapi.from_dict(_openapi_document())
_LIVE: dict = {}  # the app under test and its real sample ids, for the hooks: set by the `app` fixture

LABELS = ["wide", "to check", "split:a"]  # valid view, slice and tag names
HEAVY_JOBS = ("label", "embed", "analyze", "map", "ingest")  # the models' work, downloads: an export instead


def _known() -> dict[str, list]:
    """Real values for parameters by name, at the moment a case is drawn (jobs appear as the run goes)."""
    app = _LIVE.get("app")
    jobs = [j.id for j in app.state.jobs.list()] if app is not None else []
    return {"name": [DATASET], "dataset_name": [DATASET], "sample_id": _LIVE.get("ids", []), "job_id": jobs,
            "view": LABELS, "slice_name": LABELS}


def _steer(values):
    """A third of the values as generated, a third with the dataset name real, a third with every parameter
    that has real values (dataset, sample, job, view or slice name) real, to get past the 404s."""
    if not isinstance(values, dict):
        return st.just(values)
    known = {k: v for k, v in _known().items() if k in values and v}
    if not known:
        return st.just(values)
    options = [st.just(values)]
    if "name" in known and len(known) > 1:
        options.append(st.just({**values, "name": DATASET}))
    options.append(st.fixed_dictionaries({k: st.sampled_from(v) for k, v in known.items()})
                   .map(lambda real: {**values, **real}))
    return st.one_of(options)


@schema.hook("flatmap_path_parameters")
def real_path_parameters(context, path_parameters):
    return _steer(path_parameters)


@schema.hook("flatmap_query")
def real_query_parameters(context, query):
    return _steer(query)


@schema.hook("flatmap_body")
def real_bodies(context, body):
    """A body's ``q`` is sometimes a query over real fields, its ``ids`` real sample ids, its tags valid
    names; a job never runs the models (the fuzzer would queue minutes of labeling)."""
    if not isinstance(body, dict):
        return st.just(body)
    if context.operation is not None and context.operation.path.endswith("/jobs") and body.get("kind") in HEAVY_JOBS:
        body = {**body, "kind": "export"}
    options = [st.just(body)]
    rest = {k: v for k, v in body.items() if k not in ("q", "ids")}  # a target is either q or ids
    if "q" in body:
        options.append(QUERY.map(lambda q: {**rest, "q": q}))
    if "ids" in body and _LIVE.get("ids"):
        options.append(st.lists(st.sampled_from(_LIVE["ids"]), max_size=4).map(lambda ids: {**rest, "ids": ids}))
    if "add" in body or "remove" in body:
        options.append(st.fixed_dictionaries({"add": st.lists(st.sampled_from(LABELS), min_size=1, max_size=2),
                                              "remove": st.lists(st.sampled_from(LABELS), max_size=1)})
                       .map(lambda tags: {**rest, **tags, "q": {}}))
    return st.one_of(options)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app over a dozen of skimage's photos, embedded and grouped into duplicates, so that every route has
    data behind it (similar samples, duplicate groups, media, thumbnails)."""
    import skimage
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    root = tmp_path_factory.mktemp("fuzz")
    photos = root / "photos"
    photos.mkdir()
    for n in sorted(n for n in os.listdir(data) if n.endswith((".png", ".jpg")))[:12]:
        shutil.copy(os.path.join(data, n), photos / n)
    ds = Dataset.create(DATASET, home=root / "home")
    ds.add_images(photos, progress=False)
    ds.embed(progress=False)
    ds.find_duplicates()
    ids = ds.ids()
    assert len(ids) == 12
    app = create_app(root / "home", thumbnail_cache=root / "thumbnails")
    _LIVE.update(ids=ids, app=app)
    yield app
    _LIVE.clear()
    app.state.jobs.stop()


def well_formed(ctx, response, case):
    """A 4xx is a JSON object with a string ``error`` (the app's handlers) or ``detail`` (Starlette's own:
    405, unreadable bodies; see test_framework_errors_use_the_app_error_format); a 200 is JSON or a file
    (an image, a download, a curation report's HTML)."""
    kind = (response.headers.get("content-type") or [""])[0]
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error", body.get("detail")), str), response.text[:300]
        assert "Traceback" not in response.text
    elif response.status_code == 200 and not kind.startswith(("image/", "video/", "application/octet-stream",
                                                              "application/zip", "text/html")):
        response.json()


CHECKS = [not_a_server_error, well_formed]


@schema.exclude(method="POST", path=[ANALYZE_URL, ANALYZE_UPLOAD]).parametrize()
@settings(max_examples=_EXPLORE or 50, **FUZZ_SETTINGS)
def test_no_request_gets_a_server_error(case, app):
    case.call_and_validate(checks=CHECKS, app=app)


@schema.include(method="POST", path=ANALYZE_UPLOAD).parametrize()
@settings(max_examples=3, **FUZZ_SETTINGS)
def test_analyze_upload_survives_a_few_fuzzed_uploads(case, app):
    case.call_and_validate(checks=CHECKS, app=app)


@settings(max_examples=_EXPLORE or 150, **FUZZ_SETTINGS)
@given(body=SEARCH)
@example(body={"q": {"width": {"$type": {}}}})  # was a TypeError (unhashable dict) in the compiler: a 500
@example(body={"q": {"tags": {"$type": ["string", []]}}})
def test_queries_over_real_fields_never_crash_the_search(app, body):
    """More searches than the schema-driven run gives one operation, all on the real dataset."""
    case = schema[SEARCH_PATH]["POST"].Case(path_parameters={"name": DATASET}, body=body)
    case.call_and_validate(checks=CHECKS, app=app)


@pytest.mark.parametrize("method, path, kwargs", [
    ("TRACE", "/v1/datasets", {}),
    ("DELETE", "/v1/datasets/photos", {}),
    ("GET", "/v1/no-such-route", {}),
    ("POST", "/v1/datasets/photos/search", {"content": b"1\xff\xfe", "headers": {"content-type": "application/json"}}),
    ("POST", ANALYZE_UPLOAD, {"headers": {"content-type": "multipart/form-data"}}),
])
def test_framework_errors_use_the_app_error_format(app, method, path, kwargs):
    """The module's promise: every error is ``{"error": "..."}``, also those Starlette raises itself before a
    route runs (unknown route or method, an unreadable body), which the fuzzer meets on every operation."""
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.request(method, path, **kwargs)
    assert 400 <= r.status_code < 500
    assert isinstance(r.json().get("error"), str), f"{method} {path} -> {r.status_code} {r.text}"


def test_no_fuzzed_job_crashed(app):
    """Jobs run after their request has answered 202: a crash there is a 500 nobody sees, so look."""
    jobs = app.state.jobs
    for job in jobs.list():
        jobs.wait(job.id, timeout=30)
    crashed = [j.as_dict() for j in jobs.list() if j.state == "failed" and (j.error or "").startswith("internal error")]
    assert not crashed, crashed
    assert all(j.state in ("done", "failed") for j in jobs.list())
