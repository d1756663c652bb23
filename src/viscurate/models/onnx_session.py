"""onnxruntime sessions of user-supplied ONNX models, and what the models holding one share: the explicit
thread counts, the model's metadata and input types, and the closed state.

>>> onnx_numpy_dtype("tensor(float16)").__name__, onnx_numpy_dtype("tensor(float)").__name__
('float16', 'float32')
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .litert import ModelClosed, resolve_threads
from .user_model import MissingDependency, ModelLoadError

__all__ = ["onnx_session", "onnx_metadata", "onnx_numpy_dtype", "OnnxSessionModel"]


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


def onnx_numpy_dtype(type_str: str):
    """numpy dtype of an onnxruntime input type such as ``tensor(float16)``."""
    return {"tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(uint8)": np.uint8,
            "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
            }.get(type_str, np.float32)


class OnnxSessionModel:
    """Base of the models that hold one onnxruntime session (``self._session``, ``None`` once closed)."""

    _session: Any
    spec: Any

    @property
    def closed(self) -> bool:
        return self._session is None

    def close(self) -> None:
        self._session = None

    def ensure_open(self) -> None:
        """Raise :class:`ModelClosed` when the model was closed."""
        if self._session is None:
            raise ModelClosed(f"model {self.spec.key} is closed; get a new one with viscurate.models.get_model")
