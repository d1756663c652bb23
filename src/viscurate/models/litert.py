"""Runtime helpers shared by the default models: thread counts, image coercion, letterboxing, (de)quantization
and a LiteRT interpreter loader that can expose intermediate tensors as extra outputs.

``ai_edge_litert`` is imported lazily, so importing this module (and listing models) stays cheap.

>>> import numpy as np
>>> as_rgb(np.zeros((4, 6), np.uint8)).shape
(4, 6, 3)
>>> as_rgb(np.zeros((4, 6, 4), np.uint8)).shape
(4, 6, 3)
>>> box = letterbox(np.zeros((100, 200, 3), np.uint8), 50)
>>> box.image.shape, box.scale_x, box.scale_y, box.pad_x, box.pad_y
((50, 50, 3), 0.25, 0.25, 0, 12)
>>> resolve_threads(3)
3
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import ViscurateError
from .base import ClosesOnExit, ModelSpec

__all__ = ["resolve_threads", "as_rgb", "resize", "letterbox", "Letterbox", "dequantize", "quantize",
           "load_interpreter", "runtime_logs_filtered", "builtin_op", "LiteRTModel", "ModelClosed"]


class ModelClosed(ViscurateError):
    """The model was closed; get a fresh one with ``viscurate.models.get_model``."""


def resolve_threads(threads: int | None = None) -> int:
    """The thread count a model runs with: ``threads`` if given, else ``$VISCURATE_THREADS``, else the
    cores this process may use. Always a positive int, so every runtime gets an explicit number."""
    if threads is None:
        env = os.environ.get("VISCURATE_THREADS", "").strip()
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ViscurateError(f"VISCURATE_THREADS must be a positive integer, not {env!r}") from None
        else:
            from ..common.cores import cpu_count
            threads = cpu_count()
    threads = int(threads)
    if threads < 1:
        raise ViscurateError(f"threads must be a positive integer, not {threads}")
    return threads


def as_rgb(image: Any) -> np.ndarray:
    """An ``H x W x 3`` ``uint8`` RGB array from what callers hand us (gray 2-D, ``H x W x 1``, RGBA, or a
    PIL image). Floats in [0, 1] are scaled to [0, 255]."""
    if not isinstance(image, np.ndarray):
        if hasattr(image, "convert"):  # a PIL image
            image = np.asarray(image.convert("RGB"))
        else:
            image = np.asarray(image)
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
            image = image * 255.0
        image = np.clip(np.nan_to_num(image), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ViscurateError(f"expected an H x W x 3 RGB image, got an array of shape {image.shape}")
    return np.ascontiguousarray(image)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with OpenCV: area averaging when shrinking, bilinear when enlarging (deterministic)."""
    import cv2

    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    interp = cv2.INTER_AREA if width < w and height < h else cv2.INTER_LINEAR
    return cv2.resize(image, (int(width), int(height)), interpolation=interp)


@dataclass
class Letterbox:
    """An image scaled to fit a ``size x size`` square (aspect kept, centered, zero padding), and the mapping
    back: ``x_original = (x_square - pad_x) / scale_x``."""

    image: np.ndarray
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Map normalized [0, 1] square coordinates (``[..., 2]`` as x, y) to original pixels."""
        size = self.image.shape[0]
        out = np.asarray(xy, dtype=np.float64) * size
        out[..., 0] = (out[..., 0] - self.pad_x) / self.scale_x
        out[..., 1] = (out[..., 1] - self.pad_y) / self.scale_y
        return out


def letterbox(image: np.ndarray, size: int) -> Letterbox:
    """Scale ``image`` to fit a ``size x size`` square keeping its aspect ratio, centered, padded with zeros
    (MediaPipe's ``keep_aspect_ratio`` with a zero border)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    out = np.zeros((size, size, 3), dtype=np.uint8)
    x0, y0 = (size - nw) // 2, (size - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = resize(image, nw, nh)
    return Letterbox(out, scale_x=nw / w, scale_y=nh / h, pad_x=x0, pad_y=y0)


def dequantize(values: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    """Real values of a quantized tensor: ``scale * (q - zero_point)`` (floats pass through)."""
    scale, zero = quantization
    if not np.issubdtype(values.dtype, np.integer) or not scale:
        return values.astype(np.float32)
    return (scale * (values.astype(np.float32) - zero)).astype(np.float32)


def quantize(values: np.ndarray, quantization: tuple[float, int], dtype: Any) -> np.ndarray:
    """Quantize real values for an integer input tensor (rounding, saturating)."""
    scale, zero = quantization
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero), info.min, info.max).astype(dtype)


def builtin_op(model: Any, op: Any) -> int:
    """The ``BuiltinOperator`` code of an operator of a parsed ``ModelT``."""
    code = model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))


def _find_tensor(subgraph: Any, ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    for i, t in enumerate(subgraph.tensors):
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        if name == ref:
            return i
    raise ViscurateError(f"the model has no tensor named {ref!r}")


@contextlib.contextmanager
def runtime_logs_filtered() -> Iterator[None]:
    """Keep the runtimes' INFO chatter ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU."), which
    the C++ side writes straight to file descriptor 2, off the user's terminal; anything else written
    meanwhile is passed on to stderr after. Used around interpreter creation only (a few milliseconds)."""
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (some embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if ln.strip() and not ln.startswith("INFO:")]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def load_interpreter(path: str, threads: int,
                     extra_outputs: Sequence[int | str] | Callable[[Any], Sequence[int]] = (),
                     edit: Callable[[Any], None] | None = None,
                     input_shape: Sequence[int] | None = None) -> Any:
    """A LiteRT ``Interpreter`` for the model at ``path`` with ``num_threads=threads``, tensors allocated.

    ``extra_outputs`` (tensor indices or names, or a function that takes the parsed ``ModelT`` and returns
    tensor indices) are added to the graph's outputs by rewriting the model
    flatbuffer in memory, so that intermediate activations (e.g. an embedding layer) can be read after
    ``invoke()`` without ``experimental_preserve_all_tensors`` (a debug mode that keeps every buffer alive
    and can disable delegates). ``edit`` may change the parsed ``ModelT`` further before it is packed (e.g.
    an operator's options), and ``input_shape`` resizes the first input before the tensors are allocated.
    The file on disk is never modified.
    """
    from ai_edge_litert.interpreter import Interpreter

    if not extra_outputs and edit is None:
        with runtime_logs_filtered():
            interp = Interpreter(model_path=path, num_threads=int(threads))
    else:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema

        with open(path, "rb") as f:
            raw = bytearray(f.read())
        model = schema.ModelT.InitFromPackedBuf(raw, 0)
        sg = model.subgraphs[0]
        outputs = [int(i) for i in np.asarray(sg.outputs).ravel()]
        refs = extra_outputs(model) if callable(extra_outputs) else extra_outputs
        if edit is not None:
            edit(model)
        for ref in refs:
            index = _find_tensor(sg, ref)
            if index not in outputs:
                outputs.append(index)
        sg.outputs = np.asarray(outputs, dtype=np.int32)
        builder = flatbuffers.Builder(len(raw) + 4096)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        with runtime_logs_filtered():
            interp = Interpreter(model_content=bytes(builder.Output()), num_threads=int(threads))
    with runtime_logs_filtered():
        if input_shape is not None:
            interp.resize_tensor_input(int(interp.get_input_details()[0]["index"]), [int(v) for v in input_shape])
        interp.allocate_tensors()
    return interp


class LiteRTModel(ClosesOnExit):
    """Base of the LiteRT-backed default models: one interpreter, a lock (interpreters are not thread-safe),
    an explicit thread count, ``close()``."""

    spec: ModelSpec

    def __init__(self, path: str, threads: int | None = None,
                 extra_outputs: Sequence[int | str] | Callable[[Any], Sequence[int]] = ()):
        self.threads = resolve_threads(threads)
        self.path = path
        self._lock = threading.Lock()
        self._interp = load_interpreter(path, self.threads, extra_outputs)
        inp = self._interp.get_input_details()[0]
        self._input_index = int(inp["index"])
        self._input_dtype = inp["dtype"]
        self._input_quant = tuple(inp["quantization"])
        self.input_height, self.input_width = int(inp["shape"][1]), int(inp["shape"][2])

    @property
    def closed(self) -> bool:
        return self._interp is None

    def _interpreter(self) -> Any:
        if self._interp is None:
            raise ModelClosed(f"model {self.spec.key} is closed; get a new one with "
                              f"viscurate.models.get_model({self.spec.name!r})")
        return self._interp

    def _run(self, tensor: np.ndarray, outputs: Sequence[int], variant: Callable[[], Any] | None = None
             ) -> list[np.ndarray]:
        """Set the input (batch of one), invoke, copy the requested output tensors. ``variant`` returns
        another interpreter of the same model to run instead (called under the lock, after the closed
        check, so it may build the interpreter lazily)."""
        with self._lock:
            interp = self._interpreter()
            if variant is not None:
                interp = variant()
            interp.set_tensor(self._input_index, tensor)
            interp.invoke()
            return [interp.get_tensor(int(i)).copy() for i in outputs]

    def close(self) -> None:
        with self._lock:
            self._interp = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"threads={self.threads}"
        return f"<{type(self).__name__} {self.spec.key} {state}>"
