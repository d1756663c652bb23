"""Autotag on real data: Fashion-MNIST test (real images, real embeddings: a stratified 1,000, 100 per
class, tests/labeled_sets.py), a concept taught from 10 examples.

The issue's goal is "from 10 examples, at least 90% of the top 500 is the class" on all 10,000 images: a
top 500 is half of a class there. Here the top ``K`` is half a class too (50 of 100), the same question at a
tenth of the embedding cost; ``python bench/autotag.py`` asks it of all 10,000 (and ``--pool 1000`` of these
very samples: the strong classes agree within 3 points, docs/curation.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import skimage_photos
from viscurate import Dataset
from viscurate.errors import ViscurateError

#: Classes where 10 examples put the class in at least 90% of the top half-class on every one of 5 seeds,
#: with room (worst seed 0.94-1.0 here and on all 10,000). Sandal and sneaker pass here too, with less room
#: elsewhere (sandal 0.89 at one seed of a 2,000 draw, sneaker 0.88 at one of all 10,000). bench/autotag.py
#: measures all ten.
MUST_HOLD = ("trouser", "bag", "ankle_boot")
SEED = 0
PER_CLASS = 100
K = PER_CLASS // 2


@pytest.fixture(scope="module")
def fashion(labeled_dataset):
    """(dataset, {id: class}, {class: ids in original order})."""
    ds = labeled_dataset("fashion_mnist")
    docs = ds.find({}, projection={"filepath": 1, "ground_truth.label": 1}, page_size=10_000)["results"]
    docs.sort(key=lambda d: int(Path(d["filepath"]).stem))
    label = {d["_id"]: d["ground_truth"]["label"] for d in docs}
    members: dict[str, list[str]] = {}
    for d in docs:
        members.setdefault(d["ground_truth"]["label"], []).append(d["_id"])
    assert {len(m) for m in members.values()} == {PER_CLASS}
    return ds, label, members


def examples(members: dict[str, list[str]], cls: str, n: int = 10, seed: int = SEED) -> list[str]:
    return np.random.default_rng(seed).choice(members[cls], size=n, replace=False).tolist()


def precision_at(result, label: dict[str, str], cls: str, k: int = K) -> float:
    top = np.argsort(-result.scores, kind="stable")[:k]
    return float(np.mean([label[result.scored_ids[j]] == cls for j in top]))


def test_ten_examples_find_the_class(fashion):
    ds, label, members = fashion
    measured = {}
    for cls in MUST_HOLD:
        result = ds.autotag(cls, examples(members, cls), write=False)
        measured[cls] = precision_at(result, label, cls)
        assert result.positives and len(result.positives) == 10 and result.unlabeled_negatives == 200
    print(f"precision@{K} from 10 examples:", json.dumps({c: round(p, 3) for c, p in measured.items()}))
    assert {c: p for c, p in measured.items() if p < 0.9} == {}
    assert ds.count({"autotag": {"$exists": True}}) == 0  # write=False stored nothing


def test_scores_are_stored_and_ranked(fashion):
    ds, label, members = fashion
    result = ds.autotag("trouser", examples(members, "trouser"))
    assert result.written and result.field == "autotag.trouser" and result.scored == ds.count({})
    top = ds.find({}, sort=[("autotag.trouser", -1)], projection={"ground_truth.label": 1}, page_size=K)["results"]
    assert np.mean([d["ground_truth"]["label"] == "trouser" for d in top]) >= 0.9
    assert ds.count({"autotag.trouser": {"$gte": 0.0, "$lte": 1.0}}) == result.scored
    assert ds.count({"autotag.trouser": {"$gte": 0.5}}) == result.above
    # top and borderline leave the examples out; borderline scores sit around the threshold
    assert not {t["_id"] for t in result.top + result.borderline} & set(result.positives)
    scores = [t["score"] for t in result.top]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.7
    assert max(abs(b["score"] - 0.5) for b in result.borderline) < min(abs(t["score"] - 0.5) for t in result.top)
    recipe = ds.autotags()["trouser"]
    assert recipe["positive"] == result.positives and recipe["negative"] == [] and recipe["threshold"] == 0.5
    assert recipe["model"] == result.model and recipe["created_at"].endswith("Z")
    as_dict = result.as_dict()
    assert "scores" not in as_dict and as_dict["above"] == result.above and json.dumps(as_dict)


def test_refining_with_labeled_borderline_samples_raises_precision(fashion):
    """Shirt is the hardest class (confused with T-shirts, pullovers and coats): label the 20 borderline
    samples three times, as a user would from the web app (the ground truth plays the annotator), from three
    draws of 10 examples. One round can lose precision (0.49 -> 0.36 at one seed on all 10,000: a handful of
    labels moves a 1280-d model), and so can one draw of three rounds on a small pool; three rounds gain on
    average."""
    ds, label, members = fashion
    before, after, confusers = [], [], []
    for seed in (0, 1, 2):
        positives, negatives = examples(members, "shirt", seed=seed), []
        result = ds.autotag("shirt", positives, write=False)
        before.append(precision_at(result, label, "shirt"))
        for last in (False, False, seed == 2):
            asked = [b["_id"] for b in result.borderline]  # never an example already given
            positives += [i for i in asked if label[i] == "shirt"]
            negatives += [i for i in asked if label[i] != "shirt"]
            confusers += [label[i] for i in asked if label[i] != "shirt"]
            result = ds.autotag("shirt", positives, negatives, write=last)
        after.append(precision_at(result, label, "shirt"))
    print(f"shirt precision@{K} per draw: {before} -> {after}; last draw {len(positives)} positives, "
          f"{len(negatives)} negatives ({sorted(set(confusers))})")
    assert np.mean(after) >= np.mean(before) + 0.03
    assert {"tshirt_top", "pullover", "coat"} & set(confusers)  # the negatives are the confusable classes
    # the stored scores are the refined ones (the last draw's), and the recipe has every example
    got = ds.find({"_id": result.scored_ids[0]}, projection={"autotag": 1})["results"][0]["autotag"]["shirt"]
    assert got == pytest.approx(float(result.scores[0]), abs=1e-5)
    recipe = ds.autotags()["shirt"]
    assert recipe["positive"] == result.positives and sorted(recipe["negative"]) == sorted(negatives)


def test_tag_and_slice_follow_the_threshold(fashion):
    ds, label, members = fashion
    bags = examples(members, "bag")
    loose = ds.autotag("bag", bags, tag=True, slice="bag-candidates")
    assert loose.tag == "bag" and loose.above > K
    assert ds.count({"tags": "bag"}) == loose.above == ds.count({"slices": "bag-candidates"})
    assert ds.count({"slices": "bag-candidates", "autotag.bag": {"$lt": 0.5}}) == 0
    cut = round(float(np.sort(loose.scores)[-K]), 4)  # about the best K
    strict = ds.autotag("bag", bags, threshold=cut, tag="bag-sure", slice="bag-candidates")
    assert 0.8 * K < strict.above < loose.above  # a stricter threshold: the slice's members that fell below left
    assert ds.count({"tags": "bag-sure"}) == strict.above == ds.count({"slices": "bag-candidates"})
    assert ds.count({"tags": "bag"}) == loose.above  # tags are only ever added
    assert ds.count({"slices": "bag-candidates", "autotag.bag": {"$lt": cut}}) == 0
    picked = ds.find({"slices": "bag-candidates"}, projection={"ground_truth.label": 1}, page_size=5000)["results"]
    assert np.mean([d["ground_truth"]["label"] == "bag" for d in picked]) >= 0.9


def test_scope_and_stale_scores(fashion):
    ds, label, members = fashion
    footwear = {"ground_truth.label": {"$in": ["sandal", "sneaker", "ankle_boot"]}}
    other = ds.autotag("sneaker", examples(members, "sneaker")).scored
    wide = ds.autotag("boot", examples(members, "ankle_boot"))
    narrow = ds.autotag("boot", examples(members, "ankle_boot"), query=footwear)
    assert narrow.scored == ds.count(footwear) == 3 * PER_CLASS and wide.scored > narrow.scored
    # scores from the wider run are gone: the concept is one model, not a mix of two
    assert ds.count({"autotag.boot": {"$exists": True}}) == 3 * PER_CLASS
    assert ds.count({"autotag.boot": {"$exists": True}, "ground_truth.label": "bag"}) == 0
    # another concept's scores are untouched
    assert ds.count({"autotag.sneaker": {"$exists": True}}) == other
    # within footwear, 10 boots still rank boots first
    assert precision_at(narrow, label, "ankle_boot", int(0.3 * 3 * PER_CLASS)) >= 0.9


def test_query_as_examples_and_errors(fashion, tmp_path):
    ds, label, members = fashion
    by_query = ds.autotag("sandal_q", {"_id": {"$in": examples(members, "sandal")}}, write=False)
    assert sorted(by_query.positives) == sorted(examples(members, "sandal"))
    one = examples(members, "dress", 1)
    with pytest.raises(ViscurateError, match="at least 2 positive"):
        ds.autotag("dress", one)
    both = examples(members, "dress", 3)
    with pytest.raises(ViscurateError, match="both positive and negative"):
        ds.autotag("dress", both, [both[0]])
    with pytest.raises(ViscurateError, match="not in the dataset"):
        ds.autotag("dress", both + ["no-such-sample"])
    with pytest.raises(ViscurateError, match="invalid autotag name"):
        ds.autotag("a.b", both)
    with pytest.raises(ViscurateError, match="threshold"):
        ds.autotag("dress", both, threshold=1.5)
    with pytest.raises(ViscurateError, match="at least 2 positive"):
        ds.autotag("dress", {"ground_truth.label": "no-such-class"})

    photos = skimage_photos(tmp_path / "photos", ("astronaut.png", "coffee.png", "chelsea.png"))
    bare = Dataset.create("bare", home=tmp_path / "home")
    bare.add_images(photos, progress=False)
    ids = [d["_id"] for d in bare.find({})["results"]]
    with pytest.raises(ViscurateError, match="viscurate embed bare"):
        bare.autotag("cat", ids[:2])
    bare.close()
