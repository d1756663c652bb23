"""The SSD's class predictors split off its graph, so that a pass can score a few classes only.

SSD-MobileNetV2 scores every class at every anchor with a sigmoid of its own, through 3x3 convolutions
over its feature maps: 1.2 of the network's 1.9 billion multiply-adds go to the 91 columns of scores. A
pass that only asks whether some classes are found again (the label stage's augmented view, which looks
for the classes the plain pass found) needs a few of those columns. So the network is cut in two: the
"body" (everything up to the box codes and the feature maps the class predictors read) runs on
onnxruntime, and the class predictors' rows of the wanted classes run here, in NumPy, on those feature maps.
The wanted classes' scores equal a full pass's to float rounding; the other classes score 0.

>>> import numpy as np
>>> feature = np.arange(2 * 3 * 3, dtype=np.float32).reshape(1, 2, 3, 3)
>>> weight = np.zeros((2 * 4, 2, 3, 3), np.float32); weight[1, 0, 1, 1] = 1.0   # anchor 0, class 1: channel 0
>>> head_logits(feature, weight, np.zeros(8, np.float32), columns=[1], n_cols=4).shape  # 9 cells x 2 anchors
(1, 18, 1)
>>> head_logits(feature, weight, np.zeros(8, np.float32), columns=[1], n_cols=4)[0, ::2, 0].tolist()
[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .tf_onnx import UnsupportedGraph

__all__ = ["ClassHead", "split_class_heads", "heads_from_layout", "head_logits", "FewClassRunner", "LAYOUT_KEY"]

#: Model metadata key of the body: the class heads' layout in the packed weights (JSON).
LAYOUT_KEY = "viscurate.class_heads"


@dataclass(frozen=True)
class ClassHead:
    """One class predictor: a convolution of ``feature`` (N, C, H, W) whose ``shape[0]`` output channels are
    (anchor, class) pairs, class fastest; its weight and bias sit at ``offset`` of the packed array."""

    feature: str
    shape: tuple[int, int, int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    offset: int

    @property
    def weight_size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def end(self) -> int:
        """Where this head's bias ends in the packed array."""
        return self.offset + self.weight_size + self.shape[0]

    def weight(self, packed: np.ndarray) -> np.ndarray:
        return packed[self.offset:self.offset + self.weight_size].reshape(self.shape)

    def bias(self, packed: np.ndarray) -> np.ndarray:
        return packed[self.offset + self.weight_size:self.end]


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _same_pads(node: Any, kh: int, kw: int) -> tuple[int, int, int, int]:
    """The (top, left, bottom, right) padding of a stride-1 convolution that keeps the map's size."""
    attrs = _attrs(node)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        small = ((kh - 1) // 2, (kw - 1) // 2)
        big = (kh - 1 - small[0], kw - 1 - small[1])
        return (*small, *big) if auto == "SAME_UPPER" else (*big, *small)
    pads = tuple(int(p) for p in attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[0] + pads[2] != kh - 1 or pads[1] + pads[3] != kw - 1:
        raise UnsupportedGraph(f"class predictor {node.name} does not keep its feature map's size")
    return pads[0], pads[1], pads[2], pads[3]


def split_class_heads(model: Any, boxes: str, scores: str) -> tuple[Any, list[ClassHead], np.ndarray]:
    """Cut an SSD model whose ``scores`` output is ``Sigmoid(Concat([Flatten(Transpose_NHWC(Conv(feature)))
    ...]))`` (the TensorFlow Object Detection API's layout, as :mod:`viscurate.models.tf_onnx` rebuilds it)
    into the body (outputs: ``boxes``, then each head's feature map), the heads in concatenation order,
    and their weights and biases packed in one float32 array. Any other layout: :class:`UnsupportedGraph`."""
    from onnx import helper, numpy_helper

    producer = {out: node for node in model.graph.node for out in node.output}
    inits = {t.name: t for t in model.graph.initializer}

    def made_by(tensor: str, op: str) -> Any:
        node = producer.get(tensor)
        if node is None or node.op_type != op:
            raise UnsupportedGraph(f"{tensor} is not made by a {op} (the class predictors' layout is unknown)")
        return node

    concat = made_by(made_by(scores, "Sigmoid").input[0], "Concat")
    if _attrs(concat).get("axis") not in (1, -1):
        raise UnsupportedGraph("the class scores are not concatenated along the anchors")
    heads, chunks, offset = [], [], 0
    for part in concat.input:
        flatten = made_by(part, "Flatten")
        transpose = made_by(flatten.input[0], "Transpose")
        conv = made_by(transpose.input[0], "Conv")
        attrs = _attrs(conv)
        if _attrs(flatten).get("axis", 1) != 1 or list(_attrs(transpose).get("perm", [])) != [0, 2, 3, 1]:
            raise UnsupportedGraph(f"{part} is not an NHWC flatten of a class predictor")
        if (attrs.get("group", 1) != 1 or any(v != 1 for v in attrs.get("strides", [1, 1]))
                or any(v != 1 for v in attrs.get("dilations", [1, 1])) or len(conv.input) < 3
                or conv.input[1] not in inits or conv.input[2] not in inits):
            raise UnsupportedGraph(f"class predictor {conv.name} is not a plain stride-1 convolution with a bias")
        weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float32)
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32).ravel()
        if weight.ndim != 4 or bias.shape != (weight.shape[0],):
            raise UnsupportedGraph(f"class predictor {conv.name} has weights of shape {weight.shape}")
        pads = _same_pads(conv, weight.shape[2], weight.shape[3])
        heads.append(ClassHead(conv.input[0], tuple(int(v) for v in weight.shape), pads, offset))  # type: ignore[arg-type]
        chunks += [weight.ravel(), bias]
        offset += weight.size + bias.size

    outputs = [boxes] + list(dict.fromkeys(h.feature for h in heads))
    needed, stack = set(), list(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(node.input)
    nodes = [n for n in model.graph.node if id(n) in needed]
    used = {name for n in nodes for name in n.input}
    graph = helper.make_graph(
        nodes, "ssd_body", list(model.graph.input), [helper.make_empty_tensor_value_info(o) for o in outputs],
        [t for t in model.graph.initializer if t.name in used])
    body = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    props = {p.key: p.value for p in model.metadata_props}
    props[LAYOUT_KEY] = json.dumps([{"feature": h.feature, "shape": list(h.shape), "pads": list(h.pads),
                                     "offset": h.offset} for h in heads])
    helper.set_model_props(body, props)
    return body, heads, np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def heads_from_layout(text: str) -> list[ClassHead]:
    return [ClassHead(h["feature"], tuple(h["shape"]), tuple(h["pads"]), int(h["offset"]))  # type: ignore[arg-type]
            for h in json.loads(text)]


def head_logits(feature: np.ndarray, weight: np.ndarray, bias: np.ndarray, columns: Sequence[int], n_cols: int,
                pads: Sequence[int] | None = None) -> np.ndarray:
    """The logits of score ``columns`` at every anchor of one feature map: ``(N, H * W * anchors, len(columns))``
    in the order the full head flattens them (row, column, anchor). ``weight`` ``(anchors * n_cols, C, kh, kw)``;
    ``pads`` (top, left, bottom, right) default to the centred padding of a size-keeping convolution."""
    n, c, h, w = feature.shape
    k, _, kh, kw = weight.shape
    anchors = k // n_cols
    cols = np.asarray(columns, np.int64)
    rows = (np.arange(anchors)[:, None] * n_cols + cols[None, :]).ravel()
    top, left, bottom, right = pads if pads is not None else (
        (kh - 1) // 2, (kw - 1) // 2, kh - 1 - (kh - 1) // 2, kw - 1 - (kw - 1) // 2)
    # channels last, then one (cells x C) @ (C x rows) product per kernel tap: contiguous slices, no im2col
    x = np.pad(feature.transpose(0, 2, 3, 1), ((0, 0), (top, bottom), (left, right), (0, 0)))
    taps = np.ascontiguousarray(np.asarray(weight[rows], np.float32).transpose(2, 3, 1, 0))  # kh, kw, C, rows
    out = np.broadcast_to(np.asarray(bias, np.float32)[rows], (n * h * w, len(rows))).copy()
    for dy in range(kh):
        for dx in range(kw):
            out += np.ascontiguousarray(x[:, dy:dy + h, dx:dx + w, :]).reshape(-1, c) @ taps[dy, dx]
    return out.reshape(n, h * w * anchors, len(cols))


class FewClassRunner:
    """The body session, the packed head weights (memory-mapped where they come from the model cache, so
    that worker processes share one copy) and their layout: ``run(blob, class_columns, n_anchors)`` gives
    ``(box codes, scores)`` shaped like the full model's outputs, with only those columns scored."""

    def __init__(self, session: Any, heads: list[ClassHead], packed: np.ndarray, boxes: str):
        self.session, self.heads, self.packed, self.boxes = session, heads, packed, boxes
        self.outputs = [boxes] + list(dict.fromkeys(h.feature for h in heads))

    def run(self, blob: np.ndarray, columns: Sequence[int], n_anchors: int) -> tuple[np.ndarray, np.ndarray]:
        got = dict(zip(self.outputs, self.session.run(self.outputs, {"image_tensor": blob})))
        with _one_blas_thread():  # products of a few rows: a second BLAS thread only spins against onnxruntime's
            return got[self.boxes], self._scores(got, blob.shape[0], columns, n_anchors)

    def _scores(self, got: dict, n: int, columns: Sequence[int], n_anchors: int) -> np.ndarray:
        total = sum(h.shape[0] * got[h.feature].shape[2] * got[h.feature].shape[3] for h in self.heads)
        n_cols = total // max(n_anchors, 1)
        if n_cols * n_anchors != total:
            raise UnsupportedGraph("the class heads do not match the anchors")
        columns = [int(c) for c in columns if 0 < int(c) < n_cols]  # 0 is the background; others: no such class
        scores = np.zeros((n, n_anchors, n_cols), np.float32)
        start = 0
        for head in self.heads if columns else ():
            logits = head_logits(got[head.feature], head.weight(self.packed), head.bias(self.packed), columns,
                                 n_cols, head.pads)
            stop = start + logits.shape[1]
            scores[:, start:stop, list(columns)] = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
            start = stop
        return scores


_blas: Any = None


def _one_blas_thread() -> Any:
    """A context in which NumPy's BLAS uses one thread (threadpoolctl's controller, built once: ~4 us a use)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")
