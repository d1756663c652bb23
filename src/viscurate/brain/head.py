"""A light classification head on the image embeddings: a logistic regression fitted on the samples that
carry a label, predicting every sample in scope. Its probabilities are what active learning needs: the
``uncertainty`` selection strategy reads the stored ``head`` field to pick the samples the head is least
sure about, and an export sends ``head.label`` (with ``head.confidence``) to a labeling tool as a
pre-annotation.

>>> report = fit_head(cat, "ground_truth.label")                                   # doctest: +SKIP
>>> report.labeled, report.classes[:2], round(report.train_accuracy, 2)            # doctest: +SKIP
(40, ['ankle_boot', 'bag'], 1.0)

What it stores, on every sample in scope that has an embedding (``field``, default ``head``)::

    {"label": "coat", "confidence": 0.62, "margin": 0.2, "entropy": 0.9,
     "probs": {"coat": 0.62, "pullover": 0.42, ...}, "model": "efficientnet_lite3@...", "labels": 40}

``confidence`` is the top probability, ``margin`` the top minus the runner-up, ``entropy`` the Shannon
entropy of ``probs`` in nats (0 when sure, ``ln(classes)`` when it cannot tell), ``model`` the embedding
model the head reads, ``labels`` how many labeled samples it was fitted on. A sample in scope without an
embedding loses a ``head`` an earlier fit left on it, so ``head`` always describes the latest head.

Why a logistic regression on L2-normalized embeddings, ``C = 10``: it fits 1,000 labels of 1280-d vectors in
about a second on 2 cores, is deterministic, and gives calibrated-enough probabilities for ranking. On
Fashion-MNIST (efficientnet embeddings, 2,000 held out) C = 1 under-fits the unit vectors (59% with 80
labels) where C = 10 reaches 72% and C = 100 adds nothing (73%).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field as _field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..common.vectors import l2_normalize
from ..errors import ViscurateError
from ..usable import usable
from .findings import WRITE_BATCH, default_model, sample_values

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

    from ..store.catalog import Catalog

__all__ = ["HeadReport", "fit_head", "head_entries", "HEAD_C", "PREDICT_BLOCK"]

#: Inverse regularization of the head (fixed; see the module doc for why 10).
HEAD_C = 10.0
#: Samples whose vectors are read and predicted at a time: memory stays bounded on a big pool.
PREDICT_BLOCK = 20_000
#: Cross-validation runs when the labels allow 3 folds of every class and are at least this many.
CV_MIN_LABELS = 30
#: ... and at most this many: beyond, three more fits cost more than the number tells (it is then ``None``).
CV_MAX_LABELS = 5_000
CV_FOLDS = 3
#: Fields that hold what users and other stages own: a head never overwrites them.
_NOT_A_HEAD = frozenset({"ground_truth", "slices", "tags", "issues", "selections", "split", "filepath", "metadata",
                         "object_analysis", "classifications", "models"})


@dataclass
class HeadReport:
    """What :func:`fit_head` did: ``labeled`` samples it was fitted on, their ``classes`` (sorted),
    ``train_accuracy`` on them, ``cv_accuracy`` (3-fold, stratified; ``None`` with fewer than 30 labels,
    more than 5,000, or a class with fewer than 3), ``predicted`` samples written, the embedding ``model``, the ``field``
    written and the ``seconds`` it took."""

    field: str = "head"
    label_field: str = "ground_truth.label"
    model: str = ""
    labeled: int = 0
    classes: list[str] = _field(default_factory=list)
    train_accuracy: float = 0.0
    cv_accuracy: float | None = None
    predicted: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "label_field": self.label_field, "model": self.model,
                "labeled": self.labeled, "classes": self.classes, "train_accuracy": round(self.train_accuracy, 4),
                "cv_accuracy": None if self.cv_accuracy is None else round(self.cv_accuracy, 4),
                "predicted": self.predicted, "seconds": round(self.seconds, 3)}


def _new_classifier(seed: int = 0) -> "LogisticRegression":
    from sklearn.linear_model import LogisticRegression
    # lbfgs on several classes is the multinomial (softmax) model
    return LogisticRegression(C=HEAD_C, max_iter=1000, random_state=seed)


def _training_set(cat: "Catalog", label_field: str, scope: dict, model: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The normalized vectors of the labeled samples in scope, their class indexes and the sorted classes."""
    labeled = {"$and": [scope, {label_field: {"$exists": True, "$ne": None}}]}
    values = sample_values(cat, label_field, labeled, "a head needs one class per sample, such as 'ground_truth.label'")
    values = {i: str(v) for i, v in values.items() if v is not None and not isinstance(v, (dict, list))}
    classes = sorted(set(values.values()))
    if len(classes) < 2:
        found = f"found {len(values)} labeled sample(s)" + (f" of one class ({classes[0]!r})" if classes else "")
        raise ViscurateError(f"a head needs labeled samples of at least 2 classes in {label_field!r}; {found}: "
                             "label more (`viscurate import-labels NAME FILE`, or `ds.set_field`) first")
    ids, _, matrix = cat.read_vectors(model, query={"_id": {"$in": list(values)}}) if values else ([], None, None)
    # a class whose labeled samples all lack a vector cannot be learned: it is left out, not a column of zeros
    classes = sorted({values[i] for i in ids})
    if len(classes) < 2:
        raise ViscurateError(f"the labeled samples of fewer than 2 classes have {model} embeddings: run "
                             "`viscurate embed NAME` first")
    index = {c: n for n, c in enumerate(classes)}
    return l2_normalize(matrix), np.array([index[values[i]] for i in ids], np.int64), classes


def _cv_accuracy(x: np.ndarray, y: np.ndarray) -> float | None:
    """3-fold stratified accuracy, when every class has 3 labels and there are 30 to 5,000 (else ``None``:
    too few to say anything the training accuracy does not, or too many to be cheap)."""
    counts = np.bincount(y)
    if not CV_MIN_LABELS <= len(y) <= CV_MAX_LABELS or counts[counts > 0].min() < CV_FOLDS:
        return None
    from sklearn.model_selection import StratifiedKFold
    right = 0
    for train, test in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0).split(x, y):
        clf = _new_classifier().fit(x[train], y[train])
        right += int((clf.classes_[clf.predict_proba(x[test]).argmax(axis=1)] == y[test]).sum())
    return right / len(y)


def head_entries(probs: np.ndarray, classes: Sequence[str], *, model: str, labels: int,
                 digits: int = 4) -> list[dict[str, Any]]:
    """The ``head`` sub-document of each row of ``probs`` (``n x len(classes)``, rows summing to 1).

    >>> e = head_entries(np.array([[0.7, 0.2, 0.1]]), ["a", "b", "c"], model="m", labels=3)[0]
    >>> e["label"], e["confidence"], e["margin"], e["entropy"], e["probs"]["b"]
    ('a', 0.7, 0.5, 0.8018, 0.2)
    """
    p = np.asarray(probs, np.float64)
    top2 = np.sort(p, axis=1)[:, ::-1][:, :2]
    best = p.argmax(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    margin = top2[:, 0] - (top2[:, 1] if p.shape[1] > 1 else 0.0)
    rounded = np.round(p, digits).tolist()
    names = list(classes)
    return [{"label": names[int(b)], "confidence": round(float(c), digits), "margin": round(float(m), digits),
             "entropy": round(float(e), digits), "probs": dict(zip(names, row)), "model": model, "labels": labels}
            for b, c, m, e, row in zip(best, top2[:, 0], margin, entropy, rounded)]


def _blocks(cat: "Catalog", model: str, scope: dict) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(ids, normalized vectors)`` of the samples in scope with a ``model`` vector, ``PREDICT_BLOCK`` at a time."""
    ids = cat.ids(scope)
    for start in range(0, len(ids), PREDICT_BLOCK):
        got, _, matrix = cat.read_vectors(model, query={"_id": {"$in": ids[start:start + PREDICT_BLOCK]}})
        if got:
            yield got, l2_normalize(matrix)


def _one_blas_thread() -> Any:
    """A context in which BLAS uses one thread. The head's matrices are small (labels x 1280 x classes):
    threads only wait on each other, and on a busy 2-core machine (load 12) a fit of 640 labels took
    25 s with OpenBLAS's threads against 0.55 s with one."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1, user_api="blas")


def fit_head(cat: "Catalog", label_field: str = "ground_truth.label", *, field: str = "head",
             model: str | None = None, query: dict | None = None, seed: int = 0) -> HeadReport:
    """Fit a logistic regression on the ``model`` embeddings (default: the default embedder) of the samples
    in ``query`` that have ``label_field``, and store its prediction as ``field`` on every sample in
    ``query`` with an embedding (see the module doc for the fields). Errors say what to do when there
    are no embeddings or fewer than 2 labeled classes. Returns a :class:`HeadReport`.

    >>> fit_head(cat, "ground_truth.label", query={"split": {"$ne": "test"}}).cv_accuracy   # doctest: +SKIP
    0.81
    """
    t0 = time.monotonic()
    if not field.isidentifier() or field.startswith("_") or field in _NOT_A_HEAD:
        raise ViscurateError(f"cannot write the head into {field!r}: name a top-level field of its own, such as 'head'")
    model = model or default_model(cat)
    if model is None or model not in cat.vector_models(field=None):
        raise ViscurateError(f"a head needs image embeddings{f' of {model}' if model else ''}: "
                             "run `viscurate embed NAME` first")
    scope = usable(query)
    x, y, classes = _training_set(cat, label_field, scope, model)
    with _one_blas_thread():
        clf = _new_classifier(seed).fit(x, y)
        report = HeadReport(field=field, label_field=label_field, model=model, labeled=len(y), classes=classes,
                            train_accuracy=float((clf.predict(x) == y).mean()), cv_accuracy=_cv_accuracy(x, y))
    had = cat.ids({"$and": [scope, {field: {"$exists": True}}]})
    written: set[str] = set()
    for ids, vectors in _blocks(cat, model, scope):
        with _one_blas_thread():
            probs = clf.predict_proba(vectors)
        entries = head_entries(probs, classes, model=model, labels=len(y))
        for start in range(0, len(ids), WRITE_BATCH):
            part = zip(ids[start:start + WRITE_BATCH], entries[start:start + WRITE_BATCH])
            cat.write([{"_id": i, field: e} for i, e in part], mode="merge", merge_keys=(field,))
        report.predicted += len(ids)
        written.update(ids)
    stale = [i for i in had if i not in written]  # in scope, no embedding now: an old head would mislead
    if stale:
        cat.update(None, {"$unset": {field: ""}}, ids=stale)
    report.seconds = time.monotonic() - t0
    return report

