"""The selection routes against a running server over a real catalog (a stratified 1,000 of MNIST test, with labels
and default embeddings, tests/labeled_sets.py): a preview answers at once and stores nothing, a saved
selection is a job that leaves a slice and its recipe, the curation report is served as strict HTML,
autotag scores a digit from its examples, split and fit-head run as jobs, and bad requests are 4xx with
the library's words."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from tests.test_server_api import _Server  # noqa: E402
from viscurate.server import selection_routes  # noqa: E402
from viscurate.server.app import USER_HEADER, create_app  # noqa: E402

BASE = "/v1/datasets/mnist"


@pytest.fixture(scope="module")
def mnist(labeled_dataset):
    ds = labeled_dataset("mnist")
    ds.close()
    return ds


@pytest.fixture(scope="module")
def client(mnist):
    with _Server(create_app(mnist.workspace.home)) as c:
        yield c


def _done(client, job: dict, timeout: float = 240) -> dict:
    """The job once it finished (failing the test if it failed)."""
    deadline = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["state"] == "done", job
    return job


def _ids(client, q: dict) -> list[str]:
    return client.post(f"{BASE}/select", json={"q": q}).json()["ids"]


def test_a_preview_answers_at_once_and_stores_nothing(client):
    r = client.post(f"{BASE}/selections", json={"n": 20, "strategy": "cluster_coverage", "slice": "peek",
                                                 "preview": True})
    assert r.status_code == 200, r.text
    sel = r.json()
    assert len(sel["ids"]) == 20 == len(set(sel["ids"])) and sel["pool"] <= 1000 and sel["strategy"] == "cluster_coverage"
    assert [p["rank"] for p in sel["picks"]] == list(range(1, 21)) and all(p["reason"] for p in sel["picks"])
    assert "peek" not in client.get(f"{BASE}/slices").json()["slices"]
    assert "peek" not in client.get(f"{BASE}/selections").json()["selections"]
    # a share of the candidates, among a query's
    fours = client.post(f"{BASE}/selections", json={"n": "5%", "strategy": "random", "q": {"ground_truth.label": "4"},
                                                     "preview": True, "seed": 7}).json()
    n_fours = len(_ids(client, {"ground_truth.label": "4"}))
    assert len(fours["ids"]) == round(0.05 * n_fours)
    assert set(fours["ids"]) <= set(_ids(client, {"ground_truth.label": "4"}))


@pytest.mark.parametrize("path, body, status, words", [
    ("/selections", {"n": 10, "strategy": "nope", "preview": True}, 400, ("cluster_coverage",)),
    ("/selections", {"n": 5000, "strategy": "random", "preview": True}, 400, ("1,000",)),
    ("/selections", {"n": "150%", "strategy": "random", "preview": True}, 400, ("100%",)),
    ("/selections", {"n": "lots", "strategy": "random"}, 422, ("n",)),
    ("/selections", {"n": 5, "q": {"width": {"$nope": 1}}}, 400, ("$nope",)),
    ("/selections", {"n": 5, "strategy": "uncertainty", "preview": True}, 400, ("fit-head",)),
    ("/autotag", {"name": "x", "positive": ["only-one"]}, 400, ("positive",)),
    ("/split", {"ratios": {"train": 2}}, 422, ("ratios",)),
    # a misspelt option is refused, not dropped in silence for the default
    ("/selections", {"n": 5, "strategy": "uncertainty", "options": {"mesure": "entropy"}}, 422, ("mesure",)),
    ("/selections", {"n": 5, "stratgy": "random"}, 422, ("stratgy",)),
    ("/selections", {"n": 5, "strategy": "similarity", "preview": True, "options": {"examples": {"w": {"$nope": 1}}}},
     400, ("$nope",)),
    ("/autotag", {"name": "x", "positive": {"width": {"$nope": 1}}}, 400, ("$nope",)),
])
def test_bad_requests_are_4xx_with_what_to_do(client, path, body, status, words):
    r = client.post(f"{BASE}{path}", json=body)
    assert r.status_code == status, r.text
    text = r.text
    for word in words:
        assert word in text, text


def test_saving_is_a_job_that_leaves_a_slice_and_its_recipe(client):
    r = client.post(f"{BASE}/selections", json={"n": "3%", "strategy": "k_center", "slice": "api-picks", "seed": 2},
                    headers={USER_HEADER: "ana"})
    assert r.status_code == 202 and r.json()["kind"] == "select"
    result = _done(client, r.json())["result"]
    assert len(result["ids"]) == 30 and result["slice"] == "api-picks"
    assert client.get(f"{BASE}/slices").json()["slices"]["api-picks"] == 30
    assert sorted(_ids(client, {"selections.slice": "api-picks"})) == sorted(result["ids"])
    recipe = client.get(f"{BASE}/selections").json()["selections"]["api-picks"]
    assert recipe["strategy"] == "k_center" and recipe["ids"] == result["ids"] and recipe["seed"] == 2
    assert recipe["by"] == "ana"


def test_the_report_is_strict_html_made_once(client):
    _done(client, client.post(f"{BASE}/selections", json={"n": 40, "strategy": "cluster_coverage",
                                                          "slice": "reported"}).json())
    started = time.monotonic()
    r = client.get(f"{BASE}/selections/reported/report", params={"random_subsets": 5})
    first = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert csp == selection_routes.REPORT_POLICY and "sandbox" in csp and "script-src" not in csp
    assert "<svg" in r.text and "data:image" in r.text and "https://" not in r.text
    started = time.monotonic()
    again = client.get(f"{BASE}/selections/reported/report", params={"random_subsets": 5})
    assert again.text == r.text and time.monotonic() - started < first
    twin = client.get(f"{BASE}/selections/reported/report", params={"random_subsets": 5, "format": "json"})
    assert twin.status_code == 200 and isinstance(twin.json(), dict)
    missing = client.get(f"{BASE}/selections/nothing-here/report")
    assert missing.status_code == 404 and "nothing-here" in missing.json()["error"]


def test_autotag_scores_a_digit_from_its_examples(client):
    zeros = _ids(client, {"ground_truth.label": "0"})[:10]
    r = client.post(f"{BASE}/autotag", json={"name": "zero", "positive": zeros})
    assert r.status_code == 200, r.text
    out = r.json()
    top = [e["_id"] if isinstance(e, dict) else e[0] if isinstance(e, list) else e for e in out["top"]][:50]
    right = set(_ids(client, {"ground_truth.label": "0"}))
    precision = sum(i in right for i in top) / len(top)
    print(f"autotag 'zero' from 10 ids: precision of the top {len(top)}: {precision:.2f}")
    assert precision >= 0.9 and out["borderline"]
    assert len(_ids(client, {"autotag.zero": {"$gte": 0}})) == 1000
    saved = client.post(f"{BASE}/autotag", json={"name": "zero", "positive": {"_id": {"$in": zeros}}, "tag": True})
    assert saved.status_code == 200
    assert len(_ids(client, {"tags": "zero"})) > 50


def test_split_and_fit_head_are_jobs(client):
    r = client.post(f"{BASE}/split", json={"ratios": {"train": 0.7, "test": 0.3}, "field": "fold"})
    assert r.status_code == 202 and r.json()["kind"] == "split"
    _done(client, r.json())
    train, test = len(_ids(client, {"fold": "train"})), len(_ids(client, {"fold": "test"}))
    assert train + test == 1000 and 0.65 <= train / 1000 <= 0.75
    head = client.post(f"{BASE}/fit-head", json={"q": {"ground_truth.label": {"$in": ["4", "9"]}}})
    assert head.status_code == 202 and head.json()["kind"] == "fit_head"
    _done(client, head.json())
    r = client.post(f"{BASE}/selections", json={"n": 10, "strategy": "uncertainty", "preview": True,
                                                 "q": {"ground_truth.label": {"$in": ["4", "9"]}},
                                                 "options": {"measure": "margin"}})
    assert r.status_code == 200, r.text
    assert len(r.json()["ids"]) == 10


def test_large_work_goes_to_a_job(client, monkeypatch):
    monkeypatch.setattr(selection_routes, "SYNC_POOL", 100)  # the operator's line between "at once" and a job
    r = client.post(f"{BASE}/selections", json={"n": 15, "strategy": "typicality", "preview": True})
    assert r.status_code == 202
    assert len(_done(client, r.json())["result"]["ids"]) == 15
    ones = _ids(client, {"ground_truth.label": "1"})[:5]
    r = client.post(f"{BASE}/autotag", json={"name": "one", "positive": ones})
    assert r.status_code == 202 and r.json()["kind"] == "autotag"
    assert _done(client, r.json())["result"]["top"]
    # the report of a large pool is a job too; once it is done the same request answers the report
    _done(client, client.post(f"{BASE}/selections", json={"n": 12, "strategy": "k_center", "slice": "big"}).json())
    r = client.get(f"{BASE}/selections/big/report", params={"random_subsets": 3})
    assert r.status_code == 202 and r.json()["kind"] == "report"
    _done(client, r.json())
    made = client.get(f"{BASE}/selections/big/report", params={"random_subsets": 3, "format": "json"})
    assert made.status_code == 200 and made.json()["selected"] == 12
    # saved again: a new report, and the old one's files are gone
    _done(client, client.post(f"{BASE}/selections", json={"n": 12, "strategy": "random", "slice": "big"}).json())
    _done(client, client.get(f"{BASE}/selections/big/report", params={"random_subsets": 3}).json())
    again = client.get(f"{BASE}/selections/big/report", params={"random_subsets": 3, "format": "json"}).json()
    assert again["strategy"] == "random"
    assert len(list(Path(again["html"]).parent.iterdir())) == 2  # this report's HTML and JSON only


def test_an_unknown_dataset_is_a_404(client):
    assert client.post("/v1/datasets/nope/selections", json={"n": 5}).status_code == 404
    assert client.get("/v1/datasets/nope/selections").status_code == 404
    assert client.post("/v1/datasets/nope/autotag", json={"name": "x", "positive": ["a", "b"]}).status_code == 404
