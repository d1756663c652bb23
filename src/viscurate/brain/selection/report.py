"""The curation report: does a selection beat random sampling? Each metric of the selection beside the mean
and spread of random subsets of the same size drawn from the same pool, with a plain verdict, as one
self-contained HTML page and its JSON twin.

>>> out = curation_report(cat, "to-label", "to-label.html")                        # doctest: +SKIP
>>> out["metrics"]["cluster_coverage"]["verdict"]                                   # doctest: +SKIP
'better than random by 7.9 std'

What it rebuilds, from the catalog alone: the picks are the samples of the slice; the recipe that
``select`` stored (meta key ``selections``) gives the pool they were picked from (its query, model and
drops). A slice that no selection made (saved by hand, from a query) gets the same report against random
subsets of every usable sample with an embedding: the metrics need no recipe, only a pool to compare with.

The metrics, for the selection and for each random subset (``random_subsets``, seeded by ``seed``):

- ``cluster_coverage`` (the headline): the share of clusters the selection never saw with at least one
  pick: the stored ``cluster.id`` of ``find_clusters`` when every candidate has one, else spherical k-means
  on the pool's vectors (one cluster per pick, at most 1,000, as a selection clusters: ``cluster_count``;
  seeded by ``REPORT_CLUSTER_SEED``, not the selection's seed). With fewer clusters than picks (the
  ``sqrt(n / 2)`` of ``find_clusters``: 71 for 10,000) random subsets of 2 % already touch nearly every
  cluster and the metric tells nothing (Fashion-MNIST, 200 picks: 0.94 vs 0.91 +- 0.02). A selection picks one per cluster of its own clustering, so coverage of those would
  be full by construction;
- ``selection_cluster_coverage``: the same share over the clusters the selection used (its pool's), shown
  for what it is: full for ``cluster_coverage`` by construction;
- per balance field (``label_field``, default ``ground_truth.label``, else the predicted class; then each
  of ``fields``): classes covered, normalized entropy of the picks' classes (1 = even over the pool's
  classes) and the smallest class's share (0 when a class is missed);
- ``edge_case_share``: picks that are edge cases or outliers (issue ``edge_case``/``outlier`` or
  ``scores.outlier`` >= 0.95; computed on the pool the same way when no analysis stored them);
- ``duplicate_rate``: picks that are near duplicates of another pick (the same ``duplicates.group``, or
  cosine >= 0.95);
- ``embedding_distance_mean`` / ``embedding_distance_p90``: the distance (1 - cosine) from every candidate
  to its nearest pick, mean and 90th percentile: lower = the picks cover the embedding space better.

A verdict per metric: ``z`` = (selection - random mean) / random std, signed so that positive is better;
"better than random by Z std" when ``z`` >= ``Z_BETTER`` (2.5) and the selection beats every random subset,
else "no better than random" (with how far it is, and "worse by" when ``z`` <= -2.5). A random selection is
called better on a metric about once in 80 (simulated: 1.2% with 20 random subsets).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ...errors import ViscurateError
from ...store.documents import get_path
from ..clusters import SEED, spherical_kmeans
from ..findings import sample_values
from .pool import LARGE_POOL, Pool, build_pool, cluster_count, field_values, ids_with_issue, stored_scores

if TYPE_CHECKING:
    from ...store.catalog import Catalog

__all__ = ["curation_report", "check_report_path", "SELECTIONS_KEY", "Z_BETTER", "DUPLICATE_SIMILARITY",
           "EDGE_OUTLIER", "COVERAGE_SAMPLE", "REPORT_CLUSTER_SEED"]

#: The catalog meta key holding the recipe of every selection (slice name -> recipe), written by ``select``.
SELECTIONS_KEY = "selections"
#: Standard deviations from the random mean a selection must reach to be called better than random.
Z_BETTER = 2.5
#: Cosine similarity at or above which two picks count as near duplicates of each other.
DUPLICATE_SIMILARITY = 0.95
#: ``scores.outlier`` (a percentile rank of isolation) at or above which a sample is an edge case.
EDGE_OUTLIER = 0.95
#: Candidates the embedding-space coverage is measured on: all up to this, a uniform sample above (the same
#: sample for the selection and every random subset; its standard error, about 0.0004, is far below the
#: spread of random subsets).
COVERAGE_SAMPLE = 20_000
#: Picks whose nearest other pick is searched for the duplicate rate: all up to this, a uniform sample above.
DUPLICATE_PROBES = 4_000
#: Without a stored analysis: the share of candidates farthest from their cluster's centre called edge cases.
EDGE_SHARE = 0.05
#: Issues that make a sample an edge case.
EDGE_ISSUES = ("edge_case", "outlier")
MAX_RANDOM_SUBSETS = 1000
#: The k-means seed of the report's own clusters: fixed, and not a selection's (``select`` seeds its
#: clustering with ``SEED + seed`` for small seeds), so the clusters the verdict is measured on are not
#: the ones the selection covered.
REPORT_CLUSTER_SEED = SEED + 1_000_003


@dataclass
class Draws:
    """Row 0: the selection's positions in the pool; rows 1..: the random subsets (all the same size)."""

    rows: np.ndarray

    @property
    def size(self) -> int:
        return int(self.rows.shape[1])


# ---- reading what a selection left behind ------------------------------------------------------------

def _and(*parts: dict | None) -> dict:
    given = [p for p in parts if p]
    return given[0] if len(given) == 1 else {"$and": given}


def _recipes(cat: "Catalog") -> dict[str, dict]:
    raw = cat.meta_get(SELECTIONS_KEY)
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        found = {}
    return found if isinstance(found, dict) else {}


def _slice_members(cat: "Catalog", name: str, recipe: dict | None) -> list[str]:
    """The slice's samples, in the recipe's pick order where it has one (then catalog order)."""
    members = cat.ids({"slices": name})
    if not recipe:
        return members
    order = {s: k for k, s in enumerate(recipe.get("ids") or [])}
    return sorted(members, key=lambda s: order.get(s, len(order)))


def _load_pool(cat: "Catalog", recipe: dict | None, seed: int) -> Pool:
    """The pool as ``select`` built it (:func:`.pool.build_pool`, with the recipe's query, model, drops,
    clusters and seed, so the clusters are the selection's own). Without a recipe: every usable sample with
    a vector of the default model, near duplicates and leaks dropped."""
    if recipe is None:
        return build_pool(cat, seed=seed)
    options = recipe.get("options") or {}
    dropped = recipe.get("dropped") or {}
    clusters = options.get("clusters") if isinstance(options.get("clusters"), dict) else {}
    # a recipe without the keep flags: nothing dropped means nothing to drop or kept (the same pool either way)
    keep = {flag: bool(options.get(flag, not dropped.get(kind)))
            for flag, kind in (("keep_duplicates", "near_duplicate"), ("keep_leaks", "leak"))}
    return build_pool(cat, query=recipe.get("query") or None, model=recipe.get("model"), **keep,
                      clusters=clusters.get("count") if clusters.get("source") == "k-means" else None,
                      seed=int(recipe.get("seed") or 0))


# ---- pool-wide labels ------------------------------------------------------------------------------

def _top_prediction(doc: dict) -> Any:
    """The predicted class of a sample: ``head.label``, else the most confident ``classifications`` or
    ``object_analysis`` entry's name.

    >>> _top_prediction({"classifications": [{"name": "cat", "confidence": 0.3}, {"name": "dog", "confidence": 0.6}]})
    'dog'
    >>> _top_prediction({"head": {"label": "coat"}, "classifications": [{"name": "dog", "confidence": 0.9}]})
    'coat'
    """
    head = doc.get("head")
    if isinstance(head, dict) and head.get("label") is not None:
        return head["label"]
    for key in ("classifications", "object_analysis"):
        items = [o for o in doc.get(key) or [] if isinstance(o, dict) and o.get("name") is not None]
        if items:
            return max(items, key=lambda o: o.get("confidence") or 0.0)["name"]
    return None


def _balance_field(cat: "Catalog", label_field: str | None, scope: dict) -> str | None:
    """The field the class balance is measured on: ``label_field``, else ``ground_truth.label`` when the
    pool has it, else ``"predicted"`` (the top prediction) when it has predictions, else ``None``."""
    if label_field:
        return label_field
    if cat.count({"$and": [scope, {"ground_truth.label": {"$exists": True}}]}):
        return "ground_truth.label"
    has_predictions = {"$or": [{"head.label": {"$exists": True}}, {"classifications": {"$exists": True}},
                               {"object_analysis": {"$exists": True}}]}
    if cat.count({"$and": [scope, has_predictions]}):
        return "predicted"
    return None


def _values(cat: "Catalog", path: str, pool: Pool) -> list[Any]:
    """``path``'s value for every pool candidate, in pool order (``None`` where missing); ``predicted``:
    the top prediction. Lists and sub-documents become their JSON text (one class per distinct value)."""
    if path == "predicted":
        found = _predicted(cat, pool.scope)
    else:
        found = sample_values(cat, path, pool.scope, "balance is measured on one value per sample")
    out = []
    for s in pool.ids:
        v = found.get(s)
        out.append(json.dumps(v, sort_keys=True, default=str) if isinstance(v, (list, dict)) else v)
    return out


def _predicted(cat: "Catalog", scope: dict) -> dict[str, Any]:
    """The top prediction of every sample in ``scope`` that has one: ``head.label`` in one column scan when
    it is a declared field, then, only for the samples without it, their ``classifications`` and
    ``object_analysis`` (documents read batch by batch, each kept only as those two fields)."""
    found: dict[str, Any] = {}
    head = cat.fields.get("head.label")
    if head is not None and head.kind == "scalar":
        cols = cat.columns(["head.label"], scope)
        found = {s: v for s, v in zip(cols["_id"], cols["head.label"]) if v is not None}
        rest = _and(scope, {"head.label": {"$exists": False}})
        keys: tuple[str, ...] = ("classifications", "object_analysis")
    else:  # head.label is not a column of its own: read it with the lists
        rest, keys = scope, ("head", "classifications", "object_analysis")
    listed = {"$or": [{k: {"$exists": True}} for k in keys]}
    for doc in cat.iter_docs(_and(rest, listed)):
        label = _top_prediction({k: get_path(doc, k) for k in keys})
        if label is not None:
            found[doc["_id"]] = label
    return found


def _independent_clusters(cat: "Catalog", pool: Pool, picks: int) -> tuple[np.ndarray, str]:
    """Clusters the selection did not see: the stored ``cluster.id`` (``find_clusters``) when every
    candidate has one, else spherical k-means on the pool's vectors, ``cluster_count(n, picks)`` clusters
    seeded by :data:`REPORT_CLUSTER_SEED`. Returns the cluster of each candidate and where they come from."""
    stored = stored_scores(cat, pool, "cluster.id")
    if stored is not None:
        return np.unique(stored, return_inverse=True)[1].astype(np.int64).ravel(), \
            "the stored cluster.id of find_clusters"
    n = pool.size
    k = cluster_count(n, picks)
    if k < 2:
        return np.zeros(n, np.int64), "one cluster (a pool of under 2 candidates)"
    seed = REPORT_CLUSTER_SEED
    clusters, _, _ = spherical_kmeans(pool.vectors, k, seed=seed, restarts=1,
                                      max_points_per_centroid=256 if n > LARGE_POOL else None)
    return clusters.astype(np.int64), f"spherical k-means on the pool, {k} clusters (seed {seed}, the report's own)"


def _codes(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer codes of ``values`` (-1 for ``None``) and the classes, most frequent first."""
    counts: dict[Any, int] = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    classes = sorted(counts, key=lambda c: (-counts[c], str(c)))
    index = {c: k for k, c in enumerate(classes)}
    return np.fromiter((index.get(v, -1) if v is not None else -1 for v in values), np.int64, len(values)), classes


def _edge_flags(cat: "Catalog", pool: Pool) -> tuple[np.ndarray, str]:
    """Which candidates are edge cases: the stored findings when an analysis ran (the issue ``edge_case``
    or ``outlier``, ``scores.outlier`` >= ``EDGE_OUTLIER``), else, from the pool's clusters, the members of
    tiny clusters (the rule of ``find_clusters``) and the ``EDGE_SHARE`` of candidates farthest from their
    cluster's centre (free: no neighbour search)."""
    from .strategies import edge_flags

    flags = ids_with_issue(cat, pool, EDGE_ISSUES)
    outlier = stored_scores(cat, pool, "scores.outlier")
    if outlier is not None:
        flags |= outlier >= EDGE_OUTLIER
    analysed = outlier is not None or cat.count(_and(pool.scope, {"cluster.id": {"$exists": True}})) > 0
    if analysed:
        return flags, f"the issue edge_case/outlier or scores.outlier >= {EDGE_OUTLIER} (stored analyses)"
    far = pool.centroid_similarity <= np.quantile(pool.centroid_similarity, EDGE_SHARE) if pool.size else flags
    return (flags | edge_flags(pool) | far,
            f"members of tiny clusters and the {EDGE_SHARE:.0%} of candidates farthest from their cluster's centre "
            "(no outlier or cluster analysis stored: `viscurate outliers NAME` stores one)")


def _groups(cat: "Catalog", pool: Pool) -> np.ndarray:
    """``duplicates.group`` of each candidate as an integer code, -1 where none."""
    if "duplicates.group" not in cat.fields:
        return np.full(pool.size, -1, np.int64)
    codes, _ = _codes(list(field_values(cat, pool, "duplicates.group")))
    return codes


# ---- the metrics, one row per subset (vectorized over the subsets) -----------------------------------

def _distinct_per_row(a: np.ndarray) -> np.ndarray:
    """Distinct non-negative values in each row of an integer matrix.

    >>> _distinct_per_row(np.array([[3, 1, 3, -1], [2, 2, 2, 2]])).tolist()
    [2, 1]
    """
    s = np.sort(a, axis=1)
    new = np.ones_like(s, bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    return (new & (s >= 0)).sum(axis=1)


def _class_counts(codes: np.ndarray, draws: Draws, k: int) -> np.ndarray:
    """(subsets, classes) pick counts per class."""
    c = codes[draws.rows]
    r = np.repeat(np.arange(len(c)), c.shape[1]).reshape(c.shape)
    ok = c >= 0
    return np.bincount((r * k + c)[ok], minlength=len(c) * k).reshape(len(c), k)


def balance_metrics(codes: np.ndarray, k: int, draws: Draws) -> dict[str, np.ndarray]:
    """Per subset: classes covered, normalized entropy (over the pool's ``k`` classes), smallest share.

    >>> d = Draws(np.array([[0, 1, 2, 3], [0, 0, 1, 1]]))
    >>> {m: v.round(3).tolist() for m, v in balance_metrics(np.array([0, 0, 1, 1]), 2, d).items()}
    {'classes_covered': [2, 1], 'normalized_entropy': [1.0, 0.0], 'smallest_class_share': [0.5, 0.0]}
    """
    counts = _class_counts(codes, draws, k).astype(np.float64)
    labelled = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    p = counts / labelled
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return {"classes_covered": (counts > 0).sum(axis=1),
            "normalized_entropy": np.maximum(h, 0.0) / math.log(k) if k > 1 else np.ones(len(counts)),
            "smallest_class_share": p.min(axis=1) if k else np.zeros(len(counts))}


def _duplicate_rate(pool: Pool, groups: np.ndarray, draws: Draws, rng: np.random.Generator) -> np.ndarray:
    """Per subset: the share of picks with another pick in their duplicate group or at cosine >=
    ``DUPLICATE_SIMILARITY`` (searched from all picks, or a uniform ``DUPLICATE_PROBES`` of them)."""
    import faiss

    out = np.zeros(len(draws.rows))
    for r, row in enumerate(draws.rows):  # a handful of subsets; each is one FAISS search
        g = groups[row]
        values, counts = np.unique(g[g >= 0], return_counts=True)
        shared = np.isin(g, values[counts > 1])
        probes = np.arange(len(row)) if len(row) <= DUPLICATE_PROBES else np.sort(
            rng.choice(len(row), DUPLICATE_PROBES, replace=False))
        close = np.zeros(len(row), bool)
        if len(row) > 1:
            index = faiss.IndexFlatIP(pool.vectors.shape[1])
            index.add(pool.vectors[row])
            sims, idx = index.search(pool.vectors[row[probes]], 2)
            # the nearest other pick: the first hit that is not the probe itself
            other = np.where(idx[:, 0] == probes, sims[:, 1], sims[:, 0])
            close[probes] = other >= DUPLICATE_SIMILARITY
        hit = shared | close
        out[r] = hit[probes].mean() if len(probes) else 0.0
    return out


def _nearest_pick_distance(pool: Pool, draws: Draws, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """Per subset: mean and 90th percentile of the distance (1 - cosine) from each candidate (all, or a
    uniform ``COVERAGE_SAMPLE``) to its nearest pick: one FAISS search of the candidates per subset (FAISS
    works in blocks, so memory stays that of the candidates and one subset)."""
    import faiss

    n = len(pool.ids)
    probe = np.arange(n) if n <= COVERAGE_SAMPLE else np.sort(rng.choice(n, COVERAGE_SAMPLE, replace=False))
    queries = np.ascontiguousarray(pool.vectors[probe])
    mean, p90 = np.zeros(len(draws.rows)), np.zeros(len(draws.rows))
    for r, row in enumerate(draws.rows):
        index = faiss.IndexFlatIP(pool.vectors.shape[1])
        index.add(pool.vectors[row])
        sims, _ = index.search(queries, 1)
        d = np.clip(1.0 - sims[:, 0], 0.0, 2.0)
        mean[r], p90[r] = d.mean(), np.percentile(d, 90)
    return mean, p90, len(probe)


# ---- verdicts ----------------------------------------------------------------------------------------

def verdict(value: float, random: np.ndarray, higher_is_better: bool) -> dict[str, Any]:
    """The selection's ``value`` against the random subsets' values: mean, std, ``z`` (in the good
    direction: positive = better) and the verdict in words. Better than random: ``z`` >= ``Z_BETTER`` and
    better than every random subset (a random selection is called better on about one metric in 80).

    >>> verdict(0.9, np.array([0.5, 0.6, 0.4]), True)["verdict"]
    'better than random by 4.0 std'
    >>> verdict(0.5, np.array([0.5, 0.6, 0.4]), True)["verdict"]
    'no better than random (+0.0 std, within the spread of 3 random subsets)'
    >>> verdict(0.2, np.array([0.5, 0.6, 0.4]), True)["verdict"]
    'no better than random: worse by 3.0 std'
    """
    mean = float(random.mean())
    std = float(random.std(ddof=1)) if len(random) > 1 else 0.0
    gains = (random - mean) if higher_is_better else (mean - random)
    gain = (value - mean) if higher_is_better else (mean - value)
    beats_all = bool(np.all(gain > gains + 1e-12))
    z: float | None
    if std > 0:
        z = gain / std
    else:
        z = 0.0 if math.isclose(gain, 0.0, abs_tol=1e-12) else None
    if z is None:  # every random subset scored the same and the selection did not
        better = bool(gain > 0)
        text = (f"better than random (every random subset scored {mean:.4g})" if better else
                f"no better than random: worse (every random subset scored {mean:.4g})")
    elif z >= Z_BETTER and beats_all:
        better, text = True, f"better than random by {z:.1f} std"
    elif z <= -Z_BETTER:
        better, text = False, f"no better than random: worse by {-z:.1f} std"
    elif abs(z) < 2:
        better, text = False, f"no better than random ({z:+.1f} std, within the spread of {len(random)} random subsets)"
    else:
        better, text = False, (f"no better than random ({z:+.1f} std: not clearly beyond the spread of {len(random)} "
                               "random subsets)")
    return {"selection": round(float(value), 6), "random_mean": round(mean, 6), "random_std": round(std, 6),
            "z": None if z is None else round(z, 2), "better": better,
            "direction": "higher" if higher_is_better else "lower", "verdict": text}


# ---- the report --------------------------------------------------------------------------------------

def check_report_path(out_path: str | Path) -> Path:
    """The HTML path of a report, refused when it ends in ``.json``: the JSON twin is written beside the
    page with that suffix and would overwrite it.

    >>> check_report_path("to-label.html").name
    'to-label.html'
    """
    out = Path(out_path)
    if out.suffix.lower() == ".json":
        raise ViscurateError(f"the report path {str(out)!r} ends in .json, where its JSON twin goes: give the HTML "
                             f"page's path (e.g. {str(out.with_suffix('.html'))!r}); the JSON is written beside it")
    return out


def _check(slice_name: Any, random_subsets: Any, fields: Any) -> tuple[str, ...]:
    if not isinstance(slice_name, str) or not slice_name:
        raise ViscurateError(f"slice must be a slice name (a non-empty string), got {slice_name!r}")
    whole = isinstance(random_subsets, int) and not isinstance(random_subsets, bool)
    if not whole or not 2 <= random_subsets <= MAX_RANDOM_SUBSETS:
        raise ViscurateError(f"random_subsets must be an integer between 2 and {MAX_RANDOM_SUBSETS} (the spread needs "
                             f"at least 2), got {random_subsets!r}")
    fields = (fields,) if isinstance(fields, str) else tuple(fields or ())
    if not all(isinstance(f, str) and f for f in fields):
        raise ViscurateError(f"fields must be field paths (strings), got {fields!r}")
    return fields


def _selection_entries(cat: "Catalog", name: str, ids: Sequence[str]) -> dict[str, dict]:
    """Each pick's ``selections`` entry for this slice (strategy, rank, score, cluster, reason)."""
    out: dict[str, dict] = {}
    for start in range(0, len(ids), 1000):
        part = list(ids[start:start + 1000])
        for doc in cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]:
            for e in doc.get("selections") or []:
                if isinstance(e, dict) and e.get("slice") == name:
                    out[doc["_id"]] = e
    return out


def curation_report(cat: "Catalog", slice: str, out_path: str | Path, *, random_subsets: int = 20,
                    label_field: str | None = None, fields: Sequence[str] = (), seed: int = 0,
                    pool: Pool | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Measure the slice ``slice`` against ``random_subsets`` random subsets of its size from the same pool
    and write the report to ``out_path`` (HTML) and beside it with the suffix ``.json`` (this dict).
    ``pool``: the pool the selection was just picked from, when the caller holds it (``select`` does):
    spares building it again (reading the vectors, k-means). ``progress(step)``: told each step's name.

    >>> report = curation_report(cat, "cluster_coverage-200", "report.html", fields=["metadata.site"])  # doctest: +SKIP
    >>> report["metrics"]["embedding_distance_mean"]["better"]                                        # doctest: +SKIP
    True
    """
    from .report_page import render_page

    t0 = time.monotonic()
    fields = _check(slice, random_subsets, fields)
    out = check_report_path(out_path)
    recipes = _recipes(cat)
    recipe = recipes.get(slice)
    picked = _slice_members(cat, slice, recipe)
    if not picked:
        known = sorted(set(recipes) | set(cat.list_value_counts("slices")))
        raise ViscurateError(f"no samples in slice {slice!r}: " + (
            f"the slices are {', '.join(map(repr, known))}" if known else "the dataset has no slices") +
            "; make one with `viscurate select NAME N --slice SLICE` (or Dataset.select)")
    warnings: list[str] = []
    pool = pool if pool is not None else _load_pool(cat, recipe, seed)
    position = {s: k for k, s in enumerate(pool.ids)}
    in_pool = np.asarray([position[s] for s in picked if s in position], np.int64)
    outside = len(picked) - len(in_pool)
    if outside:
        warnings.append(f"{outside} of the {len(picked)} samples of the slice are not in the pool (no {pool.model} "
                        "vector, unusable, or dropped as a near duplicate or leak): measured without them")
    if len(in_pool) == 0:
        raise ViscurateError(f"none of the {len(picked)} samples of slice {slice!r} is in the pool it is measured "
                             f"against (usable samples with a {pool.model} vector): run `viscurate embed NAME` first")
    if len(in_pool) >= len(pool.ids):
        raise ViscurateError(f"slice {slice!r} holds the whole pool ({len(pool.ids)} candidates): there is nothing to "
                             "compare with random subsets of the same size")
    if recipe is None:
        warnings.append(f"slice {slice!r} was not made by a selection (no recipe): it is compared with random subsets "
                        f"of every usable sample with a {pool.model} vector")
    elif recipe.get("pool") is not None and int(recipe["pool"]) != len(pool.ids):
        warnings.append(f"the pool has changed since the selection: {recipe['pool']} candidates then, {len(pool.ids)} "
                        "now (samples added, embedded or flagged since); measured against the pool of now")
    if recipe is not None and sorted(recipe.get("ids") or []) != sorted(picked):
        warnings.append("the slice no longer holds exactly the samples the selection picked (edited since): "
                        "the report measures the slice as it is")

    rng = np.random.default_rng(seed)
    m, n = len(in_pool), len(pool.ids)
    draws = Draws(np.vstack([in_pool[None, :]] + [rng.choice(n, m, replace=False)[None, :]
                                                   for _ in range(random_subsets)]).astype(np.int64))

    def step(what: str) -> None:
        if progress:
            progress(what)

    metrics: dict[str, dict] = {}
    step("clusters")
    independent, independent_source = _independent_clusters(cat, pool, m)
    k_independent = int(len(np.unique(independent)))
    covered = _distinct_per_row(independent[draws.rows])
    metrics["cluster_coverage"] = verdict(covered[0] / k_independent, covered[1:] / k_independent, True) | {
        "label": "cluster coverage",
        "explain": f"share of {k_independent} clusters the selection did not see with a pick ({independent_source})",
        "selection_clusters": int(covered[0]), "clusters": k_independent, "source": independent_source}
    k_used = int((pool.cluster_sizes > 0).sum())
    used_source = ("the stored cluster.id of find_clusters" if pool.cluster_source == "cluster.id" else
                   f"the selection's spherical k-means, {k_used} clusters")
    used = _distinct_per_row(pool.clusters[draws.rows])
    metrics["selection_cluster_coverage"] = verdict(used[0] / k_used, used[1:] / k_used, True) | {
        "label": "clusters the selection used",
        "explain": f"share of the {k_used} clusters of the selection's own pool with a pick ({used_source}): "
                   "cluster_coverage fills them by construction, so the verdict above is on other clusters",
        "selection_clusters": int(used[0]), "clusters": k_used, "source": used_source}

    step("embedding coverage")
    mean_d, p90_d, probes = _nearest_pick_distance(pool, draws, rng)
    over = f"{probes:,} candidates" + ("" if probes == n else f" (a uniform sample of the {n:,})")
    metrics["embedding_distance_mean"] = verdict(mean_d[0], mean_d[1:], False) | {
        "label": "mean distance to the nearest pick", "explain": f"1 - cosine, from each of {over} to its nearest pick"}
    metrics["embedding_distance_p90"] = verdict(p90_d[0], p90_d[1:], False) | {
        "label": "90th percentile distance to the nearest pick", "explain": f"1 - cosine, over {over}"}

    step("edge cases")
    edges, edge_source = _edge_flags(cat, pool)
    share = edges[draws.rows].mean(axis=1)
    metrics["edge_case_share"] = verdict(share[0], share[1:], True) | {
        "label": "edge-case share", "explain": f"picks that are edge cases: {edge_source}; the pool has "
                                                f"{int(edges.sum())} ({edges.mean():.1%})"}

    step("duplicates")
    dup = _duplicate_rate(pool, _groups(cat, pool), draws, rng)
    metrics["duplicate_rate"] = verdict(dup[0], dup[1:], False) | {
        "label": "duplicate rate", "explain": f"picks with another pick in their duplicate group or at cosine >= "
                                              f"{DUPLICATE_SIMILARITY}"}

    step("balance")
    balance: dict[str, dict] = {}
    main = _balance_field(cat, label_field, pool.scope)
    for path in ([main] if main else []) + [f for f in fields if f != main]:
        codes, classes = _codes(_values(cat, path, pool))
        if not classes:
            warnings.append(f"no candidate has a value for {path!r}: its balance is not measured")
            continue
        k = len(classes)
        per = balance_metrics(codes, k, draws)
        counts = _class_counts(codes, draws, k)
        pool_counts = np.bincount(codes[codes >= 0], minlength=k)
        balance[path] = {
            "label": "predicted class (top prediction)" if path == "predicted" else path,
            "classes": [str(c) for c in classes],
            "pool": [int(c) for c in pool_counts],
            "pool_missing": int((codes < 0).sum()),
            "selection": [int(c) for c in counts[0]],
            "selection_missing": int((codes[draws.rows[0]] < 0).sum()),
            "random_mean": [round(float(c), 3) for c in counts[1:].mean(axis=0)],
            "random_std": [round(float(c), 3) for c in counts[1:].std(axis=0, ddof=1)],
            "metrics": {
                "classes_covered": verdict(per["classes_covered"][0], per["classes_covered"][1:], True) | {
                    "label": "classes covered", "explain": f"of the pool's {k}"},
                "normalized_entropy": verdict(per["normalized_entropy"][0], per["normalized_entropy"][1:], True) | {
                    "label": "normalized entropy", "explain": f"of the picks' classes, over the pool's {k} (1 = even)"},
                "smallest_class_share": verdict(per["smallest_class_share"][0], per["smallest_class_share"][1:],
                                                True) | {
                    "label": "smallest class share",
                    "explain": "the rarest class's share of the picks (0: a class missed)"},
            }}
    if main is None:
        warnings.append("no labels or predictions in the pool: class balance is not measured (name a field with "
                        "label_field, or run `viscurate label NAME`)")

    step("thumbnails")
    entries = _selection_entries(cat, slice, picked)
    recipe_out = {k: v for k, v in (recipe or {}).items() if k != "ids"}
    json_path = out.with_suffix(".json")
    report: dict[str, Any] = {
        "slice": slice, "selection": recipe_out or None, "strategy": (recipe or {}).get("strategy"),
        "selected": len(picked), "measured": m, "pool": n, "model": pool.model,
        "query": recipe.get("query") if recipe else None,
        "dropped": pool.dropped, "random_subsets": random_subsets, "seed": seed, "z_better": Z_BETTER,
        "headline": f"cluster coverage: {metrics['cluster_coverage']['verdict']}",
        "metrics": metrics, "balance": balance, "balance_field": main, "warnings": warnings,
        "summary": _summary(metrics, balance),
        "html": str(out), "json": str(json_path),
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    files = cat.columns(["filepath"], {"_id": {"$in": list(picked)}})
    report["groups"] = render_page(report, picked, entries, dict(zip(files["_id"], files["filepath"])), out)
    report["seconds"] = round(time.monotonic() - t0, 3)
    json_path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return report


def _summary(metrics: dict[str, dict], balance: dict[str, dict]) -> list[str]:
    """One line per metric: ``"cluster coverage: 0.97 vs 0.62 +- 0.03 random: better than random by 11.7 std"``."""
    lines = []
    every = list(metrics.values()) + [dict(v, label=f"{b['label']}: {v['label']}")
                                       for b in balance.values() for v in b["metrics"].values()]
    for v in every:
        lines.append(f"{v['label']}: {v['selection']:.4g} vs {v['random_mean']:.4g} +- {v['random_std']:.2g} random: "
                     f"{v['verdict']}")
    return lines
