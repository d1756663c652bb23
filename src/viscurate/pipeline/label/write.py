"""The parent side of the label stage: worker results into the catalog, a batch at a time.

Each batch is one ``catalog.write(mode="merge")`` transaction that replaces exactly the label fields
(:data:`~viscurate.pipeline.label.fields.LABEL_KEYS`), then its vectors; the merge keeps every vector
whose boxes it leaves where they were, so a batch only adds the vectors it made.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...usable import MISSING
from .choose import Selection
from .fields import LABEL_KEYS, MODEL_FIELD, lqe_version
from .report import StageReport

if TYPE_CHECKING:
    from ...store.catalog import Catalog

#: Error messages a report keeps (the samples carry all of them, in ``label_error``).
MAX_ERRORS = 100


class BatchWriter:
    """Buffers worker results; every ``batch_size`` of them: one document transaction, then the vectors.

    ``pending``: results not written yet; ``vanished``: samples whose file was gone when a worker looked;
    ``detector_ran``: whether any sample got new boxes (the neighbour pass then has work)."""

    def __init__(self, cat: "Catalog", sel: Selection, report: StageReport, batch_size: int):
        self.cat = cat
        self.sel = sel
        self.report = report
        self.batch_size = max(1, int(batch_size))
        self.pending: list[dict] = []
        self.vanished = 0
        self.detector_ran = False
        self.lqe_version = lqe_version() if "detector" in sel.roles else None

    def add(self, result: dict) -> None:
        self.pending.append(result)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        results, self.pending = self.pending, []
        if not results:
            return
        with self.cat.hold():  # readers waiting get in after the batch's documents and its vectors, not between
            self._write(results)

    def _write(self, results: list[dict]) -> None:
        cat, sel, r = self.cat, self.sel, self.report
        ids = [res["id"] for res in results]
        current = {d["_id"]: d for d in cat.find({"_id": {"$in": ids}}, page_size=len(ids))["results"]}
        docs = []
        vectors: dict[tuple[str, str | None], list[tuple[str, int | None, np.ndarray]]] = {}
        gone: list[str] = []
        for res in results:
            old = current.get(res["id"])
            if old is None:
                continue
            if res.get("missing"):
                gone.append(res["id"])
                continue
            doc = {"_id": res["id"]}
            doc.update({k: old[k] for k in LABEL_KEYS if k in old})
            r.processed += 1
            for k, v in res.get("times", {}).items():
                r.model_seconds[k] = r.model_seconds.get(k, 0.0) + v
            if res.get("error"):
                r.failed += 1
                doc["label_error"] = res["error"]
                if len(r.errors) < MAX_ERRORS:
                    r.errors.append(f"{old.get('filepath') or res['id']}: {res['error']}")
                docs.append(doc)
                continue
            doc.pop("label_error", None)
            tasks = res["tasks"]
            models = dict(doc.get("models") or {})
            if "detector" in tasks:
                doc.pop("label_quality_estimation", None)  # the new boxes' estimate, or none
            doc.update(res["fields"])
            for role, fld in MODEL_FIELD.items():
                if role in tasks:
                    models[fld] = sel.key(role)
            if "detector" in tasks:
                models["label_quality_estimation"] = self.lqe_version
                self.detector_ran = True
            r.count_found(res["fields"])
            doc["models"] = models
            if res.get("image_vec") is not None:
                ekey = sel.key("embedder")
                emb = list(doc.get("embeddings") or [])
                if ekey not in emb:
                    emb.append(ekey)
                doc["embeddings"] = emb
                vectors.setdefault((ekey, None), []).append((res["id"], None, res["image_vec"]))
                r.image_vectors += 1
            for fld, vecs in (res.get("box_vecs") or {}).items():
                if vecs is not None:
                    ekey = sel.key("embedder")
                    for idx, v in enumerate(vecs):
                        vectors.setdefault((ekey, fld), []).append((res["id"], idx, v))
                    r.box_vectors += len(vecs)
            docs.append(doc)
        if gone:  # the file vanished since ingest: say so on the sample, as ingest would
            r.missing += len(gone)
            self.vanished += len(gone)
            cat.update(None, {"$addToSet": {"issues": MISSING}}, ids=gone)
        if not docs:
            return
        # the merge keeps every vector whose boxes it leaves where they were (and the image vectors); the
        # box lists the detector replaced lose theirs, and this batch's new vectors go in after
        cat.write(docs, mode="merge", merge_keys=LABEL_KEYS)
        _write_vectors(cat, vectors)


def _write_vectors(cat: "Catalog", vectors: dict[tuple[str, str | None], list[tuple]]) -> None:
    for (model, fld), rows in vectors.items():
        if not rows:
            continue
        ids = [s for s, _, _ in rows]
        matrix = np.stack([np.asarray(v, np.float32) for _, _, v in rows])
        idxs = [x for _, x, _ in rows] if fld is not None else None
        cat.write_vectors(model, ids, matrix, field=fld, idxs=idxs)
