"""Rebuild a frozen TensorFlow convolutional network as an ONNX model, for onnxruntime.

Why: OpenCV DNN runs SSD-MobileNetV2 at about 95 ms per 300x300 image on one core of our reference
machine; onnxruntime runs the very same weights in about half that (its 3x3 convolutions on small feature
maps are much faster). The structure comes from an OpenCV text graph (:func:`viscurate.models.tf_graph.read_text_graph`),
the weights from the frozen graph (:func:`viscurate.models.tf_graph.read_constants`).

The ops of TensorFlow's MobileNet/SSD family are covered: ``Conv2D``, ``DepthwiseConv2dNative``,
``FusedBatchNorm`` and ``BiasAdd`` (folded into the convolution before them), ``Relu6``, ``Relu``, ``Add``,
``Mul``/``Sub`` by constants, ``Identity``, ``Flatten`` (in TensorFlow's NHWC order), ``ConcatV2``,
``Sigmoid``, and for MobileNetV3 ``AddV2``, ``FusedBatchNormV3``, ``Mean`` over height and width and
``Reshape`` of flattened tensors. Layers ONNX has no operator for (OpenCV's ``PriorBox`` and
``DetectionOutput``) are not converted: the caller computes them (see :mod:`viscurate.models.ssd`). The
ONNX model takes NCHW float32.

>>> model = convert(nodes, constants, outputs=["ClassPredictor/concat/sigmoid"])      # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import ViscurateError
from .tf_graph import TextNode

__all__ = ["convert", "UnsupportedGraph"]

OPSET = 17


class UnsupportedGraph(ViscurateError):
    """The graph uses an operation (or a form of one) the converter does not handle."""


@dataclass
class _Conv:
    """A convolution being built: batch norms and biases after it are folded into its weights."""

    input: str
    output: str
    weight: np.ndarray  # OIHW
    bias: np.ndarray
    group: int
    strides: list[int]
    dilations: list[int]
    auto_pad: str


@dataclass
class _Op:
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


def _nhwc(values: Sequence[int] | None, default: int = 1) -> list[int]:
    """TensorFlow's [1, h, w, 1] strides/dilations -> ONNX [h, w]."""
    v = list(values or [])
    if len(v) == 4:
        return [int(v[1]), int(v[2])]
    if len(v) == 2:
        return [int(v[0]), int(v[1])]
    return [default, default]


def _needed(nodes: Sequence[TextNode], outputs: Sequence[str]) -> set[str]:
    by_name = {n.name: n for n in nodes}
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        stack.extend(by_name[name].inputs)
    return seen


def _const_value(name: str, constants: dict[str, np.ndarray], nodes: Sequence[TextNode]) -> np.ndarray:
    """A constant input: from the frozen graph, else a ``Const`` node of the text graph (OpenCV adds some)."""
    if name in constants:
        return constants[name]
    node = next((m for m in nodes if m.name == name and m.op == "Const"), None)
    value = None if node is None else node.attr.get("value")
    if value is None:
        raise UnsupportedGraph(f"{name!r} is used as a constant but neither graph holds it")
    return np.asarray(value)


def _flat(name: str, nodes: Sequence[TextNode]) -> bool:
    """Whether ``name`` is a flattened tensor (a ``Flatten``, or concatenations and reshapes of them): the same
    in TensorFlow's layout as in ours, unlike a 4-D one."""
    node = next((m for m in nodes if m.name == name), None)
    if node is None:
        return False
    if node.op == "Flatten":
        return True
    if node.op == "ConcatV2":
        return all(_flat(i, nodes) for i in node.inputs[:-1])
    if node.op in ("Identity", "Reshape", "Sigmoid"):
        return _flat(node.inputs[0], nodes)
    return False


def convert(nodes: Sequence[TextNode], constants: dict[str, np.ndarray], outputs: Sequence[str],
            input_name: str = "image_tensor", input_hw: tuple[int, int] | None = None) -> Any:
    """An ``onnx.ModelProto`` computing ``outputs`` of the text graph ``nodes`` from ``input_name``
    (NCHW float32, batch size free; height and width fixed when ``input_hw`` is given)."""
    from onnx import TensorProto, helper, numpy_helper

    needed = _needed(nodes, outputs)
    missing = [o for o in outputs if o not in needed]
    if missing:
        raise UnsupportedGraph(f"the graph has no node named {missing[0]!r}")
    consumers: dict[str, int] = {}
    for n in nodes:
        if n.name in needed:
            for i in n.inputs:
                consumers[i] = consumers.get(i, 0) + 1

    alias: dict[str, str] = {}
    items: list[_Conv | _Op] = []
    convs: dict[str, _Conv] = {}  # by current output name
    initializers: dict[str, np.ndarray] = {}

    def ref(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    def const(name: str) -> np.ndarray:
        if name not in constants:
            raise UnsupportedGraph(f"{name!r} is used as a constant but the frozen graph has no such constant")
        return constants[name]

    def foldable(tensor: str) -> _Conv | None:
        conv = convs.get(ref(tensor))
        return conv if conv is not None and consumers.get(tensor, 0) == 1 else None

    def scalar_input(value: np.ndarray, name: str) -> str:
        initializers[name] = np.asarray(value, np.float32).reshape(())
        return name

    for n in nodes:
        if n.name not in needed:
            continue
        op, ins = n.op, n.inputs
        if op == "Placeholder":
            if n.name != input_name:
                raise UnsupportedGraph(f"a second graph input {n.name!r}")
        elif op == "Const":
            continue
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            w = const(ins[1]).astype(np.float32)
            if op == "Conv2D":  # HWIO -> OIHW
                weight, group = w.transpose(3, 2, 0, 1), 1
            else:  # HWCM -> (C*M) 1 H W
                kh, kw, c, m = w.shape
                weight, group = w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw), c
            padding = str(n.attr.get("padding", "VALID"))
            if padding not in ("SAME", "VALID"):
                raise UnsupportedGraph(f"{n.name}: padding {padding!r}")
            conv = _Conv(ref(ins[0]), n.name, np.ascontiguousarray(weight), np.zeros(weight.shape[0], np.float32),
                         group, _nhwc(n.attr.get("strides")), _nhwc(n.attr.get("dilations")),
                         "SAME_UPPER" if padding == "SAME" else "VALID")
            items.append(conv)
            convs[n.name] = conv
        elif op in ("FusedBatchNorm", "FusedBatchNormV3"):
            gamma, beta, mean, var = (const(i).astype(np.float32) for i in ins[1:5])
            scale = gamma / np.sqrt(var + float(n.attr.get("epsilon", 1e-3)))
            conv = foldable(ins[0])
            if conv is not None:
                conv.weight = conv.weight * scale[:, None, None, None]
                conv.bias = (conv.bias - mean) * scale + beta
                del convs[conv.output]
                conv.output = n.name
                convs[n.name] = conv
            else:
                for suffix, value in (("scale", scale), ("shift", beta - mean * scale)):
                    initializers[f"{n.name}/{suffix}"] = value.reshape(1, -1, 1, 1)
                items.append(_Op("Mul", [ref(ins[0]), f"{n.name}/scale"], f"{n.name}/scaled"))
                items.append(_Op("Add", [f"{n.name}/scaled", f"{n.name}/shift"], n.name))
        elif op == "BiasAdd":
            bias = const(ins[1]).astype(np.float32)
            conv = foldable(ins[0])
            if conv is not None:
                conv.bias = conv.bias + bias
                del convs[conv.output]
                conv.output = n.name
                convs[n.name] = conv
            else:
                initializers[f"{n.name}/bias"] = bias.reshape(1, -1, 1, 1)
                items.append(_Op("Add", [ref(ins[0]), f"{n.name}/bias"], n.name))
        elif op in ("Relu6", "Relu"):
            if op == "Relu":
                items.append(_Op("Relu", [ref(ins[0])], n.name))
            else:
                items.append(_Op("Clip", [ref(ins[0]), scalar_input(np.float32(0), "relu6/min"),
                                          scalar_input(np.float32(6), "relu6/max")], n.name))
        elif op in ("Add", "AddV2", "Mul", "Sub"):
            args = []
            for i in ins[:2]:
                if i in constants:
                    args.append(scalar_input(constants[i], i) if constants[i].size == 1 else None)
                    if args[-1] is None:
                        raise UnsupportedGraph(f"{n.name}: {op} by a non-scalar constant")
                else:
                    args.append(ref(i))
            items.append(_Op({"AddV2": "Add"}.get(op, op), args, n.name))
        elif op == "Identity":
            alias[n.name] = ref(ins[0])
        elif op == "Sigmoid":
            items.append(_Op("Sigmoid", [ref(ins[0])], n.name))
        elif op == "Mean":  # MobileNetV3's squeeze-excite: the mean over the spatial axes, kept as 1 x 1
            axes = sorted(int(a) % 4 for a in np.asarray(_const_value(ins[1], constants, nodes)).ravel())
            if axes != [1, 2] or not n.attr.get("keep_dims", False):
                raise UnsupportedGraph(f"{n.name}: only a mean over height and width that keeps them is supported")
            items.append(_Op("GlobalAveragePool", [ref(ins[0])], n.name))
        elif op == "Reshape":  # OpenCV's text graphs: a 0 in the shape keeps that dimension, as in ONNX
            if not _flat(ins[0], nodes):  # a 4-D tensor is NCHW here, not NHWC: its reshape would scramble it
                raise UnsupportedGraph(f"{n.name}: only flattened tensors can be reshaped")
            shape = np.asarray(_const_value(ins[1], constants, nodes), np.int64).ravel()
            initializers[f"{n.name}/shape"] = shape
            items.append(_Op("Reshape", [ref(ins[0]), f"{n.name}/shape"], n.name))
        elif op == "Flatten":  # OpenCV's Flatten of a TensorFlow tensor flattens in NHWC order
            items.append(_Op("Transpose", [ref(ins[0])], f"{n.name}/nhwc", {"perm": [0, 2, 3, 1]}))
            items.append(_Op("Flatten", [f"{n.name}/nhwc"], n.name, {"axis": 1}))
        elif op == "ConcatV2":
            axis_name = ins[-1]
            axis_value = constants.get(axis_name)
            if axis_value is None:
                axis_node = next((m for m in nodes if m.name == axis_name and m.op == "Const"), None)
                axis_value = None if axis_node is None else axis_node.attr.get("value")
            if axis_value is None:
                raise UnsupportedGraph(f"{n.name}: the concatenation axis {axis_name!r} is not a constant")
            items.append(_Op("Concat", [ref(i) for i in ins[:-1]], n.name,
                             {"axis": int(np.asarray(axis_value).ravel()[0])}))
        else:
            raise UnsupportedGraph(f"{n.name}: TensorFlow op {op!r} is not supported by the ONNX converter")

    onnx_nodes = []
    for item in items:
        if isinstance(item, _Conv):
            base = item.output
            initializers[f"{base}/W"] = item.weight.astype(np.float32)
            initializers[f"{base}/B"] = item.bias.astype(np.float32)
            onnx_nodes.append(helper.make_node(
                "Conv", [item.input, f"{base}/W", f"{base}/B"], [item.output], name=base, group=item.group,
                strides=item.strides, dilations=item.dilations, auto_pad=item.auto_pad,
                kernel_shape=list(item.weight.shape[2:])))
        else:
            onnx_nodes.append(helper.make_node(item.op, item.inputs, [item.output], name=item.output, **item.attrs))
    h, w = input_hw if input_hw else ("height", "width")
    graph = helper.make_graph(
        onnx_nodes, "tf_graph",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, h, w])],
        [helper.make_tensor_value_info(ref(o), TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="viscurate.models.tf_onnx")
    model.ir_version = min(model.ir_version, 8)  # readable by onnxruntime >= 1.14
    return model
