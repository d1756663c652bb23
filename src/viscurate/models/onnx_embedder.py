"""A user's ONNX image embedder, run with onnxruntime: images in, one L2-normalised float32 vector each out.

Preprocessing: the image is resized to ``input_size`` (``(height, width)``; ``resize="stretch"`` fits the
whole image, ``resize="crop"`` scales the shorter side and centre-crops), scaled to 0..1 and normalised
with ``mean``/``std`` (ImageNet's by default), laid out as the graph's image input says (``NCHW``, or
``NHWC`` when its last dimension is 3). A graph whose input is ``uint8`` gets the resized pixels as they are.

The vector is the graph's first output (or the one named by ``output``), reduced to ``(n, d)``:
2-D as it is; 4-D (a feature map: NCHW, or NHWC for a channels-last graph) averaged over its spatial axes
(``pooling="mean"``, the default; ``"max"`` also works); 3-D (transformer tokens) its first token
(``pooling="cls"``, the default) or the mean of all (``pooling="mean"``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..common.vectors import l2_normalize
from .base import ModelSpec
from .litert import resolve_threads
from .onnx_session import OnnxSessionModel, onnx_numpy_dtype, onnx_session
from .user_model import ModelLoadError, as_rgb, default_name, file_digest, resize, size_hw, user_spec

__all__ = ["OnnxEmbedder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _fit(image: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    if mode == "stretch":
        return resize(image, width, height)
    h, w = image.shape[:2]
    s = max(height / h, width / w)
    rw, rh = max(width, int(round(w * s))), max(height, int(round(h * s)))
    big = resize(image, rw, rh)
    top, left = (rh - height) // 2, (rw - width) // 2
    return big[top:top + height, left:left + width]


class OnnxEmbedder(OnnxSessionModel):
    """An image embedder from an ONNX file.

    ``name`` defaults to the file's stem (its folder's name for ``model.onnx``), ``version`` to the first 12
    hex digits of its SHA-256, ``threads`` (onnxruntime's ``intra_op_num_threads``) to ``$VISCURATE_THREADS``
    or the cores this process may use. ``input_size`` left out is the graph's own fixed input size, else
    224 x 224.
    """

    def __init__(self, path: str | Path, *, input_size: int | Sequence[int] | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 name: str | None = None, version: str | None = None, threads: int | None = None,
                 resize: str = "stretch", pooling: str = "auto", output: str | int | None = None,
                 batch_size: int = 32, providers: Sequence[str] | None = None) -> None:
        if resize not in ("stretch", "crop"):
            raise ModelLoadError(f"resize must be 'stretch' or 'crop', not {resize!r}")
        if pooling not in ("auto", "mean", "max", "cls"):
            raise ModelLoadError(f"pooling must be 'auto', 'mean', 'max' or 'cls', not {pooling!r}")
        self.path = Path(path).expanduser()
        self.resize_mode = resize
        self.pooling = pooling
        self.batch_size = max(1, int(batch_size))
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.shape != (3,) or self.std.shape != (3,) or np.any(self.std == 0):
            raise ModelLoadError("mean and std must be three numbers (R, G, B), std non-zero")
        self.threads = resolve_threads(threads)
        self._session = onnx_session(self.path, self.threads, providers)

        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelLoadError(f"an embedder needs one 4-D image input; {self.path} has "
                                 f"{[(i.name, i.shape) for i in inputs]}")
        inp = self._input = inputs[0]
        self._dtype = onnx_numpy_dtype(inp.type)
        shape = list(inp.shape)
        self.channels_last = shape[1] != 3 and shape[3] == 3
        hw = shape[1:3] if self.channels_last else shape[2:4]
        fixed = tuple(int(d) for d in hw) if all(isinstance(d, int) and d > 0 for d in hw) else None
        requested = size_hw(input_size)
        if fixed and requested and requested != fixed:
            raise ModelLoadError(f"{self.path} takes {fixed[0]}x{fixed[1]} (height x width) images; "
                                 f"input_size={requested} does not fit")
        self.input_hw: tuple[int, int] = fixed or requested or (224, 224)
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

        outputs = self._session.get_outputs()
        if isinstance(output, int):
            if not 0 <= output < len(outputs):
                raise ModelLoadError(f"{self.path} has {len(outputs)} outputs; output={output} does not exist")
            self._output = outputs[output].name
        elif output is not None:
            if output not in {o.name for o in outputs}:
                raise ModelLoadError(f"{self.path} has no output {output!r} ({[o.name for o in outputs]})")
            self._output = output
        else:
            self._output = outputs[0].name

        # one probe run: checks the graph end to end and gives the embedding size
        dim = self._embed_raw(np.zeros((1, *self.input_hw, 3), np.uint8)).shape[1]
        self.spec: ModelSpec = user_spec(
            name=name or default_name(self.path), version=str(version) if version else file_digest(self.path),
            role="embedder", runtime="onnxruntime", source=self.path, embedding_dim=int(dim),
            description=f"ONNX image embedder, {dim}-d, input {self.input_hw[0]}x{self.input_hw[1]}")

    def _pool(self, out: np.ndarray) -> np.ndarray:
        if out.ndim == 2:
            return out
        if out.ndim == 4:
            axes = (1, 2) if self.channels_last else (2, 3)  # a channels-last graph keeps its feature maps NHWC
            return out.max(axis=axes) if self.pooling == "max" else out.mean(axis=axes)
        if out.ndim == 3:
            if self.pooling in ("auto", "cls"):
                return out[:, 0, :]
            return out.max(axis=1) if self.pooling == "max" else out.mean(axis=1)
        if out.ndim > 4 or out.ndim == 1:
            return out.reshape(len(out), -1) if out.ndim > 1 else out[:, None]
        raise ModelLoadError(f"{self.path}: cannot make vectors of an output of shape {out.shape}")

    def _embed_raw(self, batch_hwc: np.ndarray) -> np.ndarray:
        if self._dtype == np.uint8:
            x = batch_hwc
        else:
            x = ((batch_hwc.astype(np.float32) / 255.0 - self.mean) / self.std).astype(self._dtype)
        if not self.channels_last:
            x = x.transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x)
        fixed = self._fixed_batch
        step = fixed or self.batch_size
        parts = []
        for start in range(0, len(x), step):
            part = x[start:start + step]
            real = len(part)
            if fixed and real < fixed:
                part = np.concatenate([part, np.zeros((fixed - real, *part.shape[1:]), part.dtype)])
            out = np.asarray(self._session.run([self._output], {self._input.name: part})[0])[:real]
            parts.append(self._pool(out.astype(np.float32)))
        return np.concatenate(parts)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, d)`` float32 vectors, each of unit length (a zero output stays zero)."""
        self.ensure_open()
        if len(images) == 0:
            return np.zeros((0, self.spec.embedding_dim or 0), dtype=np.float32)
        h, w = self.input_hw
        batch = np.stack([_fit(as_rgb(im), h, w, self.resize_mode) for im in images])
        return l2_normalize(self._embed_raw(batch))

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self.spec.key!r}, dim={self.spec.embedding_dim})"
