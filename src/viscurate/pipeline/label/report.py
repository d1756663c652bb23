"""What a label or embed run did: counts, timings, the models used.

>>> r = LabelReport(processed=4, seconds=3.0, refine_seconds=1.0)
>>> r.images_per_s, r.as_dict()["images_per_s"]
(2.0, 2.0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageReport:
    """What every run of the model stages (label, embed) reports.

    - ``processed``: samples that went through the models this run (``failed`` included);
    - ``failed``: samples written with a ``label_error`` (unreadable file, a model raised, a crash);
    - ``up_to_date``: samples skipped because the current models had done them already;
    - ``corrupt``: samples skipped because ingest flagged them ``corrupt``;
    - ``missing``: samples skipped because their file is gone: flagged ``missing`` by ingest, or found
      gone by this run (which flags them ``missing``); never counted as ``failed``;
    - ``image_vectors`` / ``box_vectors``: vectors stored;
    - ``model_seconds``: seconds spent in each model (summed over workers), plus ``decode``;
    - ``seconds``: wall time of the whole call; ``models``: role -> ``name@version``.
    """

    processed: int = 0
    failed: int = 0
    up_to_date: int = 0
    corrupt: int = 0
    missing: int = 0
    image_vectors: int = 0
    box_vectors: int = 0
    seconds: float = 0.0
    model_seconds: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    workers: int = 0
    threads: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def model_pass_seconds(self) -> float:
        """Seconds of the pass through the models."""
        return self.seconds

    @property
    def images_per_s(self) -> float:
        """Samples processed per second of the model pass."""
        t = self.model_pass_seconds
        return self.processed / t if t > 0 else 0.0

    def count_found(self, fields: dict[str, Any]) -> None:
        """Count what a sample's new label ``fields`` hold (a stage that finds nothing counts nothing)."""

    def as_dict(self) -> dict[str, Any]:
        # one JSON shape for every stage (the label report's): `viscurate embed --json`, the CLI's table and
        # the server's job results read the same keys, a stage that finds no objects has 0 of them
        return {"processed": self.processed, "failed": self.failed, "up_to_date": self.up_to_date,
                "corrupt": self.corrupt, "missing": self.missing, "objects": 0, "faces": 0, "poses": 0,
                "image_vectors": self.image_vectors, "box_vectors": self.box_vectors, "refined": 0,
                "seconds": round(self.seconds, 3), "refine_seconds": 0.0,
                "images_per_s": round(self.images_per_s, 2),
                "model_seconds": {k: round(v, 3) for k, v in self.model_seconds.items()},
                "models": dict(self.models), "workers": self.workers, "threads": self.threads,
                "errors": list(self.errors)}


@dataclass
class LabelReport(StageReport):
    """What one label run did: a :class:`StageReport`, plus

    - ``objects`` / ``faces`` / ``poses``: what was found;
    - ``refined``: boxes whose LQE the neighbour pass changed, in ``refine_seconds``.
    """

    objects: int = 0
    faces: int = 0
    poses: int = 0
    refined: int = 0
    refine_seconds: float = 0.0

    def count_found(self, fields: dict[str, Any]) -> None:
        self.objects += len(fields.get("object_analysis") or ())
        self.faces += len(fields.get("face_analysis") or ())
        self.poses += len(fields.get("pose_estimation") or ())

    @property
    def model_pass_seconds(self) -> float:
        """Seconds of the pass through the models (the neighbour pass excluded)."""
        return self.seconds - self.refine_seconds

    def as_dict(self) -> dict[str, Any]:
        return dict(super().as_dict(), objects=self.objects, faces=self.faces, poses=self.poses,
                    refined=self.refined, refine_seconds=round(self.refine_seconds, 3))
