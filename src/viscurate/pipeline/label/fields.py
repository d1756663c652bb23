"""What the label stage writes, and where: its roles, the sample keys a batch replaces, the box lists whose
crops get vectors, and the ``models.<field>`` entry that records which model made what.

>>> MODEL_FIELD["detector"], "object_analysis" in LABEL_KEYS
('object_analysis', True)
"""
from __future__ import annotations

#: Roles the label stage runs, in the order they run on an image.
ROLES: tuple[str, ...] = ("detector", "classifier", "embedder", "face", "pose")
#: Top-level sample keys the label stage writes (a batch replaces exactly these).
LABEL_KEYS: tuple[str, ...] = (
    "object_analysis_processed", "object_analysis", "face_analysis_processed", "face_analysis",
    "pose_estimation_processed", "pose_estimation", "label_quality_estimation", "classifications", "models",
    "embeddings", "label_error",
)
#: Box lists whose crops are embedded (box-level vectors, ``field`` = the list's path).
BOX_FIELDS: tuple[str, ...] = ("object_analysis", "ground_truth.detections")
#: The ``models.<field>`` entry of each role.
MODEL_FIELD = {"detector": "object_analysis", "classifier": "classifications", "face": "face_analysis",
               "pose": "pose_estimation"}


def lqe_version() -> str:
    """``lqe@<version>`` of the label quality estimation (``models.label_quality_estimation``)."""
    from ...models import quality
    return f"lqe@{getattr(quality, 'VERSION', '1')}"
