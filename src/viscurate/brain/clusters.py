"""Clusters of an embedding space: a cluster id and size per sample, small clusters marked as edge cases.

>>> report = find_clusters(cat, clusters=20)                                       # doctest: +SKIP
>>> cat.find({"cluster.id": 3})                                                      # doctest: +SKIP

k-means (FAISS, spherical: on unit vectors, so cosine) over the image vectors of a model, with a fixed
seed and several restarts so that the same vectors give the same clusters. By default the number of
clusters is ``sqrt(n / 2)`` (at least 2, at most 1,000). Each sample gets ``cluster.id`` (clusters
numbered by size, 0 the largest), ``cluster.size`` and ``cluster.similarity`` (cosine to its centroid:
low means it sits at the cluster's edge).

**Edge cases**: the members of clusters much smaller than the typical one (fewer than
``edge_fraction`` of the median cluster size, and at most ``edge_max_size``), the rare kinds of picture
a model will see too few of. They get the issue ``edge_case``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common.vectors import l2_normalize
from ..errors import ViscurateError
from .findings import image_vectors, store_findings

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["ClustersReport", "find_clusters", "default_cluster_count", "spherical_kmeans"]

SEED = 1234
RESTARTS = 3
ITERATIONS = 25


@dataclass
class ClustersReport:
    """``sizes``: members per cluster (index = cluster id, largest first); ``edge_clusters``: ids of the
    clusters marked as edge cases; ``samples``: samples clustered."""

    samples: int = 0
    clusters: int = 0
    sizes: list[int] = field(default_factory=list)
    edge_clusters: list[int] = field(default_factory=list)
    edge_cases: int = 0
    model: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "clusters": self.clusters, "sizes": self.sizes,
                "edge_clusters": self.edge_clusters, "edge_cases": self.edge_cases, "model": self.model,
                "seconds": round(self.seconds, 3)}


def default_cluster_count(n: int) -> int:
    """``sqrt(n / 2)``, within [2, 1000] and at most ``n``.

    >>> [default_cluster_count(n) for n in (3, 200, 20_000, 10**8)]
    [2, 10, 100, 1000]
    """
    return int(min(n, max(2, min(1000, round(math.sqrt(n / 2))))))


def spherical_kmeans(x: np.ndarray, k: int, *, seed: int = SEED, restarts: int = RESTARTS,
                     max_points_per_centroid: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means on unit rows ``x`` (cosine), the settings of :func:`find_clusters`: ``(cluster of each row,
    its similarity to its centroid, unit centroids)``, clusters numbered by size (0 the largest).
    ``max_points_per_centroid``: the rows k-means trains on per cluster (default: all of them, at least 256).

    >>> x = l2_normalize(np.random.default_rng(0).normal(size=(60, 8)))
    >>> cluster_of, sims, centroids = spherical_kmeans(x, 3)
    >>> cluster_of.shape, centroids.shape, bool(np.bincount(cluster_of)[0] >= np.bincount(cluster_of)[2])
    ((60,), (3, 8), True)
    """
    import faiss

    n = len(x)
    per = max_points_per_centroid or max(256, n // k + 1)
    km = faiss.Kmeans(x.shape[1], k, niter=ITERATIONS, nredo=restarts, seed=seed, spherical=True,
                      min_points_per_centroid=1, max_points_per_centroid=per, verbose=False)
    km.train(x)
    sims, assign = km.index.search(x, 1)
    assign, sims = assign.ravel(), sims.ravel()
    counts = np.bincount(assign, minlength=k)
    rank = np.argsort(-counts, kind="stable")  # new id -> old id, largest first
    new_id = np.empty(k, np.int64)
    new_id[rank] = np.arange(k)
    return new_id[assign], sims, np.ascontiguousarray(km.centroids[rank], dtype=np.float32)


def find_clusters(cat: "Catalog", *, model: str | None = None, clusters: int | None = None,
                  edge_fraction: float = 0.2, edge_max_size: int = 10, query: dict | None = None,
                  write: bool = True, threads: int | None = None) -> ClustersReport:
    """Cluster the image vectors of ``model`` (default: the default embedder when stored) of the samples
    matching ``query``; stored as ``cluster.*`` and the issue ``edge_case``."""
    import faiss

    t0 = time.monotonic()
    model, scope, ids, matrix = image_vectors(cat, model, query, "clusters", minimum=2)
    n = len(ids)
    k = int(clusters) if clusters else default_cluster_count(n)
    if not 2 <= k <= n:
        raise ViscurateError(f"clusters must be between 2 and the number of samples ({n}), got {k}")
    x = l2_normalize(matrix)
    if threads:
        faiss.omp_set_num_threads(int(threads))
    cluster_of, sims, _ = spherical_kmeans(x, k)
    sizes = np.bincount(cluster_of, minlength=k)
    live = sizes[sizes > 0]
    median = float(np.median(live)) if len(live) else 0.0
    edge = [int(c) for c in range(k) if 0 < sizes[c] <= edge_max_size and sizes[c] < edge_fraction * median]
    report = ClustersReport(samples=n, clusters=int(len(live)), sizes=[int(s) for s in live], edge_clusters=edge,
                            model=model)
    edge_set = set(edge)
    report.edge_cases = int(sum(1 for c in cluster_of if c in edge_set))
    if write:
        findings = {ids[i]: ({"id": int(cluster_of[i]), "size": int(sizes[cluster_of[i]]),
                              "similarity": round(float(sims[i]), 4)},
                             "edge_case" if int(cluster_of[i]) in edge_set else None) for i in range(n)}
        store_findings(cat, scope, "cluster", ("edge_case",), findings)
    report.seconds = time.monotonic() - t0
    return report
