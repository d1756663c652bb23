"""The selection strategies: each a pure function ``(pool, n, rng, **options) -> list[Pick]`` over a
:class:`~.pool.Pool` (numpy/FAISS, no Python loop over samples), deterministic for a seed, each pick with
the reason it was picked in words.

>>> picks = STRATEGIES["k_center"](pool, 100, np.random.default_rng(0))                 # doctest: +SKIP
>>> picks[1].reason                                                                     # doctest: +SKIP
'2nd k-center pick: the farthest candidate from the earlier picks (cosine distance 0.71)'

- ``random``: uniform, without replacement.
- ``cluster_coverage``: every cluster represented, the small ones first, then picks shared out in
  proportion to cluster size; inside a cluster its most typical member first (closest to the centre), then
  members spread over its typical half (farthest-first).
- ``k_center``: the greedy coreset: each pick the candidate farthest from every earlier pick
  (:func:`farthest_first`, exact, in blocks).
- ``typicality``: TypiClust: picks shared out in proportion to cluster size, each cluster cut into as
  many groups as it has picks, the densest member of each group (density: mean cosine to its
  ``DENSITY_K`` nearest neighbours inside its cluster).
- ``edge_cases``: samples flagged ``edge_case`` (clusters much smaller than typical) or ``outlier`` first,
  then the most unique (1 - cosine to the nearest other sample; the stored ``scores.uniqueness`` when
  ``find_outliers`` scored every candidate).
- ``balance``: an equal share per value of a field; values with fewer samples than their share give the
  rest to the others; inside a value spread over clusters.
- ``uncertainty``: the most uncertain by a prediction (entropy, least confidence or margin), spread:
  among the ``UNCERTAIN_POOL`` x n most uncertain, a k-center subset.
- ``similarity``: the highest cosine to positive examples, less the highest cosine to negative ones.
- ``weighted``: a weighted sum of other strategies' per-sample scores, each rank-normalized to [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...errors import ViscurateError
from .pool import Pool

__all__ = ["Pick", "STRATEGIES", "SCORERS", "farthest_first", "allocate", "equal_shares", "ordinal",
           "DENSITY_K", "UNCERTAIN_POOL", "MEASURES", "edge_flags", "density", "uniqueness",
           "rank_normalize", "coverage_quotas"]

#: Neighbours of the density of ``typicality`` (TypiClust uses 20).
DENSITY_K = 20
#: ``uncertainty`` spreads its n picks over the ``UNCERTAIN_POOL * n`` most uncertain candidates.
UNCERTAIN_POOL = 5
MEASURES = ("entropy", "least_confidence", "margin")
#: Rows per block of a matrix product against all candidates (bounds the temporaries).
BLOCK = 65_536
#: Candidates examined per pass of :func:`farthest_first`.
FF_CANDIDATES = 1024


@dataclass
class Pick:
    """One picked candidate: its row in the pool, the strategy's score (``None`` where it has none), its
    cluster (the id users see), and why, in words."""

    index: int
    score: float | None
    cluster: int | None
    reason: str


def ordinal(k: int) -> str:
    """``k`` as an ordinal word, for the reasons.

    >>> [ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '101st']
    """
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


# ---- shared building blocks ---------------------------------------------------------------------------

def farthest_first(x: np.ndarray, n: int, start: int, *, candidates: int = FF_CANDIDATES,
                   progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center over unit rows ``x``: ``start``, then each time the row farthest (cosine) from every
    row picked so far. Returns ``(rows, distance of each when picked)``; exactly the greedy answer.

    Memory is O(len(x)) beyond ``x``; a pass over ``x`` serves many picks: the ``candidates`` farthest rows
    are taken aside and picked from while the best of them is still at least as far as anything outside
    (whose distances only shrink), then every row is updated against the new picks in one matrix product.

    >>> x = np.eye(4, dtype=np.float32)
    >>> farthest_first(x, 3, 0)[0].tolist()
    [0, 1, 2]
    """
    total = len(x)
    n = min(n, total)
    nearest = np.full(total, -np.inf, np.float32)  # cosine to the nearest pick; lowest = farthest
    picked = np.zeros(total, bool)
    rows, dists = [int(start)], [float("inf")]
    _raise_nearest(nearest, x, np.array([start]))
    picked[start] = True
    while len(rows) < n:
        free = np.where(picked, np.inf, nearest)
        m = min(candidates, total)
        cand = np.argpartition(free, m - 1)[:m] if m < total else np.arange(total)
        outside = float(np.partition(free, m)[m]) if m < total else np.inf
        sims = free[cand].astype(np.float32)
        xc = x[cand]
        new: list[int] = []
        while len(rows) + len(new) < n:
            j = int(np.argmin(sims))
            if not np.isfinite(sims[j]) or (new and sims[j] > outside):
                break  # something outside the candidates may now be farther: update everything first
            new.append(int(cand[j]))
            dists.append(float(1.0 - sims[j]))
            sims = np.maximum(sims, xc @ xc[j])
            sims[j] = np.inf
        if not new:
            break
        rows.extend(new)
        picked[new] = True
        _raise_nearest(nearest, x, np.array(new))
        if progress:
            progress(len(rows), n)
    return np.asarray(rows, np.int64), np.asarray(dists, np.float64)


def _raise_nearest(nearest: np.ndarray, x: np.ndarray, new: np.ndarray) -> None:
    """``nearest`` = max(nearest, cosine of each row to its nearest row of ``new``), block by block."""
    centres = x[new].T
    for lo in range(0, len(x), BLOCK):
        np.maximum(nearest[lo:lo + BLOCK], (x[lo:lo + BLOCK] @ centres).max(axis=1), out=nearest[lo:lo + BLOCK])


def allocate(capacity: np.ndarray, weight: np.ndarray, total: int) -> np.ndarray:
    """Integers ``q <= capacity`` summing to ``min(total, capacity.sum())``, in proportion to ``weight``
    (largest remainders; what a full group cannot take goes to the others).

    >>> allocate(np.array([10, 1, 10]), np.array([10., 1., 10.]), 6).tolist()
    [3, 0, 3]
    >>> allocate(np.array([10, 1, 2]), np.array([1., 1., 1.]), 9).tolist()
    [6, 1, 2]
    """
    capacity = np.asarray(capacity, np.int64)
    quota = np.zeros(len(capacity), np.int64)
    left = int(min(total, capacity.sum()))
    while left > 0:
        open_ = quota < capacity
        w = np.where(open_, np.asarray(weight, np.float64), 0.0)
        if w.sum() <= 0:
            w = open_.astype(np.float64)
        share = w / w.sum() * left
        add = np.minimum(np.floor(share).astype(np.int64), capacity - quota)
        if add.sum() == 0:  # the remainders: one each to the largest fractions (stable: lower index first)
            frac = np.where(open_, share - np.floor(share), -1.0)
            add = np.zeros_like(quota)
            add[np.argsort(-frac, kind="stable")[:min(left, int(open_.sum()))]] = 1
        quota += add
        left -= int(add.sum())
    return quota


def equal_shares(counts: np.ndarray, total: int) -> np.ndarray:
    """An equal share of ``total`` per group, capped at its count, the rest to the others (water-filling).

    >>> equal_shares(np.array([100, 3, 100]), 21).tolist()
    [9, 3, 9]
    """
    return allocate(counts, np.ones(len(counts)), total)


def _round_robin(groups: list[np.ndarray], order_of_groups: np.ndarray) -> list[tuple[int, int, int]]:
    """``(group, position in its group, row)``: the 1st member of each group (groups in ``order_of_groups``),
    then the 2nd of each, and so on."""
    out = []
    longest = max((len(g) for g in groups), default=0)
    for r in range(longest):
        for g in order_of_groups:
            if r < len(groups[g]):
                out.append((int(g), r, int(groups[g][r])))
    return out


def _members(pool: Pool) -> list[np.ndarray]:
    """Each cluster's rows, most typical (closest to the centre) first."""
    order = np.lexsort((-pool.centroid_similarity, pool.clusters))
    bounds = np.searchsorted(pool.clusters[order], np.arange(len(pool.centroids) + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(len(pool.centroids))]


def _rank_within(groups: list[np.ndarray], size: int) -> np.ndarray:
    """Per row: 1 for the first of its group, falling to 0 for the last (rows in ``groups`` order)."""
    out = np.zeros(size, np.float64)
    for g in groups:
        if len(g):
            out[g] = 1.0 - np.arange(len(g)) / len(g)
    return out


def _too_big(pool: Pool, n: int) -> None:
    if n > pool.size:
        raise ViscurateError(f"budget {n} is larger than the pool ({pool.size} candidates after drops "
                             f"{pool.dropped}): lower it, widen the query, or keep duplicates/leaks")


# ---- the strategies -----------------------------------------------------------------------------------

def random_picks(pool: Pool, n: int, rng: np.random.Generator, **_: Any) -> list[Pick]:
    """``n`` candidates drawn uniformly without replacement."""
    _too_big(pool, n)
    rows = rng.choice(pool.size, size=n, replace=False)
    return [Pick(int(r), None, pool.cluster_name(int(r)), f"random pick {k + 1} of {n}") for k, r in enumerate(rows)]


def coverage_quotas(sizes: np.ndarray, n: int) -> np.ndarray:
    """Picks per cluster for ``cluster_coverage``: one for every cluster (the smallest first when the budget
    is short), the rest in proportion to size.

    >>> coverage_quotas(np.array([50, 30, 5, 1]), 10).tolist()
    [5, 3, 1, 1]
    >>> coverage_quotas(np.array([50, 30, 5, 1]), 2).tolist()
    [0, 0, 1, 1]
    """
    live = np.flatnonzero(sizes > 0)
    quota = np.zeros(len(sizes), np.int64)
    if n <= len(live):
        quota[live[np.argsort(sizes[live], kind="stable")[:n]]] = 1
        return quota
    quota[live] = 1
    return quota + allocate(sizes - quota, sizes.astype(np.float64), n - len(live))


def cluster_coverage(pool: Pool, n: int, rng: np.random.Generator, **_: Any) -> list[Pick]:
    """Every cluster represented, small clusters first, the rest in proportion to size; in a cluster its
    most typical member first, then members spread (farthest-first) over its typical half."""
    _too_big(pool, n)
    sizes = pool.cluster_sizes
    quota = coverage_quotas(sizes, n)
    members = _members(pool)
    chosen: list[np.ndarray] = []
    gaps: dict[int, float] = {}
    for c, q in enumerate(quota):
        if q == 0:
            chosen.append(members[c][:0])
            continue
        if q == 1:
            chosen.append(members[c][:1])
            continue
        m = members[c]
        core = m[:max(q, (len(m) + 1) // 2)]  # the typical half (at least q)
        rows, dist = farthest_first(pool.vectors[core], int(q), 0)
        chosen.append(core[rows])
        gaps.update({int(core[r]): float(d) for r, d in zip(rows[1:], dist[1:])})
    order = np.argsort(sizes, kind="stable")  # each round, the small clusters first
    picks = []
    for c, pos, row in _round_robin(chosen, order):
        name, size, q = pool.cluster_name(row), int(sizes[c]), int(quota[c])
        sim = float(pool.centroid_similarity[row])
        if q == 1:
            why = f"only pick of cluster {name} ({size} members): its most typical (similarity {sim:.2f} to the centre)"
        elif pos == 0:
            why = (f"1st of {q} picks of cluster {name} ({size} members): its most typical "
                   f"(similarity {sim:.2f} to the centre)")
        else:
            why = (f"{ordinal(pos + 1)} of {q} picks of cluster {name} ({size} members): spread from its earlier "
                   f"picks (distance {gaps.get(row, 0.0):.2f})")
        picks.append(Pick(row, round(sim, 4), name, why))
    return picks


def k_center(pool: Pool, n: int, rng: np.random.Generator, *, progress=None, **_: Any) -> list[Pick]:
    """The greedy coreset: a random first pick (the seed), then each time the farthest from all picks."""
    _too_big(pool, n)
    rows, dist = farthest_first(pool.vectors, n, int(rng.integers(pool.size)), progress=progress)
    picks = [Pick(int(rows[0]), None, pool.cluster_name(int(rows[0])), "1st k-center pick: the random start")]
    for k in range(1, len(rows)):
        picks.append(Pick(int(rows[k]), round(float(dist[k]), 4), pool.cluster_name(int(rows[k])),
                          f"{ordinal(k + 1)} k-center pick: the farthest candidate from the earlier picks "
                          f"(cosine distance {dist[k]:.2f})"))
    return picks


def density(pool: Pool, k: int = DENSITY_K) -> np.ndarray:
    """Mean cosine of each candidate to its ``k`` nearest neighbours inside its own cluster (TypiClust's
    typicality, kept to the cluster so that a million candidates cost one cluster's square at a time).
    Cached on the pool."""
    if "density" in pool.signals:
        return pool.signals["density"]
    out = np.zeros(pool.size, np.float32)
    for m in _members(pool):
        if len(m) < 2:
            continue
        kk = min(k, len(m) - 1)
        xm = pool.vectors[m]
        step = max(1, (1 << 24) // len(m))  # rows per block: at most 16M similarities at once
        for lo in range(0, len(m), step):
            sims = xm[lo:lo + step] @ xm.T
            np.fill_diagonal(sims[:, lo:lo + step], -np.inf)
            top = np.partition(sims, len(m) - kk, axis=1)[:, len(m) - kk:]
            out[m[lo:lo + step]] = top.mean(axis=1)
    pool.signals["density"] = out
    return out


def typicality(pool: Pool, n: int, rng: np.random.Generator, **_: Any) -> list[Pick]:
    """TypiClust: picks in proportion to cluster size; a cluster with q picks is cut into q groups
    (k-means) and gives the densest member of each."""
    from ..clusters import SEED, spherical_kmeans

    _too_big(pool, n)
    dens = density(pool)
    sizes = pool.cluster_sizes
    quota = allocate(sizes, sizes.astype(np.float64), n)
    members = _members(pool)
    chosen: list[np.ndarray] = []
    for c, q in enumerate(quota):
        m = members[c]
        if q == 0:
            chosen.append(m[:0])
            continue
        if q == 1:
            groups = np.zeros(len(m), np.int64)
        elif q >= len(m):
            groups = np.arange(len(m))
        else:
            groups, _, _ = spherical_kmeans(pool.vectors[m], int(q), seed=SEED + int(rng.integers(1 << 30)),
                                            restarts=1)
        # the densest member of each group, the densest groups' first
        order = np.lexsort((-dens[m], groups))
        firsts = order[np.r_[True, groups[order][1:] != groups[order][:-1]]]
        best = m[firsts]
        best = best[np.argsort(-dens[best], kind="stable")][:q]
        if len(best) < q:  # k-means left a group empty: the densest members not yet chosen fill the quota
            rest = m[~np.isin(m, best)]
            best = np.r_[best, rest[np.argsort(-dens[rest], kind="stable")][:q - len(best)]]
        chosen.append(best)
    picks = []
    clusters_first = np.argsort(-sizes, kind="stable")
    for c, pos, row in _round_robin(chosen, clusters_first):
        picks.append(Pick(row, round(float(dens[row]), 4), pool.cluster_name(row),
                          f"most typical of its part of cluster {pool.cluster_name(row)} ({int(sizes[c])} members, "
                          f"{ordinal(pos + 1)} of {int(quota[c])} picks): density {dens[row]:.2f} "
                          f"(mean similarity to its {min(DENSITY_K, int(sizes[c]) - 1)} nearest neighbours)"))
    return picks


def uniqueness(pool: Pool) -> np.ndarray:
    """1 - cosine to the nearest other candidate: the stored ``scores.uniqueness`` when :mod:`.select` put it
    in ``signals``, else computed on the pool (FAISS)."""
    if "uniqueness" in pool.signals:
        return pool.signals["uniqueness"]
    from ..knn_graph import knn_graph

    if pool.size < 2:
        out = np.ones(pool.size)
    else:
        sims, _ = knn_graph(pool.vectors, 1)
        out = np.clip(1.0 - sims[:, 0].astype(np.float64), 0.0, 1.0)
    pool.signals["uniqueness"] = out
    return out


def edge_flags(pool: Pool) -> np.ndarray:
    """Stored ``edge_case``/``outlier`` issues when :mod:`.select` put them in ``signals``, else members of
    the pool's clusters much smaller than the typical one (the rule of :mod:`viscurate.brain.clusters`)."""
    if "edge_flags" in pool.signals:
        return pool.signals["edge_flags"]
    sizes = pool.cluster_sizes
    live = sizes[sizes > 0]
    median = float(np.median(live)) if len(live) else 0.0
    small = (sizes > 0) & (sizes <= 10) & (sizes < 0.2 * median)
    return small[pool.clusters]


def edge_cases(pool: Pool, n: int, rng: np.random.Generator, **_: Any) -> list[Pick]:
    """Edge cases first (``edge_case``/``outlier`` issues, or the pool's tiny clusters), then the most unique."""
    _too_big(pool, n)
    uniq = uniqueness(pool)
    flags = edge_flags(pool)
    rows = np.lexsort((-uniq, ~flags))[:n]
    sizes = pool.cluster_sizes
    picks = []
    for k, r in enumerate(rows):
        r = int(r)
        lead = (f"edge case (cluster {pool.cluster_name(r)}, {int(sizes[pool.clusters[r]])} members)" if flags[r]
                else "unlike the rest")
        picks.append(Pick(r, round(float(uniq[r]), 4), pool.cluster_name(r),
                          f"{ordinal(k + 1)} edge pick: {lead}; uniqueness {uniq[r]:.2f} "
                          f"(nearest other candidate at similarity {1 - uniq[r]:.2f})"))
    return picks


def _value_text(v: Any) -> str:
    return "(no value)" if v is None else str(v)


def _valued_rows(pool: Pool) -> np.ndarray:
    """The rows whose balance value is not missing: "no value" is not a class to give a share to."""
    return np.flatnonzero(np.fromiter((v is not None for v in pool.signals["values"]), bool, count=pool.size))


def balance(pool: Pool, n: int, rng: np.random.Generator, **_: Any) -> list[Pick]:
    """An equal share per value of ``signals["values"]`` (field ``signals["field"]``; candidates without a
    value are left out); values with fewer samples give the rest to others; inside a value, spread over
    clusters (round-robin, most typical first)."""
    _too_big(pool, n)
    field = pool.signals.get("field", "the field")
    valued = _valued_rows(pool)
    if len(valued) < n:
        raise ViscurateError(f"only {len(valued)} of the {pool.size} candidates have a value in {field}; the budget is "
                             f"{n}: lower it, narrow the query to samples with a value, or balance another field")
    keys = np.array([_value_text(v) for v in pool.signals["values"][valued]], dtype=object)
    names, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    quota = equal_shares(counts, n)
    chosen = []
    for v in range(len(names)):
        rows = valued[inverse == v]
        # round-robin over this value's clusters (largest first), each cluster's most typical first
        order = np.lexsort((-pool.centroid_similarity[rows], pool.clusters[rows]))
        rows = rows[order]
        cl = pool.clusters[rows]
        bounds = np.flatnonzero(np.r_[True, cl[1:] != cl[:-1], True])
        groups = [rows[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
        by_size = np.argsort([-len(g) for g in groups], kind="stable")
        spread = np.array([r for _, _, r in _round_robin(groups, by_size)], np.int64)
        chosen.append(spread[:quota[v]])
    picks = []
    for v, pos, row in _round_robin(chosen, np.argsort(counts, kind="stable")):
        picks.append(Pick(row, None, pool.cluster_name(row),
                          f"balance {field} = {names[v]}: {ordinal(pos + 1)} of {int(quota[v])} picks "
                          f"({int(counts[v])} in the pool), from cluster {pool.cluster_name(row)}"))
    return picks


def uncertainty(pool: Pool, n: int, rng: np.random.Generator, *, measure: str = "margin", **_: Any) -> list[Pick]:
    """The most uncertain (``signals["uncertainty"]``, NaN: no prediction), spread: a k-center subset of the
    ``UNCERTAIN_POOL * n`` most uncertain, started at the most uncertain, listed most uncertain first."""
    _too_big(pool, n)
    score = np.asarray(pool.signals["uncertainty"], np.float64)
    notes = pool.signals.get("uncertainty_notes") or [None] * pool.size
    have = np.flatnonzero(~np.isnan(score))
    if len(have) < n:
        raise ViscurateError(f"only {len(have)} candidates have a prediction in {pool.signals.get('field')!r}; "
                             f"the budget is {n}: run `viscurate fit-head NAME` (or `viscurate label NAME`) first")
    top = have[np.argsort(-score[have], kind="stable")[:min(len(have), UNCERTAIN_POOL * n)]]
    spread = len(top) > n
    if spread:
        rows, _ = farthest_first(pool.vectors[top], n, 0)
        rows = top[rows]
    else:
        rows = top
    rows = rows[np.argsort(-score[rows], kind="stable")]
    rank_in_all = {int(r): k + 1 for k, r in enumerate(top)}
    picks = []
    for k, r in enumerate(rows):
        r = int(r)
        note = f" ({notes[r]})" if notes[r] else ""
        tail = f"; spread by k-center among the {len(top)} most uncertain" if spread else ""
        picks.append(Pick(r, round(float(score[r]), 4), pool.cluster_name(r),
                          f"{ordinal(rank_in_all[r])} most uncertain: {measure} {score[r]:.2f}{note}{tail}"))
    return picks


def similarity_scores(pool: Pool) -> np.ndarray:
    """Highest cosine to a positive example less the highest to a negative one, per candidate (blocks)."""
    if "similarity" in pool.signals:
        return pool.signals["similarity"]
    pos, neg = pool.signals["positive"], pool.signals.get("negative")
    out = np.empty(pool.size, np.float64)
    for lo in range(0, pool.size, BLOCK):
        x = pool.vectors[lo:lo + BLOCK]
        s = (x @ pos.T).max(axis=1).astype(np.float64)
        if neg is not None and len(neg):
            s -= np.maximum((x @ neg.T).max(axis=1), 0.0)
        out[lo:lo + BLOCK] = s
    out[pool.signals.get("example_rows", np.zeros(0, np.int64))] = -np.inf  # examples are known already
    pool.signals["similarity"] = out
    return out


def similarity(pool: Pool, n: int, rng: np.random.Generator, **_: Any) -> list[Pick]:
    """The candidates most like the positive examples (and least like the negative ones)."""
    score = similarity_scores(pool)
    free = int(np.isfinite(score).sum())
    if n > free:
        raise ViscurateError(f"budget {n} is larger than the pool less the examples ({free} candidates): lower it "
                             "or widen the query")
    rows = np.argsort(-score, kind="stable")[:n]
    has_neg = pool.signals.get("negative") is not None and len(pool.signals["negative"])
    what = "like the examples and unlike the negatives" if has_neg else "like the examples"
    return [Pick(int(r), round(float(score[r]), 4), pool.cluster_name(int(r)),
                 f"{ordinal(k + 1)} most {what}: score {score[r]:.2f} (highest cosine to a positive"
                 f"{' less highest to a negative' if has_neg else ''})") for k, r in enumerate(rows)]


# ---- per-sample scores for `weighted` ------------------------------------------------------------------

def _coverage_score(pool: Pool, rng: np.random.Generator, **_: Any) -> np.ndarray:
    return _rank_within(_members(pool), pool.size)


def _balance_score(pool: Pool, rng: np.random.Generator, **_: Any) -> np.ndarray:
    valued = _valued_rows(pool)
    keys = np.array([_value_text(v) for v in pool.signals["values"][valued]], dtype=object)
    _, inverse = np.unique(keys, return_inverse=True)
    order = valued[np.lexsort((-pool.centroid_similarity[valued], inverse))]
    inv = np.empty(pool.size, np.int64)
    inv[valued] = inverse
    bounds = np.flatnonzero(np.r_[True, inv[order][1:] != inv[order][:-1], True])
    # a candidate without a value has no place in a balance: it ranks below every valued one
    return _rank_within([order[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)], pool.size)


def _uncertainty_score(pool: Pool, rng: np.random.Generator, **_: Any) -> np.ndarray:
    return np.nan_to_num(np.asarray(pool.signals["uncertainty"], np.float64), nan=-np.inf)


SCORERS: dict[str, Callable[..., np.ndarray]] = {
    "random": lambda pool, rng, **_: rng.random(pool.size),
    "cluster_coverage": _coverage_score,
    "typicality": lambda pool, rng, **_: density(pool).astype(np.float64),
    "edge_cases": lambda pool, rng, **_: uniqueness(pool) + edge_flags(pool),
    "balance": _balance_score,
    "uncertainty": _uncertainty_score,
    "similarity": lambda pool, rng, **_: similarity_scores(pool),
}


def rank_normalize(score: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (1: the highest score; ties share the lower rank).

    >>> rank_normalize(np.array([0.2, 5.0, 0.2, 1.0])).tolist()
    [0.0, 1.0, 0.0, 0.6666666666666666]
    """
    if len(score) < 2:
        return np.ones(len(score))
    uniq, inverse = np.unique(score, return_inverse=True)
    first = np.searchsorted(np.sort(score), uniq)  # the rank of each distinct value's first occurrence
    return first[inverse] / (len(score) - 1)


def weighted(pool: Pool, n: int, rng: np.random.Generator, *, weights: dict[str, float] | None = None,
             **options: Any) -> list[Pick]:
    """A weighted sum of other strategies' per-sample scores (``SCORERS``), each rank-normalized."""
    _too_big(pool, n)
    if not weights:
        raise ViscurateError("weighted needs weights, e.g. {'cluster_coverage': 0.5, 'uncertainty': 0.5} "
                             f"(strategies with per-sample scores: {', '.join(SCORERS)})")
    parts = {}
    for name, w in weights.items():
        if name not in SCORERS:
            raise ViscurateError(f"weighted cannot use {name!r}: strategies with per-sample scores are "
                                 f"{', '.join(SCORERS)}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not np.isfinite(w) or w < 0:
            raise ViscurateError(f"the weight of {name} must be a number >= 0, got {w!r}")
        parts[name] = (float(w), rank_normalize(SCORERS[name](pool, rng, **options)))
    total_w = sum(w for w, _ in parts.values())
    if total_w <= 0:
        raise ViscurateError("weighted needs at least one weight above 0")
    combined = sum(w * r for w, r in parts.values()) / total_w
    examples = pool.signals.get("example_rows")
    if examples is not None and len(examples):  # examples of a concept are labeled already
        combined[examples] = -np.inf
        if n > pool.size - len(np.unique(examples)):
            raise ViscurateError(f"budget {n} is larger than the pool less the examples "
                                 f"({pool.size - len(np.unique(examples))} candidates): lower it or widen the query")
    rows = np.argsort(-combined, kind="stable")[:n]
    picks = []
    for k, r in enumerate(rows):
        r = int(r)
        terms = " + ".join(f"{w / total_w:.2f} x {name} {rk[r]:.2f}" for name, (w, rk) in parts.items())
        picks.append(Pick(r, round(float(combined[r]), 4), pool.cluster_name(r),
                          f"{ordinal(k + 1)} by weighted score {combined[r]:.2f} = {terms} (rank-normalized)"))
    return picks


#: Strategy name -> function; the names the CLI, REST API and web app use.
STRATEGIES: dict[str, Callable[..., list[Pick]]] = {
    "random": random_picks,
    "cluster_coverage": cluster_coverage,
    "k_center": k_center,
    "typicality": typicality,
    "edge_cases": edge_cases,
    "balance": balance,
    "uncertainty": uncertainty,
    "similarity": similarity,
    "weighted": weighted,
}
