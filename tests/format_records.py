"""Label records for the format round-trip tests: hypothesis strategies that make the hard cases (unicode
names, out-of-order class ids, classes without boxes, empty images, box ids, attributes, flags, splits), the
comparison a round trip must pass, and the corpus of real detection sets."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import strategies as st

from viscurate.formats.records import Category, LabeledImage

CORPUS = Path(os.environ.get("CORPUS_DIR", Path.home() / ".cache" / "corpus")) / "detection"

# Text that survives every format: no control characters, no surrogates, not only spaces.
NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s != "")
FILE_STEM = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd"), whitelist_characters=" -_&é"),
                    min_size=1, max_size=10).filter(lambda s: s.strip() == s)
ATTR_NAME = st.sampled_from(["color", "pose", "größe", "n", "score2", "is_new"])
ATTR_VALUE = st.one_of(st.booleans(), st.integers(-1000, 1000), NAME,
                       st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 6)))


@st.composite
def label_sets(draw, *, ids: bool = True, attributes: bool = True, flags: bool = True, confidence: bool = True,
               labels: bool = True, splits: bool = True, crowd: bool = False, none_detections: bool = True,
               max_images: int = 6) -> tuple[list[Category], list[LabeledImage]]:
    """``(classes, records)``: classes with shuffled distinct ids (some without boxes) and records whose
    boxes use them. Keyword switches leave out what a format cannot hold."""
    names = draw(st.lists(NAME, min_size=1, max_size=6, unique=True))
    class_ids = draw(st.permutations(list(range(1, len(names) + 1)))) if ids else list(range(len(names)))
    spread = draw(st.integers(0, 50))
    classes = [Category(int(i) * (spread + 1), n) for i, n in zip(class_ids, names)]
    records = []
    stems = draw(st.lists(FILE_STEM, min_size=1, max_size=max_images, unique_by=str.lower))
    for k, stem in enumerate(stems):
        w, h = draw(st.integers(1, 4000)), draw(st.integers(1, 4000))
        label = draw(st.one_of(st.none(), NAME)) if labels else None
        empty = draw(st.sampled_from(["none", "empty", "boxes", "boxes"])) if none_detections and label is None \
            else draw(st.sampled_from(["empty", "boxes", "boxes"]))
        detections = None if empty == "none" else []
        if empty == "boxes":
            for b in range(draw(st.integers(1, 5))):
                x = draw(st.floats(0, w - 1, allow_nan=False))
                y = draw(st.floats(0, h - 1, allow_nan=False))
                box = {"name": draw(st.sampled_from(names)),
                       "bbox": [x, y, draw(st.floats(0, w - x, allow_nan=False)),
                                draw(st.floats(0, h - y, allow_nan=False))]}
                if ids and draw(st.booleans()):
                    box["id"] = draw(st.one_of(st.integers(1, 10**9).map(lambda v, b=b: v * 10 + b),
                                               st.uuids().map(lambda u, b=b: f"r-{u.hex[:8]}{b}")))
                if confidence and draw(st.booleans()):
                    box["confidence"] = draw(st.floats(0, 1, allow_nan=False))
                if flags:
                    for flag in ("difficult", "truncated", "occluded"):
                        if draw(st.integers(0, 3)) == 0:
                            box[flag] = draw(st.booleans())
                if crowd and draw(st.integers(0, 4)) == 0:
                    box["iscrowd"] = 1
                if attributes and draw(st.booleans()):
                    box["attributes"] = draw(st.dictionaries(ATTR_NAME, ATTR_VALUE, min_size=1, max_size=3))
                detections.append(box)
        records.append(LabeledImage(f"/data/ïmages/{stem}_{k}.jpg", sample_id=f"s{k}-{stem}", width=w, height=h,
                                    detections=detections, label=label,
                                    split=draw(st.sampled_from([None, "train", "validation", "test"])) if splits else None))
    if attributes:
        _one_kind_per_attribute(records)
    return classes, records


def _one_kind_per_attribute(records: list[LabeledImage]) -> None:
    """An attribute keeps one kind across boxes (a tool's control is a checkbox, a number or a choice)."""
    kinds: dict[str, type] = {}
    for r in records:
        for b in r.detections or []:
            for name, v in list((b.get("attributes") or {}).items()):
                kind = bool if isinstance(v, bool) else (float if isinstance(v, (int, float)) else str)
                if kinds.setdefault(name, kind) is not kind:
                    del b["attributes"][name]
            if "attributes" in b and not b["attributes"]:
                del b["attributes"]


def assert_same_boxes(got: list[dict] | None, want: list[dict] | None, *, rel: float = 1e-9, abs_px: float = 1e-6,
                      where: str = "") -> None:
    """The boxes of one image came back: same count and order, names, every key; bboxes within float
    rounding (``rel`` of the value, ``abs_px`` pixels)."""
    if want is None:
        assert got is None, f"{where}: boxes appeared: {got}"
        return
    assert got is not None, f"{where}: boxes lost"
    assert len(got) == len(want), f"{where}: {len(got)} boxes, want {len(want)}"
    for g, w in zip(got, want):
        assert set(g) == set(w), f"{where}: keys {sorted(g)} != {sorted(w)}"
        for key in w:
            if key == "bbox":
                for a, b in zip(g["bbox"], w["bbox"]):
                    assert math.isclose(a, b, rel_tol=rel, abs_tol=abs_px), f"{where}: bbox {g['bbox']} != {w['bbox']}"
            elif isinstance(w[key], float) and not isinstance(w[key], bool):
                assert math.isclose(g[key], w[key], rel_tol=1e-12, abs_tol=1e-12), f"{where}: {key} {g[key]} != {w[key]}"
            else:
                assert g[key] == w[key] and type(g[key]) is type(w[key]), f"{where}: {key} {g[key]!r} != {w[key]!r}"


def corpus_set(name: str) -> Path:
    """A detection set of the corpus (see /work/shared/corpus/README.md), or a skip when the cache is
    absent (a failure under CI, which builds it first)."""
    path = CORPUS / name
    if not path.is_dir():
        why = f"{path} is missing: build it with python bench/detection_sets.py to run the real detection sets"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path
