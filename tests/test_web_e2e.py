"""The web app end to end: headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a
real server on loopback, over a dataset of real photos labeled by the default models, mapped and analyzed.

Screenshots of each main screen go to ``test-artifacts/web/``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.chromium import require_chromium

require_chromium()

from playwright.sync_api import expect  # noqa: E402

from tests.conftest import skimage_photos  # noqa: E402
from tests.test_server_api import _Server  # noqa: E402
from viscurate import Dataset  # noqa: E402
from viscurate.server.app import create_app  # noqa: E402

WEB_SEARCH = "https://www.google.com/search?q="


@pytest.fixture(scope="module")
def web_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    photos = skimage_photos(root / "photos", (
        "chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png", "horse.png", "camera.png", "rocket.jpg",
        "hubble_deep_field.jpg", "coins.png", "ihc.png", "chessboard_RGB.png", "color.png", "brick.png", "gravel.png"),
        {"chessboard_copy.png": "chessboard_RGB.png"})  # an exact duplicate to review
    home = root / "home"
    ds = Dataset.create("photos", home=home)
    ds.add_images(photos, progress=False)
    ds.label(progress=False)
    ds.compute_map()
    ds.analyze()
    # and a catalog of 100,000 samples (documents only) for the virtualized grid
    big = Dataset.create("big", home=home)
    big.add_documents(({"filepath": f"/nowhere/{i}.jpg", "width": 100 + i % 900, "height": 100} for i in range(100_000)),
                      batch_size=25_000)
    return home


def _app_url(server, dataset="photos"):
    return str(server.base_url) + "/#" + quote(json.dumps({"d": dataset}))


@pytest.fixture(scope="module")
def server(web_home):
    with _Server(create_app(web_home)) as client:
        yield client


@pytest.fixture
def page(browser, server, artifacts_dir):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    searched: list[str] = []

    def web_search(route):  # the machine is offline: answer the web search ourselves, and remember it
        searched.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<title>search</title>")

    context.route("https://www.google.com/**", web_search)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(_app_url(server))
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    expect(page.locator(".cell img").first).to_be_visible()
    page.searched = searched  # type: ignore[attr-defined]
    page.shots = artifacts_dir / "web"  # type: ignore[attr-defined]
    page.shots.mkdir(parents=True, exist_ok=True)
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"


def _count(page) -> int:
    return int(page.inner_text("#count").split()[0].replace(",", ""))


def test_grid_shows_every_sample_and_filters_by_class(page, server):
    total = server.post("/v1/datasets/photos/search", json={"q": {}}).json()["length"]
    assert _count(page) == total == 15
    expect(page.locator(".cell")).to_have_count(15)
    page.screenshot(path=page.shots / "grid.png")
    page.select_option("#f-class", "cat")
    expect(page.locator(".cell")).to_have_count(1)
    assert _count(page) == 1
    assert "cat" in page.inner_text(".cell .caption")


def test_the_grid_stays_virtual_at_100k_samples(page):
    page.select_option("#dataset", "big")
    expect(page.locator("#count")).to_have_text("100,000 samples")
    cells = page.locator(".cell")
    assert cells.count() < 200  # only the rows on screen (and a margin) exist
    grid = page.locator("#grid")
    grid.evaluate("g => { g.scrollTop = g.scrollHeight; }")
    last = page.locator('.cell[data-index="99999"]')
    expect(last).to_have_attribute("data-id", re.compile(r".+"))
    assert cells.count() < 200
    grid.evaluate("g => { g.scrollTop = g.scrollHeight / 2; }")
    expect(page.locator('.cell[data-index="50000"]')).to_have_attribute("data-id", re.compile(r".+"))
    page.screenshot(path=page.shots / "grid-100k.png")


def test_open_sample_shows_boxes_and_clicking_one_searches_the_web(page):
    page.select_option("#f-class", "cat")
    expect(page.locator(".cell")).to_have_count(1)
    page.click(".cell")
    cat_box = page.locator('#overlay rect.box[data-name="cat"]')
    expect(cat_box).to_have_count(1)
    expect(page.locator("#d-title")).to_have_text("chelsea.png")
    box = cat_box.bounding_box()
    image = page.locator("#d-image").bounding_box()
    assert box and image and box["width"] > 0.4 * image["width"]  # the cat fills most of the picture
    expect(page.locator("#histogram polyline")).to_have_count(3)
    page.screenshot(path=page.shots / "detail.png")
    with page.context.expect_page() as opened:
        cat_box.click()
    popup = opened.value
    popup.wait_for_load_state()
    assert popup.url == WEB_SEARCH + "cat"
    assert page.searched == [WEB_SEARCH + "cat"]


def test_keyboard_moves_through_the_grid_and_the_detail(page, server):
    first_two = server.post("/v1/datasets/photos/search", json={"q": {}}).json()["results"][:2]
    page.focus("#grid")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#d-title")).to_have_text(Path(first_two[1]["filepath"]).name)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#d-title")).to_have_text(Path(first_two[0]["filepath"]).name)
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()


def test_lasso_on_the_map_filters_the_grid(page, server):
    points = server.get("/v1/datasets/photos/map").json()
    assert len(points["ids"]) == 15
    page.click("[data-tab=map]")
    expect(page.locator("#map-info")).to_contain_text("15 samples placed")
    canvas = page.locator("#map")
    box = canvas.bounding_box()
    width, height = canvas.evaluate("c => [c.width, c.height]")
    pad = 24
    # a lasso around the left half of the map: those samples, and only those, stay in the grid
    lasso = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    to_page = [(box["x"] + (pad * 0.5 + u * (width - pad)) * box["width"] / width,
                box["y"] + (pad * 0.5 + v * (height - pad)) * box["height"] / height) for u, v in lasso]
    expected = {i for i, x in zip(points["ids"], points["x"]) if pad + x * (width - 2 * pad) < pad * 0.5 + 0.5 * (width - pad)}
    assert 0 < len(expected) < 15
    page.mouse.move(*to_page[0])
    page.mouse.down()
    for p in to_page[1:] + [to_page[0]]:
        page.mouse.move(*p, steps=8)
    page.screenshot(path=page.shots / "map.png")
    page.mouse.up()
    expect(page.locator("#tab-grid")).to_be_visible()
    expect(page.locator(".cell")).to_have_count(len(expected))
    assert _count(page) == len(expected)
    shown = set(page.locator(".cell").evaluate_all("cells => cells.map(c => c.dataset.id)"))
    assert shown == expected
    expect(page.locator(".chip")).to_contain_text(f"map selection: {len(expected)}")


def test_save_view_from_the_current_filter(page, server):
    page.fill("#query", '{"width": {"$gte": 500}}')
    page.press("#query", "Enter")
    page.select_option("#f-class", "person")
    wanted = server.post("/v1/datasets/photos/search", json={
        "q": {"$and": [{"width": {"$gte": 500}}, {"object_analysis.name": "person"}]}}).json()["length"]
    expect(page.locator("#count")).to_have_text(f"{wanted} sample" + ("" if wanted == 1 else "s"))
    page.once("dialog", lambda d: d.accept("wide people"))
    page.click("#save-view")
    expect(page.locator("#views")).to_have_value("wide people")
    views = server.get("/v1/datasets/photos/views").json()["views"]
    assert views["wide people"]["query"] == {"$and": [{"width": {"$gte": 500}}, {"object_analysis.name": "person"}]}
    # a fresh page opens the view and gets the same samples
    page.goto(_app_url(server))
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#views", "wide people")
    expect(page.locator("#count")).to_have_text(f"{wanted} sample" + ("" if wanted == 1 else "s"))
    page.screenshot(path=page.shots / "view.png")


def test_label_edits_are_recorded_with_who_and_when(page, server):
    page.fill("#user", "ana")
    page.press("#user", "Tab")
    page.select_option("#f-class", "horse")
    expect(page.locator(".cell")).to_have_count(1)
    sample_id = page.locator(".cell").get_attribute("data-id")
    page.click(".cell")
    expect(page.locator("#overlay rect.box")).not_to_have_count(0)
    page.keyboard.press("e")
    expect(page.locator("#editbar")).to_be_visible()
    page.fill("#edit-class", "zebra")
    image = page.locator("#d-image").bounding_box()
    page.mouse.move(image["x"] + image["width"] * 0.2, image["y"] + image["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(image["x"] + image["width"] * 0.6, image["y"] + image["height"] * 0.7, steps=6)
    page.mouse.up()
    expect(page.locator('#overlay rect.box.truth[data-name="zebra"]')).to_have_count(1)
    page.screenshot(path=page.shots / "edit.png")
    page.locator('#overlay rect.box.truth[data-name="zebra"]').click()
    page.fill("#edit-class", "horse")
    page.click("#edit-relabel")
    expect(page.locator('#overlay rect.box.truth[data-name="horse"]')).to_have_count(1)
    page.keyboard.press("r")
    expect(page.locator("#d-reviewed")).to_have_text("Unmark reviewed")
    doc = server.get(f"/v1/datasets/photos/samples/{sample_id}").json()
    assert [b["name"] for b in doc["ground_truth"]["detections"]] == ["horse"]
    assert "reviewed" in doc["tags"]
    trail = server.get("/v1/datasets/photos/edits", params={"sample_id": sample_id}).json()["results"]
    assert [e["action"] for e in trail] == ["mark_reviewed", "relabel", "add_box"]
    assert {e["by"] for e in trail} == {"ana"} and all(e["at"].endswith("Z") for e in trail)
    assert trail[1]["before"]["name"] == "zebra" and trail[1]["after"]["name"] == "horse"
    expect(page.locator("#d-edits li")).to_have_count(3)


def test_review_duplicates_with_one_click(page, server):
    page.click("[data-tab=review]")
    page.select_option("#review-kind", "duplicates")
    card = page.locator("#review-list .card").first
    expect(card).to_be_visible()
    flagged = card.get_attribute("data-id")
    page.screenshot(path=page.shots / "review.png")
    card.locator("button.accept").click()
    expect(page.locator(f'#review-list .card[data-id="{flagged}"]')).to_have_count(0)
    doc = server.get(f"/v1/datasets/photos/samples/{flagged}").json()
    assert "review:duplicates:accepted" in doc["tags"]
    page.select_option("#review-state", "decided")
    expect(page.locator(f'#review-list .card[data-id="{flagged}"]')).to_have_count(1)


def test_export_job_shows_progress_and_a_download(page, server):
    page.click("[data-tab=jobs]")
    page.click('[data-job=export][data-format="jsonl"]')
    link = page.locator("#jobs a", has_text="download")
    expect(link).to_have_count(1, timeout=30_000)
    page.screenshot(path=page.shots / "jobs.png")
    body = server.get(link.get_attribute("href")).text
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == 15 and all("_id" in d for d in lines)


def test_the_page_fetches_nothing_from_elsewhere(browser, server):
    context = browser.new_context()
    outside: list[str] = []
    page = context.new_page()
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(str(server.base_url)) else None)
    page.goto(_app_url(server))
    page.wait_for_selector("body[data-ready=true]")
    page.click("[data-tab=map]")
    page.click("[data-tab=review]")
    page.wait_for_timeout(300)
    context.close()
    assert outside == []
