"""Uniqueness and outliers from k-nearest-neighbour distances in an embedding space.

>>> report = find_outliers(cat)                                                   # doctest: +SKIP
>>> cat.find({"issues": "outlier"}, sort=[("scores.outlier", -1)])                  # doctest: +SKIP

For every sample with an image vector of the model (kNN, cosine, FAISS):

- ``scores.knn_distance``: the mean cosine distance (1 - similarity) to its ``k`` nearest other samples
  (exact search up to 50,000 samples, an approximate index above: :mod:`viscurate.brain.knn_graph`);
- ``scores.uniqueness``: 1 - the similarity to its single nearest other sample, in [0, 1]: 0 for an
  image with an exact twin, high for one unlike anything else (what to keep when thinning a dataset);
- ``scores.outlier``: the fraction of the dataset that is *less* isolated (a percentile rank of
  ``knn_distance``, in [0, 1]): 0.99 means "more isolated than 99% of the images";
- the issue ``outlier`` when ``knn_distance`` is far out in the dataset's own distribution: a robust
  z-score ``(d - median) / (1.4826 * MAD)`` above ``z_threshold`` (3.5, Iglewicz and Hoaglin's cut-off).
  A fixed fraction would flag 1% of every dataset, outliers or not; the z-score flags none in a
  homogeneous one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ViscurateError
from .findings import image_vectors, store_findings

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["OutliersReport", "find_outliers", "knn"]

Z_THRESHOLD = 3.5
MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation


@dataclass
class OutliersReport:
    """``outliers``: flagged samples, most isolated first (``{"_id", "knn_distance", "z"}``); ``samples``:
    samples scored (those with a vector); ``median`` / ``mad``: of ``knn_distance``."""

    samples: int = 0
    outliers: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    k: int = 10
    median: float | None = None
    mad: float | None = None
    z_threshold: float = Z_THRESHOLD
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "outliers": self.outliers, "model": self.model, "k": self.k,
                "median_knn_distance": self.median, "mad": self.mad, "z_threshold": self.z_threshold,
                "seconds": round(self.seconds, 3)}


def knn(vectors: np.ndarray, k: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest *other* rows by cosine similarity: ``(similarities, indexes)``, ``(n, k)``
    each, best first; -1 / -inf pad rows of a dataset smaller than ``k + 1``. Exact up to 50,000 rows,
    approximate (IVF) above (:func:`viscurate.brain.knn_graph.knn_graph`)."""
    from .knn_graph import knn_graph
    return knn_graph(vectors, k, threads=threads)


def find_outliers(cat: "Catalog", *, model: str | None = None, k: int = 10, z_threshold: float = Z_THRESHOLD,
                  query: dict | None = None, write: bool = True, threads: int | None = None) -> OutliersReport:
    """Score every sample matching ``query`` that has an image vector of ``model`` (default: the default
    embedder when stored) and flag the outliers; stored as ``scores.*`` and the issue ``outlier``."""
    t0 = time.monotonic()
    if not isinstance(k, int) or k < 1:
        raise ViscurateError(f"k must be a positive integer, got {k!r}")
    model, scope, ids, matrix = image_vectors(cat, model, query, "outliers", minimum=3)
    report = OutliersReport(samples=len(ids), model=model, k=k, z_threshold=z_threshold)
    kk = min(k, len(ids) - 1)
    sims, _ = knn(matrix, kk, threads)
    sims = np.clip(sims, -1.0, 1.0)
    dist = 1.0 - sims.mean(axis=1)
    uniqueness = np.clip(1.0 - sims[:, 0], 0.0, 1.0)
    order = np.argsort(dist, kind="stable")
    percentile = np.empty(len(dist))
    percentile[order] = np.arange(len(dist)) / max(1, len(dist) - 1)
    median = float(np.median(dist))
    mad = float(np.median(np.abs(dist - median)))
    z = (dist - median) / (MAD_SCALE * mad) if mad > 0 else np.zeros_like(dist)
    report.median, report.mad = round(median, 6), round(mad, 6)
    flagged = np.nonzero(z > z_threshold)[0]
    report.outliers = [{"_id": ids[i], "knn_distance": round(float(dist[i]), 4), "z": round(float(z[i]), 2)}
                       for i in flagged[np.argsort(-z[flagged], kind="stable")]]
    if write:
        is_outlier = set(flagged.tolist())
        findings = {ids[i]: ({"knn_distance": round(float(dist[i]), 4), "uniqueness": round(float(uniqueness[i]), 4),
                              "outlier": round(float(percentile[i]), 4)}, "outlier" if i in is_outlier else None)
                    for i in range(len(ids))}
        store_findings(cat, scope, "scores", ("outlier",), findings)
    report.seconds = time.monotonic() - t0
    return report
