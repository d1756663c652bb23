"""Detection label errors: boxes whose nearest boxes (by crop embedding, in *other* images) carry another
class. A box labeled ``dog`` whose ten most similar boxes elsewhere are all ``cat`` is probably a cat.

Each box gets ``mislabel_score`` (the similarity-weighted share of its neighbours with another class, 0
to 1) and, where one other class holds most of them, ``mislabel_suggested``; a box at or above
``min_score`` with a suggestion is flagged, its sample gets ``box_mislabel.count`` /
``box_mislabel.worst`` and the issue ``mislabeled_box``. A later run replaces what an earlier one wrote.

>>> report = find_box_label_errors(cat, field="ground_truth.detections")              # doctest: +SKIP
>>> cat.find({"ground_truth.detections": {"$elemMatch": {"mislabel_score": {"$gte": 0.9}}}})  # doctest: +SKIP

The neighbourhood needs company: with fewer than ``MIN_EMBEDDED_BOXES_PER_K`` embedded boxes per neighbour
asked for, the "nearest" boxes are most of the dataset and a rare class would look wrong everywhere, so the
analysis refuses (the label stage's neighbour pass has a guard of the same kind, with its own count).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ViscurateError
from ..store.documents import get_path
from .findings import box_vectors, store_box_findings
from .neighbours import other_group

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["find_box_label_errors", "BoxLabelErrorsReport", "neighbour_votes", "MIN_SCORE",
           "MIN_EMBEDDED_BOXES_PER_K", "ISSUE"]

#: Flag a box when at least this share of its neighbours (weighted by similarity) carry another class.
MIN_SCORE = 0.7
#: ...and one other class holds at least this share (a suggestion, not just "something else").
MIN_SUGGESTION_SHARE = 0.5
#: The analysis refuses with fewer than this many labeled boxes with an embedding per neighbour asked for
#: (``k``): 30 boxes for the default ``k=10``.
MIN_EMBEDDED_BOXES_PER_K = 3
ISSUE = "mislabeled_box"


@dataclass
class BoxLabelErrorsReport:
    """Boxes scored and flagged; ``flagged``: (sample id, box index, class, suggested, score), worst first."""

    field: str
    model: str
    k: int
    boxes: int = 0
    classes: int = 0
    flagged: list[tuple[str, int, str, str, float]] = field(default_factory=list)
    min_score: float = MIN_SCORE
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "model": self.model, "k": self.k, "boxes": self.boxes, "classes": self.classes,
                "min_score": self.min_score, "flagged": self.flagged, "seconds": self.seconds}


def neighbour_votes(labels: np.ndarray, sims: np.ndarray, nbrs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the similarity-weighted share of its neighbours (``nbrs``, -1 = none) whose label differs
    from its own, the other label with the most weight (-1 if none), and that label's share.

    >>> labels = np.array([0, 0, 1, 0])
    >>> score, best, share = neighbour_votes(labels, np.ones((4, 2)), np.array([[1, 3], [0, 3], [0, 1], [0, 1]]))
    >>> score.tolist(), best.tolist(), share.tolist()
    ([0.0, 0.0, 1.0, 0.0], [-1, -1, 0, -1], [0.0, 0.0, 1.0, 0.0])
    """
    n = len(labels)
    valid = nbrs >= 0
    w = np.where(valid, np.clip(sims, 1e-6, None), 0.0)
    total = w.sum(axis=1)
    nl = np.where(valid, labels[np.clip(nbrs, 0, None)], -1)
    other = valid & (nl != labels[:, None])
    score = np.divide((w * other).sum(axis=1), total, out=np.zeros(n), where=total > 0)
    best = np.full(n, -1, np.int64)
    share = np.zeros(n)
    classes = int(labels.max()) + 1 if n else 0
    for c in range(classes):  # weight per other class, one vectorized pass per class
        wc = (w * (other & (nl == c))).sum(axis=1)
        frac = np.divide(wc, total, out=np.zeros(n), where=total > 0)
        better = frac > share
        best[better], share[better] = c, frac[better]
    return score, best, share


def find_box_label_errors(cat: "Catalog", *, field: str = "ground_truth.detections", model: str | None = None,
                          k: int = 10, min_score: float = MIN_SCORE, query: dict | None = None, write: bool = True,
                          threads: int | None = None) -> BoxLabelErrorsReport:
    """Score every box of ``field`` that has a crop embedding of ``model`` (default: the default embedder;
    ``viscurate embed --boxes`` or ``label`` stores them) by how its ``k`` nearest boxes in other images
    disagree with its class; see the module doc."""
    from .knn_graph import knn_graph

    t0 = time.monotonic()
    if not 0.0 < float(min_score) <= 1.0:
        raise ViscurateError(f"min_score must be in (0, 1], not {min_score}")
    model, scope, ids, idxs, matrix = box_vectors(cat, field, model, query, "box label errors")
    report = BoxLabelErrorsReport(field=field, model=model, k=int(k), min_score=float(min_score))
    names: dict[tuple[str, int], str] = {}
    wanted = set(ids)
    for doc in cat.iter_docs({"$and": [scope, {field: {"$exists": True}}]}) if wanted else ():
        if doc["_id"] not in wanted:
            continue
        for i, o in enumerate(get_path(doc, field) or []):
            if isinstance(o, dict) and o.get("name") is not None:
                names[(doc["_id"], i)] = str(o["name"])
    keep = [r for r, key in enumerate(zip(ids, idxs)) if key in names]
    ids = [ids[r] for r in keep]
    idxs = [idxs[r] for r in keep]
    matrix = matrix[keep] if keep else matrix[:0]
    report.boxes = len(ids)
    if report.boxes < MIN_EMBEDDED_BOXES_PER_K * k:
        raise ViscurateError(f"{report.boxes} boxes of {field} have {model} vectors; the neighbour vote needs "
                             f"at least {MIN_EMBEDDED_BOXES_PER_K * k} (lower -k or embed more boxes)")
    class_names, labels = np.unique(np.asarray([names[key] for key in zip(ids, idxs)], dtype=object).astype(str),
                                    return_inverse=True)
    report.classes = len(class_names)
    # ask for more than k, since neighbours in the box's own image are dropped (a herd of cows is not
    # evidence that each cow is a cow); keep the first k from other images
    sims, nbrs = knn_graph(matrix, min(report.boxes - 1, int(k) * 3), threads=threads)
    foreign = other_group(ids, nbrs)
    rank = np.cumsum(foreign, axis=1)
    chosen = foreign & (rank <= int(k))
    score, best, share = neighbour_votes(labels, sims, np.where(chosen, nbrs, -1))
    marks: dict[str, dict[int, dict[str, Any]]] = {}
    worst: dict[str, list[float]] = {}
    for r in range(report.boxes):
        suggested = str(class_names[best[r]]) if best[r] >= 0 and share[r] >= MIN_SUGGESTION_SHARE else None
        s = round(float(score[r]), 4)
        marks.setdefault(ids[r], {})[idxs[r]] = {"mislabel_score": s, "mislabel_suggested": suggested}
        if suggested is not None and score[r] >= min_score:
            report.flagged.append((ids[r], idxs[r], str(class_names[labels[r]]), suggested, s))
            worst.setdefault(ids[r], []).append(s)
    report.flagged.sort(key=lambda f: (-f[4], f[0], f[1]))
    if write:
        store_box_findings(cat, scope, field, "box_mislabel", ISSUE, ("mislabel_score", "mislabel_suggested"),
                           marks, {sid: {"count": len(v), "worst": max(v)} for sid, v in worst.items()})
    report.seconds = round(time.monotonic() - t0, 3)
    return report
