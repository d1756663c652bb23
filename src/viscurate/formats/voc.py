"""Pascal VOC XML, read and written: ``Annotations/<id>.xml`` (one per image), ``JPEGImages/``,
``ImageSets/Main/<split>.txt`` (the ids of each split) and ``labelmap.txt`` (the class order, in
datumaro's ``name:color:parts:actions`` lines).

>>> labels = read_voc("VOCdevkit/VOC2012")                                  # doctest: +SKIP
>>> next(iter(labels)).detections[0]                                        # doctest: +SKIP
{'name': 'person', 'bbox': [173.0, 100.0, 175.0, 276.0], 'difficult': False, 'truncated': False}
>>> write_voc(labels, "out/", classes=labels.classes)                       # doctest: +SKIP
{'images': 17125, 'boxes': 40138, 'classes': 20, 'dropped': {}, 'left_out': {}, ...}

Coordinates: VOC's ``xmin..xmax`` are 1-based pixel indices, both ends inside the box. They become our
0-based ``[x, y, w, h]`` as datumaro's ``coordinate_mode="voc-one-based"`` and detectron2 read them:
``x = xmin - 1``, ``w = xmax - x`` (so a box of the whole 500-pixel-wide image, ``1..500``, is
``[0, ..., 500, ...]``); writing adds the 1 back. Files made by tools that write 0-based corners
(datumaro's default export, LabelImg-style exports of some tools) are read with ``one_based=False``.
Non-integer coordinates are written as they are (no rounding).

What maps to what: ``<name>`` is the class; ``<difficult>``, ``<truncated>``, ``<occluded>`` become the
box flags of the same name (only where the element is there, so a round trip gives the same box);
``<pose>`` (other than ``Unspecified``) and datumaro's ``<attributes><attribute><name>/<value>``
become ``attributes`` (strings; our own exports add a ``<type>`` so numbers and booleans come back as
such); ``<actions>`` become boolean attributes. ``<part>`` elements, ``<point>`` and segmentation masks
are counted in ``skipped``. Our exports write the sample id as ``<viscurate_id>`` (others ignore it).

Class order: ``labelmap.txt`` when there is one (ids are the line numbers from 0); else the order in
which the classes first appear, reading the XML files sorted by name. A folder of XML files beside
their images (LabelImg) reads too. Splits come from ``ImageSets/Main/<split>.txt`` (``trainval`` only
when an image is in no other list; ``default`` means no split); an XML in no list has no split.
VOC has no place for confidences, crowd flags, areas, box ids or image classes: they are dropped and
counted on write.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import ViscurateError
from ..files import write_atomic
from .media import image_size, place_image
from .records import Category, LabeledImage, LabelSet, counted, merge_categories, split_file_name

__all__ = ["looks_like_voc", "read_voc", "write_voc"]

FLAGS = ("difficult", "truncated", "occluded")
LABELMAP = "labelmap.txt"
DEFAULT_SPLIT = "default"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
_TYPES = {"bool": lambda s: s.strip().lower() in ("1", "true"), "int": int, "float": float, "str": str}


# ---- reading --------------------------------------------------------------------------------------------

def looks_like_voc(path: Path) -> bool:
    """A folder with ``Annotations/*.xml``, a folder of VOC XML files, or one VOC XML file."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".xml" and _root_tag(path) == "annotation"
    ann = path / "Annotations" if (path / "Annotations").is_dir() else path
    first = next(iter(sorted(ann.glob("*.xml"))[:1]), None)
    return first is not None and _root_tag(first) == "annotation"


def _root_tag(path: Path) -> str | None:
    try:
        for _, el in ET.iterparse(path, events=("start",)):
            return el.tag
    except (ET.ParseError, OSError):
        return None
    return None


def _parse(path: Path) -> ET.Element:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ViscurateError(f"{path}: not valid XML ({e}); fix or remove the file") from None
    except OSError as e:
        raise ViscurateError(f"cannot read {path}: {e}") from None
    if root.tag != "annotation":
        raise ViscurateError(f"{path}: the root element is <{root.tag}>, not VOC's <annotation>")
    return root


def _read_labelmap(path: Path) -> list[Category]:
    classes = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split(":")
            if len(fields) != 4:
                raise ViscurateError(f"{path} line {n}: expected 'name:r,g,b:parts:actions', got {line!r}")
            name, color, parts, actions = fields
            extra: dict[str, Any] = {}
            if color:
                try:
                    extra["color"] = [int(c) for c in color.split(",")]
                except ValueError:
                    raise ViscurateError(f"{path} line {n}: color {color!r} is not 'r,g,b'") from None
            if parts:
                extra["parts"] = [p.strip() for p in parts.split(",")]
            if actions:
                extra["actions"] = [a.strip() for a in actions.split(",")]
            classes.append(Category(len(classes), name, extra))
    return classes


def _layout(path: Path) -> tuple[Path, list[Path], Path]:
    """``(root, XML files, default images folder)`` of a VOC dataset, a folder of XML files or one file."""
    if path.is_file():
        return path.parent, [path], path.parent
    if (path / "Annotations").is_dir():
        return path, sorted((path / "Annotations").rglob("*.xml")), path / "JPEGImages"
    if path.is_dir():
        return path, sorted(path.glob("*.xml")), path
    raise ViscurateError(f"{path} does not exist")


def _splits(root: Path, class_names: set[str]) -> dict[str, str]:
    """``{item id: split}`` from ImageSets/Main; the per-class lists (``cat_train.txt``) are not splits."""
    folder = root / "ImageSets" / "Main"
    lists = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    out: dict[str, str] = {}
    for p in sorted(lists, key=lambda p: p.stem == "trainval"):  # trainval last: a finer split wins
        stem = p.stem
        if "_" in stem and stem.rsplit("_", 1)[0] in class_names:
            continue
        with open(p, encoding="utf-8") as f:
            for line in f:
                item = line.strip()
                if item and not item.startswith("#"):  # the whole line: an id may hold spaces
                    out.setdefault(item, stem)
    return out


def read_voc(path: str | os.PathLike, *, one_based: bool = True, images: str | os.PathLike | None = None,
             **_: Any) -> LabelSet:
    """The Pascal VOC dataset at ``path`` (its root, a folder of XML files or one XML file) as a
    :class:`~viscurate.formats.records.LabelSet`; XML files are parsed lazily, one per image.
    ``images``: where the image files are (default ``JPEGImages/``, or the XMLs' folder).
    See the module docstring.

    >>> read_voc("VOC2012", one_based=True).classes[:1]                 # doctest: +SKIP
    [Category(id=0, name='aeroplane', extra={})]
    """
    path = Path(path)
    root, xmls, image_dir = _layout(path)
    root = Path(os.path.abspath(root))
    image_dir = Path(os.path.abspath(images)) if images is not None else Path(os.path.abspath(image_dir))
    if not xmls:
        raise ViscurateError(f"no VOC annotation (*.xml) in {path}")
    if (root / LABELMAP).is_file():
        classes = _read_labelmap(root / LABELMAP)
    else:  # no order in the files: first appearance, files sorted by name
        names: dict[str, None] = {}
        for x in xmls:
            for obj in _parse(x).iterfind("object"):
                name = obj.findtext("name")
                if name:
                    names.setdefault(name.strip())
        classes = [Category(i, n) for i, n in enumerate(names)]
    labels = LabelSet("voc", root, classes, iter(()), info={})
    labels.images = _images(labels, xmls, image_dir, one_based)
    return labels


def _mask_ids(root: Path) -> set[str]:
    out: set[str] = set()
    for folder in ("SegmentationClass", "SegmentationObject"):
        if (root / folder).is_dir():
            out.update(p.stem for p in (root / folder).glob("*.png"))
    return out


def _images(labels: LabelSet, xmls: list[Path], image_dir: Path, one_based: bool) -> Iterator[LabeledImage]:
    ann_dir = labels.root / "Annotations"
    splits = _splits(labels.root, {c.name for c in labels.classes})
    masks = _mask_ids(labels.root)
    known = {c.name for c in labels.classes}
    for xml in xmls:
        item = (xml.relative_to(ann_dir) if xml.is_relative_to(ann_dir) else Path(xml.name)).with_suffix("").as_posix()
        el = _parse(xml)
        if item in masks:
            labels.skipped["mask"] += 1
        boxes = []
        for obj in el.iterfind("object"):
            box = _object(obj, one_based, labels.skipped)
            if box is not None:
                if box["name"] not in known:  # a class the label map lacks: added after the others
                    labels.classes[:] = merge_categories(labels.classes, [box["name"]])
                    known.add(box["name"])
                boxes.append(box)
        width, height = _int(el.findtext("size/width")), _int(el.findtext("size/height"))
        split = splits.get(item)
        yield LabeledImage(_image_file(el, xml, item, image_dir, labels.root), sample_id=el.findtext("viscurate_id"),
                           width=width or None, height=height or None, detections=boxes,
                           split=None if split == DEFAULT_SPLIT else split)


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def _image_file(el: ET.Element, xml: Path, item: str, image_dir: Path, root: Path) -> str:
    """The image of an annotation, relative to ``root`` where it is under it: ``<filename>`` in the images
    folder, else ``<path>``, else a file named like the XML."""
    filename = (el.findtext("filename") or "").strip()
    candidates = [image_dir / filename] if filename else []
    p = (el.findtext("path") or "").strip()
    if p:
        candidates.append(Path(p))
    candidates += [image_dir / f"{item}{s}" for s in _IMAGE_SUFFIXES]
    found = next((c for c in candidates if c.is_file()), candidates[0] if candidates else image_dir / item)
    found = Path(os.path.normpath(found))
    return found.relative_to(root).as_posix() if found.is_relative_to(root) else str(found)


def _object(obj: ET.Element, one_based: bool, skipped: Counter) -> dict | None:
    name = (obj.findtext("name") or "").strip()
    bb = obj.find("bndbox")
    if not name or bb is None:
        skipped["object without a name or bndbox"] += 1
        return None
    try:
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        skipped["object with a bad bndbox"] += 1
        return None
    if one_based:
        x1, y1 = x1 - 1, y1 - 1
    box: dict[str, Any] = {"name": name, "bbox": [x1, y1, x2 - x1, y2 - y1]}
    for flag in FLAGS:
        text = obj.findtext(flag)
        if text is not None:
            box[flag] = text.strip().lower() in ("1", "true")
    attributes: dict[str, Any] = {}
    pose = (obj.findtext("pose") or "").strip()
    if pose and pose != "Unspecified":
        attributes["pose"] = pose
    for a in obj.iterfind("attributes/attribute"):
        key = a.findtext("name")
        if key is None:
            continue
        value = a.findtext("value") or ""
        kind = a.findtext("type")
        try:
            attributes[key] = _TYPES.get(kind or "str", str)(value)
        except ValueError:
            attributes[key] = value
    for action in obj.find("actions") if obj.find("actions") is not None else ():
        attributes[action.tag] = (action.text or "").strip() in ("1", "true")
    if attributes:
        box["attributes"] = attributes
    for kind in ("part", "point"):
        if obj.find(kind) is not None:
            skipped[kind] += len(obj.findall(kind))
    return box


# ---- writing --------------------------------------------------------------------------------------------

def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def _type_name(v: Any) -> str:
    return "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "float" if isinstance(v, float) \
        else "str"


def _labelmap_can_hold(name: str) -> bool:
    """Whether a class name survives labelmap.txt: ':' splits its fields, '#' starts a comment, lines
    are stripped."""
    return bool(name) and ":" not in name and "\n" not in name and "\r" not in name \
        and not name.startswith("#") and name == name.strip()


def _labelmap_line(c: Category) -> str:
    color = c.extra.get("color")
    return ":".join([c.name, ",".join(str(int(v)) for v in color) if color else "",
                     ",".join(c.extra.get("parts") or ()), ",".join(c.extra.get("actions") or ())]) + "\n"


def write_voc(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category],
              media: str = "copy", progress: Callable[[int], None] | None = None, one_based: bool = True,
              **_: Any) -> dict:
    """Write ``images`` (records with absolute ``file`` paths) as a Pascal VOC dataset in the folder
    ``out``: see the module docstring. ``media="none"`` writes no JPEGImages/ and names each image by
    its absolute ``<path>``. Streams: one XML per image, the split lists appended as it goes, the
    label map last. Returns ``{"images", "boxes", "classes", "splits", "dropped", "left_out", "path"}``.

    >>> write_voc(records, "out/", classes=[Category(0, "cat")], media="none")   # doctest: +SKIP
    """
    if media not in ("copy", "symlink", "none"):
        raise ViscurateError(f"media must be copy, symlink or none, not {media!r}")
    bad = [c.name for c in classes if not _labelmap_can_hold(c.name)]
    if bad:
        raise ViscurateError(f"VOC's labelmap.txt cannot hold the class name {bad[0]!r} (a ':', a line break, "
                             "a leading '#' or spaces around it): rename the class first")
    out = Path(out)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    classes = list(classes)
    dropped: Counter = Counter()
    left_out: Counter = Counter()
    lists: dict[str, Any] = {}
    used: set[str] = set()
    known = {c.name for c in classes}
    n_images = n_boxes = 0
    try:
        for n, rec in enumerate(counted(images, progress), 1):
            item = _place(rec, out, media, used, n, left_out)
            if item is None:
                continue
            name, path = item
            stem = os.path.splitext(name)[0]
            used.add(stem)
            el, boxes = _annotation(rec, name, path, media, one_based, dropped)
            for b in boxes:
                if b not in known:  # a class the list lacked: numbered after the others
                    classes = merge_categories(classes, [b])
                    known.add(b)
            ET.indent(el)
            write_atomic(out / "Annotations" / f"{stem}.xml", ET.tostring(el, encoding="utf-8", xml_declaration=True))
            split = split_file_name(rec.split, DEFAULT_SPLIT)  # a file name: never a path out of the folder
            if split not in lists:
                lists[split] = open(out / "ImageSets" / "Main" / f".{split}.txt.tmp", "w", encoding="utf-8")
            lists[split].write(stem + "\n")
            n_images += 1
            n_boxes += len(boxes)
    finally:
        for f in lists.values():
            f.close()
    for split in lists:
        os.replace(out / "ImageSets" / "Main" / f".{split}.txt.tmp", out / "ImageSets" / "Main" / f"{split}.txt")
    write_atomic(out / LABELMAP, ("# label:color_rgb:parts:actions\n" +
                                  "".join(_labelmap_line(c) for c in classes)).encode())
    return {"images": n_images, "boxes": n_boxes, "classes": len(classes), "splits": sorted(lists),
            "dropped": dict(dropped), "left_out": dict(left_out), "path": str(out)}


def _place(rec: LabeledImage, out: Path, media: str, used: set[str], n: int,
           left_out: Counter) -> tuple[str, str] | None:
    """``(file name in JPEGImages, absolute path)`` of a record's image, placed per ``media``; ``None``
    (counted) when it cannot be. Names are unique by stem: the stem is the VOC item id."""
    src = rec.file
    base = os.path.basename(src.split("?")[0]) if "://" in src else os.path.basename(src)
    stem, suffix = os.path.splitext(base)
    if not stem or stem in used:
        stem = f"{stem}_{(rec.sample_id or str(n))[:12]}"
    name = stem + suffix
    if media == "none":
        return name, src
    if "://" in src:
        left_out["url (no local file)"] += 1
        return None
    try:
        placed = place_image(src, out / "JPEGImages", rec.sample_id, media, name=name)
    except ViscurateError:
        left_out["image file missing"] += 1
        return None
    return placed.name, str(placed)


def _annotation(rec: LabeledImage, name: str, path: str, media: str, one_based: bool,
                dropped: Counter) -> tuple[ET.Element, list[str]]:
    el = ET.Element("annotation")
    ET.SubElement(el, "folder").text = "JPEGImages" if media != "none" else os.path.dirname(path)
    ET.SubElement(el, "filename").text = name
    if media == "none":
        ET.SubElement(el, "path").text = path
    if rec.sample_id:
        ET.SubElement(el, "viscurate_id").text = rec.sample_id
    width, height = rec.width, rec.height
    if not (width and height) and "://" not in path:
        width, height = image_size(Path(path)) or (None, None)
    if width and height:
        size = ET.SubElement(el, "size")
        ET.SubElement(size, "width").text = str(int(width))
        ET.SubElement(size, "height").text = str(int(height))
        ET.SubElement(size, "depth").text = "3"
    ET.SubElement(el, "segmented").text = "0"
    if rec.label is not None:
        dropped["label"] += 1
    names = []
    for box in rec.detections or ():
        obj = _object_element(box, one_based, dropped)
        if obj is not None:
            el.append(obj)
            names.append(box["name"])
    return el, names


def _object_element(box: dict, one_based: bool, dropped: Counter) -> ET.Element | None:
    name, bbox = box.get("name"), box.get("bbox")
    if not name or not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        dropped["box without a name or bbox"] += 1
        return None
    if not _labelmap_can_hold(str(name)):
        dropped["box whose class name labelmap.txt cannot hold"] += 1
        return None
    obj = ET.Element("object")
    ET.SubElement(obj, "name").text = str(name)
    attributes = dict(box.get("attributes") or {})
    pose = attributes.pop("pose", None) if isinstance(attributes.get("pose"), str) else None
    ET.SubElement(obj, "pose").text = pose or "Unspecified"
    for flag in FLAGS:
        if flag in box:
            ET.SubElement(obj, flag).text = "1" if box[flag] else "0"
    x, y, w, h = (float(v) for v in bbox)
    off = 1 if one_based else 0
    bb = ET.SubElement(obj, "bndbox")
    for key, v in (("xmin", x + off), ("ymin", y + off), ("xmax", x + w), ("ymax", y + h)):
        ET.SubElement(bb, key).text = _num(v)
    if attributes:
        attrs = ET.SubElement(obj, "attributes")
        for key, value in attributes.items():
            a = ET.SubElement(attrs, "attribute")
            ET.SubElement(a, "name").text = str(key)
            ET.SubElement(a, "value").text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            ET.SubElement(a, "type").text = _type_name(value)
    for key in box:
        if key not in ("name", "bbox", "attributes", *FLAGS):
            dropped[key] += 1
    return obj
