"""A CLIP model from a local directory (the optional ``clip`` extra: torch and transformers).

The directory is what ``CLIPModel.save_pretrained`` and ``CLIPProcessor.save_pretrained`` write (or a
snapshot of a Hugging Face model repository copied to disk): ``config.json``, the weights, the tokenizer
files and ``preprocessor_config.json``. Both are loaded with ``local_files_only=True``: nothing is ever
downloaded. Images and texts land in the same space, L2-normalised, so a text query's vector can be
compared with the image vectors by dot product (text-to-image search).

>>> from viscurate.models.clip import ClipModel
>>> clip = ClipModel("~/models/clip-vit-base-patch32")          # doctest: +SKIP
>>> clip.embed([rgb_image]).shape, clip.embed_text(["a dog"]).shape  # doctest: +SKIP
((1, 512), (1, 512))
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..common.vectors import l2_normalize
from .base import ModelSpec
from .litert import ModelClosed, resolve_threads
from .user_model import MissingDependency, ModelLoadError, as_rgb, file_digest, user_spec

__all__ = ["ClipModel"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")


def _import_runtime():
    try:
        import torch
        import transformers
    except ImportError as e:
        raise MissingDependency(
            f"CLIP models need torch and transformers ({e.name or e} is not installed): "
            f"pip install 'viscurate[clip]'") from e
    return torch, transformers


def _features(out: Any):
    """A ``get_*_features`` result as a tensor: transformers 4 returns the tensor, 5 an output object whose
    ``pooler_output`` holds the projected features."""
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    if isinstance(out, tuple):
        return out[1]
    return out


class ClipModel:
    """CLIP image and text embeddings from a local directory.

    ``name`` defaults to the directory's name, ``version`` to the first 12 hex digits of the SHA-256 of its
    ``config.json`` and weight files. ``threads`` sets ``torch.set_num_threads`` (a process-wide setting).
    """

    def __init__(self, directory: str | Path, *, name: str | None = None, version: str | None = None,
                 threads: int | None = None, batch_size: int = 32, device: str = "cpu") -> None:
        self.directory = Path(directory).expanduser()
        if not self.directory.is_dir() or not (self.directory / "config.json").is_file():
            raise ModelLoadError(f"{self.directory} is not a saved CLIP model directory (no config.json); "
                                 f"save one with CLIPModel.save_pretrained and CLIPProcessor.save_pretrained")
        torch, transformers = _import_runtime()
        self._torch = torch
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.threads = resolve_threads(threads)
        torch.set_num_threads(self.threads)
        try:
            self._model = transformers.CLIPModel.from_pretrained(str(self.directory), local_files_only=True)
            self._processor = transformers.CLIPProcessor.from_pretrained(str(self.directory), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load a CLIP model and processor from {self.directory}: {e}") from e
        self._model.eval().to(device)
        dim = int(self._model.config.projection_dim)
        weights = [self.directory / "config.json"] + [self.directory / f for f in _WEIGHT_FILES
                                                      if (self.directory / f).is_file()]
        index = [p for p in weights if p.name.endswith(".index.json")]
        for idx in index:  # sharded checkpoints: hash the shards too
            try:
                shards = sorted(set(json.loads(idx.read_text()).get("weight_map", {}).values()))
            except (OSError, ValueError):
                shards = []
            weights += [self.directory / s for s in shards if (self.directory / s).is_file()]
        self.spec: ModelSpec = user_spec(
            name=name or self.directory.name, version=str(version) if version else file_digest(weights),
            role="embedder", runtime="torch", source=self.directory, embedding_dim=dim,
            description=f"CLIP image and text embeddings (embed_text), {dim}-d")

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, d)`` float32 L2-normalised image vectors."""
        self._check_open()
        torch = self._torch
        if len(images) == 0:
            return np.zeros((0, self.spec.embedding_dim or 0), dtype=np.float32)
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = [as_rgb(im) for im in images[start:start + self.batch_size]]
            inputs = self._processor(images=batch, return_tensors="pt")
            with torch.inference_mode():
                feats = _features(self._model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device)))
            parts.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(parts))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, d)`` float32 L2-normalised text vectors, in the same space as :meth:`embed`."""
        self._check_open()
        torch = self._torch
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            return np.zeros((0, self.spec.embedding_dim or 0), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [str(t) for t in texts[start:start + self.batch_size]]
            inputs = self._processor(text=chunk, return_tensors="pt", padding=True, truncation=True)
            with torch.inference_mode():
                feats = _features(self._model.get_text_features(
                    input_ids=inputs["input_ids"].to(self.device),
                    attention_mask=inputs["attention_mask"].to(self.device)))
            parts.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(parts))

    @property
    def closed(self) -> bool:
        return self._model is None

    def _check_open(self) -> None:
        if self._model is None:
            raise ModelClosed(f"model {self.spec.key} is closed; get a new one with viscurate.models.get_model")

    def close(self) -> None:
        self._model = None
        self._processor = None

    def __repr__(self) -> str:
        return f"ClipModel({self.spec.key!r}, dim={self.spec.embedding_dim})"
