"""CVAT for images 1.1 XML, read and written: one ``annotations.xml`` whose ``<meta>`` names the labels
(in order, with their attribute specs) and whose ``<image id name width height>`` elements hold
``<box>`` and ``<tag>`` elements; the images beside it in ``images/``.

>>> labels = read_cvat("task_42/annotations.xml")                            # doctest: +SKIP
>>> labels.classes[0].extra["attributes"][0]["input_type"]                   # doctest: +SKIP
'checkbox'
>>> write_cvat(labels, "to_label/", classes=labels.classes, media="copy")    # doctest: +SKIP
{'images': 120, 'boxes': 431, 'classes': 3, 'dropped': {'confidence': 431}, 'left_out': {}, ...}

What maps to what:

- Labels: ``<meta><task><labels>`` (or ``<project>``'s) give the class order (ids are positions from 0);
  a label's ``color``, ``type`` and attribute specs (``name``, ``mutable``, ``input_type``,
  ``default_value``, ``values``, as the file has them) are kept in ``Category.extra`` and written back.
- ``<box>``: ``xtl ytl xbr ybr`` are 0-based pixel corners, our ``bbox`` is ``[xtl, ytl, xbr - xtl,
  ybr - ytl]``; ``occluded="1"`` is ``occluded: True`` (CVAT always writes the flag, so ``0`` reads as
  absent); ``z_order`` and ``group_id`` are kept as box keys of the same name when not 0; the box's
  position in the file (from 0) is its ``id``. ``<attribute name>`` children become ``attributes``,
  typed by the label's spec: ``checkbox`` a bool, ``number`` an int or a float, ``select``, ``radio``
  and ``text`` a string. A box's ``source`` (manual / auto / file) is not kept: CVAT rewrites it
  when it imports a file.
- ``<tag label>``: the image's class (``label``); more than one tag per image counts
  ``skipped["tag"]``. ``subset``: the split (``default`` means none).
- Polygons, polylines, points, ellipses, masks, cuboids, skeletons, tracks and rotated boxes are
  counted in ``skipped``.

Writing streams the records to a temporary JSON Lines file first (the ``<meta>`` that comes first in
the XML names every attribute, which only the last record may reveal), then writes the XML from it.
Attributes the class's spec lacks get one from their values (bool: ``checkbox``, number:
``number``, text: ``text``). A dataset with splits is written as a project with one subset each
(datumaro and CVAT read a task's images as one subset); without splits, as a task. Confidences,
crowd flags, areas, VOC flags and box ids that are not the box's position are dropped and counted.
With ``media`` copy or symlink an image is named ``<sample id>/<file name>`` (in ``images/<sample
id>/``): CVAT keeps image names, so the file it gives back names the samples, wherever it is read;
a read gives the sample id back from such a name. With ``media="none"`` the name is the image's
absolute path (a task on shared storage), which the catalog knows too.
"""
from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

from ..errors import ViscurateError
from ..files import atomic_file
from .media import image_size, place_image
from .records import Category, LabeledImage, LabelSet, box_from_xyxy, box_xyxy, counted, merge_categories

__all__ = ["looks_like_cvat", "read_cvat", "write_cvat"]

#: A sample id (decision 4: 24 hex digits) as the folder of an image name our exports write.
_SAMPLE_DIR = re.compile(r"^([0-9a-f]{24})/[^/]+$")
DEFAULT_SUBSET = "default"
_SHAPES = ("polygon", "polyline", "points", "ellipse", "mask", "cuboid", "skeleton")
_LABEL_KEYS = ("color", "type", "parent")  # the simple children of a CVAT <label> written back
_INT = re.compile(r"^[+-]?\d+$")


# ---- reading --------------------------------------------------------------------------------------------

def looks_like_cvat(path: Path) -> bool:
    """An XML file whose root is ``<annotations>`` with a ``<meta>`` (or a folder holding one)."""
    xml = _find_xml(Path(path))
    if xml is None:
        return False
    try:
        tags = [el.tag for _, el in zip(range(3), (e for _, e in ET.iterparse(xml, events=("start",))))]
    except (ET.ParseError, OSError):
        return False
    return bool(tags) and tags[0] == "annotations" and "meta" in tags


def _find_xml(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".xml" else None
    if (path / "annotations.xml").is_file():
        return path / "annotations.xml"
    xmls = sorted(path.glob("*.xml")) if path.is_dir() else []
    return xmls[0] if len(xmls) == 1 else None


def _children(el: ET.Element) -> dict[str, str]:
    return {c.tag: (c.text or "") for c in el if len(c) == 0}


def _meta(xml: Path) -> ET.Element:
    """The ``<meta>`` element (it comes first; the rest of the file is not read here)."""
    try:
        for event, el in ET.iterparse(xml, events=("start", "end")):
            if event == "end" and el.tag == "meta":
                return el
            if event == "start" and el.tag in ("image", "track"):
                break
    except ET.ParseError as e:
        raise ViscurateError(f"{xml}: not valid XML ({e})") from None
    except OSError as e:
        raise ViscurateError(f"cannot read {xml}: {e}") from None
    raise ViscurateError(f"{xml} has no <meta> before its images: not a CVAT for images 1.1 file")


def _classes(meta: ET.Element) -> list[Category]:
    labels = meta.find(".//labels")
    out = []
    for i, label in enumerate(labels.iterfind("label") if labels is not None else ()):
        extra: dict[str, Any] = {k: v for k, v in _children(label).items() if k not in ("name", "attributes")}
        specs = [_children(a) for a in label.iterfind("attributes/attribute")]
        if specs:
            extra["attributes"] = specs
        out.append(Category(i, label.findtext("name") or str(i), extra))
    return out


def read_cvat(path: str | os.PathLike, *, images: str | os.PathLike | None = None, **_: Any) -> LabelSet:
    """The CVAT for images 1.1 file at ``path`` (the XML, or the folder holding ``annotations.xml``) as a
    :class:`~viscurate.formats.records.LabelSet`; images are parsed as they are read (the file is
    never held whole). ``images``: where the image files are (default ``images/`` beside the XML, else
    the XML's folder). See the module docstring.

    >>> [c.name for c in read_cvat("annotations.xml").classes]           # doctest: +SKIP
    ['car', 'person']
    """
    xml = _find_xml(Path(path))
    if xml is None:
        raise ViscurateError(f"no CVAT annotations.xml in {path}")
    meta = _meta(xml)
    classes = _classes(meta)
    root = Path(os.path.abspath(xml.parent))
    image_dir = Path(os.path.abspath(images)) if images is not None else (root / "images" if (root / "images").is_dir()
                                                                   else root)
    owner = next((c for c in meta if c.tag in ("task", "project", "job")), None)
    info = {"mode": owner.tag, "name": owner.findtext("name")} if owner is not None else {}
    labels = LabelSet("cvat", root, classes, iter(()), info=info)
    labels.images = _images(labels, xml, image_dir)
    return labels


def _attribute_types(classes: list[Category]) -> dict[str, dict[str, str]]:
    return {c.name: {s.get("name", ""): s.get("input_type", "text") for s in c.extra.get("attributes") or ()}
            for c in classes}


def _typed(value: str, input_type: str | None) -> Any:
    if input_type == "checkbox":
        return value.strip().lower() == "true"
    if input_type == "number":
        try:
            return int(value) if _INT.match(value.strip()) else float(value)
        except ValueError:
            return value
    return value


def _images(labels: LabelSet, xml: Path, image_dir: Path) -> Iterator[LabeledImage]:
    types = _attribute_types(labels.classes)
    known = {c.name for c in labels.classes}
    box_id = 0
    doc_root = None
    try:
        for event, el in ET.iterparse(xml, events=("start", "end")):
            if doc_root is None:
                doc_root = el
            if event != "end":
                continue
            if el.tag == "track":
                labels.skipped["track"] += 1
                doc_root.clear()
            elif el.tag == "image":
                rec, box_id = _image(el, labels, types, known, box_id, image_dir)
                named = _SAMPLE_DIR.match(el.get("name", ""))
                rec.sample_id = named.group(1) if named else None
                doc_root.clear()  # what was read is let go: memory stays flat on a big file
                yield rec
    except ET.ParseError as e:
        raise ViscurateError(f"{xml}: not valid XML ({e})") from None


def _image(el: ET.Element, labels: LabelSet, types: dict[str, dict[str, str]], known: set[str], box_id: int,
           image_dir: Path) -> tuple[LabeledImage, int]:
    name = el.get("name") or ""
    boxes: list[dict] = []
    label = None
    for child in el:
        if child.tag == "box":
            box = _box(child, types, labels.skipped)
            if box is None:
                continue
            box["id"] = box_id
            box_id += 1
            if box["name"] not in known:
                labels.classes[:] = merge_categories(labels.classes, [box["name"]])
                known.add(box["name"])
            boxes.append(box)
        elif child.tag == "tag":
            if label is None:
                label = child.get("label")
            else:
                labels.skipped["tag"] += 1
        elif child.tag in _SHAPES:
            labels.skipped[child.tag] += 1
    src = Path(name) if os.path.isabs(name) or "://" in name else image_dir / name
    file = name if "://" in name else (src.relative_to(labels.root).as_posix() if src.is_relative_to(labels.root)
                                       else str(src))
    subset = el.get("subset")
    return LabeledImage(file, width=_int(el.get("width")), height=_int(el.get("height")), detections=boxes,
                        label=label, split=None if subset in (None, "", DEFAULT_SUBSET) else subset,
                        source_id=_int(el.get("id"))), box_id


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text not in (None, "") else None
    except ValueError:
        return None


def _box(el: ET.Element, types: dict[str, dict[str, str]], skipped: Counter) -> dict | None:
    name = el.get("label")
    try:
        x1, y1, x2, y2 = (float(el.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        skipped["box with bad corners"] += 1
        return None
    if not name:
        skipped["box without a label"] += 1
        return None
    if float(el.get("rotation") or 0):
        skipped["rotated box"] += 1
        return None
    box = box_from_xyxy(name, x1, y1, x2, y2)
    if el.get("occluded") == "1":
        box["occluded"] = True
    for key in ("z_order", "group_id"):
        v = _int(el.get(key))
        if v:
            box[key] = v
    spec = types.get(name, {})
    attributes = {a.get("name", ""): _typed(a.text or "", spec.get(a.get("name", "")))
                  for a in el.iterfind("attribute")}
    if attributes:
        box["attributes"] = attributes
    return box


# ---- writing --------------------------------------------------------------------------------------------

def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _value(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else _num(v) if isinstance(v, float) else str(v)


def _kind(v: Any) -> str:
    return "checkbox" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "text"


class _Specs:
    """The attributes seen per label while streaming: their kinds and number ranges, for ``<meta>``."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, set[str]]] = {}
        self.ranges: dict[tuple[str, str], list[float]] = {}

    def see(self, label: str, attributes: dict[str, Any]) -> None:
        for k, v in attributes.items():
            self.kinds.setdefault(label, {}).setdefault(k, set()).add(_kind(v))
            if _kind(v) == "number" and math.isfinite(float(v)):
                r = self.ranges.setdefault((label, k), [float(v), float(v)])
                r[0], r[1] = min(r[0], float(v)), max(r[1], float(v))

    def specs(self, c: Category, mixed: Counter) -> list[dict[str, str]]:
        given = [dict(s) for s in c.extra.get("attributes") or ()]
        have = {s.get("name") for s in given}
        for name, kinds in self.kinds.get(c.name, {}).items():
            if name in have:
                continue
            kind = next(iter(kinds)) if len(kinds) == 1 else "text"
            if len(kinds) > 1:
                mixed[f"attribute {name!r} of {c.name!r} (mixed types, written as text)"] += 1
            values = ""
            if kind == "checkbox":
                values = "false"
            elif kind == "number":
                lo, hi = self.ranges.get((c.name, name), [0.0, 0.0])
                values = f"{_num(math.floor(lo))}\n{_num(math.ceil(hi))}\n1"
            given.append({"name": name, "mutable": "False", "input_type": kind,
                          "default_value": values.split("\n")[0] if values else "", "values": values})
        return given


def write_cvat(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category],
               media: str = "copy", progress: Callable[[int], None] | None = None,
               name: str = "viscurate export", image_classes: Iterable[str] = (), **_: Any) -> dict:
    """Write ``images`` (records with absolute ``file`` paths or URLs) as a CVAT for images 1.1 task (or
    project, when the records have splits): ``out/annotations.xml`` (or ``out`` itself when it ends in
    ``.xml``), the images in ``images/`` beside it (``media="none"``: named by their absolute path or
    URL, for a task on shared storage). ``image_classes``: labels the annotators may tag images with,
    listed in ``<meta>`` even when no record carries them yet. A record's class is a ``<tag>``:
    ``source="auto"`` when it has a ``label_confidence`` (a model's pre-annotation; CVAT holds no
    score, so the confidence is counted in ``dropped``), else ``manual``. See the module docstring. Returns
    ``{"images", "boxes", "classes", "splits", "dropped", "left_out", "path"}``.

    >>> write_cvat(records, "to_label/", classes=[Category(0, "car")])           # doctest: +SKIP
    """
    if media not in ("copy", "symlink", "none"):
        raise ViscurateError(f"media must be copy, symlink or none, not {media!r}")
    out = Path(out)
    xml_path = out if out.suffix.lower() == ".xml" else out / "annotations.xml"
    folder = xml_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    classes = merge_categories(list(classes), [str(c) for c in image_classes])
    known = {c.name for c in classes}
    specs = _Specs()
    dropped: Counter = Counter()
    left_out: Counter = Counter()
    splits: set[str] = set()
    has_none = False
    used: set[str] = set()
    n_images = n_boxes = 0
    spill = folder / f".{xml_path.name}.{os.getpid()}.jsonl.tmp"
    try:
        with open(spill, "w", encoding="utf-8") as rows:
            for n, rec in enumerate(counted(images, progress), 1):
                name_in_task = _place(rec, folder, media, used, n, left_out)
                if name_in_task is None:
                    continue
                used.add(name_in_task)
                size = (rec.width, rec.height)
                if not all(size) and "://" not in rec.file:
                    size = image_size(rec.file) or (None, None)
                boxes = []
                for box in rec.detections or ():
                    b = _box_row(box, n_boxes + len(boxes), dropped)
                    if b is None:
                        continue
                    if b["label"] not in known:
                        classes = merge_categories(classes, [b["label"]])
                        known.add(b["label"])
                    specs.see(b["label"], b["attributes"])
                    boxes.append(b)
                if rec.label is not None and rec.label not in known:
                    classes = merge_categories(classes, [rec.label])
                    known.add(rec.label)
                auto = rec.label is not None and rec.label_confidence is not None
                if auto:
                    dropped["confidence"] += 1
                if rec.split:
                    splits.add(rec.split)
                else:
                    has_none = True
                rows.write(json.dumps({"name": name_in_task, "width": size[0], "height": size[1],
                                       "split": rec.split, "label": rec.label, "auto": auto, "boxes": boxes}) + "\n")
                n_images += 1
                n_boxes += len(boxes)
        subsets = sorted(splits) + ([DEFAULT_SUBSET] if has_none and splits else [])
        with atomic_file(xml_path) as raw, open(spill, encoding="utf-8") as rows:
            f = _Text(raw)
            f.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n')
            f.write(_meta_xml(classes, specs, dropped, subsets, n_images, name))
            for i, line in enumerate(rows):
                f.write(_image_xml(i, json.loads(line), bool(subsets)))
            f.write("</annotations>\n")
    finally:
        spill.unlink(missing_ok=True)
    return {"images": n_images, "boxes": n_boxes, "classes": len(classes), "splits": sorted(splits),
            "dropped": dict(dropped), "left_out": dict(left_out), "path": str(xml_path)}


class _Text:
    """UTF-8 text onto a binary file (``atomic_file`` gives bytes)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def write(self, s: str) -> int:
        return self.raw.write(s.encode("utf-8"))


def _place(rec: LabeledImage, folder: Path, media: str, used: set[str], n: int, left_out: Counter) -> str | None:
    if media == "none":
        return rec.file
    if "://" in rec.file:
        left_out["url (no local file)"] += 1
        return None
    name = os.path.basename(rec.file)
    sub = rec.sample_id if rec.sample_id and _SAMPLE_DIR.match(f"{rec.sample_id}/x") else ""
    if not sub and name in used:
        stem, suffix = os.path.splitext(name)
        name = f"{stem}_{(rec.sample_id or str(n))[:12]}{suffix}"
    try:
        placed = place_image(rec.file, folder / "images" / sub, rec.sample_id, media, name=name)
    except ViscurateError:
        left_out["image file missing"] += 1
        return None
    return f"{sub}/{placed.name}" if sub else placed.name


def _box_row(box: dict, position: int, dropped: Counter) -> dict | None:
    name, bbox = box.get("name"), box.get("bbox")
    if not name or not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        dropped["box without a name or bbox"] += 1
        return None
    attributes = {str(k): v for k, v in (box.get("attributes") or {}).items()
                  if isinstance(v, (str, bool, int, float))}
    for key in box:
        if key in ("name", "bbox", "attributes", "occluded", "z_order", "group_id"):
            continue
        if key == "id" and box[key] == position:
            continue  # the id a read gives back: the box's position in the file
        dropped[key] += 1
    if len(attributes) < len(box.get("attributes") or {}):
        dropped["attribute value that is not text, a number or a bool"] += len(box["attributes"]) - len(attributes)
    return {"label": str(name), "xyxy": list(box_xyxy(box)), "occluded": bool(box.get("occluded")),
            "z_order": int(box.get("z_order") or 0), "group_id": int(box.get("group_id") or 0),
            "source": "auto" if box.get("confidence") is not None else "manual", "attributes": attributes}


def _el(tag: str, text: Any, indent: str) -> str:
    return f"{indent}<{tag}>{escape(str(text))}</{tag}>\n"


def _meta_xml(classes: list[Category], specs: _Specs, dropped: Counter, subsets: list[str], size: int,
              name: str) -> str:
    ind = "      "
    parts = []
    for c in classes:
        parts.append(f"{ind}  <label>\n" + _el("name", c.name, ind + "    "))
        for k in _LABEL_KEYS:  # only what CVAT knows: other formats' class extras (a COCO supercategory) stay out
            if isinstance(c.extra.get(k), str):
                parts.append(_el(k, c.extra[k], ind + "    "))
        attrs = specs.specs(c, dropped)
        parts.append(f"{ind}    <attributes>\n")
        for s in attrs:
            parts.append(f"{ind}      <attribute>\n" + "".join(_el(k, v, ind + "        ") for k, v in s.items())
                         + f"{ind}      </attribute>\n")
        parts.append(f"{ind}    </attributes>\n{ind}  </label>\n")
    labels = f"{ind}<labels>\n" + "".join(parts) + f"{ind}</labels>\n"
    if subsets:  # a project: one task per subset, so datumaro and CVAT read each image's subset
        tasks = "".join(f"        <task>\n          <id>{i}</id>\n" + _el("name", f"{name} ({s})", "          ")
                        + _el("subset", s, "          ") + "        </task>\n" for i, s in enumerate(subsets, 1))
        owner = ("    <project>\n      <id>1</id>\n" + _el("name", name, "      ") + labels
                 + "      <tasks>\n" + tasks + "      </tasks>\n    </project>\n")
    else:
        owner = ("    <task>\n      <id>1</id>\n" + _el("name", name, "      ") + _el("size", size, "      ")
                 + "      <mode>annotation</mode>\n      <overlap>0</overlap>\n" + labels + "    </task>\n")
    return "  <meta>\n" + owner + "  </meta>\n"


def _image_xml(i: int, row: dict, with_subset: bool) -> str:
    attrs = f' id="{i}" name={quoteattr(row["name"])}'
    if with_subset:
        attrs += f" subset={quoteattr(row['split'] or DEFAULT_SUBSET)}"
    if row["width"] and row["height"]:
        attrs += f' width="{int(row["width"])}" height="{int(row["height"])}"'
    parts = [f"  <image{attrs}>\n"]
    for b in row["boxes"]:
        x1, y1, x2, y2 = b["xyxy"]
        extra = f' group_id="{b["group_id"]}"' if b["group_id"] else ""
        parts.append(f'    <box label={quoteattr(b["label"])} source="{b["source"]}" occluded="{int(b["occluded"])}"'
                     f' xtl="{_num(x1)}" ytl="{_num(y1)}" xbr="{_num(x2)}" ybr="{_num(y2)}"'
                     f' z_order="{b["z_order"]}"{extra}>')
        for k, v in b["attributes"].items():
            parts.append(f"\n      <attribute name={quoteattr(k)}>{escape(_value(v))}</attribute>")
        parts.append("\n    </box>\n" if b["attributes"] else "</box>\n")
    if row["label"] is not None:
        source = "auto" if row.get("auto") else "manual"
        parts.append(f'    <tag label={quoteattr(row["label"])} source="{source}"></tag>\n')
    parts.append("  </image>\n")
    return "".join(parts)
