"""Read TensorFlow frozen graphs without TensorFlow: the constants of a binary ``GraphDef`` (``.pb``) and the
nodes of an OpenCV text graph (``.pbtxt``, the simplified graph that ``cv2.dnn.readNetFromTensorflow`` takes).

Both are protocol-buffer files. TensorFlow (about 600 MB) would be the usual way to read them; the two
small parsers here read exactly what :mod:`viscurate.models.tf_onnx` needs to rebuild the network for
onnxruntime: every ``Const`` tensor of the frozen graph (weights), and the structure of the text graph.

>>> nodes = parse_text_graph('node { name: "x" op: "Relu6" input: "y" attr { key: "k" value { i: 2 } } }')
>>> nodes[0].name, nodes[0].op, nodes[0].inputs, nodes[0].attr["k"]
('x', 'Relu6', ['y'], 2)
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ViscurateError

__all__ = ["TextNode", "parse_text_graph", "read_text_graph", "read_constants"]

# TensorFlow DataType enum -> numpy dtype (the types frozen detection graphs hold as constants)
_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
              10: np.bool_, 19: np.float16}


class GraphFormatError(ViscurateError):
    """A graph file is not the protocol buffer it should be."""


# ---- binary GraphDef: constants -----------------------------------------------------------------

def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise GraphFormatError("varint too long")


def _fields(buf: memoryview, start: int = 0, end: int | None = None):
    """(field number, wire type, value): value is an int for varints and fixed-width fields, a
    ``(start, end)`` slice for length-delimited ones."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = (pos, pos + size), pos + size
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise GraphFormatError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise GraphFormatError("a field runs past the end of its message")
        yield number, wire, value


def _tensor(buf: memoryview, start: int, end: int) -> np.ndarray | None:
    """A ``TensorProto`` as an array (``tensor_content``, or repeated values broadcast as TensorFlow does);
    ``None`` for the types a network's weights never have (strings, resources...)."""
    dtype_id, shape, content = 1, [], None
    floats: list[float] = []
    ints: list[int] = []
    for number, wire, value in _fields(buf, start, end):
        if number == 1:
            dtype_id = value
        elif number == 2:  # TensorShapeProto { repeated Dim dim = 2 { int64 size = 1 } }
            for n2, _, v2 in _fields(buf, *value):
                if n2 == 2:
                    size = next((v3 for n3, _, v3 in _fields(buf, *v2) if n3 == 1), 0)
                    shape.append(size - (1 << 64) if size >= 1 << 63 else size)
        elif number == 4:
            content = bytes(buf[value[0]:value[1]])
        elif number == 5:  # float_val: packed or not
            if wire == 2:
                floats.extend(struct.unpack(f"<{(value[1] - value[0]) // 4}f", buf[value[0]:value[1]]))
            else:
                floats.append(struct.unpack("<f", value.to_bytes(4, "little"))[0])
        elif number in (7, 10):  # int_val, int64_val
            if wire == 2:
                pos = value[0]
                while pos < value[1]:
                    v, pos = _varint(buf, pos)
                    ints.append(v - (1 << 64) if v >= 1 << 63 else v)
            else:
                ints.append(value - (1 << 64) if value >= 1 << 63 else value)
    dtype = _TF_DTYPES.get(dtype_id)
    if dtype is None:
        return None
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        return np.frombuffer(content, dtype=dtype).reshape(shape).copy()
    values = floats or ints
    if not values:
        return np.zeros(shape, dtype)
    flat = np.asarray(values, dtype=dtype)
    if flat.size < count:  # TensorFlow repeats the last value to fill the shape
        flat = np.concatenate([flat, np.full(count - flat.size, flat[-1], dtype)])
    return flat[:count].reshape(shape)


def read_constants(path: str) -> dict[str, np.ndarray]:
    """Every ``Const`` node of a binary frozen ``GraphDef`` file, by node name.

    Weights keep TensorFlow's layouts (``HWIO`` for ``Conv2D``, ``HWCM`` for depthwise convolutions).
    Constants of non-numeric types (strings) are left out.
    """
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    constants: dict[str, np.ndarray] = {}
    for number, _, node in _fields(buf):
        if number != 1:  # GraphDef.node
            continue
        name = op = ""
        tensor_at = None
        for n2, _, v2 in _fields(buf, *node):
            if n2 == 1:
                name = bytes(buf[v2[0]:v2[1]]).decode()
            elif n2 == 2:
                op = bytes(buf[v2[0]:v2[1]]).decode()
            elif n2 == 5:  # attr map entry {key = 1; value = 2 (AttrValue)}
                key, attr_value = "", None
                for n3, _, v3 in _fields(buf, *v2):
                    if n3 == 1:
                        key = bytes(buf[v3[0]:v3[1]]).decode()
                    elif n3 == 2:
                        attr_value = v3
                if key == "value" and attr_value is not None:
                    tensor_at = next((v4 for n4, _, v4 in _fields(buf, *attr_value) if n4 == 8), None)
        if op == "Const" and tensor_at is not None:
            array = _tensor(buf, *tensor_at)
            if array is not None:
                constants[name] = array
    if not constants:
        raise GraphFormatError(f"{path} holds no constant tensors; is it a frozen TensorFlow graph?")
    return constants


# ---- text graph: structure ----------------------------------------------------------------------

@dataclass
class TextNode:
    """One ``node { }`` of a text graph: its attributes reduced to Python values (``list { i: 1 i: 2 }`` ->
    ``[1, 2]``; ``tensor { float_val: ... }`` -> a float32 array; ``s: "SAME"`` -> ``"SAME"``)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, Any] = field(default_factory=dict)


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}:])|([^\s{}:"]+))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise GraphFormatError(f"unexpected text at offset {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group(1) is None:
            out.append(m.group(2) or m.group(3) or m.group(4))
    return out


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        return token[1:-1].encode().decode("unicode_escape")
    if token in ("true", "false"):
        return token == "true"
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # an enum name such as DT_FLOAT


def _message(tokens: list[str], pos: int) -> tuple[dict[str, list[Any]], int]:
    fields: dict[str, list[Any]] = {}
    while pos < len(tokens) and tokens[pos] != "}":
        name = tokens[pos]
        pos += 1
        if pos < len(tokens) and tokens[pos] == ":":
            pos += 1
        if pos < len(tokens) and tokens[pos] == "{":
            value, pos = _message(tokens, pos + 1)
            if pos >= len(tokens):
                raise GraphFormatError(f"unclosed {{ after {name!r}")
            pos += 1
        elif pos < len(tokens):
            value, pos = _scalar(tokens[pos]), pos + 1
        else:
            raise GraphFormatError(f"{name!r} has no value")
        fields.setdefault(name, []).append(value)
    return fields, pos


def _attr_value(value: dict[str, list[Any]]) -> Any:
    if "list" in value:
        lst = value["list"][0]
        for kind in ("i", "f", "s", "b"):
            if kind in lst:
                return list(lst[kind])
        return []
    if "tensor" in value:
        t = value["tensor"][0]
        for kind, dtype in (("float_val", np.float32), ("int_val", np.int32), ("int64_val", np.int64)):
            if kind in t:
                return np.asarray(t[kind], dtype)
        return np.zeros(0, np.float32)
    for kind in ("s", "i", "f", "b", "type"):
        if kind in value:
            return value[kind][0]
    return value


def parse_text_graph(text: str) -> list[TextNode]:
    """The nodes of a text-format ``GraphDef``, in file order."""
    tokens = _tokens(text)
    top, pos = _message(tokens, 0)
    if pos != len(tokens):
        raise GraphFormatError("unbalanced } in the text graph")
    nodes = []
    for raw in top.get("node", []):
        attrs = {}
        for entry in raw.get("attr", []):
            attrs[entry["key"][0]] = _attr_value(entry.get("value", [{}])[0])
        nodes.append(TextNode(name=raw["name"][0], op=raw["op"][0], inputs=[str(i) for i in raw.get("input", [])],
                              attr=attrs))
    return nodes


def read_text_graph(path: str) -> list[TextNode]:
    """:func:`parse_text_graph` of a file."""
    with open(path, encoding="utf-8") as f:
        return parse_text_graph(f.read())
