"""The persisted, incremental similarity index (real FAISS-free numpy search over real files) and
``similar()`` on real photos with the real default embedder."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import skimage
from PIL import Image

from viscurate import Dataset
from viscurate.brain.index import SimilarityIndex, index_dir, similar
from viscurate.errors import ViscurateError
from viscurate.store.catalog import Catalog

MODEL = "test-embedder@1"


def _docs(n: int) -> list[dict]:
    return [{"_id": f"s{i:03d}", "filepath": f"/x/{i}.jpg"} for i in range(n)]


def _brute(x: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ (q / np.linalg.norm(q))
    return list(np.argsort(-s, kind="stable")[:k])


def test_index_is_incremental_persistent_and_exact(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 32)).astype(np.float32)
    with Catalog(tmp_path, "t", write=True) as cat:
        cat.write(_docs(300))
        cat.write_vectors(MODEL, [f"s{i:03d}" for i in range(200)], x[:200])
        index = SimilarityIndex.sync(cat, MODEL)
        assert len(index) == 200
        # exact: the same top-10 as brute force (float16 storage: compare sets, not order of near-ties)
        q = rng.normal(size=32).astype(np.float32)
        keys, sims = index.search(q, 10)
        assert {int(k[0][1:]) for k in keys[0]} == set(_brute(x[:200], q, 10))
        assert np.all(np.diff(sims[0]) <= 1e-6)

        # new vectors: appended, not rebuilt
        before = (index_dir(tmp_path, MODEL) / "vectors.f16").stat().st_size
        cat.write_vectors(MODEL, [f"s{i:03d}" for i in range(200, 300)], x[200:])
        index = SimilarityIndex.sync(cat, MODEL)
        assert len(index) == 300
        assert (index_dir(tmp_path, MODEL) / "vectors.f16").stat().st_size == before * 3 // 2
        # a rewritten vector replaces the old one; a deleted sample leaves the index
        x[5] = -x[7]
        cat.write_vectors(MODEL, ["s005"], x[5:6])
        cat.delete(ids=["s007"])
        index = SimilarityIndex.sync(cat, MODEL)
        assert len(index) == 299
        keys, sims = index.search(-x[7], 1)
        assert keys[0][0][0] == "s005" and sims[0][0] > 0.999
        with pytest.raises(ViscurateError, match="no test-embedder@1 vector"):
            index.vector_of("s007")

    # persisted: a fresh object reads the same rows, nothing to add
    meta = json.loads((index_dir(tmp_path, MODEL) / "meta.json").read_text())
    reopened = SimilarityIndex(index_dir(tmp_path, MODEL), MODEL)
    assert len(reopened) == 299 and meta["rows"] == len(reopened.keys)
    np.testing.assert_allclose(reopened.vector_of("s100"), x[100] / np.linalg.norm(x[100]), atol=2e-3)


def test_tombstones_are_compacted_and_a_torn_index_is_rebuilt(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    with Catalog(tmp_path, "t", write=True) as cat:
        cat.write(_docs(40))
        cat.write_vectors(MODEL, [f"s{i:03d}" for i in range(40)], x)
        SimilarityIndex.sync(cat, MODEL)
        cat.delete(ids=[f"s{i:03d}" for i in range(20)])  # half gone: past the compaction threshold
        index = SimilarityIndex.sync(cat, MODEL)
        assert len(index.keys) == 20 and len(index) == 20
        assert (index_dir(tmp_path, MODEL) / "vectors.f16").stat().st_size == 20 * 8 * 2

        # a run killed between the vectors and the keys: the next sync starts over from the catalog
        meta_path = index_dir(tmp_path, MODEL) / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["rows"] = 999
        meta_path.write_text(json.dumps(meta))
        index = SimilarityIndex.sync(cat, MODEL)
        assert len(index) == 20
        keys, _ = index.search(x[30], 1)
        assert keys[0][0][0] == "s030"


def test_similar_on_real_photos(tmp_path):
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"):
        Image.open(os.path.join(data, name)).convert("RGB").save(folder / f"{name.split('.')[0]}.png")
    with Image.open(os.path.join(data, "chelsea.png")) as im:  # a smaller, recompressed copy of the cat
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(folder / "cat-small.jpg", quality=70)
    ds = Dataset.create("sim", tmp_path / "home")
    ds.add_images(folder, progress=False)
    with pytest.raises(ViscurateError, match="run `viscurate embed`"):
        ds.similar("anything")
    ds.embed(progress=False)
    cat_id = ds.find({"filepath": {"$regex": "chelsea"}})["results"][0]["_id"]
    hits = ds.similar(cat_id, k=4)
    assert cat_id not in [h["_id"] for h in hits]  # not itself
    assert os.path.basename(hits[0]["filepath"]) == "cat-small.jpg" and hits[0]["similarity"] > 0.9
    assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)
    # by image file: embedded on the fly, the stored copy comes first
    by_image = ds.similar(str(folder / "coffee.png"), k=2)
    assert os.path.basename(by_image[0]["filepath"]) == "coffee.png" and by_image[0]["similarity"] > 0.99
    # by vector
    with Catalog(ds.directory, "sim") as cat:
        vec = SimilarityIndex.sync(cat, "efficientnet_lite3@uint8-280-obj224").vector_of(cat_id)
        assert similar(cat, vec, k=1)[0]["_id"] == cat_id
        with pytest.raises(ViscurateError, match="dimensions"):
            similar(cat, np.ones(3, np.float32))


def test_above_the_threshold_search_goes_through_an_inverted_file(tmp_path, monkeypatch):
    from viscurate.brain import index as index_module

    monkeypatch.setattr(index_module, "APPROX_ABOVE", 1000)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(30, 64)).astype(np.float32)
    x = (centres[rng.integers(0, 30, 3000)] + 0.35 * rng.normal(size=(3000, 64))).astype(np.float32)
    ids = [f"s{i:04d}" for i in range(3000)]
    folder = index_dir(tmp_path, MODEL)
    with Catalog(tmp_path, "t", write=True) as cat:
        cat.write([{"_id": i, "filepath": f"/x/{i}.jpg"} for i in ids])
        cat.write_vectors(MODEL, ids[:900], x[:900])
        index = SimilarityIndex.sync(cat, MODEL)
        assert "nlist" not in index.meta and not (folder / "centroids.f32").exists()  # small: exact only
        cat.write_vectors(MODEL, ids[900:2990], x[900:2990])
        index = SimilarityIndex.sync(cat, MODEL)
        nlist = index.meta["nlist"]
        assert nlist == int(4 * np.sqrt(2990)) and (folder / "assign.i32").stat().st_size == 2990 * 4
        queries = x[rng.choice(2990, 50, replace=False)] + 0.1 * rng.normal(size=(50, 64)).astype(np.float32)
        approx_keys, approx_sims = index.search(queries, 10)
        exact_keys, exact_sims = index.search(queries, 10, exact=True)
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_keys, exact_keys)])
        assert recall >= 0.9, recall
        assert np.all(approx_sims <= exact_sims + 1e-6)  # a subset of the rows: never better than exact
        assert {int(k[0][1:]) for k in exact_keys[0]} == set(_brute(x[:2990], queries[0], 10))
        # the last vectors are added to the lists, not retrained; each finds itself
        cat.write_vectors(MODEL, ids[2990:], x[2990:])
        index = SimilarityIndex.sync(cat, MODEL)
        assert index.meta["nlist"] == nlist and (folder / "assign.i32").stat().st_size == 3000 * 4
        keys, sims = index.search(x[2995], 1)
        assert keys[0][0][0] == "s2995" and sims[0][0] > 0.999
        keys, _ = index.search(x[2995], 5, exclude=["s2995"])
        assert "s2995" not in {k[0] for k in keys[0]} and len(keys[0]) == 5
        # deletions: tombstones, then compaction keeps the lists aligned with the rows
        cat.delete(ids=ids[:1200])
        index = SimilarityIndex.sync(cat, MODEL)
        assert len(index) == 1800 and (folder / "assign.i32").stat().st_size == len(index.keys) * 4
        keys, _ = index.search(x[:50], 10)
        assert all(int(k[0][1:]) >= 1200 for row in keys for k in row)
        # below the threshold again: the inverted file goes, search is exact
        cat.delete(ids=ids[1200:2200])
        index = SimilarityIndex.sync(cat, MODEL)
        assert "nlist" not in index.meta and not (folder / "assign.i32").exists()
        keys, _ = index.search(x[2500], 1)
        assert keys[0][0][0] == "s2500"


def test_a_sync_waits_for_the_index_lock_a_bounded_time(tmp_path, monkeypatch):
    """The index lock is waited for like every other lock: at most the lock timeout, then a clear error
    (a wait without a limit once hung a server's request thread for good: issue 14)."""
    import fcntl
    import time

    from viscurate.errors import DatasetBusy

    rng = np.random.default_rng(1)
    with Catalog(tmp_path, "t", write=True) as cat:
        cat.write(_docs(10))
        cat.write_vectors(MODEL, [f"s{i:03d}" for i in range(10)], rng.normal(size=(10, 8)).astype(np.float32))
        folder = index_dir(cat.directory, MODEL)
        folder.mkdir(parents=True)
        with open(folder / ".lock", "a+") as other:  # another request of this process holds it
            fcntl.flock(other.fileno(), fcntl.LOCK_EX)
            monkeypatch.setenv("VISCURATE_LOCK_TIMEOUT", "0.3")
            t0 = time.monotonic()
            with pytest.raises(DatasetBusy, match="similarity index"):
                SimilarityIndex.sync(cat, MODEL)
            assert time.monotonic() - t0 < 3
        assert len(SimilarityIndex.sync(cat, MODEL)) == 10  # free again: it goes through
