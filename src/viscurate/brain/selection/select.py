"""``select``: pick ``n`` samples to label with a strategy, and store the picks with why each was picked.

>>> sel = select(cat, 200, "cluster_coverage", slice="to-label")                        # doctest: +SKIP
>>> sel.picks[0]                                                                        # doctest: +SKIP
{'_id': '3f2a...', 'rank': 1, 'score': 0.91, 'cluster': 57, 'reason': 'only pick of cluster 57 (4 members): ...'}
>>> cat.find({"selections.slice": "to-label"})["length"]                                # doctest: +SKIP
200

The pool (:mod:`.pool`: usable samples with embeddings, near duplicates and leaks dropped) goes to the
strategy (:mod:`.strategies`); with ``write=True`` the picks become the slice ``slice`` (``slices``), each
gets an entry in its list ``selections`` (``slice, strategy, rank, score, cluster, reason, at``) and the
recipe and outcome go to the catalog meta key ``selections`` (slice name -> recipe), from which the
curation report rebuilds the pool. Selecting into the same slice again replaces the earlier selection:
samples no longer picked leave the slice and lose their entry.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ...errors import ViscurateError
from ..findings import rewrite_samples
from .pool import (Pool, build_pool, example_vectors, field_values, has_duplicate_analysis, ids_with_issue,
                   iter_predictions, prediction_docs, resolve_ids, stored_scores)
from .strategies import MEASURES, SCORERS, STRATEGIES, edge_flags

if TYPE_CHECKING:
    from ...store.catalog import Catalog

__all__ = ["Selection", "select", "SELECTIONS_KEY", "SELECTIONS_FIELD", "SLICES_FIELD", "parse_weights"]

#: The catalog meta key of the recipes (slice name -> recipe and outcome).
SELECTIONS_KEY = "selections"
#: The list field of each picked sample: one entry per selection that picked it.
SELECTIONS_FIELD = "selections"
#: The slice field (curate.views.SLICE_FIELD; brain/ does not import curate/).
SLICES_FIELD = "slices"
#: Where a predicted class is looked for when balancing without labels, in order.
PREDICTED_CLASS = ("head.label",)
PREDICTION_FIELDS = ("head", "classifications", "object_analysis")


@dataclass
class Selection:
    """What :func:`select` picked: ``ids`` in pick order, ``picks`` (``{"_id", "rank", "score", "cluster",
    "reason"}``), the pool size and ``dropped`` counts, the recipe (``strategy``, ``n``, ``seed``, ``model``,
    ``query``), ``seconds``, and the curation report's path when one was written."""

    slice: str
    strategy: str
    n: int
    seed: int
    model: str
    query: dict | None
    pool: int
    dropped: dict[str, int]
    ids: list[str] = field(default_factory=list)
    picks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    report: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    clusters: str = ""
    #: What a user should know about this selection (e.g. near duplicates could not be dropped).
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"slice": self.slice, "strategy": self.strategy, "n": self.n, "seed": self.seed, "model": self.model,
                "query": self.query, "pool": self.pool, "dropped": self.dropped, "ids": self.ids,
                "picks": self.picks, "seconds": round(self.seconds, 3), "report": self.report,
                "options": self.options, "clusters": self.clusters, "notes": self.notes}


def parse_weights(weights: dict[str, float] | str | None) -> dict[str, float] | None:
    """``{"cluster_coverage": 0.5, ...}`` from a dict or ``"cluster_coverage=0.5,uncertainty=0.5"``.

    >>> parse_weights("cluster_coverage=0.5, uncertainty=1")
    {'cluster_coverage': 0.5, 'uncertainty': 1.0}
    """
    if weights is None or isinstance(weights, dict):
        return weights
    out = {}
    for part in str(weights).split(","):
        name, eq, value = part.strip().partition("=")
        bad = ViscurateError(f"weights are strategy=weight pairs separated by commas, got {part.strip()!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise bad from None
        if not eq:
            raise bad
    return out


def _check(n: Any, strategy: Any, seed: Any, measure: Any) -> None:
    if strategy not in STRATEGIES:
        raise ViscurateError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ViscurateError(f"the budget must be a whole number of samples >= 1, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ViscurateError(f"seed must be a whole number >= 0, got {seed!r}")
    if measure not in MEASURES:
        raise ViscurateError(f"unknown uncertainty measure {measure!r}: use one of {', '.join(MEASURES)}")


def select(cat: "Catalog", n: int, strategy: str = "cluster_coverage", *, query: dict | None = None,
           slice: str | None = None, seed: int = 0, model: str | None = None, field: str | None = None,
           examples: str | Sequence[str] | dict | None = None, negatives: str | Sequence[str] | dict | None = None,
           measure: str = "margin", weights: dict[str, float] | str | None = None, clusters: int | None = None,
           keep_duplicates: bool = False, keep_leaks: bool = False, write: bool = True,
           report: str | None = None, progress: Callable[[int, int], None] | None = None,
           by: str | None = None) -> Selection:
    """Pick ``n`` samples matching ``query`` by ``strategy`` (see :mod:`.strategies`) and, when ``write``,
    store them as the slice ``slice`` (default ``f"{strategy}-{n}"``) with their reasons and the recipe.
    ``report``: a path for the curation report (HTML, and its JSON twin); the report compares the picks with
    random subsets of the pool, so it needs a budget below the pool size."""
    t0 = time.monotonic()
    _check(n, strategy, seed, measure)
    n, seed = int(n), int(seed)
    weights = parse_weights(weights)
    slice = slice or f"{strategy}-{n}"
    if report and not write:
        raise ViscurateError("a report is made from a stored selection: drop report= or keep write=True")
    pool = build_pool(cat, query=query, model=model, keep_duplicates=keep_duplicates, keep_leaks=keep_leaks,
                      clusters=clusters, seed=seed, budget=n, progress=progress)
    if n > pool.size:
        raise ViscurateError(f"budget {n} is larger than the pool: {pool.size} candidates after dropping "
                             f"{_dropped_text(pool.dropped)}; lower the budget or widen it: a wider query, "
                             "keep_duplicates=True (--keep-duplicates), keep_leaks=True (--keep-leaks)")
    if report and n >= pool.size:
        raise ViscurateError(f"a curation report compares the picks with random subsets of the pool, and a budget "
                             f"of {n} takes the whole pool ({pool.size} candidates): lower the budget or drop report=")
    notes = []
    if not keep_duplicates and not has_duplicate_analysis(cat, query):
        notes.append("no near-duplicate analysis is stored, so none were dropped: run `viscurate duplicates NAME` "
                     "(ds.find_duplicates()) first to keep near duplicates out of the picks")
    options = _prepare(cat, pool, strategy, field=field, examples=examples, negatives=negatives, measure=measure,
                       weights=weights)
    # the report rebuilds this pool, clusters included, to measure every strategy on the same clusters
    options.update(keep_duplicates=bool(keep_duplicates), keep_leaks=bool(keep_leaks),
                   clusters={"source": pool.cluster_source, "count": int(len(pool.cluster_names))})
    run_options = {"weights": weights, "measure": measure} if strategy in ("weighted", "uncertainty") else {}
    if strategy == "k_center":
        run_options["progress"] = progress
    picks = STRATEGIES[strategy](pool, n, np.random.default_rng(seed), **run_options)
    ids = [pool.ids[p.index] for p in picks]
    # defects of a strategy, not of the input: never store a selection that breaks its promise
    if len(set(ids)) != len(ids):
        raise AssertionError(f"{strategy} picked a sample twice")
    if len(ids) != n:
        raise AssertionError(f"{strategy} picked {len(ids)} samples for a budget of {n}")
    out = Selection(slice=slice, strategy=strategy, n=n, seed=seed, model=pool.model, query=query, pool=pool.size,
                    dropped=pool.dropped, ids=ids, options=options, clusters=pool.cluster_source, notes=notes,
                    picks=[{"_id": sid, "rank": k + 1, "score": p.score, "cluster": p.cluster, "reason": p.reason}
                           for k, (sid, p) in enumerate(zip(ids, picks))])
    if write:
        store_selection(cat, out, by=by)
        if report:
            from .report import curation_report
            curation_report(cat, slice, report, pool=pool)
            out.report = str(report)
    out.seconds = time.monotonic() - t0
    return out


def _dropped_text(dropped: dict[str, int]) -> str:
    said = [f"{v} {k.replace('_', ' ')}" for k, v in dropped.items() if v]
    return ", ".join(said) if said else "nothing"


# ---- what each strategy reads besides the vectors ----------------------------------------------------

def _prepare(cat: "Catalog", pool: Pool, strategy: str, *, field: str | None, examples: Any, negatives: Any,
             measure: str, weights: dict[str, float] | None) -> dict[str, Any]:
    """Load the signals the strategy (and, for ``weighted``, each weighted one) reads into ``pool.signals``;
    returns the options to record in the recipe."""
    needs = {strategy}
    if strategy == "weighted":
        if not weights:
            raise ViscurateError("weighted needs weights, e.g. weights={'cluster_coverage': 0.5, 'uncertainty': 0.5} "
                                 f"(strategies with per-sample scores: {', '.join(SCORERS)})")
        needs = set(weights)
    recorded: dict[str, Any] = {}
    if needs & {"cluster_coverage", "typicality", "balance", "edge_cases"}:
        recorded["clusters"] = {"source": pool.cluster_source, "count": int(len(pool.cluster_names))}
    if "balance" in needs:  # weighted with both: `field` names the predictions, balance takes its default
        both = "uncertainty" in needs
        recorded["balance_field" if both else "field"] = _load_balance(cat, pool, None if both else field)
    if "uncertainty" in needs:
        recorded["field"] = _load_uncertainty(cat, pool, field, measure)
        recorded["measure"] = measure
    if "edge_cases" in needs:
        _load_edges(cat, pool)
    if "similarity" in needs:
        recorded.update(_load_examples(cat, pool, examples, negatives))
    if strategy == "weighted":
        recorded["weights"] = weights
    return recorded


def _load_balance(cat: "Catalog", pool: Pool, path: str | None) -> str:
    candidates = [path] if path else ["ground_truth.label", *PREDICTED_CLASS]
    for p in candidates:
        values = field_values(cat, pool, p)
        if any(v is not None for v in values):
            pool.signals.update(values=values, field=p)
            return p
    if not path:  # the top predicted class of a tag/detection list
        for p in ("classifications", "object_analysis"):
            docs = prediction_docs(cat, pool, p)
            values = np.empty(pool.size, dtype=object)
            values[:] = [_top_name(v) for v in docs]
            if any(v is not None for v in values):
                pool.signals.update(values=values, field=f"{p} (top class)")
                return f"{p} (top class)"
    raise ViscurateError(f"no candidate has a value in {path or 'ground_truth.label or a prediction'}: "
                         "name a field to balance (field=..., --field), or import labels / run `viscurate label NAME`")


def _top_name(v: Any) -> str | None:
    if not isinstance(v, list):
        return None
    best = max((o for o in v if isinstance(o, dict) and o.get("name") is not None),
               key=lambda o: o.get("confidence") or 0.0, default=None)
    return None if best is None else str(best["name"])


def _load_uncertainty(cat: "Catalog", pool: Pool, path: str | None, measure: str) -> str:
    """Fill ``signals["uncertainty"]`` (NaN where a candidate has no prediction) and notes."""
    if path is None:
        path = next((p for p in PREDICTION_FIELDS if cat.count({"$and": [pool.scope, {p: {"$exists": True}}]})), None)
        if path is None:
            raise ViscurateError("uncertainty needs model predictions and this dataset has none: run "
                                 "`viscurate fit-head NAME` (a light classifier on the embeddings, from the labels "
                                 "you have) or `viscurate label NAME` first")
    # batch by batch: only a score and a short note per candidate stay in memory
    score = np.full(pool.size, np.nan)
    notes: list[str | None] = [None] * pool.size
    seen = 0
    for rows, values in iter_predictions(cat, pool, path):
        part, part_notes = uncertainty_scores(values, measure)
        score[rows] = part
        for r, note in zip(rows.tolist(), part_notes):
            notes[r] = note
        seen += sum(v is not None for v in values)
    if not seen:
        raise ViscurateError(f"no candidate has predictions in {path!r}: run `viscurate fit-head NAME` or "
                             "`viscurate label NAME` first, or name another field")
    pool.signals.update(uncertainty=score, uncertainty_notes=notes, field=path)
    return path


def uncertainty_scores(values: Sequence[Any], measure: str) -> tuple[np.ndarray, list[str | None]]:
    """Per value: how uncertain the prediction is by ``measure`` (NaN: no prediction) and a short note.

    - ``{"probs": {class: p}}`` (``head``): entropy (nats) of the distribution, least confidence
      ``1 - max p``, margin ``1 - (p1 - p2)``;
    - a list of ``{"confidence": c}`` (tags, boxes): each item as a yes/no prediction (entropy of ``c``,
      ``1 - max(c, 1 - c)``, ``1 - |2c - 1|``), the sample as its most uncertain item; an empty list: 0.

    >>> s, notes = uncertainty_scores([{"probs": {"a": 0.5, "b": 0.5}}, {"probs": {"a": 1.0}}, None], "margin")
    >>> s.round(2).tolist(), notes[0]
    ([1.0, 0.0, nan], 'a 0.50 vs b 0.50')
    """
    n = len(values)
    width = max((len(v["probs"]) for v in values if isinstance(v, dict) and isinstance(v.get("probs"), dict)),
                default=0)
    items = max((len(v) for v in values if isinstance(v, list)), default=0)
    probs = np.zeros((n, max(width, 1)))
    conf = np.full((n, max(items, 1)), np.nan)
    kind = np.zeros(n, np.int8)  # 0 none, 1 distribution, 2 yes/no items
    names: list[list[str]] = [[] for _ in range(n)]
    for i, v in enumerate(values):
        if isinstance(v, dict) and isinstance(v.get("probs"), dict) and v["probs"]:
            names[i] = list(v["probs"])
            probs[i, :len(v["probs"])] = [float(p or 0.0) for p in v["probs"].values()]
            kind[i] = 1
        elif isinstance(v, dict) and isinstance(v.get("confidence"), (int, float)):
            conf[i, 0] = float(v["confidence"])
            names[i] = [str(v.get("label") or v.get("name") or "")]
            kind[i] = 2
        elif isinstance(v, list):
            cs = [(str(o.get("name") or ""), float(o["confidence"])) for o in v
                  if isinstance(o, dict) and isinstance(o.get("confidence"), (int, float))]
            if cs:
                conf[i, :len(cs)] = [c for _, c in cs]
                names[i] = [nm for nm, _ in cs]
            kind[i] = 2
    out = np.full(n, np.nan)
    dist = kind == 1
    if dist.any():
        p = probs[dist] / np.maximum(probs[dist].sum(axis=1, keepdims=True), 1e-12)
        top2 = -np.sort(-p, axis=1)[:, :2] if p.shape[1] > 1 else np.c_[p, np.zeros(len(p))]
        if measure == "entropy":
            out[dist] = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
        elif measure == "least_confidence":
            out[dist] = 1.0 - top2[:, 0]
        else:
            out[dist] = 1.0 - (top2[:, 0] - top2[:, 1])
    items_ = kind == 2
    if items_.any():
        c = np.clip(conf[items_], 0.0, 1.0)
        if measure == "entropy":
            with np.errstate(divide="ignore", invalid="ignore"):
                u = -(c * np.log(np.where(c > 0, c, 1.0)) + (1 - c) * np.log(np.where(c < 1, 1 - c, 1.0)))
        elif measure == "least_confidence":
            u = 1.0 - np.maximum(c, 1.0 - c)
        else:
            u = 1.0 - np.abs(2.0 * c - 1.0)
        out[items_] = np.nan_to_num(np.nanmax(np.where(np.isnan(c), -np.inf, u), axis=1), neginf=0.0)
    notes: list[str | None] = [None] * n
    for i in np.flatnonzero(kind > 0):
        if kind[i] == 1:
            top = np.argsort(-probs[i, :len(names[i])], kind="stable")[:2]
            notes[i] = " vs ".join(f"{names[i][t]} {probs[i, t]:.2f}" for t in top)
        elif names[i]:
            j = int(np.nanargmax(np.where(np.isnan(conf[i]), -np.inf, -np.abs(conf[i] - 0.5))))
            notes[i] = f"{names[i][j]} {conf[i, j]:.2f}".strip()
        else:
            notes[i] = "nothing predicted"
    return out, notes


def _load_edges(cat: "Catalog", pool: Pool) -> None:
    uniq = stored_scores(cat, pool, "scores.uniqueness")
    if uniq is not None:
        pool.signals["uniqueness"] = uniq
    flags = ids_with_issue(cat, pool, ("edge_case", "outlier"))
    if pool.cluster_source == "k-means":
        flags = flags | edge_flags(pool)
    pool.signals["edge_flags"] = flags


def _load_examples(cat: "Catalog", pool: Pool, examples: Any, negatives: Any) -> dict[str, Any]:
    pos = resolve_ids(cat, examples, "examples")
    if not pos:
        raise ViscurateError("similarity needs examples: ids (a list, or comma-separated) or a query "
                             "(examples=..., --examples)")
    neg = resolve_ids(cat, negatives, "negatives")
    both = set(pos) & set(neg)
    if both:
        raise ViscurateError(f"{len(both)} sample(s) are both examples and negatives (e.g. {sorted(both)[0]!r}): "
                             "name each sample on one side only")
    pool.signals.update(positive=example_vectors(cat, pool, pos, "examples"),
                        negative=example_vectors(cat, pool, neg, "negatives"),
                        example_rows=pool.rows_of(pos + neg))
    return {"examples": examples, "negatives": negatives}


# ---- storing -------------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def store_selection(cat: "Catalog", sel: Selection, *, by: str | None = None) -> None:
    """Write the slice, each pick's ``selections`` entry and the recipe; an earlier selection of the same
    slice is replaced (its samples that are not picked now leave the slice and lose their entry)."""
    at = _now()
    entries = {p["_id"]: {"slice": sel.slice, "strategy": sel.strategy, "rank": p["rank"], "score": p["score"],
                          "cluster": p["cluster"], "reason": p["reason"], "at": at} for p in sel.picks}
    earlier = cat.ids({"$or": [{SLICES_FIELD: sel.slice}, {f"{SELECTIONS_FIELD}.slice": sel.slice}]})

    def rewrite(doc: dict) -> dict:
        kept = [e for e in doc.get(SELECTIONS_FIELD) or [] if not (isinstance(e, dict) and e.get("slice") == sel.slice)]
        slices = [s for s in doc.get(SLICES_FIELD) or [] if s != sel.slice]
        entry = entries.get(doc["_id"])
        if entry is not None:
            kept.append(entry)
            slices.append(sel.slice)
        new: dict[str, Any] = {"_id": doc["_id"]}
        if kept:
            new[SELECTIONS_FIELD] = kept
        if slices or SLICES_FIELD in doc:
            new[SLICES_FIELD] = slices
        return new

    rewrite_samples(cat, list(dict.fromkeys(sel.ids + earlier)), rewrite, (SELECTIONS_FIELD, SLICES_FIELD))
    raw = cat.meta_get(SELECTIONS_KEY)
    recipes = json.loads(raw) if raw else {}
    recipes[sel.slice] = {"strategy": sel.strategy, "n": sel.n, "seed": sel.seed, "query": sel.query,
                          "options": sel.options, "model": sel.model, "pool": sel.pool, "dropped": sel.dropped,
                          "ids": sel.ids, "created_at": at, "by": by}
    cat.meta_set(SELECTIONS_KEY, json.dumps(recipes, sort_keys=True, default=str))
