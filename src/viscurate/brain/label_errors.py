"""Label errors of a classification dataset: confident learning, written from the paper (Northcutt, Jiang
and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021), plus the
disagreement of each image's nearest neighbours with its label.

>>> import numpy as np
>>> labels = np.array([0, 0, 0, 1, 1, 1])
>>> probs = np.array([[.9, .1], [.8, .2], [.1, .9], [.2, .8], [.1, .9], [.15, .85]])
>>> confident_learning(labels, probs).issues.tolist()      # the third "0" looks like a 1
[False, False, True, False, False, False]

Confident learning needs, per image, *out-of-sample* predicted class probabilities (from a model that did
not train on that image): the user's own, or (by default, :func:`cross_validated_probabilities`) those of
a logistic regression on the image embeddings, cross-validated over 5 folds. Then:

1. **per-class thresholds**: ``t_j`` = the mean predicted probability of class ``j`` over the images
   labeled ``j`` (what the model says when it agrees);
2. **confident joint** ``C[i][j]``: the images labeled ``i`` whose probability of ``j`` reaches ``t_j``
   (when several classes do, the most probable one): they are confidently of class ``j``;
3. **calibration**: each row rescaled to the number of images labeled ``i``, the whole to ``n``, rounded
   keeping row totals; so ``C[i][j]`` (``i != j``) estimates how many images labeled ``i`` are really ``j``;
4. **prune by noise rate**: among the images labeled ``i``, the ``C[i][j]`` ones with the largest margin
   ``p_j - p_i`` are label errors (for every ``j != i``), keeping at least one image per class; an image
   whose most probable class *is* its label is never one.

Each image also gets a **mislabel score** ``1 - p(given label)`` (the paper's self-confidence, the order
to review errors in), the **suggested label** (the most probable class) and, from the embeddings, the
fraction of its ``k`` nearest neighbours that carry another label.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import ViscurateError
from ..usable import usable
from .findings import default_model, sample_values, store_findings

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["ConfidentLearning", "confident_learning", "cross_validated_probabilities", "LabelErrorsReport",
           "find_label_errors"]


@dataclass
class ConfidentLearning:
    """Outputs of :func:`confident_learning`: ``issues`` (bool per image), ``mislabel_score`` (1 - p(given)),
    ``suggested`` (argmax class index), ``confident_joint`` (calibrated, ``[given][true]``) and
    ``thresholds`` (per class)."""

    issues: np.ndarray
    mislabel_score: np.ndarray
    suggested: np.ndarray
    confident_joint: np.ndarray
    thresholds: np.ndarray


def _round_keeping_row_totals(m: np.ndarray) -> np.ndarray:
    """Round each row to integers whose total is the row's own (rounded) total: every entry to the nearest
    integer first, then the entries rounded furthest the wrong way move by one until the total is right.

    >>> _round_keeping_row_totals(np.array([[0.6, 0.6, 0.8]])).tolist()   # 2.0: one of the 0.6 goes down
    [[1, 0, 1]]
    """
    out = np.round(m)
    for r in range(len(m)):
        short = int(np.round(m[r].sum() - out[r].sum()))
        if short:
            residual = m[r] - out[r]  # > 0: rounded down; < 0: rounded up
            # the entries rounded furthest the wrong way first (numpy's default sort: among equal residuals
            # the order is its own, the one confident-learning implementations commonly share)
            order = np.argsort(residual if short > 0 else -residual)[::-1][:abs(short)]
            out[r, order] += 1 if short > 0 else -1
    return out.astype(np.int64)


def confident_learning(labels: np.ndarray, pred_probs: np.ndarray, *, min_per_class: int = 1) -> ConfidentLearning:
    """Confident learning on given ``labels`` (``n`` ints in ``[0, K)``) and out-of-sample ``pred_probs``
    (``n x K``, rows summing to 1). See the module doc for the steps."""
    labels = np.asarray(labels, np.int64)
    p = np.asarray(pred_probs, np.float64)
    n, k = p.shape
    if len(labels) != n or n == 0:
        raise ViscurateError("labels and pred_probs must describe the same, non-empty set of images")
    if labels.min() < 0 or labels.max() >= k:
        raise ViscurateError(f"labels must be class indexes between 0 and {k - 1}")
    counts = np.bincount(labels, minlength=k)

    # 1. per-class thresholds (a class nobody is labeled with can never be "confident")
    thresholds = np.array([p[labels == j, j].mean() if counts[j] else np.inf for j in range(k)])
    # 2. confident joint [given][true]
    above = p >= thresholds - 1e-6
    n_above = above.sum(axis=1)
    guess = np.where(n_above > 1, np.argmax(np.where(above, p, -np.inf), axis=1), np.argmax(above, axis=1))
    confident = n_above > 0
    joint = np.zeros((k, k), np.int64)
    np.add.at(joint, (labels[confident], guess[confident]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))  # every class keeps one correct example
    # 3. calibration: rows to the label counts, the whole to n
    cal = (joint.T / joint.sum(axis=1) * counts).T  # rows >= 1: the diagonal was clipped to 1
    cal = cal / cal.sum() * counts.sum()
    cal = _round_keeping_row_totals(cal)
    # 4. prune by noise rate, within each given class
    prune = cal.copy()
    np.fill_diagonal(prune, 0)
    for i in range(k):
        room = max(0, int(counts[i]) - min_per_class)  # keep at least min_per_class images of class i
        total = int(prune[i].sum())
        if total > room and total > 0:
            prune[i] = np.floor(prune[i] * room / total).astype(np.int64)
    issues = np.zeros(n, bool)
    for i in range(k):
        members = np.nonzero(labels == i)[0]
        for j in range(k):
            m = int(prune[i, j])
            if j == i or m <= 0:
                continue
            margin = p[members, j] - p[members, i]
            issues[members[np.argsort(-margin, kind="stable")[:m]]] = True
    suggested = np.argmax(p, axis=1)
    issues &= suggested != labels
    mislabel = 1.0 - p[np.arange(n), labels]
    return ConfidentLearning(issues, mislabel, suggested, cal, thresholds)


def cross_validated_probabilities(features: np.ndarray, labels: np.ndarray, *, folds: int = 5,
                                  seed: int = 0) -> np.ndarray:
    """Out-of-sample class probabilities: a logistic regression on standardized ``features``, each image
    predicted by the model of the fold that did not see it (stratified ``folds``-fold, seeded)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels, np.int64)
    k = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    out = np.zeros((len(labels), k))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
        model.fit(features[train], labels[train])
        out[np.ix_(test, model[-1].classes_)] = model.predict_proba(features[test])
    return out


@dataclass
class LabelErrorsReport:
    """``errors``: the flagged images, most doubtful first (``{"_id", "label", "suggested", "score",
    "neighbour_disagreement"}``); ``classes``: the label names, in index order; ``samples``: labeled images
    looked at; ``source``: where the probabilities came from."""

    samples: int = 0
    classes: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    label_field: str = "ground_truth.label"
    source: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "classes": self.classes, "label_field": self.label_field,
                "source": self.source, "errors": self.errors, "seconds": round(self.seconds, 3)}


def find_label_errors(cat: "Catalog", *, label_field: str = "ground_truth.label", model: str | None = None,
                      pred_probs: np.ndarray | None = None, classes: Sequence[str] | None = None,
                      neighbours: int = 10, query: dict | None = None, write: bool = True) -> LabelErrorsReport:
    """Label errors among the samples matching ``query`` that have a ``label_field`` value, stored as
    ``mislabel.*`` (``score``, ``suggested``, ``neighbour_disagreement``; on every labeled sample) and
    the issue ``mislabeled`` (the flagged ones).

    ``pred_probs``: your model's out-of-sample probabilities, one row per labeled sample in catalog order
    (``cat.ids``), columns in the order of ``classes`` (default: the sorted label values). Without them,
    the embeddings of ``model`` (default: the default embedder) feed a cross-validated logistic regression.
    """
    from .outliers import knn

    t0 = time.monotonic()
    scope = usable(query)
    values = sample_values(cat, label_field, {"$and": [scope, {label_field: {"$exists": True, "$ne": None}}]},
                           "label errors need one label per sample, such as 'ground_truth.label'")
    ids = [i for i, v in values.items() if v is not None and not isinstance(v, (dict, list))]
    names = [str(values[i]) for i in ids]
    classes = list(classes) if classes is not None else sorted(set(names))
    index = {c: n for n, c in enumerate(classes)}
    if len(ids) < 2 or len(set(names)) < 2:
        raise ViscurateError(f"label errors need labeled samples of at least 2 classes in {label_field!r}")
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ViscurateError(f"labels {unknown[:3]} are not in classes")
    labels = np.array([index[v] for v in names], np.int64)
    report = LabelErrorsReport(samples=len(ids), classes=classes, label_field=label_field)

    model = model or default_model(cat)
    vectors = None
    if model is not None:
        vid, _, matrix = cat.read_vectors(model, query={"_id": {"$in": ids}})
        pos = {s: n for n, s in enumerate(vid)}
        if all(i in pos for i in ids):
            vectors = matrix[[pos[i] for i in ids]]
    if pred_probs is not None:
        probs = np.asarray(pred_probs, np.float64)
        if probs.shape != (len(ids), len(classes)):
            raise ViscurateError(f"pred_probs must be {len(ids)} x {len(classes)} (labeled samples x classes), "
                                 f"got {probs.shape}")
        report.source = "given probabilities"
    elif vectors is not None:
        probs = cross_validated_probabilities(vectors, labels)
        report.source = f"5-fold logistic regression on {model} embeddings"
    else:
        raise ViscurateError("give pred_probs, or store embeddings of every labeled sample first (`viscurate embed`)")
    cl = confident_learning(labels, probs)
    disagreement = np.full(len(ids), np.nan)
    if vectors is not None and len(ids) > 1:
        _, idx = knn(vectors, min(neighbours, len(ids) - 1))
        valid = idx >= 0
        other = labels[np.where(valid, idx, 0)] != labels[:, None]
        disagreement = (other & valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    flagged = np.nonzero(cl.issues)[0]
    flagged = flagged[np.argsort(-cl.mislabel_score[flagged], kind="stable")]
    report.errors = [{"_id": ids[i], "label": names[i], "suggested": classes[int(cl.suggested[i])],
                      "score": round(float(cl.mislabel_score[i]), 4),
                      "neighbour_disagreement": None if np.isnan(disagreement[i]) else round(float(disagreement[i]), 3)}
                     for i in flagged]
    if write:
        findings = {ids[i]: ({"score": round(float(cl.mislabel_score[i]), 4),
                              "suggested": classes[int(cl.suggested[i])],
                              "neighbour_disagreement": None if np.isnan(disagreement[i])
                              else round(float(disagreement[i]), 3)},
                             "mislabeled" if cl.issues[i] else None) for i in range(len(ids))}
        store_findings(cat, scope, "mislabel", ("mislabeled",), findings)
    report.seconds = time.monotonic() - t0
    return report
