"""Duplicates: real photos (the planted-duplicate corpus), real ingest, real embeddings, real FAISS."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_splits import sides
from viscurate import Dataset
from viscurate.brain.duplicates import DuplicateRules, find_duplicates
from viscurate.errors import ViscurateError
from viscurate.store.catalog import Catalog

PLANTED = Path(__file__).parent / "fixtures" / "planted_duplicates.py"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted-duplicate corpus, ingested and embedded: (dataset, ground truth)."""
    root = tmp_path_factory.mktemp("planted")
    subprocess.run([sys.executable, str(PLANTED), str(root / "corpus")], check=True, capture_output=True)
    ds = Dataset.create("planted", root / "home")
    ds.add_images(root / "corpus" / "images", progress=False)
    ds.embed(progress=False)
    truth = json.loads((root / "corpus" / "ground_truth.json").read_text())
    return ds, truth


def test_planted_duplicates_precision_and_recall(planted):
    ds, truth = planted
    report = ds.find_duplicates()
    assert report.model == "efficientnet_lite3@uint8-280-obj224" and report.samples == truth["n_images"]
    names = {d["_id"]: os.path.basename(d["filepath"])
             for d in ds.find({}, projection={"filepath": 1}, page_size=10_000)["results"]}
    predicted = {frozenset(names[i] for i in pair) for pair in report.pairs()}
    expected = {frozenset(p) for p in truth["dup_pairs"]}
    tp = len(predicted & expected)
    precision, recall = tp / max(1, len(predicted)), tp / len(expected)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall, sorted(map(sorted, expected - predicted)))

    # every kind of planted edit is caught by the rule meant for it
    reasons = {m["reason"] for g in report.groups for m in g.members}
    assert {"exact", "phash", "mirrored", "embedding"} <= reasons

    # the findings are fields the query language reaches
    assert ds.count({"issues": "near_duplicate"}) == report.near
    assert ds.count({"issues": "duplicate"}) == report.exact
    assert ds.count({"duplicates.representative": True}) == len(report.groups)
    assert ds.count({"duplicates.reason": "mirrored", "duplicates.hash_distance": {"$gt": 20}}) >= 1
    biggest = report.groups[0]
    assert ds.count({"duplicates.group": biggest.representative}) == biggest.size
    assert ds.info()["duplicates"] == {"groups": len(report.groups), "in_groups": sum(g.size for g in report.groups)}


def test_hashes_only_and_stale_findings_are_cleared(planted):
    ds, truth = planted
    with_embeddings = ds.find_duplicates()
    hashes_only = ds.find_duplicates(model=False)
    assert hashes_only.model is None
    assert not any(m["reason"] == "embedding" for g in hashes_only.groups for m in g.members)
    assert hashes_only.near < with_embeddings.near
    assert ds.count({"duplicates.reason": "embedding"}) == 0  # the earlier run's findings were replaced

    strict = ds.find_duplicates(model=False, hash_distance=0, flip_distance=0)
    assert ds.count({"issues": "near_duplicate"}) == strict.near < hashes_only.near
    assert ds.count({"issues": "duplicate"}) == strict.exact == with_embeddings.exact  # exact stays exact
    # other issues are left alone
    assert ds.count({"issues": "grayscale"}) > 0

    dry = ds.find_duplicates(write=False)
    assert dry.near == with_embeddings.near and ds.count({"issues": "near_duplicate"}) == strict.near
    with pytest.raises(ViscurateError, match="hash_distance"):
        ds.find_duplicates(hash_distance=65)


def _doc(i: int, phash: str, pixels: int, hash_: str | None = None) -> dict:
    return {"_id": f"s{i}", "filepath": f"/x/{i}.jpg", "width": pixels, "height": 1, "size_bytes": 100,
            "hash": hash_ or f"{i:064x}", "phash": phash, "phash_flip": f"{(i * 7919) % 2**64:016x}", "issues": []}


def test_groups_do_not_chain(tmp_path):
    """A~B and B~C (10 bits each) but A and C 20 bits apart: B joins the best of them, C stays alone."""
    a = 0
    b = a ^ 0x3FF              # 10 bits from a
    c = b ^ (0x3FF << 20)      # 10 bits from b, 20 from a
    d = c ^ 0x1                # 1 bit from c
    docs = [_doc(0, f"{a:016x}", 400), _doc(1, f"{b:016x}", 300), _doc(2, f"{c:016x}", 200),
            _doc(3, f"{d:016x}", 100), _doc(4, f"{a:016x}", 50, hash_=f"{0:064x}")]  # s4: exact copy of s0
    with Catalog(tmp_path, "t", write=True) as cat:
        cat.write(docs)
        report = find_duplicates(cat, model=False, rules=DuplicateRules(hash_distance=10, flip_distance=0))
        groups = {g.representative: sorted((m["_id"], m["reason"]) for m in g.members) for g in report.groups}
        assert groups == {"s0": [("s1", "phash"), ("s4", "exact")], "s2": [("s3", "phash")]}
        assert cat.get("s2")["duplicates"] == {"group": "s2", "representative": True, "size": 2}
        assert cat.get("s4")["issues"] == ["duplicate"] and cat.get("s1")["issues"] == ["near_duplicate"]
        assert cat.get("s1")["duplicates"]["hash_distance"] == 10


def test_samples_without_hashes_are_skipped(tmp_path):
    docs = [_doc(0, "0" * 16, 10), _doc(1, "0" * 16, 10), {"_id": "broken", "issues": ["corrupt"]},
            {"_id": "nohash", "filepath": "/x/n.jpg", "issues": []}]
    with Catalog(tmp_path, "t", write=True) as cat:
        cat.write(docs)
        report = find_duplicates(cat, model=False)
        assert report.samples == 3  # the corrupt one is out of scope
        assert [g.ids for g in report.groups] == [["s0", "s1"]]
        assert "duplicates" not in cat.get("nohash") and cat.get("broken")["issues"] == ["corrupt"]


def test_cli_lists_groups_and_prints_json(planted):
    from tests.test_cli import run  # the same way every CLI test runs the installed command

    ds, _ = planted
    home = ds.workspace.home
    out = run(home, "duplicates", "planted", "--show", "3").stdout
    assert "duplicate groups" in out and "representative" in out and "copies to review" in out
    report = json.loads(run(home, "duplicates", "planted", "--json", "--no-embeddings", "--dry-run").stdout)
    assert report["dataset"] == "planted" and report["model"] is None and report["groups"] >= 30
    assert all(m["reason"] != "embedding" for g in report["duplicate_groups"] for m in g["members"])
    bad = run(home, "duplicates", "planted", "--similarity", "1.5", check=False)
    assert bad.returncode != 0 and "similarity" in (bad.stdout + bad.stderr)
    leaks = json.loads(run(home, "leaks", "planted", "--field", "format", "--json", "--dry-run").stdout)
    assert leaks["field"] == "format" and set(leaks["values"]) == {"JPEG", "PNG"} and leaks["leaking"] >= 1
    assert "with a duplicate across format" in run(home, "leaks", "planted", "--field", "format", "--dry-run").stdout


def test_leaks_across_splits(planted):
    ds, truth = planted
    ids = {d["_id"]: os.path.basename(d["filepath"])
           for d in ds.find({}, projection={"filepath": 1}, page_size=10_000)["results"]}
    # originals in train, planted variants in val: every variant leaks, and so does its original
    ds.set_field([i for i, f in ids.items() if f.startswith("o")], "split", "train")
    ds.set_field([i for i, f in ids.items() if f.startswith("d")], "split", "val")
    report = ds.find_leaks("split")
    assert report.values == {"train": 150, "val": 50}
    in_groups = {m["file"] for g in truth["groups"] for m in g}
    flagged = {ids[leak["_id"]] for leak in report.leaks}
    assert flagged <= in_groups  # nothing outside a planted group
    variants = {f for f in in_groups if f.startswith("d")}
    assert len(flagged & variants) >= 0.9 * len(variants)
    assert ds.count({"issues": "leak"}) == len(report.leaks)
    leak = ds.find({"issues": "leak", "split": "val"})["results"][0]["leak"]
    assert leak["field"] == "split" and leak["value"] == "val" and leak["with_value"] == "train"
    assert ids[leak["with"]].startswith("o") or leak["reason"] != "exact"

    # everything in one split: no leak left, the earlier findings are cleared
    ds.set_field(list(ids), "split", "train")
    assert ds.find_leaks("split").leaks == [] and ds.count({"issues": "leak"}) == 0
    # a free-form field works the same way; samples without a value take no side
    ds.update({}, {"$unset": {"split": ""}})
    ds.update({"filepath": {"$regex": "/d0[0-2]"}}, {"$set": {"metadata.fold": 2}})
    ds.update({"filepath": {"$regex": "/o"}}, {"$set": {"metadata.fold": 1}})
    folds = ds.find_leaks("metadata.fold", model=False)
    assert folds.values == {"1": 150, "2": ds.count({"metadata.fold": 2})}
    assert folds.leaks and all(ids[x["_id"]][0] in "od" for x in folds.leaks)
    assert ds.find_leaks("split").leaks == []  # no split values at all: nothing to leak across


def test_analyze_runs_what_the_data_allows(planted):
    from tests.test_cli import run

    ds, _ = planted
    home = ds.workspace.home
    ds.update({}, {"$unset": {"split": ""}})
    reports = json.loads(run(home, "analyze", "planted", "--json").stdout)
    assert set(reports) == {"duplicates", "outliers", "clusters"}  # no split values: no leak analysis
    assert reports["duplicates"]["groups"] >= 30 and reports["clusters"]["samples"] == 200
    assert ds.count({"scores.uniqueness": {"$exists": True}}) == 200
    assert ds.count({"cluster.id": {"$exists": True}}) == 200
    # exact copies are each other's nearest neighbour: uniqueness 0
    exact = ds.find({"issues": "duplicate"})["results"][0]
    assert exact["scores"]["uniqueness"] < 0.01
    text = run(home, "outliers", "planted", "-k", "5").stdout + run(home, "clusters", "planted", "-n", "4").stdout
    assert "samples scored" in text and "clusters" in text
    assert ds.count({"cluster.id": {"$gte": 4}}) == 0
    assert ds.info()["clusters"] == 4 and "clusters: 4" in run(home, "info", "planted").stdout


def test_calibration_page(planted, tmp_path):
    ds, truth = planted
    report = ds.calibrate(tmp_path / "cal.html")
    page = (tmp_path / "cal.html").read_text()
    assert report.model == "efficientnet_lite3@uint8-280-obj224" and set(report.bands) == {"phash", "embedding"}
    assert report.small == 0 and "--small-score" not in page  # photos: no small-picture section
    # identical bytes are 0 bits apart: the first hash band holds the exact copies
    assert report.bands["phash"][0]["band"] == [0, 0] and report.bands["phash"][0]["pairs_in_band"] >= 5
    assert len(report.nearest["phash"]) >= 150 and len(report.nearest["embedding"]) == 200
    assert page.count("data:image/jpeg;base64,") >= 20 and "current threshold 10" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


def test_label_conflicts_in_duplicate_groups_and_clusters(planted):
    ds, truth = planted
    ds.find_duplicates()
    ds.find_clusters(clusters=4)
    groups = ds.find({"duplicates.representative": True}, page_size=100)["results"]
    # every duplicate group gets its own label, except one member of one group
    for n, g in enumerate(groups):
        ds.update({"duplicates.group": g["_id"]}, {"$set": {"ground_truth.label": f"class{n}"}})
    odd = ds.find({"duplicates.group": groups[0]["_id"], "duplicates.representative": False})["results"][0]
    ds.set_field([odd["_id"]], "ground_truth.label", "other")
    report = ds.find_label_conflicts()
    dup = [c for c in report.conflicts if c["source"] == "duplicates"]
    assert [c["_id"] for c in dup] == [odd["_id"]] and dup[0]["majority"] == "class0"
    assert ds.find({"issues": "label_conflict", "label_conflict.source": "duplicates"})["results"][0]["_id"] == odd["_id"]
    # unlabeled images take no side; the clusters here mix many labels, so none is nearly pure
    assert all(c["source"] == "duplicates" for c in report.conflicts)
    ds.update({}, {"$unset": {"ground_truth": ""}})
    assert ds.find_label_conflicts().conflicts == [] and ds.count({"issues": "label_conflict"}) == 0


def test_above_the_threshold_hash_search_uses_an_inverted_file(planted, monkeypatch):

    from viscurate.brain import neighbours

    # uniformly random hashes (the hardest case: no structure for the lists to follow) with near copies
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (20_000, 8), dtype=np.uint8)
    src = rng.choice(len(base), 500, replace=False)
    bits = np.unpackbits(base[src], axis=1)
    for row in bits:
        row[rng.choice(64, int(rng.integers(1, 9)), replace=False)] ^= 1
    hashes = [bytes(c).hex() for c in np.concatenate([base, np.packbits(bits, axis=1)])]
    exact = neighbours.hamming_pairs(hashes, 8, exact=True)
    monkeypatch.setattr(neighbours, "EXACT_HASHES_BELOW", 1000)
    approx = neighbours.hamming_pairs(hashes, 8)
    found = set(zip(approx[0].tolist(), approx[1].tolist()))
    truth = set(zip(exact[0].tolist(), exact[1].tolist()))
    assert found <= truth  # never a pair the exact search would not give
    planted_pairs = {(int(s), 20_000 + n) for n, s in enumerate(src)}
    assert planted_pairs <= truth
    assert len(found & planted_pairs) >= 0.9 * len(planted_pairs)
    # the real photos through the approximate path: the planted-set figures hold
    ds, truth_set = planted
    monkeypatch.setattr(neighbours, "EXACT_HASHES_BELOW", 10)
    report = ds.find_duplicates(write=False)
    names = {d["_id"]: os.path.basename(d["filepath"])
             for d in ds.find({}, projection={"filepath": 1}, page_size=10_000)["results"]}
    predicted = {frozenset(names[i] for i in pair) for pair in report.pairs()}
    expected = {frozenset(p) for p in truth_set["dup_pairs"]}
    tp = len(predicted & expected)
    assert tp / max(1, len(predicted)) >= 0.9 and tp / len(expected) >= 0.9


def test_a_split_keeps_near_duplicates_on_one_side(planted):
    """``split`` (issue 18) on real near duplicates (after the tests above, whose analyses it may find
    stored: it runs its own). Last in the module: it writes split fields."""
    ds, truth = planted
    names = {d["_id"]: os.path.basename(d["filepath"])
             for d in ds.find({}, projection={"filepath": 1}, page_size=10_000)["results"]}
    # halves drawn at random leak (so the checks below can fail)
    shuffled = np.random.default_rng(0).permutation(sorted(names)).tolist()
    ds.set_field({"_id": {"$in": shuffled[::2]}}, "naive", "train")
    ds.set_field({"_id": {"$in": shuffled[1::2]}}, "naive", "test")
    assert ds.find_leaks("naive", write=False).leaks
    # near-identical embeddings (cosine >= 0.95) join samples whether or not duplicates were looked for
    alike = ds.split({"train": 0.5, "test": 0.5}, stratify=None, field="by_embedding", write=False)
    assert alike.links["near_identical"] > 0 and alike.joined >= 2

    ds.find_duplicates()
    report = ds.split({"train": 0.5, "test": 0.5}, stratify=None)
    print(report.table(), report.links, report.largest_unit)
    assert report.note is None and report.links["duplicates"] > 0
    assert abs(report.counts["train"] - report.counts["test"]) <= 0.1 * report.samples
    leaks = ds.find_leaks("split", write=False)
    assert leaks.leaks == [], leaks.leaks[:3]
    # every planted group (an original and its edited copies) landed on one side
    split_of = {names[d["_id"]]: d["split"] for d in ds.find({}, projection={"filepath": 1, "split": 1},
                                                             page_size=10_000)["results"]}
    found = [g for g in truth["groups"] if all(m["file"] in split_of for m in g)]
    divided = [g for g in found if len({split_of[m["file"]] for m in g}) > 1]
    assert found and len(divided) <= 0.1 * len(found), divided[:3]
    assert all(len(v) == 1 for v in sides(ds, "duplicates.group").values())
