"""Object-level near duplicates: boxes whose crops embed almost the same as a box in *another* image (one
product photographed twice, a sign seen in many frames of a video, the same face pasted into two
scenes), found from the box embeddings the label stage stores for every box.

Each box with such a twin gets ``object_duplicate`` (``"<sample id>#<box index>"`` of its most similar
box elsewhere) and ``object_duplicate_similarity``; each sample with at least one gets
``object_duplicates.count`` / ``object_duplicates.best`` and the issue ``object_duplicate``. A later run
replaces what an earlier one wrote, and clears it where nothing is found any more.

>>> report = find_object_duplicates(cat)                                                # doctest: +SKIP
>>> cat.find({"object_analysis": {"$elemMatch": {"object_duplicate_similarity": {"$gte": 0.97}}}})  # doctest: +SKIP
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ViscurateError
from .findings import box_vectors, store_box_findings
from .neighbours import other_group

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["find_object_duplicates", "ObjectDuplicatesReport", "MIN_SIMILARITY", "ISSUE"]

#: Cosine similarity of two box embeddings from which they count as the same object. Measured on the test
#: photos: scikit-image's cat and the same cat mirrored, shrunk to 70%, re-compressed and pasted into
#: another scene score 0.95; boxes of different objects there at most 0.65. For comparison the image-level
#: duplicate rule starts at 0.90 *with* a perceptual-hash guard, which boxes do not have. A starting point,
#: not a law: print the pairs with ``--min-similarity 0.8 --json`` and choose on your data.
MIN_SIMILARITY = 0.92
ISSUE = "object_duplicate"


@dataclass
class ObjectDuplicatesReport:
    """What :func:`find_object_duplicates` found: boxes with a twin elsewhere, and the samples holding them."""

    field: str
    model: str
    boxes: int = 0  # boxes with a vector, searched
    duplicate_boxes: int = 0  # boxes with a twin in another sample
    samples: int = 0  # samples with at least one such box
    min_similarity: float = MIN_SIMILARITY
    examples: list[tuple[str, int, str, int, float]] = field(default_factory=list)  # (id, box, id, box, sim)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("field", "model", "boxes", "duplicate_boxes", "samples",
                                              "min_similarity", "examples", "seconds")}


def find_object_duplicates(cat: "Catalog", *, field: str = "object_analysis", model: str | None = None,
                           min_similarity: float = MIN_SIMILARITY, k: int = 10, query: dict | None = None,
                           write: bool = True, threads: int | None = None) -> ObjectDuplicatesReport:
    """Boxes of ``field`` (``object_analysis`` or ``ground_truth.detections``) of the samples matching
    ``query`` whose embedding (``model``; default: the default embedder) is at least ``min_similarity``
    similar to a box of another sample, among each box's ``k`` nearest boxes. Boxes of one image are never
    each other's duplicates (a crowd of similar people is not a duplication)."""
    from .knn_graph import knn_graph

    t0 = time.monotonic()
    if not 0.0 < float(min_similarity) <= 1.0:
        raise ViscurateError(f"min_similarity must be in (0, 1], not {min_similarity}")
    model, scope, ids, idxs, matrix = box_vectors(cat, field, model, query, "object duplicates")
    report = ObjectDuplicatesReport(field=field, model=model, boxes=len(ids), min_similarity=float(min_similarity))
    twins: dict[str, dict[int, tuple[str, int, float]]] = {}
    if len(ids) >= 2:
        sims, nbrs = knn_graph(matrix, min(int(k), len(ids) - 1), threads=threads)
        ok = other_group(ids, nbrs) & (sims >= float(min_similarity))
        for row in np.nonzero(ok.any(axis=1))[0].tolist():
            col = int(np.argmax(ok[row]))  # rows are best first: the first allowed one is the best
            j = int(nbrs[row, col])
            twins.setdefault(ids[row], {})[int(idxs[row])] = (ids[j], int(idxs[j]), round(float(sims[row, col]), 4))
    report.duplicate_boxes = sum(len(v) for v in twins.values())
    report.samples = len(twins)
    pairs = sorted({(a, i, b, j, s) if (a, i) < (b, j) else (b, j, a, i, s)
                    for a, boxes in twins.items() for i, (b, j, s) in boxes.items()}, key=lambda p: -p[4])
    report.examples = pairs[:20]
    if write:
        store_box_findings(
            cat, scope, field, "object_duplicates", ISSUE, ("object_duplicate", "object_duplicate_similarity"),
            {sid: {i: {"object_duplicate": f"{other}#{j}", "object_duplicate_similarity": sim}
                   for i, (other, j, sim) in boxes.items()} for sid, boxes in twins.items()},
            {sid: {"count": len(boxes), "best": max(sim for _, _, sim in boxes.values())}
             for sid, boxes in twins.items()})
    report.seconds = round(time.monotonic() - t0, 3)
    return report
