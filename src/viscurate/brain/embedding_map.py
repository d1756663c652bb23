"""The 2-D map of a dataset: each sample placed so that similar pictures sit close together.

>>> report = compute_map(cat)                                                         # doctest: +SKIP
>>> cat.find({"map.x": {"$lt": 0.2}})                                                 # doctest: +SKIP

How: unit image vectors, PCA to 50 dimensions, then t-SNE (scikit-learn, fixed seed, so the same
vectors give the same map). t-SNE costs O(n log n) with a large constant, so past
:data:`LANDMARKS` samples it runs on that many landmarks picked at random (fixed seed) and every other
sample is placed at the similarity-weighted mean of its :data:`PLACE_K` nearest landmarks (FAISS,
exact inner product): 100k samples take about as long as 2,000 plus one search. Coordinates are
scaled to [0, 1] and stored per sample as ``map.x`` and ``map.y``; the model and method go to the
catalog's ``meta`` under ``map``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common.vectors import l2_normalize
from .findings import image_vectors, store_findings

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["MapReport", "compute_map", "project_2d", "LANDMARKS", "PLACE_K"]

LANDMARKS = 2000
PLACE_K = 10
PCA_DIMS = 50
SEED = 1234


@dataclass
class MapReport:
    samples: int = 0
    model: str = ""
    method: str = ""
    landmarks: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pca(x: np.ndarray, dims: int) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    dims = max(1, min(dims, *centred.shape))
    # the top right-singular vectors from the (d x d) covariance: cheap for n >> d
    cov = centred.T @ centred
    values, vectors = np.linalg.eigh(cov.astype(np.float64))
    top = vectors[:, np.argsort(values)[::-1][:dims]].astype(np.float32)
    signs = np.sign(top[np.abs(top).argmax(axis=0), range(top.shape[1])])  # fixed signs: same input, same map
    return np.ascontiguousarray(centred @ (top * np.where(signs == 0, 1, signs)), dtype=np.float32)


def _tsne(x: np.ndarray) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=SEED,
                learning_rate="auto", max_iter=750).fit_transform(x).astype(np.float32)


def _scaled(xy: np.ndarray) -> np.ndarray:
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return (xy - lo) / span


def project_2d(vectors: np.ndarray, *, landmarks: int = LANDMARKS) -> tuple[np.ndarray, str, int]:
    """``(n, 2)`` coordinates in [0, 1] for ``(n, d)`` vectors, the method used and the landmarks count.

    >>> xy, method, _ = project_2d(np.random.default_rng(0).normal(size=(40, 8)))
    >>> xy.shape, method, bool(0 <= xy.min() and xy.max() <= 1)
    ((40, 2), 'tsne', True)
    """
    x = l2_normalize(np.asarray(vectors, dtype=np.float32))
    n = len(x)
    if n < 8:  # too few for t-SNE's neighbourhoods: the two main axes say as much
        return _scaled(_pca(x, 2)[:, :2] if n > 1 else np.zeros((n, 2), np.float32)), "pca", 0
    reduced = _pca(x, PCA_DIMS)
    if n <= landmarks:
        return _scaled(_tsne(reduced)), "tsne", 0
    import faiss

    rng = np.random.default_rng(SEED)
    chosen = np.sort(rng.choice(n, size=landmarks, replace=False))
    anchor_xy = _tsne(reduced[chosen])
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x[chosen])
    sims, nearest = index.search(x, PLACE_K)
    weights = np.maximum(sims, 0.0) ** 4 + 1e-6  # sharp: a picture sits by the landmarks it resembles most
    xy = (anchor_xy[nearest] * weights[..., None]).sum(axis=1) / weights.sum(axis=1, keepdims=True)
    xy[chosen] = anchor_xy
    return _scaled(xy), "tsne+landmarks", landmarks


def compute_map(cat: "Catalog", *, model: str | None = None, query: dict | None = None,
                write: bool = True) -> MapReport:
    """Place the samples matching ``query`` that have ``model`` image vectors (default: the default
    embedder's) on the 2-D map, stored as ``map.x`` / ``map.y``."""
    t0 = time.monotonic()
    model, scope, ids, matrix = image_vectors(cat, model, query, "maps")
    xy, method, n_landmarks = project_2d(matrix)
    report = MapReport(samples=len(ids), model=model, method=method, landmarks=n_landmarks)
    if write:
        findings = {sid: ({"x": round(float(p[0]), 5), "y": round(float(p[1]), 5)}, None) for sid, p in zip(ids, xy)}
        store_findings(cat, scope, "map", (), findings)
        cat.meta_set("map", json.dumps({"model": model, "method": method, "samples": len(ids)}))
    report.seconds = round(time.monotonic() - t0, 3)
    return report
