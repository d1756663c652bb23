"""The curation commands run as a user runs them (the installed ``viscurate`` script in a subprocess) on a
real catalog: a stratified 1,000 of MNIST test with their labels and default embeddings (tests/labeled_sets.py).
``select`` prints its picks and reasons and saves a slice (or stores nothing with ``--preview``),
``autotag`` learns a digit from ten ids, ``fit-head`` feeds ``--strategy uncertainty``, ``split`` prints
its class table, and bad requests are one line with exit status 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import viscurate_cli

run = viscurate_cli


@pytest.fixture(scope="module")
def mnist(labeled_dataset):
    """The catalog, closed in this process so that the commands can write it; its workspace is ``.home``."""
    ds = labeled_dataset("mnist")
    ds.close()
    return ds


def _home(ds) -> Path:
    return ds.workspace.home


def _count(ds, query: dict) -> int:
    """What the commands stored, read through the library (``viscurate count`` has its own tests: a
    subprocess per check would double this module's time)."""
    try:
        return ds.count(query)
    finally:
        ds.close()  # the next command may write


def _ids_of(ds, query: dict, n: int) -> list[str]:
    try:
        return ds.ids(query)[:n]
    finally:
        ds.close()  # the next command may write


def _labels_of(ds, ids: list[str]) -> list[str]:
    try:
        found = ds.find({"_id": {"$in": ids}}, page_size=max(1, len(ids)))["results"]
    finally:
        ds.close()
    return [d["ground_truth"]["label"] for d in found]


def test_select_prints_the_picks_and_saves_a_slice_with_its_report(mnist, tmp_path):
    out = tmp_path / "picks.html"
    proc = run(_home(mnist), "select", "mnist", "3%", "--strategy", "cluster_coverage", "--slice", "cli-picks",
               "--report", out, "--no-progress")
    text = proc.stdout
    assert "rank" in text and "reason" in text and "cluster" in text
    assert "... and 5 more" in text  # 3% of 1,000 is 30 picks: the first 25 are printed
    assert "saved as slice 'cli-picks'" in text and str(out) in text.replace("\n", "")
    assert "viscurate duplicates" in " ".join(text.split())  # no near-duplicate analysis was stored: the user is told
    assert _count(mnist, {"slices": "cli-picks"}) == 30
    assert _count(mnist, {"selections.slice": "cli-picks"}) == 30
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert "<html" in out.read_text().lower()
    # the recipe is kept: the report can be written again later, by its own command
    again = tmp_path / "again.html"
    proc = run(_home(mnist), "curation-report", "mnist", "cli-picks", again, "--random-subsets", "5")
    assert "wrote" in proc.stdout and again.is_file() and again.with_suffix(".json").is_file()


def test_preview_stores_nothing_and_a_seed_repeats_itself(mnist):
    args = ("select", "mnist", "12", "--strategy", "random", "--slice", "cli-preview", "--preview", "--json")
    first = json.loads(run(_home(mnist), *args, "--seed", "3").stdout)
    again = json.loads(run(_home(mnist), *args, "--seed", "3").stdout)
    other = json.loads(run(_home(mnist), *args, "--seed", "4").stdout)
    assert first["stored"] is False and len(first["ids"]) == 12 and len(set(first["ids"])) == 12
    assert first["ids"] == again["ids"] and first["ids"] != other["ids"]
    assert all(p["reason"] for p in first["picks"]) and [p["rank"] for p in first["picks"]] == list(range(1, 13))
    assert _count(mnist, {"slices": "cli-preview"}) == 0


def test_select_within_a_query_and_with_examples(mnist):
    sevens = {"ground_truth.label": "7"}
    picked = json.loads(run(_home(mnist), "select", "mnist", "10", "--strategy", "k_center", "--query",
                            json.dumps(sevens), "--preview", "--json").stdout)
    assert set(_labels_of(mnist, picked["ids"])) == {"7"}
    # a saved view as the pool, and a share of its samples as the budget
    run(_home(mnist), "view", "save", "mnist", "nines", json.dumps({"ground_truth.label": "9"}))
    nines = _count(mnist, {"ground_truth.label": "9"})
    picked = json.loads(run(_home(mnist), "select", "mnist", "5%", "--strategy", "typicality", "--view", "nines",
                            "--preview", "--json").stdout)
    assert len(picked["ids"]) == round(0.05 * nines) and set(_labels_of(mnist, picked["ids"])) == {"9"}
    # similarity to five ones, given as ids: the picks are ones
    ones = _ids_of(mnist, {"ground_truth.label": "1"}, 5)
    similar = json.loads(run(_home(mnist), "select", "mnist", "20", "--strategy", "similarity", "--examples",
                             ",".join(ones), "--preview", "--json").stdout)
    found = _labels_of(mnist, similar["ids"])
    assert found.count("1") >= 16, found


def test_autotag_learns_a_digit_from_ten_ids_and_tags_it(mnist):
    zeros = _ids_of(mnist, {"ground_truth.label": "0"}, 10)
    negatives = _ids_of(mnist, {"ground_truth.label": "6"}, 5)
    proc = run(_home(mnist), "autotag", "mnist", "zero", "--positive", ",".join(zeros),
               "--negative", json.dumps({"_id": {"$in": negatives}}), "--tag")
    assert "autotag.zero" in proc.stdout and "top" in proc.stdout and "borderline" in proc.stdout
    tagged = _count(mnist, {"tags": "zero"})
    right = _count(mnist, {"tags": "zero", "ground_truth.label": "0"})
    print(f"autotag from 10 ids: {tagged} tagged, {right} of them zeros")
    assert tagged >= 50 and right / tagged >= 0.8
    assert _count(mnist, {"autotag.zero": {"$gte": 0}}) == 1000


def test_fit_head_then_select_the_uncertain_ones(mnist):
    proc = run(_home(mnist), "fit-head", "mnist", "--query", json.dumps({"ground_truth.label": {"$in": ["3", "5", "8"]}}))
    assert "head" in proc.stdout
    picked = json.loads(run(_home(mnist), "select", "mnist", "15", "--strategy", "uncertainty", "--measure", "margin",
                            "--query", json.dumps({"ground_truth.label": {"$in": ["3", "5", "8"]}}),
                            "--preview", "--json").stdout)
    assert len(picked["ids"]) == 15 and all(p["reason"] for p in picked["picks"])


def test_split_prints_the_class_table_and_writes_the_field(mnist):
    proc = run(_home(mnist), "split", "mnist", "--ratios", "train=0.8,val=0.2", "--field", "cv", "--seed", "1")
    assert "train" in proc.stdout and "val" in proc.stdout
    for digit in ("0", "9"):
        assert digit in proc.stdout
    train, val = _count(mnist, {"cv": "train"}), _count(mnist, {"cv": "val"})
    assert train + val == 1000 and 0.75 <= train / 1000 <= 0.85


@pytest.mark.parametrize("args, words", [
    (("select", "mnist", "5000", "--strategy", "random"), ("larger than the pool", "1000 candidates")),
    (("select", "mnist", "10", "--strategy", "nope"), ("cluster_coverage",)),
    (("select", "mnist", "ten"), ("budget",)),
    (("select", "mnist", "5", "--weights", "k_center:1", "--strategy", "weighted"), ("name=number",)),
    (("autotag", "mnist", "x", "--positive", "just-one"), ("positive",)),
    (("autotag", "mnist", "x", "--positive", "{broken"), ("not valid JSON",)),
    (("split", "mnist", "--ratios", "train0.8"), ("name=number",)),
    (("curation-report", "mnist", "no-such-slice", "x.html"), ("no-such-slice",)),
])
def test_bad_requests_are_one_line_with_what_to_do(mnist, tmp_path, args, words):
    proc = run(_home(mnist), *args, check=False)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
