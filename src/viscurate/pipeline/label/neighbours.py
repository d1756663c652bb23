"""The dataset-wide neighbour pass: each predicted box's LQE refined by how its nearest neighbours agree.

Every box starts from its own (unrefined) estimate, kept in ``signals.lqe_own``, so the pass gives the same
answer however often it runs. It only runs once the dataset has enough boxes for neighbours to mean
something (see :data:`MIN_PREDICTED_BOXES_PER_NEIGHBOUR`).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...store.catalog import Catalog

#: k, the neighbours each box is compared with, by default.
NEIGHBOURS = 10
#: The pass needs at least this many predicted boxes (``object_analysis``) per neighbour asked for: with
#: fewer, the "nearest" boxes are most of the dataset, and a class seen once (a cat among three photos)
#: would look doubtful.
MIN_PREDICTED_BOXES_PER_NEIGHBOUR = 5


def refine(cat: "Catalog", embedder_key: str, *, k: int = NEIGHBOURS, batch_size: int = 256,
           min_boxes: int | None = None) -> int:
    """Dataset-wide: each predicted box's LQE refined by how its nearest neighbours (box embeddings of
    ``embedder_key``) agree with its class; image LQEs follow. Returns how many boxes changed.

    With fewer than ``min_boxes`` boxes (default ``MIN_PREDICTED_BOXES_PER_NEIGHBOUR * k``) no box is refined:
    every box gets its own estimate back."""
    from ...models import quality
    ids, idxs, matrix = cat.read_vectors(embedder_key, field="object_analysis")
    if not ids:
        return 0
    docs: dict[str, dict] = {}
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), 1000):
        part = wanted[start:start + 1000]
        for d in cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]:
            docs[d["_id"]] = d
    rows, names = [], []
    for n, (sid, idx) in enumerate(zip(ids, idxs)):
        objs = (docs.get(sid) or {}).get("object_analysis") or []
        if idx is not None and 0 <= idx < len(objs) and isinstance(objs[idx], dict):
            rows.append(n)
            names.append(str(objs[idx].get("name")))
    if not rows:
        return 0
    if len(rows) >= (MIN_PREDICTED_BOXES_PER_NEIGHBOUR * k if min_boxes is None else min_boxes):
        # neighbours from other images only: two boxes of one image share pixels, not evidence
        agreement = quality.neighbour_agreement(names, matrix[rows], k, groups=[ids[n] for n in rows])
    else:
        agreement = [None] * len(rows)
    changed_docs: dict[str, dict] = {}
    changed = 0
    for n, agree in zip(rows, agreement):
        sid, idx = ids[n], idxs[n]
        doc = changed_docs.get(sid) or docs[sid]
        obj = doc["object_analysis"][idx]
        signals = dict(obj.get("signals") or {})
        own = signals.get("lqe_own", obj.get("label_quality_estimation"))
        if own is None:
            continue
        agree = float(agree) if agree is not None and math.isfinite(float(agree)) else None
        signals["neighbour_agreement"] = None
        new = round(float(quality.refine_with_neighbours(own, signals, agree)), 4)  # records the agreement in signals
        signals["lqe_own"] = own
        if new == obj.get("label_quality_estimation") and signals == obj.get("signals"):
            continue
        if sid not in changed_docs:
            doc = changed_docs[sid] = {"_id": sid, "object_analysis": [dict(o) for o in doc["object_analysis"]]}
        doc["object_analysis"][idx] = dict(obj, label_quality_estimation=new, signals=signals)
        changed += 1
    out = []
    for sid, doc in changed_docs.items():
        lqe = quality.image_label_quality([o.get("label_quality_estimation") for o in doc["object_analysis"]])
        doc["label_quality_estimation"] = None if lqe is None else round(float(lqe), 4)
        out.append(doc)
    keys = ("object_analysis", "label_quality_estimation")
    for start in range(0, len(out), batch_size):
        cat.write(out[start:start + batch_size], mode="merge", merge_keys=keys)  # same boxes: vectors stay
    return changed
