"""The web app's Curate tab end to end: headless Chromium (Debian's, driven by Playwright) against a real
server over a real catalog (a stratified 1,000 of MNIST test, with labels and default embeddings,
tests/labeled_sets.py). A selection is previewed (thumbnails with their reasons), saved as a slice that
the slice picker and the grid then show, with its report; a concept is taught from samples marked on the
grid, refined with a counter-example and saved as a tag.

Screenshots go to ``test-artifacts/web/``.
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from tests.chromium import require_chromium

require_chromium()

from playwright.sync_api import expect  # noqa: E402

from tests.test_server_api import _Server  # noqa: E402
from viscurate.server.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def server(labeled_dataset):
    ds = labeled_dataset("mnist")
    ds.close()
    with _Server(create_app(ds.workspace.home)) as client:
        yield client


@pytest.fixture
def page(browser, server, artifacts_dir):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(str(server.base_url) + "/#" + quote(json.dumps({"d": "mnist"})))
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    expect(page.locator(".cell img").first).to_be_visible()
    page.shots = artifacts_dir / "web"  # type: ignore[attr-defined]
    page.shots.mkdir(parents=True, exist_ok=True)
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"


def _labels(server, ids: list[str]) -> list[str]:
    by_id: dict[str, str] = {}
    for start in range(0, len(ids), 25):  # the search answers pages of 25
        found = server.post("/v1/datasets/mnist/search", json={"q": {"_id": {"$in": ids[start:start + 25]}}})
        by_id.update({d["_id"]: d["ground_truth"]["label"] for d in found.json()["results"]})
    return [by_id[i] for i in ids]


def test_preview_a_selection_save_it_as_a_slice_and_see_it(page, server):
    page.click("[data-tab=curate]")
    expect(page.locator("#sel-pool")).to_contain_text("1,000 samples")
    page.fill("#sel-budget", "24")
    page.select_option("#sel-strategy", "cluster_coverage")
    expect(page.locator("#sel-explain")).to_contain_text("every cluster represented")
    page.click("#sel-preview")
    picks = page.locator("#sel-picks .thumb")
    expect(picks).to_have_count(24, timeout=60_000)  # 1,000 candidates clustered on a busy 2-core machine
    expect(page.locator("#sel-summary")).to_contain_text("preview, nothing stored")
    first = picks.first
    assert first.get_attribute("title").startswith("#1: ") and len(first.get_attribute("title")) > 8  # the reason
    expect(first.locator("figcaption").first).to_contain_text("#1")
    assert first.locator("figcaption.why").inner_text() in first.get_attribute("title")  # the reason, shown
    assert "web-picks" not in server.get("/v1/datasets/mnist/slices").json()["slices"]
    page.screenshot(path=page.shots / "curate-preview.png")

    page.fill("#sel-slice", "web-picks")
    page.click("#sel-save")
    expect(page.locator("#sel-status")).to_have_text("saved 24 samples as slice web-picks", timeout=60_000)
    assert server.get("/v1/datasets/mnist/slices").json()["slices"]["web-picks"] == 24
    saved = server.get("/v1/datasets/mnist/selections").json()["selections"]["web-picks"]
    shown = page.locator("#sel-picks .thumb").evaluate_all("nodes => nodes.map(n => n.dataset.id)")
    assert saved["ids"] == shown and saved["strategy"] == "cluster_coverage"
    report = page.locator("#sel-report")
    expect(report).to_be_visible()
    r = server.get(report.get_attribute("href"), params={"random_subsets": 5})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    expect(page.locator("#f-slice option[value='web-picks']")).to_have_text("web-picks (24)")

    page.click("#sel-show")
    expect(page.locator("#tab-grid")).to_be_visible()
    expect(page.locator("#count")).to_have_text("24 samples")
    expect(page.locator("#f-slice")).to_have_value("web-picks")
    grid_ids = set(page.locator(".cell").evaluate_all("cells => cells.map(c => c.dataset.id)"))
    assert grid_ids == set(saved["ids"])
    page.screenshot(path=page.shots / "curate-slice.png")


def test_autotag_from_samples_marked_on_the_grid(page, server):
    zeros = server.post("/v1/datasets/mnist/search", json={"q": {"ground_truth.label": "0"}}).json()["length"]
    page.fill("#query", '{"ground_truth.label": "0"}')
    page.press("#query", "Enter")
    expect(page.locator("#count")).to_have_text(f"{zeros} samples")
    cells = page.locator(".cell")
    marked = []
    for i in range(8):
        cell = cells.nth(i)
        cell.hover()
        cell.locator(".marks button[data-mark=pos]").click()
        marked.append(cell.get_attribute("data-id"))
        expect(cell).to_have_class(re.compile(r"\bpos\b"))
    expect(page.locator("#detail")).to_be_hidden()  # a mark is not a click on the sample
    page.fill("#query", "")
    page.press("#query", "Enter")
    expect(page.locator("#count")).to_have_text("1,000 samples")

    page.click("[data-tab=curate]")
    expect(page.locator("#at-counts")).to_have_text("8 marked +, 0 marked −")
    expect(page.locator("#at-marked .thumb")).to_have_count(8)
    page.fill("#at-name", "zero")
    page.click("#at-score")
    top = page.locator("#at-top .thumb")
    expect(top.first).to_be_visible(timeout=60_000)
    top_ids = top.evaluate_all("nodes => nodes.map(n => n.dataset.id)")
    labels = _labels(server, top_ids)
    precision = labels.count("0") / len(labels)
    print(f"web autotag from 8 marked zeros: precision of the top {len(labels)}: {precision:.2f}")
    assert len(labels) >= 24 and precision >= 0.9
    border = page.locator("#at-border .thumb")
    expect(border.first).to_be_visible()
    page.screenshot(path=page.shots / "curate-autotag.png")

    # refine: a borderline sample that is not a zero becomes a counter-example, and the concept is scored again
    border_ids = border.evaluate_all("nodes => nodes.map(n => n.dataset.id)")
    wrong = next((i for i, label in zip(border_ids, _labels(server, border_ids)) if label != "0"), border_ids[0])
    card = page.locator(f"#at-border .thumb[data-id='{wrong}']")
    card.hover()
    card.locator(".marks button[data-mark=neg]").click()
    expect(page.locator("#at-counts")).to_have_text("8 marked +, 1 marked −")
    page.click("#at-score")
    # (the heavy-query lane paces a second scoring behind the first while thumbnails load)
    expect(page.locator("#at-summary")).to_contain_text("8 + and 1 −", timeout=60_000)
    page.click("#at-save")
    expect(page.locator("#at-status")).to_contain_text("tagged", timeout=60_000)
    tagged = server.post("/v1/datasets/mnist/select", json={"q": {"tags": "zero"}}).json()["ids"]
    assert len(tagged) > 50 and set(marked) <= set(tagged)
    assert _labels(server, tagged[:25]).count("0") >= 20
    expect(page.locator("#f-tag option[value='zero']")).to_have_count(1)


def test_fit_the_head_then_preview_the_uncertain_ones(page, server):
    page.click("[data-tab=curate]")
    page.select_option("#sel-strategy", "uncertainty")
    expect(page.locator("#sel-measure")).to_be_visible()
    expect(page.locator("#sel-weights")).to_be_hidden()
    page.click("#sel-fit-head")
    expect(page.locator("#sel-status")).to_contain_text("head fitted on 1000 labeled samples (10 classes",
                                                        timeout=120_000)
    page.fill("#sel-budget", "10")
    page.select_option("#sel-measure", "margin")
    page.click("#sel-preview")
    picks = page.locator("#sel-picks .thumb")
    expect(picks).to_have_count(10, timeout=60_000)
    reasons = picks.evaluate_all("nodes => nodes.map(n => n.title)")
    assert all("margin" in r for r in reasons), reasons
    page.screenshot(path=page.shots / "curate-uncertainty.png")
