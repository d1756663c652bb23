"""The curation report (issue 18, section 2) on real data: a stratified 1,000 of Fashion-MNIST test, embedded.

A cluster-coverage selection of 2% is shown to cover the embedding space better than random (and the JSON
says so, and says plainly how it does on clusters it did not see); a random
selection is shown to be no better than random; a slice saved by hand that holds one class is shown to
be worse; the page is self-contained (Chromium loads it with no request leaving the file) and its counts
agree with the catalog.
"""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viscurate.brain.selection.report import DUPLICATE_SIMILARITY, verdict
from viscurate.errors import ViscurateError

POOL = 1000
BUDGET = 20  # 2%
SITES = {"north": ["tshirt_top", "trouser", "pullover"], "south": ["dress", "coat", "sandal", "shirt"],
         "east": ["sneaker", "bag", "ankle_boot"]}


@pytest.fixture(scope="module")
def fashion(labeled_dataset, tmp_path_factory):
    """The dataset, a metadata field to balance on, a cluster-coverage and a random selection of 2% with
    their reports (made through ``select(report=...)`` and ``curation_report``)."""
    ds = labeled_dataset("fashion_mnist")
    for site, classes in SITES.items():
        ds.set_field({"ground_truth.label": {"$in": classes}}, "metadata.site", site)
    out = tmp_path_factory.mktemp("reports")
    cc = ds.select(BUDGET, "cluster_coverage", slice="cc", report=out / "cc.html")
    rnd = ds.select(BUDGET, "random", slice="rnd", seed=7)
    rnd_report = ds.curation_report("rnd", out / "rnd.html", fields=["metadata.site"])
    return {"ds": ds, "out": out, "cc": cc, "cc_report": json.loads((out / "cc.json").read_text()),
            "rnd": rnd, "rnd_report": rnd_report}


def _print(report: dict) -> None:
    print(f"\n{report['slice']}: {report['selected']} of {report['pool']} ({report['seconds']} s)")
    print("\n".join("  " + line for line in report["summary"]))


def test_cluster_coverage_of_2_percent_covers_the_space_better_and_the_json_says_so(fashion):
    report = fashion["cc_report"]
    _print(report)
    dist = report["metrics"]["embedding_distance_mean"]  # how far a candidate is from its nearest pick
    assert dist["better"] is True and dist["verdict"].startswith("better than random by") and dist["z"] >= 3
    own = report["metrics"]["selection_cluster_coverage"]
    assert own["selection_clusters"] == own["clusters"]  # every cluster of its own represented
    # on clusters it did not see (one per pick, another seed) it covers more than random on average, but at
    # 20 to 40 picks of 1,000 to 2,000 not always beyond the spread (+1.6 std at 40 of 2,000; +2.6 to +7.5 at
    # 200 of 10,000): the
    # verdict must say which, in words that follow the numbers
    cov = report["metrics"]["cluster_coverage"]
    assert cov["clusters"] == BUDGET and cov["selection_clusters"] < cov["clusters"]
    assert cov["verdict"].startswith("better than random by" if cov["better"] else "no better than random")
    assert cov["z"] >= 2 if cov["better"] else cov["verdict"].endswith("random subsets)")
    assert "cluster coverage: " in "\n".join(report["summary"])
    # the HTML the select call wrote says it too
    page = (fashion["out"] / "cc.html").read_text()
    assert cov["verdict"] in page and dist["verdict"] in page
    assert fashion["cc"].report == str(fashion["out"] / "cc.html")


def test_a_random_selection_is_no_better_than_random(fashion):
    report = fashion["rnd_report"]
    _print(report)
    for name in ("cluster_coverage", "embedding_distance_mean", "embedding_distance_p90"):
        v = report["metrics"][name]
        assert v["better"] is False and v["verdict"].startswith("no better than random"), (name, v)
    assert "no better than random" in Path(report["html"]).read_text()


def test_random_selections_are_rarely_called_better_and_not_skewed(fashion):
    # one draw says little (of 150 seeds on this pool: 5 of 450 verdicts "better", and a fair draw 5.7 std
    # worse on the mean distance once): 40 draws of 20 are measured against the same random subsets
    ds = fashion["ds"]
    metrics = ("cluster_coverage", "embedding_distance_mean", "embedding_distance_p90")
    z = {name: [] for name in metrics}
    better = 0
    for seed in range(1, 41):
        ds.select(BUDGET, "random", slice="draw", seed=seed, report=fashion["out"] / "draw.html")  # one pool for both
        report = json.loads((fashion["out"] / "draw.json").read_text())
        for name in metrics:
            z[name].append(report["metrics"][name]["z"])
            better += report["metrics"][name]["better"]
    print({name: (round(float(np.mean(v)), 2), round(float(np.mean(np.abs(v) < 2.5)), 2)) for name, v in z.items()})
    assert better <= 4  # of 120 verdicts; the module doc's "about once in 80" expects 1.5
    for name, values in z.items():
        values = np.array(values)
        assert abs(values.mean()) < 1, (name, values)  # measured on 4 x 40 seeds: -0.26 to +0.46
        assert (np.abs(values) < 2.5).mean() >= 0.85, (name, values)  # measured: 0.93 to 1.00


def test_a_slice_of_one_class_is_worse_than_random_on_balance(fashion, tmp_path):
    ds = fashion["ds"]
    trousers = ds.find({"ground_truth.label": "trouser"}, page_size=BUDGET)["results"]
    ds.save_slice("hand", [d["_id"] for d in trousers])
    report = ds.curation_report("hand", tmp_path / "hand.html", random_subsets=10)
    _print(report)
    assert report["selection"] is None and any("not made by a selection" in w for w in report["warnings"])
    assert report["pool"] == POOL and report["random_subsets"] == 10
    balance = report["balance"]["ground_truth.label"]["metrics"]
    assert balance["classes_covered"]["selection"] == 1
    assert balance["classes_covered"]["verdict"].startswith("no better than random: worse")
    assert balance["normalized_entropy"]["selection"] == 0
    assert report["metrics"]["embedding_distance_mean"]["verdict"].startswith("no better than random: worse by")
    assert [g["group"] for g in report["groups"]] == ["in the slice (no selection entry)"]


def test_counts_agree_with_the_catalog(fashion):
    ds, report, sel = fashion["ds"], fashion["rnd_report"], fashion["rnd"]
    assert report["selected"] == report["measured"] == ds.count({"slices": "rnd"}) == BUDGET
    assert report["pool"] == sel.pool == POOL and report["strategy"] == "random"
    assert report["selection"]["strategy"] == "random" and report["selection"]["seed"] == 7
    labels = report["balance"]["ground_truth.label"]
    for cls, pool_n, picked in zip(labels["classes"], labels["pool"], labels["selection"]):
        assert pool_n == ds.count({"ground_truth.label": cls})
        assert picked == ds.count({"slices": "rnd", "ground_truth.label": cls})
    assert abs(sum(labels["random_mean"]) - BUDGET) < 1e-6
    site = report["balance"]["metadata.site"]
    assert sorted(site["classes"]) == sorted(SITES)
    for value, pool_n, picked in zip(site["classes"], site["pool"], site["selection"]):
        assert pool_n == ds.count({"metadata.site": value})
        assert picked == ds.count({"slices": "rnd", "metadata.site": value})
    # the picks are grouped by their selection entries' clusters; every pick is in one group
    assert sum(g["picks"] for g in report["groups"]) == BUDGET
    clusters = {p["cluster"] for p in sel.picks}
    assert {g["group"] for g in report["groups"]} == {f"cluster {c}" for c in clusters}
    # the JSON twin on disk is the returned dict
    assert json.loads(Path(report["json"]).read_text()) == report


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")


def test_the_page_is_self_contained_and_shows_the_thumbnails(fashion, browser):
    report = fashion["cc_report"]
    page_text = Path(report["html"]).read_text()
    assert "http://" not in page_text and "https://" not in page_text and "@import" not in page_text
    parsed = _Page()
    parsed.feed(page_text)
    shown = sum(len(g["shown"]) for g in report["groups"])
    assert shown == BUDGET  # 20 picks in at most 20 clusters: each group under the cap
    assert len(parsed.images) == shown and all(src.startswith("data:image/") for src in parsed.images)
    assert parsed.tags["svg"] >= len(report["metrics"]) + 1  # a chart per metric and the class distribution

    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(Path(report["html"]).as_uri())
    loaded = page.evaluate("() => [...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
    page.close()
    assert loaded == shown
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []


def test_bad_requests_get_clear_errors(fashion, tmp_path):
    ds = fashion["ds"]
    with pytest.raises(ViscurateError, match=r"no samples in slice 'nope'.*'cc'.*viscurate select"):
        ds.curation_report("nope", tmp_path / "x.html")
    with pytest.raises(ViscurateError, match="random_subsets must be an integer between 2"):
        ds.curation_report("cc", tmp_path / "x.html", random_subsets=1)
    with pytest.raises(ViscurateError, match="fields must be field paths"):
        ds.curation_report("cc", tmp_path / "x.html", fields=[3])
    assert not (tmp_path / "x.html").exists()


def test_verdicts_in_words():
    rnd = np.array([0.50, 0.52, 0.48, 0.51, 0.49])
    assert verdict(0.60, rnd, True)["verdict"].startswith("better than random by")
    assert verdict(0.40, rnd, False)["better"] is True  # lower is better: a smaller distance
    assert verdict(0.505, rnd, True)["verdict"].startswith("no better than random (")
    assert verdict(0.40, rnd, True)["verdict"].startswith("no better than random: worse by")
    assert verdict(0.53, rnd, True)["better"] is False  # better than every subset, but by 1.9 std only
    assert verdict(1.0, np.ones(5), True)["verdict"].startswith("no better than random (+0.0")


def test_near_duplicate_picks_raise_the_duplicate_rate(fashion, tmp_path):
    """A slice of near-identical pairs (12 images and their JPEG re-encodings, mutual nearest neighbours at
    cosine >= 0.95, found here with numpy) has a duplicate rate of 1; random subsets of the same size almost
    none. Last in the module: it adds the copies to the catalog."""
    ds = fashion["ds"]
    originals = [Path(d["filepath"]) for d in ds.find({}, page_size=12)["results"]]
    copies = tmp_path / "copies"
    copies.mkdir()
    for p in originals:
        Image.open(p).save(copies / f"{p.stem}.jpg", quality=90)
    ds.add_images(copies, progress=False)
    ds.embed(progress=False)
    with ds._access.catalog() as cat:
        ids, _, x = cat.read_vectors(fashion["cc"].model)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -1)
    best = sims.argmax(axis=1)
    pairs = sorted({(min(i, j), max(i, j)) for i, j in enumerate(best)
                    if best[j] == i and sims[i, j] >= DUPLICATE_SIMILARITY})
    assert len(pairs) >= 10, "the re-encoded copies are near-identical to their originals"
    ds.save_slice("pairs", [ids[k] for p in pairs for k in p])
    report = ds.curation_report("pairs", tmp_path / "pairs.html")
    dup = report["metrics"]["duplicate_rate"]
    print(f"\n{len(pairs)} pairs: duplicate rate {dup}")
    assert dup["selection"] == 1.0
    assert dup["random_mean"] < 0.2 and not dup["better"]
