"""The active-learning loop end to end on 600 real Fashion-MNIST images (ingested, embedded by the default
embedder): select, export as Label Studio tasks (and one CVAT round) with the head's pre-annotations, the
corpus answering in the returned file, import (audited), refit the head, select by uncertainty. The test
runs the example's own functions (examples/active_learning.py), so the documented example cannot rot.
The head (brain/head.py) is checked on its own too: what it stores and its errors."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from viscurate import Dataset
from viscurate.errors import ViscurateError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "active_learning.py"


def _example():
    spec = importlib.util.spec_from_file_location("active_learning_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


al = _example()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from tests.labeled_sets import arrays
    arrays("fashion_mnist")  # skips (fails under CI) without the corpus arrays
    work = tmp_path_factory.mktemp("al")
    corpus = al.corpus_from_npz("fashion_mnist", work / "images", 600)
    return al.prepare(corpus, work / "build", test=150)


@pytest.fixture(scope="module")
def loop(prepared, tmp_path_factory):
    """One run of the documented arm: cluster coverage, then two uncertainty rounds; rounds 0 and 2 go
    through Label Studio files, round 1 through CVAT."""
    work = tmp_path_factory.mktemp("al-loop")
    ds = al.fresh_copy(prepared, work / "home")
    run = al.run_loop(ds, prepared, arm="coverage+uncertainty", rounds=3, batch=20, seed=0,
                      tool=["labelstudio", "cvat", "labelstudio"], work=work / "rounds", measure="entropy")
    yield ds, run, work / "rounds"
    ds.close()


def test_every_round_trip_brings_the_annotators_labels_back_audited(loop, prepared):
    ds, run, rounds = loop
    assert [r.labeled for r in run.rounds] == [20, 40, 60]
    assert [r.imported for r in run.rounds] == [20, 20, 20]
    assert [r.strategy for r in run.rounds] == ["cluster_coverage", "uncertainty", "uncertainty"]
    labeled = {d["_id"]: d["ground_truth"]["label"] for d in ds.iter({"ground_truth.label": {"$exists": True}})}
    assert labeled == {i: prepared.truth[i] for i in labeled}  # what came back is what the annotator said
    assert not set(labeled) & set(prepared.holdout)  # the held-out set is never picked
    for r in range(3):
        assert set(ds.ids({"slices": f"al-round-{r}"})) <= set(labeled)
    trail = ds.edits(limit=1000)["results"]
    audited = [e for e in trail if e["by"] == al.ANNOTATOR and e["field"] == "ground_truth.label"]
    assert {e["sample_id"] for e in audited} == set(labeled)
    assert {e["action"] for e in audited} == {"import:labelstudio", "import:cvat"}
    assert all(e["after"] == prepared.truth[e["sample_id"]] for e in audited)


def test_the_exports_carry_the_heads_class_as_a_scored_pre_annotation(loop):
    ds, run, rounds = loop
    first = json.loads((rounds / "coverage+uncertainty-seed0-round0" / "tasks.json").read_text())
    assert len(first) == 20  # no head yet: nothing to suggest
    assert not [p for t in first for p in t.get("predictions", []) if p["result"]]
    last = json.loads((rounds / "coverage+uncertainty-seed0-round2" / "tasks.json").read_text())
    assert len(last) == 20
    for task in last:
        choice, = task["predictions"][0]["result"]
        assert choice["from_name"] == "image_class" and 0 < choice["score"] <= 1
    config = (rounds / "coverage+uncertainty-seed0-round0" / "label_config.xml").read_text()
    assert config.count("<Choice ") == 10  # every class offered, even before any prediction
    cvat = ET.parse(rounds / "coverage+uncertainty-seed0-round1" / "annotations.xml").getroot()
    tags = cvat.findall("./image/tag")
    assert len(tags) == 20 and {t.get("source") for t in tags} == {"auto"}
    assert len(cvat.findall("./meta/task/labels/label")) == 10


def test_uncertainty_picks_what_the_head_doubts_and_the_head_improves(loop):
    ds, run, _ = loop
    for r in run.rounds[1:]:
        assert r.picked_entropy > r.pool_entropy_median, r
    assert run.rounds[-1].accuracy > run.rounds[0].accuracy, run.accuracies
    assert run.rounds[-1].accuracy > 0.5  # 60 labels of 10 classes: far above chance (0.1)


def test_the_random_baseline_runs_the_same_loop(prepared, tmp_path):
    runs = al.experiment(prepared, arms=["random"], seeds=[1], rounds=2, batch=20, tool="labelstudio",
                         work=tmp_path, log=False)
    run, = runs
    assert [r.strategy for r in run.rounds] == ["random", "random"] and [r.labeled for r in run.rounds] == [20, 40]
    assert all(0.1 < a <= 1 for a in run.accuracies)
    lines = al.table(runs, 20).splitlines()
    assert lines[0] == "| round | labels | random |" and lines[3].startswith("| 1 | 40 | ")
    svg = ET.parse(al.write_svg(al.mean_curves(runs), tmp_path / "a.svg", batch=20)).getroot()
    assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 1


def test_the_head_stores_its_prediction_on_every_embedded_sample(loop, prepared):
    ds, _, _ = loop
    report = ds.fit_head()
    assert report.labeled == 60 and report.predicted == len(prepared.truth) == ds.count({"head": {"$exists": True}})
    assert report.classes == sorted(set(report.classes)) and len(report.classes) >= 2
    assert report.cv_accuracy is None or 0 <= report.cv_accuracy <= 1
    doc = ds.get(prepared.holdout[0])
    head = doc["head"]
    probs = head["probs"]
    assert set(probs) == set(report.classes) and abs(sum(probs.values()) - 1) < 1e-3
    ranked = sorted(probs.values(), reverse=True)
    assert head["label"] == max(probs, key=probs.get)
    assert head["confidence"] == pytest.approx(ranked[0], abs=1e-4)
    assert head["margin"] == pytest.approx(ranked[0] - ranked[1], abs=2e-4)
    p = np.array([v for v in probs.values() if v > 0])
    assert head["entropy"] == pytest.approx(float(-(p * np.log(p)).sum()), abs=2e-3)
    assert head["labels"] == 60 and head["model"] == report.model


def test_the_head_is_a_logistic_regression_on_the_labeled_embeddings(loop):
    """The stored classes are those of the same model fitted here (the head is no stub)."""
    from sklearn.linear_model import LogisticRegression

    from viscurate.brain.head import HEAD_C
    from viscurate.common.vectors import l2_normalize
    ds, _, _ = loop
    model = ds.fit_head().model
    with ds._access.catalog() as cat:
        ids, _, x = cat.read_vectors(model)
    labels = {d["_id"]: d["ground_truth"]["label"] for d in ds.iter({"ground_truth.label": {"$exists": True}})}
    train = [n for n, i in enumerate(ids) if i in labels]
    x = l2_normalize(x)
    clf = LogisticRegression(C=HEAD_C, max_iter=1000).fit(x[train], [labels[ids[n]] for n in train])
    stored = {d["_id"]: d["head"]["label"] for d in ds.iter({"head": {"$exists": True}})}
    assert [stored[i] for i in ids] == clf.predict(x).tolist()


def test_head_errors_say_what_to_do(loop, prepared, tmp_path):
    ds, _, _ = loop
    with pytest.raises(ViscurateError, match="at least 2 classes in 'nothing'.*label more"):
        ds.fit_head("nothing")
    one = ds.ids({"ground_truth.label": "trouser"})[:1] or ds.ids({"ground_truth.label": {"$exists": True}})[:1]
    with pytest.raises(ViscurateError, match="at least 2 classes"):
        ds.fit_head(query={"_id": {"$in": one}})
    with pytest.raises(ViscurateError, match="name a top-level field of its own"):
        ds.fit_head(field="ground_truth")
    bare = Dataset.create("bare", home=tmp_path / "home")
    try:
        bare.add_images([ds.get(prepared.holdout[0])["filepath"]], progress=False)
        with pytest.raises(ViscurateError, match="viscurate embed"):
            bare.fit_head()
    finally:
        bare.close()


def test_the_example_explains_itself():
    out = subprocess.run([sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--tool" in out.stdout and "active-learning" in out.stdout
