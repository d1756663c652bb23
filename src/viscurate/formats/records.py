"""The records every label format reads and writes: one :class:`LabeledImage` per image, the classes as
:class:`Category` in the source's order, both carried by a :class:`LabelSet`.

A reader turns a dataset on disk into a ``LabelSet``; a writer takes ``LabeledImage`` records (and the
classes) and lays them out on disk. Neither touches the catalog: the ``Dataset`` ingests the images a
reader names, stores their labels, and hands stored samples to a writer as records
(:meth:`~viscurate.dataset.Dataset.import_labels`, :meth:`~viscurate.dataset.Dataset.export`).

>>> cats = [Category(1, "person"), Category(3, "car")]
>>> img = LabeledImage("images/a.jpg", width=640, height=480,
...                    detections=[{"name": "car", "bbox": [10.0, 20.0, 100.0, 50.0], "id": 7}])
>>> LabelSet("coco", Path("/data"), cats, [img]).class_ids()
{'person': 1, 'car': 3}

Boxes are plain dicts, the catalog's own box documents, so what a reader yields is what is stored:

- ``name`` (the class name) and ``bbox`` (``[x, y, width, height]`` in pixels, floats) always;
- ``confidence`` (0-1) for a model's boxes and pre-annotations;
- ``iscrowd`` (1 when the box covers a crowd), ``area`` (pixels, when the source gives one);
- ``difficult``, ``truncated``, ``occluded`` (booleans: VOC's and CVAT's flags);
- ``attributes``: the user's per-box attributes, ``{name: str | int | float | bool}`` (CVAT, Label
  Studio choices, COCO's ``attributes``);
- ``id``: the box's id in the source (COCO annotation id, CVAT box order), kept so a round trip gives
  the same ids back.

A format that cannot express one of these drops it on write and counts it in the writer's report
(``{"dropped": {"attributes": 3}}``), never silently.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["Category", "LabeledImage", "LabelSet", "BOX_KEYS", "categories_from_names", "merge_categories", "counted",
           "box_xyxy", "box_from_xyxy", "record_from_sample", "sample_fields_from_record", "field_value", "split_file_name"]

#: The box keys every format knows how to map (see the module docstring); other keys are kept as they are
#: by the catalog but written only by the formats that have a place for them.
BOX_KEYS = ("name", "bbox", "confidence", "iscrowd", "area", "difficult", "truncated", "occluded",
            "attributes", "id")


@dataclass(frozen=True)
class Category:
    """One class of a label field: its ``id`` in the source (COCO category id, YOLO class index, a CVAT
    label's position), its ``name``, and what else the source says of it (``supercategory``, a colour,
    the CVAT attribute specs) in ``extra``.

    >>> Category(0, "cat", {"supercategory": "animal"}).name
    'cat'
    """

    id: int | str
    name: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, **({"extra": self.extra} if self.extra else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Category":
        return cls(d["id"], str(d["name"]), dict(d.get("extra") or {}))


@dataclass
class LabeledImage:
    """One image and its labels, as a format names it.

    ``file``: the image as the format refers to it (relative to the set's ``root``, absolute, or a URL);
    writers get absolute paths. ``sample_id``: the viscurate ``_id`` when the format carries it (our
    exports write it, so returns from a labeling tool match by id, not by file name). ``detections``:
    ``None`` when the format says nothing about boxes, ``[]`` when it says the image has none.
    ``label``: an image-level class; ``label_confidence``: how sure the model that gave it was (a
    pre-annotation's score; ``None`` for a human's label). ``split``: train / val / test. ``fields``: other per-image values
    (``{"dotted.path": value}``) kept as sample fields. ``source_id``: the image's id in the source
    (COCO image id, CVAT image id, Label Studio task id).
    """

    file: str
    sample_id: str | None = None
    width: int | None = None
    height: int | None = None
    detections: list[dict] | None = None
    label: str | None = None
    split: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    source_id: Any = None
    label_confidence: float | None = None


@dataclass
class LabelSet:
    """A labeled dataset as a reader found it.

    ``images`` may be a generator (read it once). ``root``: where relative ``file`` names are found.
    ``classes``: in the source's order with the source's ids (a writer of the same format gives them
    back unchanged). ``info``: what the source says of itself (COCO ``info``, ``data.yaml``'s other keys).
    ``skipped``: what the reader saw and could not represent, counted by kind (``{"polygon": 3}``),
    so an import can say so.
    """

    format: str
    root: Path
    classes: list[Category]
    images: Iterable[LabeledImage]
    info: dict[str, Any] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)

    def class_ids(self) -> dict[str, int | str]:
        """``{name: id}`` of the classes, in their order."""
        return {c.name: c.id for c in self.classes}

    def path_of(self, image: LabeledImage) -> str:
        """Where ``image``'s bytes are: a URL as it is, a relative name under ``root``."""
        if "://" in image.file:
            return image.file
        p = Path(image.file)
        return os.path.normpath(p if p.is_absolute() else self.root / p)

    def __iter__(self) -> Iterator[LabeledImage]:
        return iter(self.images)


def categories_from_names(names: Iterable[str], start: int = 0) -> list[Category]:
    """Classes numbered in the order given, from ``start`` (YOLO counts from 0, COCO from 1).

    >>> [c.id for c in categories_from_names(["a", "b"], start=1)]
    [1, 2]
    """
    return [Category(i, n) for i, n in enumerate(dict.fromkeys(names), start)]


def merge_categories(known: list[Category], names: Iterable[str]) -> list[Category]:
    """``known`` classes in their order, then every name of ``names`` they lack, numbered after the
    largest integer id (so a class added in the catalog gets a new id and the old ids stay).

    >>> [(c.id, c.name) for c in merge_categories([Category(5, "b"), Category(2, "a")], ["a", "c"])]
    [(5, 'b'), (2, 'a'), (6, 'c')]
    """
    have = {c.name for c in known}
    ints = [c.id for c in known if isinstance(c.id, int) and not isinstance(c.id, bool)]
    next_id = max(ints) + 1 if ints else (1 if not known else len(known))
    out = list(known)
    for n in dict.fromkeys(names):
        if n not in have:
            out.append(Category(next_id, n))
            have.add(n)
            next_id += 1
    return out


def box_xyxy(box: dict) -> tuple[float, float, float, float]:
    """A box's corners ``(x1, y1, x2, y2)`` from its ``bbox``."""
    x, y, w, h = (float(v) for v in box["bbox"])
    return x, y, x + w, y + h


def box_from_xyxy(name: str, x1: float, y1: float, x2: float, y2: float, **extra: Any) -> dict:
    """A box dict from corners (VOC, CVAT): ``{"name", "bbox": [x, y, w, h], **extra}``.

    >>> box_from_xyxy("cat", 10, 20, 110, 70, occluded=True)
    {'name': 'cat', 'bbox': [10.0, 20.0, 100.0, 50.0], 'occluded': True}
    """
    return {"name": name, "bbox": [float(x1), float(y1), float(x2) - float(x1), float(y2) - float(y1)], **extra}


def field_value(fields: dict, path: str) -> Any:
    """A record's field: ``fields[path]`` for a dotted key (as readers set them), else the value at that
    path inside nested dicts (as a stored document holds it).

    >>> field_value({"coco.image_id": 3}, "coco.image_id"), field_value({"coco": {"image_id": 4}}, "coco.image_id")
    (3, 4)
    """
    if path in fields:
        return fields[path]
    node: Any = fields
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


_at = field_value


def record_from_sample(doc: dict, *, field: str | None, label_field: str | None = "ground_truth.label") -> LabeledImage:
    """A stored sample as a record to write: its file (or URL), id, size, the boxes of ``field`` (``[]``
    when it has none), the class of ``label_field``, its split, and the whole document as ``fields``
    (writers that keep more than labels, e.g. the tables, take what they need from it).

    >>> r = record_from_sample({"_id": "s1", "filepath": "/a.jpg", "width": 4, "height": 3,
    ...                         "ground_truth": {"detections": [{"name": "cat", "bbox": [0, 0, 2, 2]}]}},
    ...                        field="ground_truth.detections")
    >>> r.file, r.sample_id, len(r.detections)
    ('/a.jpg', 's1', 1)
    """
    boxes = _at(doc, field) if field else None
    label = _at(doc, label_field) if label_field else None
    # a model's class sits beside its confidence (``head.label``, ``head.confidence``): a pre-annotation's score
    score = _at(doc, label_field.rsplit(".", 1)[0] + ".confidence") if label_field and "." in label_field else None
    return LabeledImage(doc.get("filepath") or doc.get("url") or doc["_id"], sample_id=doc["_id"],
                        width=doc.get("width"), height=doc.get("height"),
                        detections=[dict(b) for b in boxes] if isinstance(boxes, list) else ([] if field else None),
                        label=label if isinstance(label, str) else None,
                        split=doc.get("split") if isinstance(doc.get("split"), str) else None, fields=doc,
                        label_confidence=float(score) if isinstance(label, str) and isinstance(score, (int, float))
                        and not isinstance(score, bool) else None)


def sample_fields_from_record(rec: LabeledImage, *, field: str, label_field: str = "ground_truth.label") -> dict[str, Any]:
    """What a read record sets on its sample, ``{dotted path: value}``: its boxes as ``field``, its class
    as ``label_field``, its split, and its other fields. Paths the record says nothing about are absent
    (an import never clears what it does not know).

    >>> sample_fields_from_record(LabeledImage("a.jpg", detections=[], split="val"), field="ground_truth.detections")
    {'ground_truth.detections': [], 'split': 'val'}
    """
    out: dict[str, Any] = {}
    if rec.detections is not None:
        out[field] = rec.detections
    if rec.label is not None:
        out[label_field] = rec.label
    if rec.split is not None:
        out["split"] = rec.split
    for k, v in rec.fields.items():
        out.setdefault(k, v)
    return out


def counted(items: Iterable[Any], progress: Any = None) -> Iterator[Any]:
    """``items`` as they are, calling ``progress(n)`` once the caller is done with the n-th (a writer's
    loop body ran, whether it wrote the record or left it out), so a bar moves for every record.

    >>> seen = []; [x for x in counted("ab", seen.append)]; seen
    ['a', 'b']
    [1, 2]
    """
    for n, item in enumerate(items, 1):
        yield item
        if progress is not None:
            progress(n)


def split_file_name(split: str | None, default: str) -> str:
    """A split as a file or folder name (``train``, ``val``): anything but letters, digits, ``.``, ``_``
    and ``-`` becomes ``_``, so a split read from a label file can never name a path out of the export.

    >>> split_file_name("/../../etc", "train"), split_file_name(None, "train"), split_file_name("val 2", "x")
    ('_.._.._etc', 'train', 'val_2')
    """
    return re.sub(r"[^\w.-]+", "_", split or default).strip(".") or default
