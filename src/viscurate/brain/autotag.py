"""Autotag: teach a concept from a few examples, then score every sample into ``autotag.<name>`` in [0, 1].

>>> result = autotag(cat, "sneaker", positive=["a1", "b2", "c3"], negative=["d4"])  # doctest: +SKIP
>>> result.top[:2], result.above                                                    # doctest: +SKIP
([{'_id': 'e5...', 'score': 0.99}, {'_id': 'f6...', 'score': 0.98}], 1204)

A logistic regression (scikit-learn, L2-regularized, ``C=1``) fits the positives against the negatives on
L2-normalized image embeddings of one model (default: the default embedder). Few users have negatives at
the start, so the rest of the data stands in for them (positive-unlabeled learning): a seeded random sample
of ``UNLABELED_PER_POSITIVE`` unlabeled samples per positive. Some of those are secretly positives; that is
tolerable while the concept is a small share of the data, and explicit negatives, which are sure, weigh
``NEGATIVE_WEIGHT`` times an unlabeled one. The positives weigh as much, in all, as the negatives, so a
score of 0.5 means "as likely in as out". Then each score is averaged with those of the sample's 10 nearest
neighbours (twice; pools up to ``SMOOTH_BELOW`` samples): a concept covers regions of the embedding space,
and this lifted precision@500 on every Fashion-MNIST class (mean 0.825 -> 0.846 on the same draws; ankle
boot 0.92 -> 0.97, dress 0.75 -> 0.81); ``neighbours=0`` turns it off.

Refining is calling again with more examples (typically the ``borderline`` samples, labeled): the scores of
the concept are replaced everywhere, and the recipe is kept in the catalog meta key ``autotags`` so that a
face can show or extend it later.

Measured on Fashion-MNIST test (10 random members of a class as the only positives, 5 seeds): see
docs/curation.md. Ranking by similarity to the positives' centroid, the obvious simpler model, was worse on
every class but one (mean precision@500 0.75 against 0.83 before smoothing), so it is not offered.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..common.vectors import l2_normalize
from ..errors import ViscurateError
from ..usable import usable
from .findings import default_model, rewrite_samples

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["AutotagResult", "autotag", "save_recipe", "recipes", "resolve_examples", "AUTOTAGS_KEY", "FIELD",
           "UNLABELED_PER_POSITIVE", "NEGATIVE_WEIGHT"]

#: The catalog meta key holding each concept's recipe: ``{name: {"positive", "negative", "threshold", ...}}``.
AUTOTAGS_KEY = "autotags"
#: The sub-document holding the scores: ``autotag.<name>``.
FIELD = "autotag"
#: Unlabeled samples drawn as stand-in negatives per positive (20 measured as good as 50 or 100, and faster).
UNLABELED_PER_POSITIVE = 20
#: How much an explicit negative weighs against an unlabeled one: chosen on Fashion-MNIST, where refining
#: with labeled borderline samples gained most at 10 (without smoothing: dress 0.76 -> 0.89 after two rounds
#: of 30 labels, against 0.85 at 1 or 3).
NEGATIVE_WEIGHT = 10.0
#: Samples whose vectors are read and scored at a time: memory stays bounded on big pools.
CHUNK = 16_384
#: Scores are smoothed over each sample's nearest neighbours up to this many samples (above, the vectors
#: would have to be held for the neighbour search: 100,000 x 1280 in float16 is 256 MB); and how often.
SMOOTH_BELOW = 100_000
SMOOTH_ROUNDS = 2
#: Result fields as long as the pool, left out of ``as_dict``.
_BULK = ("above_ids", "scored_ids", "scores")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass
class AutotagResult:
    """What :func:`autotag` did: ``top`` (the best-scored samples, examples left out, best first) and
    ``borderline`` (those nearest ``threshold``: the most useful to label next), each ``{"_id", "score"}``;
    ``above``: samples scoring at least ``threshold``; ``above_ids``: them, best first; ``scored_ids`` and
    ``scores``: every sample scored and its score, in catalog order (these three are left out of ``as_dict``)."""

    name: str
    field: str
    model: str
    positives: list[str]
    negatives: list[str]
    unlabeled_negatives: int
    threshold: float
    scored: int = 0
    smoothed: bool = False
    above: int = 0
    top: list[dict[str, Any]] = field(default_factory=list)
    borderline: list[dict[str, Any]] = field(default_factory=list)
    tag: str | None = None
    slice: str | None = None
    written: bool = False
    seconds: float = 0.0
    above_ids: list[str] = field(default_factory=list, repr=False)
    scored_ids: list[str] = field(default_factory=list, repr=False)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BULK}
        out["seconds"] = round(self.seconds, 3)
        return out


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ViscurateError(f"invalid autotag name {name!r}: use 1-64 letters, digits, '_' or '-', starting with "
                             "a letter or digit (it becomes the field autotag.<name>)")
    return name


def resolve_examples(cat: "Catalog", examples: str | Sequence[str] | dict | None, what: str) -> list[str]:
    """The ids of ``examples``: an id, a list of ids (every one must exist) or a query (its matches).

    >>> resolve_examples(cat, {"ground_truth.label": "bag"}, "positive")[:2]       # doctest: +SKIP
    ['a1...', 'b2...']
    """
    if examples is None:
        return []
    if isinstance(examples, dict):
        return cat.ids(usable(examples))
    ids = [examples] if isinstance(examples, str) else list(dict.fromkeys(examples))
    if not all(isinstance(i, str) and i for i in ids):
        raise ViscurateError(f"{what} examples must be sample ids (strings) or a query (a dict)")
    found = set(cat.ids({"_id": {"$in": ids}})) if ids else set()
    missing = [i for i in ids if i not in found]
    if missing:
        raise ViscurateError(f"{len(missing)} {what} example id(s) are not in the dataset (e.g. {missing[:3]}); "
                             "check the ids (`viscurate find NAME`) or pass a query instead")
    return ids


def _vectors_of(cat: "Catalog", model: str, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The unit image vectors of ``ids`` that have one (in catalog order), read ``CHUNK`` at a time."""
    got_ids: list[str] = []
    parts: list[np.ndarray] = []
    for start in range(0, len(ids), CHUNK):
        part, _, matrix = cat.read_vectors(model, query={"_id": {"$in": list(ids[start:start + CHUNK])}})
        got_ids += part
        parts.append(l2_normalize(matrix))
    dim = parts[0].shape[1] if parts and parts[0].ndim == 2 and parts[0].shape[0] else 0
    return got_ids, np.concatenate([p for p in parts if p.size] or [np.zeros((0, dim), np.float32)])


def _fit(pos: np.ndarray, neg: np.ndarray, explicit: int, seed: int):
    """A logistic regression of ``pos`` against ``neg`` (its first ``explicit`` rows are explicit
    negatives, weighing ``NEGATIVE_WEIGHT``); positives and negatives weigh the same in all."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([pos, neg])
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    w_neg = np.r_[np.full(explicit, NEGATIVE_WEIGHT), np.ones(len(neg) - explicit)]
    w = np.r_[np.full(len(pos), w_neg.sum() / len(pos)), w_neg]
    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x, y, sample_weight=w / w.mean())


def _pool(cat: "Catalog", model: str, scope: dict) -> list[str]:
    """The samples in ``scope`` that have a ``model`` image vector, in catalog order."""
    have = cat.ids_with_image_vector(model)
    return [i for i in cat.ids(scope) if i in have]


def _score(cat: "Catalog", model: str, pool: list[str], clf, neighbours: int) -> tuple[list[str], np.ndarray, bool]:
    """``(ids, scores, smoothed)``: the model's probability for every sample of ``pool``, read ``CHUNK`` at a
    time; then, for pools up to ``SMOOTH_BELOW``, each score averaged with its ``neighbours`` nearest
    samples' (twice, half and half), so that a concept's scores follow the shape of the data."""
    smooth = neighbours > 0 and 2 < len(pool) <= SMOOTH_BELOW
    ids: list[str] = []
    parts: list[np.ndarray] = []
    kept: list[np.ndarray] = []  # float16: half the memory, plenty for finding neighbours
    for start in range(0, len(pool), CHUNK):
        part_ids, vectors = _vectors_of(cat, model, pool[start:start + CHUNK])
        if not part_ids:
            continue
        ids += part_ids
        parts.append(clf.predict_proba(vectors)[:, 1].astype(np.float32))
        if smooth:
            kept.append(vectors.astype(np.float16))
    scores = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if smooth and len(ids) > 2:
        from .knn_graph import knn_graph

        matrix = np.concatenate(kept)
        del kept
        _, idx = knn_graph(matrix, min(neighbours, len(ids) - 1))
        del matrix
        for _ in range(SMOOTH_ROUNDS):
            around = np.where(idx >= 0, scores[np.clip(idx, 0, None)], scores[:, None]).mean(axis=1)
            scores = (0.5 * scores + 0.5 * around).astype(np.float32)
    return ids, scores, smooth


def _ranked(ids: list[str], scores: np.ndarray, order: np.ndarray, skip: set[str], k: int) -> list[dict]:
    out: list[dict[str, Any]] = []
    for j in order:
        if len(out) >= k:
            break
        if ids[j] not in skip:
            out.append({"_id": ids[j], "score": round(float(scores[j]), 4)})
    return out


def _write_scores(cat: "Catalog", name: str, ids: list[str], scores: np.ndarray) -> None:
    """``autotag.<name>`` = the score on the samples scored; removed from every other sample holding it."""
    by_id = dict(zip(ids, scores.tolist()))
    stale = [i for i in cat.ids({f"{FIELD}.{name}": {"$exists": True}}) if i not in by_id]

    def rewrite(doc: dict) -> dict:
        tags = dict(doc.get(FIELD) or {})
        if doc["_id"] in by_id:
            tags[name] = round(by_id[doc["_id"]], 6)
        else:
            tags.pop(name, None)
        return {"_id": doc["_id"], FIELD: tags} if tags else {"_id": doc["_id"]}

    rewrite_samples(cat, ids + stale, rewrite, (FIELD,))


def save_recipe(cat: "Catalog", result: AutotagResult, query: dict | None, seed: int = 0) -> None:
    """Keep ``result``'s recipe (examples, threshold, model, tag, slice) in the meta key ``autotags``, so that
    a face can show the concept or refine it later."""
    recipes = json.loads(cat.meta_get(AUTOTAGS_KEY) or "{}")
    recipes[result.name] = {"positive": result.positives, "negative": result.negatives,
                            "threshold": result.threshold, "model": result.model, "query": query, "seed": seed,
                            "unlabeled_negatives": result.unlabeled_negatives, "tag": result.tag,
                            "slice": result.slice, "scored": result.scored, "above": result.above,
                            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    cat.meta_set(AUTOTAGS_KEY, json.dumps(recipes))


def autotag(cat: "Catalog", name: str, positive: str | Sequence[str] | dict,
            negative: str | Sequence[str] | dict | None = None, *, model: str | None = None,
            query: dict | None = None, threshold: float = 0.5, seed: int = 0, write: bool = True,
            top: int = 50, borderline: int = 20, neighbours: int = 10, dataset: str = "NAME") -> AutotagResult:
    """Fit the concept ``name`` on ``positive`` (ids or a query; at least 2 with an embedding) and optional
    ``negative`` examples, score every sample matching ``query`` that has an embedding, and (``write``)
    store the scores as ``autotag.<name>`` and the recipe in the meta key ``autotags``. ``dataset`` only
    names the dataset in error messages. Tagging or saving the result as a slice is the caller's
    (``Dataset.autotag``), from ``above_ids``."""
    t0 = time.monotonic()
    _check_name(name)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ViscurateError(f"threshold must be a score between 0 and 1, got {threshold!r}")
    model = model or default_model(cat)
    if model is None:
        raise ViscurateError(f"autotag needs embeddings: run `viscurate embed {dataset}` first")
    pos_ids = resolve_examples(cat, positive, "positive")
    neg_ids = resolve_examples(cat, negative, "negative")
    both = set(pos_ids) & set(neg_ids)
    if both:
        raise ViscurateError(f"{len(both)} sample(s) are both positive and negative examples "
                             f"(e.g. {sorted(both)[:3]}); give each example one side")
    pos_ids, pos = _vectors_of(cat, model, pos_ids)
    if len(pos_ids) < 2:
        raise ViscurateError(f"autotag needs at least 2 positive examples with a {model} embedding, got "
                             f"{len(pos_ids)}; add examples, or run `viscurate embed {dataset}` if they lack one")
    neg_ids, neg = _vectors_of(cat, model, neg_ids)
    scope = usable(query)
    pool = _pool(cat, model, scope)
    examples = set(pos_ids) | set(neg_ids)
    unlabeled = [i for i in pool if i not in examples]
    rng = np.random.default_rng(seed)
    drawn = sorted(rng.choice(len(unlabeled), size=min(len(unlabeled), UNLABELED_PER_POSITIVE * len(pos_ids)),
                              replace=False).tolist())
    _, unl = _vectors_of(cat, model, [unlabeled[j] for j in drawn])
    if len(neg_ids) + len(unl) == 0:
        raise ViscurateError("autotag needs negatives: give negative examples, or a scope with samples that are not "
                             "positive examples")
    clf = _fit(pos, np.vstack([neg, unl]) if len(neg) else unl, len(neg_ids), seed)

    ids, scores, smoothed = _score(cat, model, pool, clf, neighbours)
    best_first = np.argsort(-scores, kind="stable")
    result = AutotagResult(name=name, field=f"{FIELD}.{name}", model=model, positives=pos_ids, negatives=neg_ids,
                           unlabeled_negatives=len(unl), threshold=float(threshold), scored=len(ids),
                           above=int((scores >= threshold).sum()), smoothed=smoothed)
    result.top = _ranked(ids, scores, best_first, examples, top)
    result.borderline = _ranked(ids, scores, np.argsort(np.abs(scores - threshold), kind="stable"), examples,
                                borderline)
    result.above_ids = [ids[j] for j in best_first[:result.above]]
    result.scored_ids, result.scores = ids, scores
    if write:
        _write_scores(cat, name, ids, scores)
        result.written = True
    result.seconds = time.monotonic() - t0
    return result


def recipes(cat: "Catalog") -> dict[str, dict[str, Any]]:
    """Every concept's recipe, by name (the meta key ``autotags``)."""
    return json.loads(cat.meta_get(AUTOTAGS_KEY) or "{}")

