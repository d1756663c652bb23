"""Outliers, uniqueness and clusters on vectors with a known structure (real FAISS, real catalog), and on
the real photos of the planted-duplicate set."""
from __future__ import annotations

import numpy as np
import pytest

from viscurate.brain.clusters import find_clusters
from viscurate.brain.outliers import find_outliers, knn
from viscurate.errors import ViscurateError
from viscurate.store.catalog import Catalog

MODEL = "test-embedder@1"


def _blobs(seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Four tight blobs of 60 points around orthogonal directions, a blob of 2, and 2 lone points."""
    rng = np.random.default_rng(seed)
    dim = 16
    centres = np.eye(dim, dtype=np.float32)
    parts, labels = [], []
    for c, count in ((0, 60), (1, 60), (2, 60), (3, 60), (4, 2)):
        parts.append(centres[c] + rng.normal(scale=0.08, size=(count, dim)).astype(np.float32))
        labels += [c] * count
    for c in (5, 6):  # lone points: each alone in its direction
        parts.append(centres[c][None, :] + rng.normal(scale=0.08, size=(1, dim)).astype(np.float32))
        labels.append(c)
    return np.vstack(parts), labels


def _catalog(tmp_path, x):
    cat = Catalog(tmp_path, "t", write=True)
    ids = [f"s{i:03d}" for i in range(len(x))]
    cat.write([{"_id": i, "filepath": f"/x/{i}.jpg", "issues": ["dark"] if n == 0 else []}
               for n, i in enumerate(ids)])
    cat.write_vectors(MODEL, ids, x)
    return cat, ids


def test_knn_excludes_each_row_itself_even_with_twins():
    x = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], np.float32)  # three identical rows
    sims, idx = knn(x, 2)
    assert all(i not in row for i, row in enumerate(idx.tolist()))
    assert sims[0].tolist() == pytest.approx([1.0, 1.0])


def test_outliers_are_the_lone_points(tmp_path):
    x, labels = _blobs()
    cat, ids = _catalog(tmp_path, x)
    with cat:
        report = find_outliers(cat, model=MODEL, k=5)
        flagged = {o["_id"] for o in report.outliers}
        lone = {ids[i] for i, c in enumerate(labels) if c in (4, 5, 6)}
        assert {ids[-1], ids[-2]} <= flagged <= lone
        assert cat.count({"issues": "outlier"}) == len(flagged)
        assert cat.get(ids[0])["issues"] == ["dark"]  # other issues untouched
        lone_doc, blob_doc = cat.get(ids[-1]), cat.get(ids[10])
        assert lone_doc["scores"]["outlier"] == 1.0 or lone_doc["scores"]["outlier"] > 0.98
        assert lone_doc["scores"]["uniqueness"] > 0.5 > blob_doc["scores"]["uniqueness"]
        assert cat.count({"scores.uniqueness": {"$exists": True}}) == len(ids)

        # a homogeneous dataset has no outlier at all (no fixed quota)
        cat.delete(ids=[ids[i] for i, c in enumerate(labels) if c != 0])
        assert find_outliers(cat, model=MODEL, k=5).outliers == []
        assert cat.count({"issues": "outlier"}) == 0
        with pytest.raises(ViscurateError, match="positive integer"):
            find_outliers(cat, model=MODEL, k=0)


def test_clusters_recover_the_blobs_and_mark_the_small_one(tmp_path):
    x, labels = _blobs(1)
    keep = [i for i, lab in enumerate(labels) if lab < 5]  # the four blobs and the small one
    rng = np.random.default_rng(2)
    extra = np.eye(16, dtype=np.float32)[4] + rng.normal(scale=0.08, size=(3, 16)).astype(np.float32)
    x, labels = np.vstack([x[keep], extra]), [labels[i] for i in keep] + [4, 4, 4]  # small blob: 5 points
    cat, ids = _catalog(tmp_path, x)
    with cat:
        report = find_clusters(cat, model=MODEL, clusters=5)
        again = find_clusters(cat, model=MODEL, clusters=5, write=False)
        assert report.sizes == again.sizes  # seeded: the same vectors give the same clusters
        docs = {i: cat.get(i)["cluster"] for i in ids}
        # each big blob is one cluster
        for c in range(4):
            assert len({docs[ids[i]]["id"] for i, lab in enumerate(labels) if lab == c}) == 1
        assert report.sizes == [60, 60, 60, 60, 5]
        small = {docs[ids[i]]["id"] for i, lab in enumerate(labels) if lab == 4}
        assert small == set(report.edge_clusters) == {4}
        assert cat.count({"issues": "edge_case"}) == report.edge_cases == 5
        assert cat.count({"cluster.id": 0, "cluster.size": 60}) == 60
        assert 0.8 < cat.get(ids[0])["cluster"]["similarity"] <= 1.0
        with pytest.raises(ViscurateError, match="between 2"):
            find_clusters(cat, model=MODEL, clusters=1000)


def test_no_embeddings_is_a_clear_error(tmp_path):
    with Catalog(tmp_path, "t", write=True) as cat:
        cat.write([{"_id": "a"}])
        with pytest.raises(ViscurateError, match="viscurate embed"):
            find_outliers(cat)
        with pytest.raises(ViscurateError, match="viscurate embed"):
            find_clusters(cat)


def test_a_dissenter_in_a_pure_cluster_is_a_label_conflict(tmp_path):
    from viscurate.brain.conflicts import find_label_conflicts

    x, labels = _blobs(1)
    keep = [i for i, lab in enumerate(labels) if lab < 4]
    x, labels = x[keep], [labels[i] for i in keep]
    cat, ids = _catalog(tmp_path, x)
    with cat:
        find_clusters(cat, model=MODEL, clusters=4)
        names = [f"class{lab}" for lab in labels]
        names[3] = "class9"  # one image of blob 0 labeled otherwise
        names[70], names[71], names[72], names[73], names[74], names[75], names[76], names[77], names[78], \
            names[79], names[80], names[81], names[82] = ["mixed"] * 13  # blob 1: 13 of 60 differ: not pure
        for sid, name in zip(ids, names):
            cat.update({"_id": sid}, {"$set": {"ground_truth.label": name}})
        report = find_label_conflicts(cat)
        assert [(c["_id"], c["majority"], c["source"]) for c in report.conflicts] == [(ids[3], "class0", "cluster")]
        assert cat.get(ids[3])["label_conflict"]["share"] == pytest.approx(59 / 60, abs=1e-3)
