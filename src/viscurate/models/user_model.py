"""What every bring-your-own model shares, whatever runs it: the errors a user can cause, the default name
and version of a model file, its :class:`ModelSpec`, class names and input sizes as users write them, and
the image preparation of the ONNX and CLIP wrappers (:mod:`viscurate.models.byo` loads them by kind).

>>> class_name_list({"0": "cat", "2": "dog"})
['cat', 'class_1', 'dog']
>>> size_hw(640), size_hw((480, 640))
((640, 640), (480, 640))
"""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ViscurateError
from .base import ModelSpec

__all__ = ["USER_LICENCE", "ModelLoadError", "MissingDependency", "default_name", "file_digest", "user_spec",
           "literal", "as_rgb", "resize", "size_hw", "class_name_list", "read_hf_config", "hf_id2label"]

#: The licence recorded on every user-supplied model.
USER_LICENCE = "user supplied"


class ModelLoadError(ViscurateError, ValueError):
    """A user-supplied model cannot be loaded as asked: missing file, unknown kind or option, a graph whose
    inputs or outputs do not fit the chosen layout. The message says what to change."""


class MissingDependency(ViscurateError, ImportError):
    """An optional runtime that this kind of model needs is not installed; the message names the extra."""


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


def user_spec(*, name: str, version: str, role: str, runtime: str, source: Path | str, description: str = "",
              embedding_dim: int | None = None, roles: tuple[str, ...] = ()) -> ModelSpec:
    """The :class:`ModelSpec` of a user-supplied model."""
    return ModelSpec(name=name, version=version, role=role, runtime=runtime,  # type: ignore[arg-type]
                     source=str(source),
                     licence=USER_LICENCE, description=description, embedding_dim=embedding_dim, roles=roles)


def literal(value: str) -> Any:
    """A Python/JSON literal written as text in model metadata; the text itself if it is not one."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


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


def read_hf_config(folder: Path) -> dict[str, Any] | None:
    """The JSON object of a Hugging Face ``config.json`` in ``folder``; None when there is none, or it is
    unreadable or not an object (a model may come without one)."""
    cfg = folder / "config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def hf_id2label(model_file: Path) -> list[str] | None:
    """Class names from a Hugging Face ``config.json`` next to an exported model (``id2label``)."""
    data = read_hf_config(model_file.parent)
    if data is not None and isinstance(data.get("id2label"), dict) and data["id2label"]:
        try:
            return class_name_list(data["id2label"])
        except ModelLoadError:
            return None
    return None
