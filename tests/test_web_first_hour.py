"""A new user's first hour in the web app, end to end: headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright) against a real server on loopback, over real photos labeled by the default models.

It opens on the dataset used last (never on the analyze scratch one, which is gone after each analysis),
box labels never hide each other, the detail shows what people read first, the edit bar stays in view,
a reviewer accepts, rejects, relabels and moves the model's boxes (REST and Python too), grid cards name
their file and say why a corrupt one has no picture, review cards say which is the copy, and the query
row fits a narrow window. Screenshots go to ``test-artifacts/web/first-hour-*.png``.
"""
from __future__ import annotations

import io
import json
import os
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

LONG_NAME = "holiday_2026_camera_roll_export_from_the_old_phone_0042.png"
CROWD = [  # (class, confidence, label quality, [x, y, w, h]) on a 512 x 512 photo: a crowd of boxes
    ("horse", 0.98, 0.91, [60, 60, 200, 180]), ("sheep", 0.60, 0.12, [64, 62, 190, 176]),  # the pig photo's case
    *[(name, 0.5 + 0.02 * i, 0.3 + 0.02 * i, [40 + 55 * (i % 8), 250 + 40 * (i // 8), 70, 60])
      for i, name in enumerate(["person", "bicycle", "car", "dog", "cat", "bird", "cup", "bowl"] * 3)],
]


def _truncated_jpeg(path: Path) -> None:
    import skimage
    from PIL import Image
    buffer = io.BytesIO()
    Image.open(Path(skimage.__file__).parent / "data" / "coffee.png").convert("RGB").save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[:3000])


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-hour")
    home = root / "home"
    # "animals" is first by name but used longest ago; "zoo" is the one the user just worked on
    older = Dataset.create("animals", home=home)
    older.add_images(skimage_photos(root / "older", ("camera.png",)), progress=False)
    os.utime(older.directory / "catalog.duckdb", (1_000_000_000, 1_000_000_000))
    photos = skimage_photos(root / "photos", ("horse.png", "coffee.png", "astronaut.png", "chelsea.png"),
                            {"horse_copy.png": "horse.png", "crowd.png": "ihc.png", LONG_NAME: "rocket.jpg"})
    _truncated_jpeg(photos / "broken.jpg")
    ds = Dataset.create("zoo", home=home)
    ds.add_images(photos, progress=False)
    ds.label(progress=False)
    ds.analyze()
    crowd = ds.ids({"filepath": {"$regex": "crowd.png$"}})[0]
    ds.set_field(crowd, "object_analysis", [{"name": n, "confidence": c, "label_quality_estimation": q, "bbox": b}
                                            for n, c, q, b in CROWD])
    return home


@pytest.fixture(scope="module")
def server(home):
    with _Server(create_app(home)) as client:
        yield client


@pytest.fixture
def open_app(browser, server, artifacts_dir):
    """``open_app(state=None, width=1400, height=900)``: a page of the app, ready; the page must not raise."""
    contexts, errors = [], []
    shots = artifacts_dir / "web"
    shots.mkdir(parents=True, exist_ok=True)

    def opener(state: dict | None = None, width: int = 1400, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(str(server.base_url) + "/" + ("#" + quote(json.dumps(state)) if state else ""))
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.shots = shots  # type: ignore[attr-defined]
        return page

    yield opener
    for context in contexts:
        context.close()
    assert not errors, f"the page raised: {errors}"


def _sample_id(server, name: str, dataset: str = "zoo") -> str:
    found = server.post(f"/v1/datasets/{dataset}/search", json={"q": {"filepath": {"$regex": f"/{name}$"}}}).json()
    assert found["length"] == 1, name
    return found["results"][0]["_id"]


def _open_sample(open_app, server, name: str):
    page = open_app({"d": "zoo", "q": {"_id": _sample_id(server, name)}})
    expect(page.locator(".cell")).to_have_count(1)
    page.click(".cell")
    expect(page.locator("#d-title")).to_have_text(name)
    page.wait_for_function("() => document.querySelector('#d-image').complete && document.querySelector('#d-image').naturalWidth > 0")
    return page


def _thumbnails_loaded(page) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('.cell img')].every((i) => i.complete && i.naturalWidth > 0)")


def _disjoint(a: dict, b: dict) -> bool:
    return (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
            or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


# ---- where the app opens, and the analyze scratch dataset -----------------------------------------

def test_it_opens_on_the_dataset_used_last_and_the_analyze_scratch_dataset_is_gone(open_app, server, home):
    import skimage
    photo = (Path(skimage.__file__).parent / "data" / "chelsea.png").read_bytes()
    r = server.post("/v1/analyze/upload", files={"file": ("chelsea.png", photo, "image/png")})
    assert r.status_code == 200, r.text
    assert any(o["name"] == "cat" for o in r.json()["object_analysis"])
    assert Dataset.list(home) == ["animals", "zoo"]  # the scratch dataset was deleted, not just emptied
    assert server.get("/v1/datasets").json() == {"datasets": ["animals", "zoo"], "length": 2, "recent": "zoo"}
    assert server.get("/v1/datasets/analyze-scratch").status_code == 404
    page = open_app()  # no link: a new user just opens the app
    expect(page.locator("#dataset")).to_have_value("zoo")
    assert page.locator("#dataset option").all_inner_texts() == ["animals", "zoo"]
    expect(page.locator(".cell")).to_have_count(8)
    _thumbnails_loaded(page)
    page.screenshot(path=page.shots / "first-hour-opens-recent.png")


def test_a_scratch_dataset_left_by_a_crash_is_removed_when_the_server_starts(tmp_path):
    Dataset.create("analyze-scratch", home=tmp_path)
    Dataset.create("mine", home=tmp_path)
    with _Server(create_app(tmp_path)) as client:
        assert client.get("/v1/datasets").json()["datasets"] == ["mine"]
        assert Dataset.list(tmp_path) == ["mine"]
        r = client.post("/v1/analyze/upload", data={"dataset": "analyze-scratch"},
                        files={"file": ("x.png", b"\x89PNG", "image/png")})
        assert r.status_code == 400 and "scratch" in r.json()["error"]


# ---- the sample detail ------------------------------------------------------------------------------

def test_box_labels_never_hide_each_other_even_in_a_crowd(open_app, server):
    page = _open_sample(open_app, server, "crowd.png")
    labels = page.locator("#overlay g.label rect.label-back")
    expect(labels).to_have_count(len(CROWD))  # every label found a place
    assert page.locator("#overlay").get_attribute("data-hidden-labels") == "0"
    rects = [labels.nth(i).bounding_box() for i in range(len(CROWD))]
    image = page.locator("#d-image").bounding_box()
    for i, a in enumerate(rects):
        assert image["x"] - 1 <= a["x"] and a["x"] + a["width"] <= image["x"] + image["width"] + 1
        assert image["y"] - 1 <= a["y"] and a["y"] + a["height"] <= image["y"] + image["height"] + 1
        for b in rects[i + 1:]:
            assert _disjoint(a, b), (a, b)
    texts = page.locator("#overlay g.label text").all_text_contents()
    assert "horse 98% · q 0.91" in texts and "sheep 60% · q 0.12" in texts
    page.screenshot(path=page.shots / "first-hour-crowd-labels.png")


def test_the_detail_shows_name_size_labels_issues_and_tags_before_the_raw_arrays(open_app, server):
    page = _open_sample(open_app, server, "horse_copy.png")
    expect(page.locator("#d-meta")).to_contain_text("PNG")
    expect(page.locator("#d-meta")).to_contain_text("KB")
    horse = page.locator("#d-labels tbody tr", has_text="horse").first
    expect(horse.locator("td")).to_have_text(["horse", "98%", "0.20", "model", ""])
    expect(page.locator("#d-issues .pill", has_text="duplicate").first).to_be_visible()
    label = page.locator("#overlay g.label text").first
    expect(label).to_have_text("horse 98% · q 0.20")
    top = {name: page.locator(sel).bounding_box()["y"] for name, sel in (
        ("title", "#d-title"), ("labels", "#d-labels"), ("issues", "#d-issues"), ("raw", "#d-raw"))}
    assert top["title"] < top["labels"] < top["issues"] < top["raw"]
    raw = page.locator("#d-raw")
    assert raw.get_attribute("open") is None  # folded
    phash = re.compile(r"^phash$")
    expect(raw.locator("td", has_text=phash)).to_have_count(1)
    expect(raw.locator("td", has_text=phash)).to_be_hidden()
    expect(page.locator("#d-fields td", has_text=phash)).to_have_count(0)
    expect(page.locator("#d-fields td", has_text=re.compile(r"^quality\.blur$"))).to_be_visible()
    page.screenshot(path=page.shots / "first-hour-detail.png")


def test_edit_mode_keeps_the_picture_below_the_toolbar_and_the_edit_bar_in_view(open_app, server):
    page = _open_sample(open_app, server, "astronaut.png")  # square: as tall as the room allows
    page.keyboard.press("e")
    expect(page.locator("#editbar")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#d-image').getBoundingClientRect().bottom"
                           " <= document.querySelector('#editbar').getBoundingClientRect().top + 0.5", timeout=5_000)
    image = page.locator("#d-image").bounding_box()
    toolbar = page.locator(".detailbar").bounding_box()
    editbar = page.locator("#editbar").bounding_box()
    panel = page.locator("#detail").bounding_box()
    assert image["y"] >= toolbar["y"] + toolbar["height"] - 0.5  # not over the toolbar
    assert image["y"] + image["height"] <= editbar["y"] + 0.5  # not over the edit bar
    assert editbar["y"] + editbar["height"] <= panel["y"] + panel["height"] + 0.5 <= 900
    overlay = page.locator("#overlay").bounding_box()
    assert abs(overlay["y"] - image["y"]) < 1 and abs(overlay["height"] - image["height"]) < 1  # boxes stay on it
    for button in ("#edit-accept", "#edit-reject", "#edit-relabel", "#edit-delete", "#edit-class"):
        expect(page.locator(button)).to_be_in_viewport(ratio=1)
    page.screenshot(path=page.shots / "first-hour-edit-layout.png")


# ---- reviewing the model's boxes --------------------------------------------------------------------

def test_a_reviewer_accepts_rejects_relabels_and_moves_the_models_boxes(open_app, server):
    sid = _sample_id(server, "coffee.png")
    models = {b["name"]: i for i, b in enumerate(server.get(f"/v1/datasets/zoo/samples/{sid}").json()["object_analysis"])}
    assert {"cup", "bowl", "dining table"} <= set(models)
    page = _open_sample(open_app, server, "coffee.png")
    page.fill("#user", "ana")
    page.press("#user", "Tab")
    page.click("#d-edit")
    box = lambda field, name: page.locator(f'#overlay rect.box[data-field="{field}"][data-name="{name}"]')  # noqa: E731
    # the cup's and the bowl's boxes nearly coincide: their labels, which never overlap, pick them
    label = lambda name: page.locator(f'#overlay g.label[data-field="object_analysis"][data-index="{models[name]}"]')  # noqa: E731
    label("cup").click()
    expect(box("object_analysis", "cup")).to_have_class(re.compile("selected"))
    page.click("#edit-accept")
    expect(box("ground_truth.detections", "cup")).to_have_count(1)
    label("bowl").click()
    page.keyboard.press("x")
    expect(page.locator('#overlay rect.box.review-rejected[data-name="bowl"]')).to_have_count(1)
    label("dining table").click()
    page.fill("#edit-class", "table")
    page.click("#edit-relabel")
    expect(box("ground_truth.detections", "table")).to_have_count(1)
    page.screenshot(path=page.shots / "first-hour-review-labels.png")

    doc = server.get(f"/v1/datasets/zoo/samples/{sid}").json()
    reviews = {b["name"]: b.get("review") for b in doc["object_analysis"]}
    assert reviews["cup"] == "accepted" and reviews["bowl"] == "rejected" and reviews["dining table"] == "relabeled"
    truth = {b["name"]: b for b in doc["ground_truth"]["detections"]}
    assert set(truth) == {"cup", "table"}  # the rejected bowl never reaches ground truth
    assert truth["cup"]["bbox"] == pytest.approx(doc["object_analysis"][models["cup"]]["bbox"])
    assert truth["table"]["source"] == f"object_analysis[{models['dining table']}]"
    trail = server.get("/v1/datasets/zoo/edits", params={"sample_id": sid}).json()["results"]
    assert [e["action"] for e in trail] == ["add_box", "accept_label", "reject_label", "add_box", "accept_label"]
    assert {e["by"] for e in trail} == {"ana"}
    expect(page.locator("#d-edits li")).to_have_count(5)

    # move: drag the cat's box of another photo to where it should be
    page = _open_sample(open_app, server, "chelsea.png")
    sid = _sample_id(server, "chelsea.png")
    cat_before = next(b for b in server.get(f"/v1/datasets/zoo/samples/{sid}").json()["object_analysis"] if b["name"] == "cat")
    page.keyboard.press("e")
    cat = box("object_analysis", "cat")
    cat.click()  # select it first: dragging over a box that is not selected draws a new one
    start = cat.bounding_box()
    image = page.locator("#d-image").bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(start["x"] + start["width"] / 2 - 20, start["y"] + start["height"] / 2 + 10, steps=5)
    page.mouse.up()
    expect(box("ground_truth.detections", "cat")).to_have_count(1)
    moved = next(b for b in server.get(f"/v1/datasets/zoo/samples/{sid}").json()["ground_truth"]["detections"])
    scale = 451 / image["width"]  # chelsea.png is 451 px wide
    assert moved["bbox"][0] == pytest.approx(max(0.0, cat_before["bbox"][0] - 20 * scale), abs=2 * scale)
    assert moved["bbox"][2:] == pytest.approx(cat_before["bbox"][2:])
    page.screenshot(path=page.shots / "first-hour-move-label.png")


def test_label_review_routes_and_the_python_api(server, home):
    sid = _sample_id(server, "astronaut.png")
    doc = server.get(f"/v1/datasets/zoo/samples/{sid}").json()
    person = next(i for i, b in enumerate(doc["object_analysis"]) if b["name"] == "person")
    other = next(i for i, b in enumerate(doc["object_analysis"]) if b["name"] != "person")
    route = f"/v1/datasets/zoo/samples/{sid}/labels/object_analysis"
    headers = {"X-Viscurate-User": "bo"}
    assert server.post(f"{route}/{person}/accept", json={"expect": {"name": "dog"}}).status_code == 409  # stale
    assert server.post(f"{route}/{person}/relabel", json={}).status_code == 400  # no class
    assert server.post(f"{route}/{person}/move", json={"bbox": [0, 0, 9000, 10]}).status_code == 400  # outside
    assert server.post(f"{route}/99/accept").status_code == 400
    assert server.post(f"/v1/datasets/zoo/samples/{sid}/labels/ground_truth.detections/0/accept").status_code in (404, 422)
    r = server.post(f"{route}/{person}/move", json={"bbox": [100, 20, 300, 480], "expect": {"name": "person"}},
                    headers=headers)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["object_analysis"][person]["review"] == "moved"
    assert after["object_analysis"][person]["bbox"] == doc["object_analysis"][person]["bbox"]  # the model's box stays
    assert after["ground_truth"]["detections"][-1] == {"name": "person", "bbox": [100.0, 20.0, 300.0, 480.0],
                                                       "area": 144000.0, "source": f"object_analysis[{person}]"}
    assert server.post(f"{route}/{person}/accept").status_code == 409  # not twice into ground truth
    assert server.post(f"{route}/{other}/reject", headers=headers).status_code == 200
    assert server.post(f"{route}/{other}/reject").status_code == 409
    # rejected model output stays, and is queryable
    found = server.post("/v1/datasets/zoo/search", json={"q": {"object_analysis.review": "rejected"}}).json()
    assert sid in {d["_id"] for d in found["results"]}
    trail = server.get("/v1/datasets/zoo/edits", params={"sample_id": sid}).json()["results"]
    assert [(e["action"], e["field"], e["by"]) for e in trail] == [
        ("reject_label", "object_analysis", "bo"), ("add_box", "ground_truth.detections", "bo"),
        ("accept_label", "object_analysis", "bo")]
    # a rejected box can still be accepted later, from Python too
    ds = Dataset.open("zoo", home)
    out = ds.edit(sid, {"action": "accept_label", "field": "object_analysis", "index": other, "name": "microphone"}, by="cy")
    assert out["object_analysis"][other]["review"] == "relabeled"
    assert out["ground_truth"]["detections"][-1]["name"] == "microphone"


# ---- grid and review cards ---------------------------------------------------------------------------

def test_grid_cards_name_their_file_and_a_corrupt_one_says_why(open_app, server):
    page = open_app({"d": "zoo"})
    expect(page.locator(".cell")).to_have_count(8)
    long_cell = page.locator(".cell", has=page.locator(f'.name[title="{LONG_NAME}"]'))
    expect(long_cell).to_have_count(1)
    tail = long_cell.locator(".name .tail")
    expect(tail).to_have_text(LONG_NAME[-10:])  # the end of the name, with its number, stays readable
    expect(tail).to_be_visible()
    cell_box, tail_box = long_cell.bounding_box(), tail.bounding_box()
    assert tail_box["x"] + tail_box["width"] <= cell_box["x"] + cell_box["width"]
    assert long_cell.locator(".name .head").evaluate("e => e.scrollWidth > e.clientWidth")  # cut, with an ellipsis
    expect(page.locator(".cell .name", has_text="horse.png")).to_have_count(1)
    broken = page.locator(".cell", has=page.locator('.name[title="broken.jpg"]'))
    expect(broken.locator(".placeholder")).to_have_text("corrupt: truncated")
    expect(broken.locator("img")).to_have_count(0)  # no broken-image icon
    placeholder, badge = broken.locator(".placeholder span").bounding_box(), broken.locator(".badge").bounding_box()
    assert _disjoint(placeholder, badge)
    _thumbnails_loaded(page)
    page.screenshot(path=page.shots / "first-hour-grid.png")


def test_duplicate_review_cards_say_which_is_the_copy(open_app, server):
    page = open_app({"d": "zoo"})
    page.click("[data-tab=review]")
    page.select_option("#review-kind", "duplicates")
    card = page.locator("#review-list .card").first
    expect(card.locator("figcaption.mine")).to_have_text("copy · horse_copy.png")
    expect(card.locator("figcaption.theirs")).to_have_text("original (kept)")
    original = card.locator("figure.theirs img").get_attribute("title")
    assert original == _sample_id(server, "horse.png")
    page.screenshot(path=page.shots / "first-hour-review-duplicates.png")


# ---- a narrow window ----------------------------------------------------------------------------------

def test_the_query_row_wraps_in_a_narrow_window(open_app):
    page = open_app({"d": "zoo"}, width=480, height=800)
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    for selector in ("#query", "#run-query", "#sort", "#views", "#save-view", "#save-slice", "#dataset", "#user"):
        expect(page.locator(selector)).to_be_in_viewport(ratio=1)
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 480, selector
    page.screenshot(path=page.shots / "first-hour-narrow.png")


def test_a_query_naming_a_field_no_sample_has_shows_the_servers_warning(open_app, server):
    answer = server.post("/v1/datasets/zoo/search", json={"q": {"isues": "duplicate"}}).json()
    assert answer["length"] == 0 and answer.get("warnings")
    page = open_app({"d": "zoo"})
    expect(page.locator("#warnings")).to_be_hidden()
    page.fill("#query", '{"isues": "duplicate"}')
    page.press("#query", "Enter")
    expect(page.locator("#count")).to_have_text("0 samples")
    expect(page.locator("#warnings")).to_be_visible()
    expect(page.locator("#warnings")).to_contain_text(answer["warnings"][0])
    page.screenshot(path=page.shots / "first-hour-query-warning.png")
    page.fill("#query", '{"issues": "duplicate"}')
    page.press("#query", "Enter")
    expect(page.locator("#count")).to_have_text("1 sample")
    expect(page.locator("#warnings")).to_be_hidden()
