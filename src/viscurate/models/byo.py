"""Bring your own model: load a user's ONNX detector (YOLO or DETR layout), ONNX image embedder or local
CLIP directory, and register it so that the rest of viscurate can use it by name.

>>> from viscurate.models.byo import load_model
>>> det = load_model("yolov8n.onnx", kind="yolo", class_names=["person", "bicycle"])   # doctest: +SKIP
>>> det.spec.key                                                                        # doctest: +SKIP
'yolov8n@4f0c2a9e1b7d'
>>> det.detect([rgb_image], min_confidence=0.25)                                        # doctest: +SKIP

What ``path`` may be (see ``docs/byo-models.md``):

- an ``.onnx`` file. Settings come from the keyword arguments, then from a *description file* next to it
  (``<stem>.viscurate.json``, or ``viscurate.json`` in the same folder), then from what the file itself
  says (Ultralytics metadata: class names, input size, task; a Hugging Face ``config.json`` beside it:
  ``id2label``);
- a description file (``*.json``) whose ``"model"`` entry names the ``.onnx`` file (relative to the JSON);
- a directory: a CLIP model saved with ``save_pretrained`` (``config.json`` with ``model_type`` ``clip``),
  or a folder holding ``viscurate.json`` and/or ``model.onnx`` (a Hugging Face Optimum export).

A description file is plain JSON: ``kind``, ``model``, ``name``, ``version`` and any option of the loader,
e.g. ``{"kind": "yolo", "name": "parts-detector", "version": "2024-05", "class_names": ["bolt", "nut"],
"input_size": [640, 640]}``. Keyword arguments win over the file.

Nothing here downloads anything; a missing optional runtime (onnxruntime; torch and transformers for CLIP)
is a :class:`~viscurate.models.user_model.MissingDependency` error that says which extra to install.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable

from .base import Model
from .onnx_session import onnx_metadata, onnx_session
from .user_model import ModelLoadError, read_hf_config

__all__ = ["KINDS", "Factory", "load_model", "build_model", "describe", "read_description"]

#: The kinds :func:`load_model` knows, and the role each gives.
KINDS = {"yolo": "detector", "detr": "detector", "onnx-embedder": "embedder", "clip": "embedder"}

_DESCRIPTION_KEYS = {"kind", "model", "name", "version"}


# ---------------------------------------------------------------------------------------------------------
# description files and kind inference

def read_description(path: str | Path) -> dict[str, Any]:
    """The JSON object of a description file (an error that names the file if it is not one)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"cannot read the model description {p}: {e}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"the model description {p} must be a JSON object")
    return data


def _sidecar(model_file: Path) -> Path | None:
    for cand in (model_file.with_name(model_file.stem + ".viscurate.json"), model_file.with_name("viscurate.json")):
        if cand.is_file():
            return cand
    return None


def _resolve(path: Path) -> tuple[Path, dict[str, Any], Path | None]:
    """(the model file or CLIP directory, the description's settings, the description file)."""
    if not path.exists():
        raise ModelLoadError(f"no such model file or directory: {path}")
    if path.is_dir():
        desc_file = path / "viscurate.json"
        desc = read_description(desc_file) if desc_file.is_file() else {}
        if "model" in desc:
            return (path / desc["model"]).resolve(), desc, desc_file
        if desc.get("kind") == "clip" or _is_clip_dir(path):
            return path, desc, desc_file if desc else None
        onnx_files = sorted(path.glob("*.onnx"))
        if (path / "model.onnx").is_file():
            return path / "model.onnx", desc, desc_file if desc else None
        if len(onnx_files) == 1:
            return onnx_files[0], desc, desc_file if desc else None
        raise ModelLoadError(f"{path} is a directory without a CLIP config.json, a viscurate.json naming the "
                             f"model, a model.onnx or a single .onnx file; pass the model file itself")
    if path.suffix.lower() == ".json":
        desc = read_description(path)
        model = desc.get("model")
        if not model:
            guess = path.with_name(path.name.split(".")[0] + ".onnx")
            if not guess.is_file():
                raise ModelLoadError(f"the model description {path} has no \"model\" entry naming the model file")
            model = guess.name
        target = (path.parent / model).resolve()
        if not target.exists():
            raise ModelLoadError(f"the model named by {path} does not exist: {target}")
        return target, desc, path
    side = _sidecar(path)
    desc = read_description(side) if side else {}
    return path, desc, side


def _is_clip_dir(path: Path) -> bool:
    data = read_hf_config(path)
    return data is not None and str(data.get("model_type", "")).lower() == "clip"


def _infer_kind(target: Path) -> str:
    if target.is_dir():
        if _is_clip_dir(target):
            return "clip"
        raise ModelLoadError(f"cannot tell what kind of model {target} is; pass kind=...")
    if target.suffix.lower() != ".onnx":
        raise ModelLoadError(f"cannot tell what kind of model {target} is; pass kind= one of {sorted(KINDS)}")
    sess = onnx_session(target, 1)
    meta = onnx_metadata(sess)
    outputs = sess.get_outputs()
    names = {o.name for o in outputs}
    if "pred_boxes" in names and "logits" in names:
        return "detr"
    task = str(meta.get("task", "")).lower()
    if task == "detect":
        return "yolo"
    if "ultralytics" in str(meta.get("author", "")).lower():
        raise ModelLoadError(f"{target} is an Ultralytics {task or 'unknown-task'} model; viscurate reads "
                             f"Ultralytics detection models (task 'detect') only")
    if outputs and len(outputs[0].shape) in (2, 4):
        return "onnx-embedder"
    raise ModelLoadError(f"cannot tell what kind of model {target} is (outputs "
                         f"{[(o.name, o.shape) for o in outputs]}); pass kind= one of {sorted(KINDS)}")


def _loader(kind: str) -> Callable[..., Model]:
    if kind in ("yolo", "detr"):
        from .onnx_detector import OnnxDetector
        return functools.partial(OnnxDetector, layout=kind)
    if kind == "onnx-embedder":
        from .onnx_embedder import OnnxEmbedder
        return OnnxEmbedder
    if kind == "clip":
        from .clip import ClipModel
        return ClipModel
    raise ModelLoadError(f"unknown model kind {kind!r}; choose one of {sorted(KINDS)}")


def _allowed_options(kind: str) -> set[str]:
    fn = _loader(kind)
    target = fn.func if isinstance(fn, functools.partial) else fn
    params = inspect.signature(target).parameters
    skip = {"self", "path", "directory", "layout"}
    return {n for n, p in params.items() if n not in skip and p.kind is not inspect.Parameter.VAR_KEYWORD}


def describe(path: str | Path, kind: str | None = None, **options: Any) -> tuple[str, Path, dict[str, Any]]:
    """What :func:`load_model` would build: ``(kind, model file or directory, options)``, with the
    description file's settings merged under the keyword arguments. Loads nothing but the kind check."""
    target, desc, desc_file = _resolve(Path(path).expanduser())
    settings = {k: v for k, v in desc.items() if k not in ("kind", "model")}
    settings.update({k: v for k, v in options.items() if v is not None})
    kind = kind or desc.get("kind") or _infer_kind(target)
    kind = str(kind).lower()
    if kind not in KINDS:
        raise ModelLoadError(f"unknown model kind {kind!r}; choose one of {sorted(KINDS)}")
    allowed = _allowed_options(kind)
    unknown = sorted(set(settings) - allowed)
    if unknown:
        where = f" (from {desc_file})" if desc_file and set(unknown) & set(desc) else ""
        raise ModelLoadError(f"unknown option(s) {unknown} for a {kind!r} model{where}; "
                             f"known: {sorted(allowed)}")
    return kind, target, settings


def build_model(path: str | Path, kind: str | None = None, **options: Any) -> Model:
    """Load a user's model like :func:`load_model`, without registering it (what a worker process calls)."""
    kind, target, settings = describe(path, kind, **options)
    return _loader(kind)(target, **settings)


def load_model(path: str | Path, kind: str | None = None, *, register: bool = True, **options: Any) -> Model:
    """Load a user's model and register it under its name.

    ``kind`` is ``"yolo"`` or ``"detr"`` (:class:`~viscurate.models.onnx_detector.OnnxDetector`),
    ``"onnx-embedder"`` (:class:`~viscurate.models.onnx_embedder.OnnxEmbedder`) or ``"clip"``
    (:class:`~viscurate.models.clip.ClipModel`); left out, it comes from the description file or is
    recognised from the model (a CLIP directory, a DETR export's ``logits``/``pred_boxes`` outputs, Ultralytics
    metadata, a 2-D or 4-D first output for an embedder). ``options`` are the loader's keyword arguments
    (``name``, ``version``, ``class_names``, ``input_size``, ``threads``...).

    The model is registered (``viscurate.models.registry.register``) with a factory that loads it again from
    the same files and settings, so that worker processes can build their own copy.
    """
    kind, target, settings = describe(path, kind, **options)
    model = _loader(kind)(target, **settings)
    if register:
        from . import registry
        registry.register(model.spec, Factory(target, kind, settings, model))
    return model


class Factory:
    """What :func:`load_model` registers: builds the model again from the same files and settings, under the
    same name and version (no re-hashing), with the thread count the registry asks for. The instance that
    ``load_model`` returned is handed out first, while it is open and runs with that many threads, so a
    ``get_model`` right after ``load_model`` does not load the weights twice. Picklable (the instance stays
    behind), so a worker process can build its own copy."""

    def __init__(self, target: str | Path, kind: str, settings: dict[str, Any], loaded: Model | None = None):
        self.target = str(target)
        self.kind = kind
        self.settings = dict(settings)
        if loaded is not None:
            self.settings.update(name=loaded.spec.name, version=loaded.spec.version)
        self._loaded = loaded
        self._pid = os.getpid()

    def __call__(self, threads: int | None = None) -> Model:
        loaded, self._loaded = self._loaded, None
        if (loaded is not None and self._pid == os.getpid() and not getattr(loaded, "closed", False)
                and (threads is None or getattr(loaded, "threads", None) == threads)):
            return loaded
        settings = dict(self.settings)
        if threads is not None:
            settings["threads"] = threads
        return _loader(self.kind)(Path(self.target), **settings)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loaded"] = None
        return state

    def __repr__(self) -> str:
        return f"Factory({self.target!r}, kind={self.kind!r})"
