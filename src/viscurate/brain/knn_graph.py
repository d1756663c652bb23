"""The k-nearest-neighbour graph of a set of vectors (cosine), exact when small, approximate when large,
without holding the vectors in RAM as float32.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
>>> sims, idx = knn_graph(x, k=5)
>>> sims.shape, idx.shape, bool((idx != np.arange(500)[:, None]).all())
((500, 5), (500, 5), True)

- up to ``exact_below`` vectors (50,000): exact inner-product search (FAISS ``IndexFlatIP``);
- above: an inverted-file index with 8-bit scalar quantization (FAISS ``IVF{nlist},SQ8``, ``nlist`` ~
  4 sqrt(n), trained on a sample of 40 vectors per list, 10 k-means iterations), searched with ``nprobe`` lists per
  query. Its memory is one byte per dimension per vector (1.3 GB for 1M x 1280), and the vectors are read
  block by block, so ``vectors`` can be a memory-mapped float16 matrix (``SimilarityIndex``'s file) that
  never fits in RAM as float32.

Each row's own entry is removed; rows are unit-normalized on the fly (cosine similarity).
"""
from __future__ import annotations

import math

import numpy as np

from ..common.vectors import l2_normalize

__all__ = ["knn_graph", "ivf_training_sample", "gather_unit_rows", "EXACT_BELOW", "TRAIN_ITERATIONS"]

EXACT_BELOW = 50_000
BLOCK = 32_768
TRAIN_PER_LIST = 40  # FAISS's own minimum for a stable k-means is 39 per centroid
TRAIN_ITERATIONS = 10


def ivf_training_sample(n: int, seed: int = 0) -> tuple[int, np.ndarray]:
    """``(lists, rows)``: how many inverted lists an IVF index of ``n`` vectors gets (``4 * sqrt(n)``,
    64 to 65,536) and the sorted rows its k-means trains on (``TRAIN_PER_LIST`` per list, at most ``n``).

    >>> lists, rows = ivf_training_sample(1_000_000)
    >>> lists, len(rows)
    (4000, 160000)
    """
    lists = int(min(65_536, max(64, 4 * math.sqrt(n))))
    rng = np.random.default_rng(seed)
    return lists, np.sort(rng.choice(n, size=min(n, lists * TRAIN_PER_LIST), replace=False))


def _block(vectors, start: int, stop: int) -> np.ndarray:
    return l2_normalize(np.asarray(vectors[start:stop], np.float32))


def knn_graph(vectors, k: int = 10, *, exact_below: int = EXACT_BELOW, nprobe: int = 8,
              threads: int | None = None, seed: int = 0,
              timings: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities, indexes)``, each ``(n, k)``, each row's nearest other rows best first (-1 / -inf
    where fewer than ``k`` exist). ``vectors``: any ``(n, d)`` array-like that slices into rows (numpy,
    ``np.memmap``). ``timings``, if given, receives the seconds spent building the index and searching."""
    import time

    import faiss

    t0 = time.perf_counter()

    n, d = int(vectors.shape[0]), int(vectors.shape[1])
    if threads:
        faiss.omp_set_num_threads(int(threads))
    if n <= exact_below:
        index = faiss.IndexFlatIP(d)
        for s in range(0, n, BLOCK):
            index.add(_block(vectors, s, min(n, s + BLOCK)))
    else:
        nlist, sample = ivf_training_sample(n, seed)
        train = gather_unit_rows(vectors, sample)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.niter = TRAIN_ITERATIONS
        index.train(train)
        del train
        for s in range(0, n, BLOCK):
            index.add(_block(vectors, s, min(n, s + BLOCK)))
        index.nprobe = int(nprobe)
    t1 = time.perf_counter()
    kk = min(k + 1, n)
    sims = np.full((n, k), -np.inf, np.float32)
    idx = np.full((n, k), -1, np.int64)
    for s in range(0, n, BLOCK):
        q = _block(vectors, s, min(n, s + BLOCK))
        bs, bi = index.search(q, kk)
        rows = np.arange(s, s + len(q))[:, None]
        own = bi == rows
        # drop each row's own entry (or, if it was not returned, the last one)
        drop = np.where(own.any(axis=1), own.argmax(axis=1), kk - 1)
        keep = np.ones_like(own)
        keep[np.arange(len(q)), drop] = False
        bs = bs[keep].reshape(len(q), kk - 1)[:, :k]
        bi = bi[keep].reshape(len(q), kk - 1)[:, :k]
        sims[s:s + len(q), :bs.shape[1]] = bs
        idx[s:s + len(q), :bi.shape[1]] = bi
    if timings is not None:
        timings.update(build=time.perf_counter() - t0 - (time.perf_counter() - t1), search=time.perf_counter() - t1,
                       kind="exact" if n <= exact_below else f"IVF{index.nlist},SQ8 nprobe={index.nprobe}")
    return sims, idx


def gather_unit_rows(vectors, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` (sorted row numbers) of a possibly memory-mapped ``(n, d)`` matrix as unit-length
    float32 rows, read 4,096 at a time so that a float16 file never needs to fit in RAM as float32
    (how an IVF index gets its training sample).

    >>> gather_unit_rows(np.array([[3, 4], [1, 0], [0, 0]], np.float16), np.array([0, 2])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    out = np.empty((len(rows), int(vectors.shape[1])), np.float32)
    for s in range(0, len(rows), 4096):
        part = rows[s:s + 4096]
        out[s:s + len(part)] = l2_normalize(np.asarray(vectors[part], np.float32))
    return out
