"""The candidates of a selection: who may be picked, their embeddings as unit vectors, their clusters, and
the per-sample signals a strategy reads (labels, predictions, stored scores), in bounded memory.

>>> pool = build_pool(cat, query={"split": "unlabeled"})                                # doctest: +SKIP
>>> pool.size, pool.vectors.shape, pool.dropped                                         # doctest: +SKIP
(9812, (9812, 1280), {'unusable': 0, 'no_embedding': 0, 'near_duplicate': 188, 'leak': 0})

- **Who**: the samples matching ``usable(query)`` with an image vector of the model, less near duplicates
  (the samples carrying the issue ``duplicate`` or ``near_duplicate`` from ``find_duplicates``: each group
  keeps its representative) unless ``keep_duplicates``, less leaks (the issue ``leak`` from ``find_leaks``)
  unless ``keep_leaks``. Every drop is counted (``dropped``).
- **Vectors**: read from the catalog batch by batch and L2-normalized. When the pool is large (more than
  ``MAX_FLOATS`` floats: 50,000 x 1280) a PCA fitted on ``PCA_SAMPLE`` random candidates reduces them to
  ``REDUCED_DIMS`` dimensions batch by batch (then normalized again), so a million candidates of 1280
  dimensions take 0.5 GB, not 5 GB. :meth:`Pool.project` maps any other vector (an example) the same way.
- **Clusters**: the stored ``cluster.id`` (``find_clusters``) when every candidate has one, else spherical
  k-means on the pool (the settings of :mod:`viscurate.brain.clusters`; ``sqrt(n / 2)`` clusters, or one
  per pick when the budget is larger, up to 1,000: :func:`cluster_count`; or ``clusters``).
  ``cluster_names`` holds the id a user sees (the stored one); ``cluster_k`` the count k-means ran with
  (what a recipe records, so that the report rebuilds the same clusters).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from ...common.vectors import l2_normalize
from ...errors import ViscurateError
from ...store.documents import get_path
from ...usable import usable
from ..clusters import SEED, default_cluster_count, spherical_kmeans
from ..findings import default_model, sample_values

if TYPE_CHECKING:
    from ...store.catalog import Catalog

__all__ = ["Pool", "build_pool", "cluster_count", "DROP_ISSUES", "MAX_FLOATS", "REDUCED_DIMS", "PCA_SAMPLE",
           "READ_BATCH", "field_values", "stored_scores", "ids_with_issue", "resolve_ids", "example_vectors",
           "prediction_docs", "iter_predictions", "has_duplicate_analysis"]

#: Above this many floats (candidates x dimensions) the vectors are reduced by PCA.
MAX_FLOATS = 64_000_000
REDUCED_DIMS = 128
PCA_SAMPLE = 50_000
READ_BATCH = 32_768
#: The most k-means clusters a budget asks for (see :func:`cluster_count`).
MAX_BUDGET_CLUSTERS = 1000
#: Above this many candidates k-means trains on a sample of 256 rows per cluster.
LARGE_POOL = 200_000
#: The issues that drop a candidate unless asked to keep it: ``keep_duplicates`` / ``keep_leaks``.
DROP_ISSUES = {"near_duplicate": ("duplicate", "near_duplicate"), "leak": ("leak",)}


@dataclass
class Projection:
    """``unit((unit(v) - mean) @ components.T)``: the PCA that reduced the pool's vectors."""

    mean: np.ndarray
    components: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize((l2_normalize(x) - self.mean) @ self.components.T)


@dataclass
class Pool:
    """The candidates (row ``i`` is sample ``ids[i]``): ``vectors`` unit rows (reduced when ``projection``),
    ``clusters`` a compact cluster index per row (``cluster_names[c]``: the id shown to users),
    ``centroids`` unit cluster centres, ``centroid_similarity`` each row's cosine to its centre, ``scope``
    the query of exactly these samples, ``signals`` what a strategy reads besides vectors (filled by
    :mod:`.select`)."""

    ids: list[str]
    vectors: np.ndarray
    clusters: np.ndarray
    cluster_names: np.ndarray
    centroids: np.ndarray
    centroid_similarity: np.ndarray
    model: str
    scope: dict
    dropped: dict[str, int]
    cluster_source: str
    projection: Projection | None = None
    signals: dict[str, Any] = field(default_factory=dict)
    #: The k k-means ran with (``None``: the stored clusters); may exceed the clusters that got members.
    cluster_k: int | None = None

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def cluster_sizes(self) -> np.ndarray:
        return np.bincount(self.clusters, minlength=len(self.centroids))

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Vectors of the model (an example's) as unit rows of the pool's space."""
        raw = np.asarray(raw, np.float32).reshape(-1, self.vectors.shape[1] if self.projection is None
                                                  else self.projection.components.shape[1])
        return self.projection(raw) if self.projection is not None else l2_normalize(raw)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """The rows of these sample ids that are candidates (others are left out)."""
        where = {sid: i for i, sid in enumerate(self.ids)}
        return np.array([where[s] for s in ids if s in where], np.int64)

    def cluster_name(self, row: int) -> int:
        return int(self.cluster_names[self.clusters[row]])


def _and(*parts: dict | None) -> dict:
    parts_ = [p for p in parts if p]
    return parts_[0] if len(parts_) == 1 else {"$and": parts_}


def build_pool(cat: "Catalog", *, query: dict | None = None, model: str | None = None,
               keep_duplicates: bool = False, keep_leaks: bool = False, clusters: int | None = None,
               seed: int = 0, budget: int | None = None, progress: Callable[[int, int], None] | None = None) -> Pool:
    """The candidates of a selection (see the module doc); a clear error when none have embeddings.

    >>> pool = build_pool(cat, keep_duplicates=True)                                    # doctest: +SKIP
    """
    model = model or default_model(cat)
    if model is None:
        raise ViscurateError("selection needs embeddings: run `viscurate embed NAME` (or `viscurate label NAME`) first")
    dropped = {"near_duplicate": 0, "leak": 0, "no_embedding": 0, "unusable": 0}
    scope = usable(query)
    usable_count = cat.count(scope)
    dropped["unusable"] = cat.count(query) - usable_count
    with_vectors = cat.image_vector_count(model, scope)
    dropped["no_embedding"] = usable_count - with_vectors
    if usable_count == 0:
        raise ViscurateError(f"the query {query} matches no usable sample ({dropped['unusable']} match but are "
                             "corrupt or missing): widen the query, or check it with `viscurate find NAME`")
    if with_vectors == 0:
        raise ViscurateError(f"none of the {usable_count} usable samples in scope has an image vector of {model}: "
                             "run `viscurate embed NAME` first")
    remaining = with_vectors
    for kind, keep in (("near_duplicate", keep_duplicates), ("leak", keep_leaks)):
        if not keep:
            scope = _and(scope, {"issues": {"$nin": list(DROP_ISSUES[kind])}})
            now = cat.image_vector_count(model, scope)
            dropped[kind], remaining = remaining - now, now
    if remaining == 0:
        raise ViscurateError(f"no candidates left after dropping {dropped}: pass keep_duplicates / keep_leaks "
                             "(--keep-duplicates / --keep-leaks) or widen the query")
    ids, vectors, projection = _read_unit_vectors(cat, model, scope, remaining, progress)
    pool = Pool(ids=ids, vectors=vectors, clusters=np.zeros(len(ids), np.int64), cluster_names=np.zeros(1, np.int64),
                centroids=np.zeros((1, vectors.shape[1]), np.float32),
                centroid_similarity=np.zeros(len(ids), np.float32), model=model, scope=scope, dropped=dropped,
                cluster_source="", projection=projection)
    _cluster(cat, pool, clusters, seed, budget)
    return pool


def _read_unit_vectors(cat: "Catalog", model: str, scope: dict, count: int,
                       progress: Callable[[int, int], None] | None) -> tuple[list[str], np.ndarray, Projection | None]:
    """Every candidate's vector as a unit row, reduced by PCA when the whole would be too large: two passes
    over the catalog then (one to fit on a sample, one to project), so memory holds the reduced matrix only."""
    batches = cat.iter_image_vectors(model, scope, READ_BATCH)
    first_ids, first = next(batches, ([], np.zeros((0, 0), np.float32)))
    d = first.shape[1]
    projection = None
    if count * d > MAX_FLOATS and d > REDUCED_DIMS:
        projection = _fit_pca(cat, model, scope, count)
        first = projection(first)
        out_d = REDUCED_DIMS
    else:
        first = l2_normalize(first)
        out_d = d
    out = np.empty((count, out_d), np.float32)
    ids: list[str] = []

    def put(batch_ids: list[str], unit: np.ndarray) -> None:
        if len(ids) + len(batch_ids) > count:
            raise ViscurateError("the dataset changed while the selection read it: run the selection again")
        out[len(ids):len(ids) + len(batch_ids)] = unit
        ids.extend(batch_ids)
        if progress:
            progress(len(ids), count)

    put(first_ids, first)
    for batch_ids, raw in batches:
        put(batch_ids, projection(raw) if projection is not None else l2_normalize(raw))
    return ids, out[:len(ids)], projection


def _fit_pca(cat: "Catalog", model: str, scope: dict, count: int, dims: int = REDUCED_DIMS) -> Projection:
    """PCA (``dims`` components) of the unit vectors of ``PCA_SAMPLE`` candidates drawn at random (a fixed
    seed: the same pool gets the same projection), in one pass over the catalog that only accumulates the
    sum and the d x d Gram matrix batch by batch (float32 products, float64 sums): no sample matrix is kept.

    >>> _fit_pca(cat, "efficientnet_b0", {}, 3000).components.shape                     # doctest: +SKIP
    (128, 1280)
    """
    rows = np.sort(np.random.default_rng(SEED).choice(count, size=min(count, PCA_SAMPLE), replace=False))
    start, taken = 0, 0
    total = gram = None
    for _, raw in cat.iter_image_vectors(model, scope, READ_BATCH):
        stop = start + len(raw)
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            part = l2_normalize(raw[rows[lo:hi] - start]).astype(np.float32, copy=False)
            if gram is None:
                total, gram = np.zeros(part.shape[1], np.float64), np.zeros((part.shape[1],) * 2, np.float64)
            total += part.sum(axis=0, dtype=np.float64)
            gram += part.T @ part
            taken += len(part)
        start = stop
    if gram is None:
        raise ViscurateError("the dataset changed while the selection read it: run the selection again")
    mean = total / taken
    # the eigenvectors of the d x d covariance (Gram less the mean's outer product): an SVD's components
    values, vectors = np.linalg.eigh(gram - taken * np.outer(mean, mean))
    top = vectors[:, np.argsort(-values)[:dims]].T
    return Projection(mean=mean.astype(np.float32), components=np.ascontiguousarray(top, dtype=np.float32))


def cluster_count(pool_size: int, budget: int | None) -> int:
    """k-means clusters of a pool: one per pick (at most ``MAX_BUDGET_CLUSTERS``), else, with no budget,
    ``sqrt(n / 2)`` (:func:`default_cluster_count`). More clusters than picks would leave clusters out, and
    cluster coverage takes the small ones first: on 3,000 MNIST digits 30 picks of 38 clusters covered 8
    classes, fewer than random (9.8). Fewer would fold a rare kind of picture into a big cluster. Even one
    per pick does not always give a rare class a cluster of its own: on long-tailed Fashion-MNIST pools
    (~5,100 candidates, 5 classes of ~20, three draws) 2% covered 8, 7 and 6 classes, random 6.65, 6.55, 7.0.

    >>> cluster_count(10_000, None), cluster_count(10_000, 200), cluster_count(3_000, 30), cluster_count(10**6, 10_000)
    (71, 200, 30, 1000)
    """
    if budget:
        return max(1, min(int(budget), MAX_BUDGET_CLUSTERS, pool_size))
    return default_cluster_count(pool_size)


def _cluster(cat: "Catalog", pool: Pool, clusters: int | None, seed: int, budget: int | None) -> None:
    """Fill the pool's clusters: the stored ``cluster.id`` when every candidate has one (and no count was
    asked), else spherical k-means on the pool's vectors (:func:`cluster_count` clusters)."""
    n = pool.size
    stored = None if clusters else _stored_clusters(cat, pool)
    if stored is not None:
        names, compact = np.unique(stored, return_inverse=True)
        pool.clusters, pool.cluster_names, pool.cluster_source = compact.astype(np.int64), names, "cluster.id"
        pool.cluster_k = None
    else:
        k = int(clusters) if clusters else cluster_count(n, budget)
        if clusters is not None and not 1 <= k <= n:
            raise ViscurateError(f"clusters must be between 1 and the pool size ({n}), got {clusters}")
        k = max(1, min(k, n))
        if k == 1:
            pool.clusters = np.zeros(n, np.int64)
        else:
            # one k-means run (find_clusters makes 3): a selection's seed changes the clustering anyway
            pool.clusters, _, _ = spherical_kmeans(pool.vectors, k, seed=SEED + int(seed), restarts=1,
                                                   max_points_per_centroid=256 if n > LARGE_POOL else None)
        pool.cluster_names = np.arange(int(pool.clusters.max()) + 1, dtype=np.int64)
        pool.cluster_source, pool.cluster_k = "k-means", k
    pool.centroids, pool.centroid_similarity = _centroids(pool.vectors, pool.clusters, len(pool.cluster_names))


def _stored_clusters(cat: "Catalog", pool: Pool) -> np.ndarray | None:
    if "cluster.id" not in cat.fields:
        return None
    cols = cat.columns(["cluster.id"], pool.scope)
    by_id = dict(zip(cols["_id"], cols["cluster.id"]))
    values = [by_id.get(i) for i in pool.ids]
    if any(v is None for v in values):
        return None
    return np.asarray(values, np.int64)


def _centroids(x: np.ndarray, clusters: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit mean of each cluster's rows and every row's cosine to its own centre (sums by sorted runs:
    no k x n matrix, no Python loop over rows)."""
    order = np.argsort(clusters, kind="stable")
    sums = np.zeros((k, x.shape[1]), np.float64)
    present = np.bincount(clusters, minlength=k) > 0
    for lo in range(0, len(order), READ_BATCH):  # reduceat per block, then add: bounded temporaries
        part = order[lo:lo + READ_BATCH]
        labels = clusters[part]
        firsts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        sums[labels[firsts]] += np.add.reduceat(x[part].astype(np.float64), firsts, axis=0)
    centroids = l2_normalize(sums.astype(np.float32))
    centroids[~present] = 0
    sims = np.empty(len(x), np.float32)
    for lo in range(0, len(x), READ_BATCH):
        sims[lo:lo + READ_BATCH] = np.einsum("ij,ij->i", x[lo:lo + READ_BATCH], centroids[clusters[lo:lo + READ_BATCH]])
    return centroids, sims


# ---- signals: what strategies read besides the vectors -----------------------------------------------

def field_values(cat: "Catalog", pool: Pool, path: str) -> np.ndarray:
    """The value of ``path`` for every candidate, in pool order (an object array; ``None`` where missing)."""
    by_id = sample_values(cat, path, pool.scope, "balance needs one value per sample (a label, a metadata field)")
    out = np.empty(pool.size, dtype=object)
    out[:] = [by_id.get(i) for i in pool.ids]
    return out


def stored_scores(cat: "Catalog", pool: Pool, path: str) -> np.ndarray | None:
    """A declared numeric field (``scores.uniqueness``) for every candidate, or ``None`` when one lacks it."""
    if path not in cat.fields:
        return None
    cols = cat.columns([path], pool.scope)
    by_id = dict(zip(cols["_id"], cols[path]))
    values = [by_id.get(i) for i in pool.ids]
    if any(v is None for v in values):
        return None
    return np.asarray(values, np.float64)


def ids_with_issue(cat: "Catalog", pool: Pool, issues: Sequence[str]) -> np.ndarray:
    """A boolean per candidate: does it carry one of ``issues``."""
    flagged = set(cat.ids(_and(pool.scope, {"issues": {"$in": list(issues)}})))
    return np.fromiter((i in flagged for i in pool.ids), bool, count=pool.size)


def resolve_ids(cat: "Catalog", target: str | Sequence[str] | dict | None, what: str) -> list[str]:
    """Sample ids from ids (a list, or one id) or a query; an error when there are none or some do not exist."""
    if target is None:
        return []
    if isinstance(target, dict):
        ids = cat.ids(usable(target))
        if not ids:
            raise ViscurateError(f"the {what} query matches no usable sample: {target}")
        return ids
    ids = [target] if isinstance(target, str) else [str(t) for t in target]
    found = set(cat.ids({"_id": {"$in": ids}}))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ViscurateError(f"no sample with _id {missing[0]!r} (one of the {what})")
    return list(dict.fromkeys(ids))


def example_vectors(cat: "Catalog", pool: Pool, ids: Sequence[str], what: str) -> np.ndarray:
    """The examples' vectors in the pool's space (examples may lie outside the pool)."""
    if not ids:
        return np.zeros((0, pool.vectors.shape[1]), np.float32)
    got, _, raw = cat.read_vectors(pool.model, query={"_id": {"$in": list(ids)}})
    missing = sorted(set(ids) - set(got))
    if missing:
        raise ViscurateError(f"{len(missing)} of the {what} (e.g. {missing[0]!r}) have no {pool.model} vector: "
                             "run `viscurate embed NAME` first")
    return pool.project(raw)


def iter_predictions(cat: "Catalog", pool: Pool, path: str,
                     batch: int = 4096) -> Iterator[tuple[np.ndarray, list[Any]]]:
    """``(rows, values)`` per batch of the candidates that have ``path`` (a prediction: ``head``,
    ``classifications``...): the caller reduces each batch to what it keeps (a score, a short note), so a
    million predictions are never all in memory at once.

    >>> for rows, values in iter_predictions(cat, pool, "head"): ...                    # doctest: +SKIP
    """
    where = {sid: i for i, sid in enumerate(pool.ids)}
    rows: list[int] = []
    values: list[Any] = []
    for doc in cat.iter_docs(_and(pool.scope, {path: {"$exists": True}}), batch_size=min(batch, 1000)):
        row = where.get(doc["_id"])
        if row is None:
            continue
        rows.append(row)
        values.append(get_path(doc, path))
        if len(rows) >= batch:
            yield np.asarray(rows, np.int64), values
            rows, values = [], []
    if rows:
        yield np.asarray(rows, np.int64), values


def prediction_docs(cat: "Catalog", pool: Pool, path: str, convert: Callable[[Any], Any] = lambda v: v) -> list[Any]:
    """``convert(value at path)`` of every candidate, in pool order (``None`` where missing), read batch by
    batch: pass a ``convert`` that keeps little (a class name) when the values are large."""
    out: list[Any] = [None] * pool.size
    for rows, values in iter_predictions(cat, pool, path):
        for r, v in zip(rows.tolist(), values):
            out[r] = convert(v)
    return out


def has_duplicate_analysis(cat: "Catalog", query: dict | None) -> bool:
    """Did ``find_duplicates`` (``viscurate duplicates``) run on this catalog, or does a sample matching
    ``query`` carry a ``duplicates`` finding?"""
    from ..duplicates import DUPLICATES_RUN_KEY

    if cat.meta_get(DUPLICATES_RUN_KEY):
        return True
    if "duplicates.group" not in cat.fields:
        return False
    return cat.count(_and(usable(query), {"duplicates.group": {"$exists": True}})) > 0


def budget_count(n: "int | str", candidates: Callable[[], int]) -> int:
    """A budget as a number of samples: ``n`` itself (``200``, ``"200"``) or a share of the candidates
    (``"2%"``); ``candidates()`` counts them and is called only for a share. The CLI and REST faces both
    read budgets through it.

    >>> budget_count(200, lambda: 1), budget_count("2%", lambda: 3000), budget_count("0.1%", lambda: 50)
    (200, 60, 1)
    """
    raw = str(n).strip()
    try:
        if raw.endswith("%"):
            share = float(raw[:-1])
            if not 0 < share <= 100:
                raise ValueError(raw)
            return max(1, round(share / 100 * candidates()))
        count = int(raw)
        if count < 1:
            raise ValueError(raw)
        return count
    except ValueError:
        raise ViscurateError(f"the budget is a number of samples (200) or a share of the candidates (2%, at "
                             f"most 100%), not {n!r}") from None
