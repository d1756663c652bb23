"""Random documents and hypothesis strategies for MongoDB queries, for the differential tests.

Two families:
- free-form documents: nested objects and arrays, nulls, missing fields, numeric keys, ints, doubles
  (including integral doubles and integers beyond 2**53), strings, booleans; stored in ``extra``;
- sample-shaped documents: the declared fields (typed columns, box lists in the objects table) with
  missing values, empty lists, boxes lacking attributes and free-form box attributes.
"""
from __future__ import annotations

import random

from hypothesis import strategies as st

KEYS = ["a", "b", "c", "0", "1"]
STRINGS = ["", "a", "ab", "b", "B", "cat", "dog", "é", "a.b"]
INTS = [0, 1, 2, -3, 7, 2**31, -(2**40), 2**53 + 1, 2**53]
FLOATS = [0.5, -1.25, 1.0, 2.0, 3.75, 1e10, 2.0**53]


def random_scalar(r: random.Random):
    k = r.random()
    if k < 0.12:
        return None
    if k < 0.22:
        return r.choice([True, False])
    if k < 0.55:
        return r.choice(INTS)
    if k < 0.7:
        return r.choice(FLOATS)
    return r.choice(STRINGS)


def random_value(r: random.Random, depth: int = 0):
    k = r.random()
    if depth >= 3 or k < 0.5:
        return random_scalar(r)
    if k < 0.75:
        return [random_value(r, depth + 1) for _ in range(r.choice([0, 1, 1, 2, 2, 3]))]
    return random_doc(r, depth + 1)


def random_doc(r: random.Random, depth: int = 0) -> dict:
    keys = r.sample(KEYS, r.randint(0, 3))
    return {k: random_value(r, depth) for k in keys}


def free_form_docs(seed: int, n: int) -> list[dict]:
    r = random.Random(seed)
    docs = []
    for i in range(n):
        d = {"_id": f"d{i:04d}"}
        for top in ["a", "b", "c", "m"]:
            if r.random() < 0.75:
                d[top] = random_value(r, 0 if top != "m" else 1)
        docs.append(d)
    return docs


CLASSES = ["cat", "dog", "person", "car", "cup"]
ISSUES = ["dark", "bright", "blurry", "corrupt", "grayscale"]


def sample_docs(seed: int, n: int) -> list[dict]:
    r = random.Random(seed)
    docs = []
    for i in range(n):
        d: dict = {"_id": f"s{i:04d}"}
        if r.random() < 0.9:
            d["width"] = r.choice([1, 32, 640, 1024, 2**31 + 5])
        if r.random() < 0.9:
            d["height"] = r.choice([1, 480, 640, 768])
        if r.random() < 0.8:
            d["format"] = r.choice(["JPEG", "PNG", "GIF"])
        if r.random() < 0.8:
            d["tags"] = r.sample(["reviewed", "train", "hard", "x"], r.randint(0, 3))
        if r.random() < 0.8:
            d["issues"] = r.sample(ISSUES, r.randint(0, 2))
        q = {}
        for k in ["blur", "brightness"]:
            if r.random() < 0.7:
                q[k] = r.choice([0.0, 0.5, 3.0, 150.25, 1000.0])
        if r.random() < 0.5:
            q["grayscale"] = r.choice([True, False])
        if q:
            d["quality"] = q
        if r.random() < 0.8:
            d["object_analysis"] = [random_box(r) for _ in range(r.choice([0, 1, 1, 2, 3]))]
        if r.random() < 0.5:
            gt = {}
            if r.random() < 0.5:
                gt["label"] = r.choice(CLASSES)
            if r.random() < 0.7:
                gt["detections"] = [random_box(r) for _ in range(r.choice([0, 1, 2]))]
            d["ground_truth"] = gt
        if r.random() < 0.6:
            d["label_quality_estimation"] = r.choice([0.1, 0.5, 0.9])
        if r.random() < 0.5:
            d["object_analysis_processed"] = r.choice([True, False])
        if r.random() < 0.5:
            d["split"] = r.choice(["train", "val"])
        if r.random() < 0.6:
            d["metadata"] = random_doc(r, 1)
        docs.append(d)
    return docs


def random_box(r: random.Random) -> dict:
    b: dict = {}
    if r.random() < 0.9:
        b["name"] = r.choice(CLASSES)
    if r.random() < 0.8:
        b["confidence"] = r.choice([0.1, 0.5, 0.75, 0.9, 1.0])
    if r.random() < 0.7:
        b["bbox"] = [r.choice([0, 5, 10]) + 0.0, 2.0, r.choice([10.0, 50.0]), 20.0]
    if r.random() < 0.4:
        b["label_quality_estimation"] = r.choice([0.2, 0.6])
    if r.random() < 0.3:
        b["note"] = random_value(r, 1)
    return b


# ---- queries --------------------------------------------------------------------------------

def scalar_operands():
    return st.one_of(
        st.none(), st.booleans(), st.sampled_from(INTS), st.sampled_from(FLOATS), st.sampled_from(STRINGS),
        st.integers(-5, 12), st.sampled_from([0.5, 1.5, 100.0, 640.0, 0.9, 1000.0]))


def operands(pool=()):
    """Operand values: mostly from ``pool`` (values the documents hold) so that queries often match."""
    scalars = st.one_of(scalar_operands(), st.sampled_from(list(pool))) if pool else scalar_operands()
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=2)), max_leaves=4)


TYPE_NAMES = ["double", "string", "object", "array", "bool", "null", "int", "long", "number", 1, 2, 3, 4, 8, 10, 16, 18]


@st.composite
def field_ops(draw, values, depth=0):
    """An operator object (or literal) for one path."""
    kind = draw(st.sampled_from(["eq", "literal", "cmp", "in", "exists", "type", "regex", "size", "all",
                                 "elemMatch", "not", "ne", "multi"]))
    v = values
    if kind == "literal":
        return draw(v)
    if kind == "eq":
        return {"$eq": draw(v)}
    if kind == "ne":
        return {"$ne": draw(v)}
    if kind == "cmp":
        return {draw(st.sampled_from(["$gt", "$gte", "$lt", "$lte"])): draw(v)}
    if kind == "in":
        return {draw(st.sampled_from(["$in", "$nin"])): draw(st.lists(v, max_size=3))}
    if kind == "exists":
        return {"$exists": draw(st.booleans())}
    if kind == "type":
        return {"$type": draw(st.sampled_from(TYPE_NAMES))}
    if kind == "regex":
        pat = draw(st.sampled_from(["^a", "b", "A", "^$", "at$", "é", "^c.t$", r"\."]))
        q = {"$regex": pat}
        if draw(st.booleans()):
            q["$options"] = draw(st.sampled_from(["i", "", "m", "s"]))
        return q
    if kind == "size":
        return {"$size": draw(st.integers(0, 3))}
    if kind == "all":
        return {"$all": draw(st.lists(v, max_size=2))}
    if kind == "elemMatch" and depth < 2:
        if draw(st.booleans()):
            inner = draw(field_ops(values, depth + 1))
            if not (isinstance(inner, dict) and inner and next(iter(inner)).startswith("$")):
                inner = {"$eq": inner}
            return {"$elemMatch": inner}
        keys = st.sampled_from(KEYS + ["name", "confidence", "bbox", "note"])
        return {"$elemMatch": draw(st.dictionaries(keys, field_ops(values, depth + 1), max_size=2))}
    if kind == "not" and depth < 2:
        inner = draw(field_ops(values, depth + 1))
        if not (isinstance(inner, dict) and inner and next(iter(inner)).startswith("$")):
            inner = {"$eq": inner}
        return {"$not": inner}
    if kind == "multi":
        return {"$gt": draw(v), "$lt": draw(v)}
    return {"$exists": True}


@st.composite
def queries(draw, paths, values, depth=0):
    """``values`` is a strategy, or a function from a path to a strategy of likely operands."""
    n = draw(st.sampled_from([1, 1, 2]))
    q = {}
    for _ in range(n):
        if depth < 2 and draw(st.integers(0, 5)) == 0:
            op = draw(st.sampled_from(["$and", "$or", "$nor"]))
            q[op] = draw(st.lists(queries(paths, values, depth + 1), min_size=1, max_size=3))
        else:
            path = draw(paths)
            q[path] = draw(field_ops(values(path) if callable(values) else values))
    return q


free_paths = st.lists(st.sampled_from(KEYS + ["m"]), min_size=1, max_size=3).map(".".join).filter(
    lambda p: p.split(".")[0] in ("a", "b", "c", "m"))

SAMPLE_PATHS = [
    "width", "height", "format", "tags", "tags.0", "tags.1", "issues", "quality", "quality.blur",
    "quality.brightness", "quality.grayscale", "quality.zz", "width.a", "object_analysis",
    "object_analysis.name", "object_analysis.confidence", "object_analysis.bbox", "object_analysis.bbox.0",
    "object_analysis.0", "object_analysis.0.name", "object_analysis.1.confidence", "object_analysis.note",
    "object_analysis.note.a", "object_analysis.label_quality_estimation", "ground_truth", "ground_truth.label",
    "ground_truth.detections", "ground_truth.detections.name", "ground_truth.detections.bbox",
    "label_quality_estimation", "object_analysis_processed", "split", "metadata", "metadata.a", "metadata.b.0",
    "missing_field", "_id",
]
sample_paths = st.sampled_from(SAMPLE_PATHS)
SAMPLE_POOL = CLASSES + ISSUES + ["JPEG", "PNG", "train", "val", "reviewed", "hard", 640, 480, 32, 1, 1024,
                                  0.5, 0.9, 0.1, 0.75, 3.0, 150.25, 1000.0, 10.0, 2.0, 20.0, True, False, None]
_BY_LEAF = {
    "_id": ["s0001", "s0002", "s0100"], "width": [1, 32, 640, 1024, 2**31 + 5, 640.0], "height": [1, 480, 640, 768],
    "format": ["JPEG", "PNG", "GIF"], "tags": ["reviewed", "train", "hard", "x", ["reviewed"], []],
    "issues": ISSUES + [[]], "quality": [{"blur": 3.0}, {"blur": 0.5, "brightness": 0.0}, {}],
    "blur": [0.0, 0.5, 3.0, 150.25, 1000.0], "brightness": [0.0, 0.5, 3.0], "grayscale": [True, False],
    "name": CLASSES, "confidence": [0.1, 0.5, 0.75, 0.9, 1.0], "bbox": [0.0, 5, 10.0, 2.0, 20.0, [0.0, 2.0, 10.0, 20.0]],
    "label_quality_estimation": [0.1, 0.2, 0.5, 0.6, 0.9], "label": CLASSES, "split": ["train", "val"],
    "object_analysis_processed": [True, False], "object_analysis": [[], {"name": "cat"}], "detections": [[]],
    "ground_truth": [{"label": "cat"}, {}],
}


def sample_values(path: str):
    """Operands for a sample path: mostly values of that field, sometimes anything."""
    parts = [p for p in path.split(".") if not p.isdigit()]
    pool = _BY_LEAF.get(parts[-1] if parts else "", SAMPLE_POOL)
    return st.one_of(st.sampled_from(pool), st.sampled_from(pool), st.sampled_from(pool), operands(SAMPLE_POOL))
free_values = operands()
