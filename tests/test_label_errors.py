"""Confident learning: on constructed data, on scikit-learn's real digits with flipped labels (through the
catalog, real FAISS neighbours), and the catalog fields it writes."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from viscurate.brain.label_errors import confident_learning, cross_validated_probabilities, find_label_errors
from viscurate.errors import ViscurateError
from viscurate.store.catalog import Catalog

PIXELS = "pixels@1"  # the digits' own 64 pixels stand in for an embedding model


def _flip(y: np.ndarray, fraction: float = 0.05, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    k = int(y.max()) + 1
    for i in rng.choice(len(y), size=int(round(fraction * len(y))), replace=False):
        noisy[i] = (y[i] + rng.integers(1, k)) % k
    return noisy


def test_confident_learning_finds_flipped_labels_in_separable_data():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(3), 200)
    x = rng.normal(size=(600, 5)) + np.eye(3, 5)[y] * 4
    noisy = _flip(y, 0.05, 1)
    probs = cross_validated_probabilities(x, noisy)
    cl = confident_learning(noisy, probs)
    truth = noisy != y
    tp = (cl.issues & truth).sum()
    assert tp / cl.issues.sum() >= 0.9 and tp / truth.sum() >= 0.9
    assert (cl.suggested[cl.issues & truth] == y[cl.issues & truth]).mean() >= 0.9
    # the calibrated confident joint counts the images: rows sum to the label counts
    assert cl.confident_joint.sum(axis=1).tolist() == np.bincount(noisy).tolist()
    assert not cl.issues[cl.suggested == noisy].any()  # agreeing with the model is never an error
    with pytest.raises(ViscurateError, match="class indexes"):
        confident_learning(np.array([0, 5]), np.array([[0.5, 0.5], [0.5, 0.5]]))


@pytest.fixture()
def digits_catalog(tmp_path):
    x, y = load_digits(return_X_y=True)
    noisy = _flip(y)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    ids = [f"d{i:04d}" for i in range(len(y))]
    cat = Catalog(tmp_path, "digits", write=True)
    cat.write([{"_id": i, "filepath": f"/x/{i}.png", "ground_truth": {"label": str(names[c])}, "issues": []}
               for i, c in zip(ids, noisy)] + [{"_id": "unlabeled", "issues": []}])
    cat.write_vectors(PIXELS, ids, x.astype(np.float32))
    return cat, ids, y, noisy, names


def test_label_errors_on_real_digits_through_the_catalog(digits_catalog):
    cat, ids, y, noisy, names = digits_catalog
    with cat:
        report = find_label_errors(cat, model=PIXELS)
        assert report.samples == len(ids) and report.classes == sorted(names.tolist())
        flagged = {e["_id"] for e in report.errors}
        wrong = {i for i, a, b in zip(ids, y, noisy) if a != b}
        tp = len(flagged & wrong)
        assert tp / len(flagged) >= 0.5 and tp / len(wrong) >= 0.7, (tp, len(flagged), len(wrong))
        # most doubtful first; the suggestion is mostly the true class
        assert [e["score"] for e in report.errors] == sorted((e["score"] for e in report.errors), reverse=True)
        right = [e for e in report.errors if e["_id"] in wrong]
        truth = dict(zip(ids, names[y]))
        assert sum(e["suggested"] == truth[e["_id"]] for e in right) >= 0.8 * len(right)
        # fields: every labeled sample scored, flagged ones carry the issue; unlabeled untouched
        assert cat.count({"issues": "mislabeled"}) == len(flagged)
        assert cat.count({"mislabel.score": {"$gte": 0}}) == len(ids)
        assert "mislabel" not in cat.get("unlabeled")
        doc = cat.get(report.errors[0]["_id"])
        assert doc["mislabel"]["suggested"] == report.errors[0]["suggested"]
        assert 0 <= doc["mislabel"]["neighbour_disagreement"] <= 1
        # wrong labels disagree with their neighbours more than right ones
        dis = {i: cat.get(i)["mislabel"]["neighbour_disagreement"] for i in list(wrong)[:40] + ids[:40]}
        assert np.mean([dis[i] for i in list(wrong)[:40]]) > np.mean([dis[i] for i in ids[:40] if i not in wrong]) + 0.3


def test_a_free_form_label_field_works_like_a_declared_one(digits_catalog):
    cat, ids, y, noisy, names = digits_catalog
    with cat:
        declared = find_label_errors(cat, model=PIXELS, write=False)
        # the same labels in a field no schema declares (what an import of one's own metadata adds)
        cat.write([{"_id": i, "meta": {"digit": str(names[c])}} for i, c in zip(ids, noisy)],
                  mode="merge", merge_keys=["meta"])
        free = find_label_errors(cat, label_field="meta.digit", model=PIXELS, write=False)
        assert free.samples == declared.samples and free.classes == declared.classes
        assert [e["_id"] for e in free.errors] == [e["_id"] for e in declared.errors]
        with pytest.raises(ViscurateError, match="one label per sample"):
            find_label_errors(cat, label_field="tags", model=PIXELS)


def test_given_probabilities_are_used_and_checked(digits_catalog):
    cat, ids, y, noisy, names = digits_catalog
    with cat:
        classes = sorted(names.tolist())
        order = [classes.index(n) for n in names]
        perfect = np.zeros((len(ids), 10))
        perfect[np.arange(len(ids)), [order[c] for c in y]] = 1.0  # an oracle: exactly the flipped ones
        report = find_label_errors(cat, model=PIXELS, pred_probs=perfect)
        assert report.source == "given probabilities"
        assert {e["_id"] for e in report.errors} == {i for i, a, b in zip(ids, y, noisy) if a != b}
        with pytest.raises(ViscurateError, match="pred_probs must be"):
            find_label_errors(cat, model=PIXELS, pred_probs=perfect[:10])
        cat.update({}, {"$unset": {"ground_truth": ""}})
        with pytest.raises(ViscurateError, match="at least 2 classes"):
            find_label_errors(cat, model=PIXELS)


def test_cli(tmp_path):
    import json

    from tests.test_cli import run
    from viscurate import Dataset

    x, y = load_digits(return_X_y=True)
    x, y = x[:600], y[:600]
    noisy = _flip(y, 0.05, 2)
    ds = Dataset.create("digits", tmp_path)
    ds.add_documents([{"_id": f"d{i:04d}", "ground_truth": {"label": str(c)}} for i, c in enumerate(noisy)])
    with Catalog(ds.directory, "digits", write=True) as cat:
        cat.write_vectors(PIXELS, [f"d{i:04d}" for i in range(len(y))], x.astype(np.float32))
    out = json.loads(run(tmp_path, "label-errors", "digits", "--model", PIXELS, "--json").stdout)
    assert out["samples"] == 600 and len(out["errors"]) >= 15 and out["classes"] == [str(c) for c in range(10)]
    text = run(tmp_path, "label-errors", "digits", "--model", PIXELS).stdout
    assert "probable label errors" in text and "most doubtful first" in text
    assert ds.count({"issues": "mislabeled"}) == len(out["errors"])
