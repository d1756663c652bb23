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
is a :class:`MissingDependency` error that says which extra to install.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ViscurateError
from .base import Model, ModelSpec
from .litert import ModelClosed, resolve_threads

__all__ = ["KINDS", "ModelLoadError", "MissingDependency", "ModelClosed", "Factory", "load_model", "build_model",
           "describe", "read_description"]

#: The kinds :func:`load_model` knows, and the role each gives.
KINDS = {"yolo": "detector", "detr": "detector", "onnx-embedder": "embedder", "clip": "embedder"}

#: The licence recorded on every user-supplied model.
USER_LICENCE = "user supplied"

_DESCRIPTION_KEYS = {"kind", "model", "name", "version"}


class ModelLoadError(ViscurateError, ValueError):
    """A user-supplied model cannot be loaded as asked: missing file, unknown kind or option, a graph whose
    inputs or outputs do not fit the chosen layout. The message says what to change."""


class MissingDependency(ViscurateError, ImportError):
    """An optional runtime that this kind of model needs is not installed; the message names the extra."""


# ---------------------------------------------------------------------------------------------------------
# helpers shared by the ONNX loaders and the CLIP wrapper

def default_threads(threads: int | None = None) -> int:
    """The thread count a model runs with: ``threads``, else ``$VISCURATE_THREADS``, else the cores this
    process may use (the registry's rule, :func:`viscurate.models.litert.resolve_threads`)."""
    return resolve_threads(threads)


def default_name(path: Path) -> str:
    """A model's default name: the file's stem, or its folder's name for a generic ``model.onnx``."""
    path = Path(path)
    if path.stem.lower() == "model" and path.parent.name:
        return path.parent.name
    return path.stem


def file_digest(paths: Sequence[Path] | Path, length: int = 12) -> str:
    """First ``length`` hex digits of the SHA-256 of the files' bytes (in the order given): the default
    version of a user's model, so that labels say exactly which weights made them."""
    if isinstance(paths, (str, Path)):
        paths = [Path(paths)]
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:length]


def onnx_session(path: Path, threads: int | None, providers: Sequence[str] | None = None):
    """An onnxruntime session with explicit thread counts (``intra_op`` = ``threads``, ``inter_op`` = 1)."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependency(
            "ONNX models need onnxruntime: pip install onnxruntime (or the 'onnx' extra of viscurate)") from e
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = resolve_threads(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise ModelLoadError(f"onnxruntime cannot load {path}: {e}") from e


def onnx_metadata(session) -> dict[str, str]:
    """The custom metadata of an ONNX model (Ultralytics writes ``names``, ``imgsz``, ``task``...)."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map or {})
    except Exception:  # pragma: no cover - very old onnxruntime
        return {}


def literal(value: str) -> Any:
    """A Python/JSON literal written as text in model metadata; the text itself if it is not one."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def onnx_numpy_dtype(type_str: str):
    """numpy dtype of an onnxruntime input type such as ``tensor(float16)``."""
    return {"tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(uint8)": np.uint8,
            "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
            }.get(type_str, np.float32)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``uint8`` H x W x 3 from what a caller may hand us (grey H x W, H x W x 1, RGBA: alpha dropped)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of an ``uint8`` RGB image (OpenCV's ``INTER_LINEAR``, as the YOLO and most ONNX
    exporters' own preprocessing; Pillow's bilinear filter when OpenCV is not installed)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    try:
        import cv2
    except ImportError:
        from PIL import Image
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def size_hw(value: Any, what: str = "input_size") -> tuple[int, int] | None:
    """``(height, width)`` from an int (square), a pair, or None."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ModelLoadError(f"{what} must be an int or a (height, width) pair, got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ModelLoadError(f"{what} must be positive, got {value!r}")
    return h, w


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def class_name_list(names: Any) -> list[str] | None:
    """Class names as a list indexed by class id, from a list, a ``{id: name}`` mapping (keys may be strings,
    gaps are filled with ``class_<id>``), a path to a text file (one name a line) or None."""
    if names is None:
        return None
    if isinstance(names, (str, Path)):
        p = Path(names)
        if p.is_file():
            return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        raise ModelLoadError(f"class_names must be a list, a {{id: name}} mapping or a text file; "
                             f"{str(names)!r} is none of these")
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise ModelLoadError("class_names mapping keys must be class ids (integers)") from None
        if not by_id:
            return []
        if min(by_id) < 0:
            raise ModelLoadError("class ids must not be negative")
        return [by_id.get(i, f"class_{i}") for i in range(max(by_id) + 1)]
    return [str(n) for n in names]


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
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("model_type", "")).lower() == "clip"


def hf_id2label(model_file: Path) -> list[str] | None:
    """Class names from a Hugging Face ``config.json`` next to an exported model (``id2label``)."""
    cfg = model_file.parent / "config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("id2label"), dict) and data["id2label"]:
        try:
            return class_name_list(data["id2label"])
        except ModelLoadError:
            return None
    return None


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


def user_spec(*, name: str, version: str, role: str, runtime: str, source: Path | str, description: str = "",
              embedding_dim: int | None = None, roles: tuple[str, ...] = ()) -> ModelSpec:
    """The :class:`ModelSpec` of a user-supplied model."""
    return ModelSpec(name=name, version=version, role=role, runtime=runtime,  # type: ignore[arg-type]
                     source=str(source),
                     licence=USER_LICENCE, description=description, embedding_dim=embedding_dim, roles=roles)
