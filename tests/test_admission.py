"""Admission (issue 14): heavy queries run in a lane of their own, so that clients sending them cannot
take every request thread from the searches on typed columns; a full lane answers 429 with
Retry-After; a query over budget is refused before it waits anywhere. A real server over a real
catalog whose one sample holds a big free-form array, so that a JSON scan takes about a second.
"""
from __future__ import annotations

import concurrent.futures as futures
import threading
import time

import anyio
import pytest

from tests.conftest import skimage_photos
from viscurate import Dataset
from viscurate.store.query.compiler import query_cost

pytest.importorskip("fastapi")

from tests.test_server_api import _Server  # noqa: E402
from viscurate.server.admission import Lane, LaneSettings  # noqa: E402
from viscurate.server.app import create_app  # noqa: E402

LIGHT = {"width": {"$gt": 0}}  # a typed column


def slow_scan(branches: int = 8) -> dict:
    """A query that re-reads the big free-form array once per branch (about 0.1 s each here)."""
    return {"$or": [{"big.x.y": -i} for i in range(1, branches + 1)]}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("admission")
    photos = skimage_photos(root / "photos", ("astronaut.png", "camera.png", "coffee.png"))
    ds = Dataset.create("photos", home=root / "home")
    ds.add_images(photos, progress=False)
    ds.update([ds.ids()[0]], {"$set": {"big": [{"x": [{"y": i} for i in range(30)]} for i in range(3_000)]}})
    return root / "home"


def search(client, q: dict) -> tuple[int, float, dict]:
    t = time.perf_counter()
    r = client.post("/v1/datasets/photos/search", json={"q": q})
    return r.status_code, time.perf_counter() - t, r


def test_query_cost_tells_typed_columns_from_json_scans():
    for light in ({}, LIGHT, {"object_analysis.name": "cat"}, {"tags": "needs_review"},
                  {"object_analysis": {"$elemMatch": {"name": "dog", "confidence": {"$gte": 0.8}}}},
                  {"_id": {"$in": [f"id{i}" for i in range(10_000)]}}):
        assert not query_cost(light).heavy, light
    for heavy in ({"camera.model": "X100"}, {"object_analysis.occluded": True}, slow_scan(2),
                  {"$or": [{"format": {"$regex": f"^{i}x"}} for i in range(400)]}):
        assert query_cost(heavy).heavy, heavy
    assert query_cost({}, sort={"camera.iso": 1}).heavy and not query_cost({}, sort={"width": -1}).heavy


def test_heavy_queries_cannot_take_the_request_threads(home):
    app = create_app(home, request_threads=4, heavy_queries=LaneSettings(threads=1, share=0.25))
    lane = app.state.admission.heavy
    most_running = [0]
    with _Server(app) as client:
        alone = search(client, slow_scan())
        assert alone[0] == 200 and alone[2].json()["length"] == 0, alone[2].text[:300]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                most_running[0] = max(most_running[0], lane.running)
                time.sleep(0.005)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with futures.ThreadPoolExecutor(8) as pool:
            heavy = [pool.submit(search, client, slow_scan()) for _ in range(8)]
            time.sleep(0.3)  # every request thread would be taken by now, were they not in a lane
            assert lane.waiting >= 4, (lane.waiting, lane.running)
            light = [search(client, LIGHT) for _ in range(10)]
            heavy_done_meanwhile = sum(f.done() for f in heavy)
            results = [f.result() for f in heavy]
        stop.set()
        watcher.join()
    assert all(status == 200 for status, _, _ in results)
    assert all(status == 200 for status, _, _ in light)
    light_seconds = sorted(seconds for _, seconds, _ in light)
    # each light search answered while heavy ones queued. Had it queued behind them (no lane: 8 heavy
    # queries on 4 request threads) it would have waited for one heavy query at least; the first one or two
    # also compile cold (0.2-0.3 s here alone, 0.77 and 0.99 in two fresh-clone CI runs on a shared machine,
    # against heavy queries of 1.4 and 1.8 s), so the bound is one heavy query, and the typical one is fast
    assert light_seconds[-1] < alone[1], (light_seconds, alone[1])
    assert light_seconds[len(light_seconds) // 2] < max(0.25, alone[1] / 4), (light_seconds, alone[1])
    assert heavy_done_meanwhile < 8
    assert most_running[0] == 1


def test_a_full_lane_answers_429_with_retry_after(home):
    app = create_app(home, heavy_queries=LaneSettings(threads=1, max_waiting=1, max_wait_s=30))
    with _Server(app) as client, futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(search, client, slow_scan())
        time.sleep(0.2)
        waiting = pool.submit(search, client, slow_scan())
        time.sleep(0.2)
        status, seconds, refused = search(client, slow_scan())
        assert status == 429, refused.text[:300]
        assert int(refused.headers["Retry-After"]) >= 1
        assert "busy with heavy queries" in refused.json()["error"]
        assert seconds < 0.5
        assert running.result()[0] == 200 and waiting.result()[0] == 200


def test_a_request_that_waits_too_long_is_429(home):
    app = create_app(home, heavy_queries=LaneSettings(threads=1, max_wait_s=0.3))
    with _Server(app) as client, futures.ThreadPoolExecutor(2) as pool:
        running = pool.submit(search, client, slow_scan(12))
        time.sleep(0.2)
        status, seconds, refused = search(client, slow_scan())
        assert status == 429 and "waited 0.3 s" in refused.json()["error"], refused.text[:300]
        assert 0.25 < seconds < 1.0
        assert running.result()[0] == 200


def test_over_budget_queries_are_refused_without_waiting_in_a_lane(home):
    app = create_app(home, heavy_queries=LaneSettings(threads=1))
    with _Server(app) as client, futures.ThreadPoolExecutor(4) as pool:
        heavy = [pool.submit(search, client, slow_scan()) for _ in range(4)]
        time.sleep(0.2)
        # a body far over 16 KiB: refused by the budget walk in the event loop, not after the queue
        status, seconds, refused = search(client, {"$or": [{"metadata.size": i} for i in range(10_000)]})
        assert status == 400 and "max_branches" in refused.json()["error"]
        assert seconds < 0.5
        status, seconds, _ = search(client, {"camera": {"$frobnicate": 1}})
        assert status == 400 and seconds < 0.5
        assert all(f.result()[0] == 200 for f in heavy)


def test_a_big_body_of_sample_ids_is_not_a_heavy_query(home):
    app = create_app(home, heavy_queries=LaneSettings(threads=1))
    ids = Dataset.open("photos", home=home).ids()
    with _Server(app) as client:
        r = client.post("/v1/datasets/photos/tags", json={"ids": ids + [f"missing-{i}" for i in range(5_000)],
                                                           "add": ["admitted"]})
        assert r.status_code == 200, r.text[:300]
        assert app.state.admission.heavy.running == 0 and r.json()["added"] == 3


# ---- the lane itself: real threads, real clock --------------------------------------------------


def _starts(settings: LaneSettings, busy: bool, runs: int = 3, seconds: float = 0.1) -> list[float]:
    lane = Lane("test", settings, lambda _: busy)
    starts: list[float] = []

    def work() -> None:
        starts.append(time.monotonic())
        time.sleep(seconds)

    async def main() -> None:
        for _ in range(runs):
            await lane.run(work)
    anyio.run(main)
    return [b - a for a, b in zip(starts, starts[1:])]


def test_a_lane_keeps_to_its_share_only_while_others_are_busy():
    paced = _starts(LaneSettings(threads=1, share=0.25), busy=True)
    assert all(gap >= 0.1 + 0.3 - 0.02 for gap in paced), paced  # ran 0.1 s, then waited 3 x 0.1 s
    idle = _starts(LaneSettings(threads=1, share=0.25), busy=False)
    assert all(gap < 0.25 for gap in idle), idle


def test_lane_settings_are_checked():
    for bad in ({"threads": 0}, {"share": 0}, {"share": 1.5}, {"max_wait_s": 0}, {"max_waiting": -1}):
        with pytest.raises(ValueError):
            LaneSettings(**bad)


def test_serve_flags_set_the_budgets_and_the_lane(home, tmp_path):
    """``viscurate serve --max-body-mib/--heavy-queue``: a body over the limit is a 413, and with no
    room to wait a heavy query beside a running one is a 429, while the lane is otherwise open."""
    import os
    import subprocess

    import httpx

    from tests.conftest import VISCURATE
    from tests.test_server_api import _free_port

    port = _free_port()
    env = dict(os.environ, VISCURATE_HOME=str(home))
    server = subprocess.Popen([VISCURATE, "serve", "--port", str(port), "--max-body-mib", "0.01",
                               "--heavy-queue", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.get("/v1/datasets")
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        big = client.post("/v1/datasets/photos/search", json={"q": {"_id": {"$in": ["x" * 20] * 1000}}})
        assert big.status_code == 413, big.text[:300]
        assert search(client, slow_scan(2))[0] == 200  # alone: runs
        with futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(search, client, slow_scan())
            time.sleep(0.3)
            assert search(client, slow_scan(2))[0] == 429
            assert running.result()[0] == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
