"""Label Studio JSON: tasks to send a slice to labeling, and the finished annotations read back.

An export is a folder (or a ``.json`` file and the config beside it)::

    tasks.json          a JSON list of tasks: {"data": {"image": ..., "viscurate_id": ...},
                        "predictions": [...], "annotations": [...]}, written as the records arrive
    label_config.xml    the labeling interface: <RectangleLabels> whose <Label>s are the classes IN
                        ORDER (Label Studio keeps no order of its own), image-level <Choices>, and one
                        per-region control per box attribute
    images/             with media="copy" or "symlink"

>>> report = write_labelstudio(records, "to_label/", classes=classes)           # doctest: +SKIP
>>> labels = read_labelstudio("project-1-at-2026-12-03.json",                    # doctest: +SKIP
...                           label_config="to_label/label_config.xml")

How the two sides meet:

- A box is a ``rectanglelabels`` result: ``value.x/y/width/height`` in PERCENT of ``original_width`` /
  ``original_height`` (so a box comes back within float rounding, ~1e-12 px), the region ``id`` is the
  box's ``id`` (an integer id is written as its digits and read back as an integer), ``score`` its
  confidence. A rotated box (``rotation`` != 0) cannot be held axis-aligned: it is counted in
  ``skipped["rotated box"]``, as are polygons, keypoints, brushes and other region kinds.
- Label Studio links a region's attributes by giving the per-region results the region's own ``id``:
  ``choices`` (a string, or ``true``/``false`` for a boolean), ``number`` and ``textarea`` results with a
  region's id become that box's ``attributes[from_name]``; those named ``difficult``, ``truncated``,
  ``occluded`` are the box flags. ``choices`` with an id of their own classify the image: the control
  named ``image_class`` (or the only one) is the record's ``label``, others become ``labelstudio.<name>``.
- A task's ``data.viscurate_id`` is the sample id; ``data.split`` its split. Local images are
  ``/data/local-files/?d=<path relative to LOCAL_FILES_DOCUMENT_ROOT>`` (``document_root``, "/" by
  default: start Label Studio with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and that root);
  URLs pass through.
- Reading takes the latest annotation of each task that was not cancelled (``source="annotations"``),
  or its latest prediction (``source="predictions"``). A task nobody annotated says nothing
  (``detections`` is ``None``), so an import leaves that sample's boxes alone. Label Studio's ``JSON_MIN``
  export reads too, without box attributes (it drops the region ids that link them): prefer ``JSON``.
"""
from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, quote, urlsplit

from ..errors import ViscurateError
from ..files import atomic_file, write_atomic
from .media import place_image
from .records import Category, LabeledImage, LabelSet, categories_from_names, field_value, merge_categories

__all__ = ["looks_like_labelstudio", "read_labelstudio", "write_labelstudio", "label_config_xml",
           "read_label_config", "LOCAL_FILES_PREFIX"]

LOCAL_FILES_PREFIX = "/data/local-files/?d="
#: Control names of the label config we write; a reader takes whatever names the config gives.
BOX_CONTROL, IMAGE_CONTROL, CLASS_CONTROL = "label", "image", "image_class"
_FLAGS = ("difficult", "truncated", "occluded")
#: Region ids we make up for boxes without an id of their own: read back as no id, so a round trip
#: gives the boxes exactly as they were.
_MADE_UP_ID = re.compile(r"^vc_\d+$")
_REGION_TYPES = {"rectanglelabels", "polygonlabels", "keypointlabels", "brushlabels", "ellipselabels",
                 "rectangle", "polygon", "keypoint", "brush", "ellipse", "labels", "hypertextlabels",
                 "paragraphlabels", "timeserieslabels", "videorectangle", "relation"}


# ---- the label config --------------------------------------------------------------------------------

@dataclass
class LabelConfig:
    """What a label config says that a reader needs: the classes of the box control in order, the
    image-level class control, and the controls whose choices are exactly true/false (booleans)."""

    classes: list[str] = field(default_factory=list)
    class_ids: dict[str, int | str] = field(default_factory=dict)
    image_key: str | None = None
    class_control: str | None = None
    boolean_controls: set[str] = field(default_factory=set)


def read_label_config(xml: str | os.PathLike) -> LabelConfig:
    """A Label Studio label config (a path, or the XML itself): its box classes in order (with the
    ``viscurate_id`` we write on each ``<Label>``), the image's data key, the image-level class control.

    >>> cfg = read_label_config('<View><Image name="image" value="$img"/>'
    ...     '<RectangleLabels name="label" toName="image"><Label value="b"/><Label value="a"/></RectangleLabels></View>')
    >>> cfg.classes, cfg.image_key
    (['b', 'a'], 'img')
    """
    text = str(xml)
    if not text.lstrip().startswith("<"):
        try:
            text = Path(xml).read_text(encoding="utf-8")
        except OSError as e:
            raise ViscurateError(f"cannot read the label config {xml}: {e}") from None
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ViscurateError(f"the label config {xml if len(str(xml)) < 200 else ''} is not valid XML: {e}") from None
    cfg = LabelConfig()
    image_controls = []
    for el in root.iter():
        tag = el.tag.lower()
        if tag == "image" and cfg.image_key is None and el.get("value", "").startswith("$"):
            cfg.image_key = el.get("value")[1:]
        elif tag == "rectanglelabels" and not cfg.classes:
            for lab in el:
                if lab.tag.lower() == "label" and lab.get("value") is not None:
                    name = lab.get("alias") or lab.get("value")
                    cfg.classes.append(name)
                    vid = lab.get("viscurate_id")
                    if vid is not None:
                        cfg.class_ids[name] = int(vid) if re.fullmatch(r"-?\d+", vid) else vid
        elif tag == "choices":
            values = {c.get("alias") or c.get("value") for c in el if c.tag.lower() == "choice"}
            declared = el.get("viscurate_type")
            if declared == "bool" or (declared is None and values == {"true", "false"}):
                cfg.boolean_controls.add(el.get("name", ""))
            elif el.get("perRegion", "false").lower() != "true":
                image_controls.append(el.get("name", ""))
    if CLASS_CONTROL in image_controls or len(image_controls) == 1:
        cfg.class_control = CLASS_CONTROL if CLASS_CONTROL in image_controls else image_controls[0]
    return cfg


def _xml_attr(value: str) -> str:
    return (value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", "&#10;"))


_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075")


def label_config_xml(classes: list[Category], *, image_key: str = "image", image_classes: Iterable[str] = (),
                     attributes: dict[str, tuple[str, list[str]]] | None = None) -> str:
    """A label config for ``classes`` (a ``<Label>`` each, in order, carrying its id), an image-level
    ``<Choices>`` of ``image_classes`` when there are any, and per-region controls for the box
    ``attributes`` (``{name: (kind, choices)}``, kind ``bool`` | ``number`` | ``choice`` | ``text``).

    >>> print(label_config_xml([Category(3, "cat")]))          # doctest: +NORMALIZE_WHITESPACE
    <View>
      <Image name="image" value="$image" zoom="true"/>
      <RectangleLabels name="label" toName="image">
        <Label value="cat" viscurate_id="3" background="#e6194b"/>
      </RectangleLabels>
    </View>
    """
    lines = ["<View>", f'  <Image name="{IMAGE_CONTROL}" value="${_xml_attr(image_key)}" zoom="true"/>',
             f'  <RectangleLabels name="{BOX_CONTROL}" toName="{IMAGE_CONTROL}">']
    for i, c in enumerate(classes):
        lines.append(f'    <Label value="{_xml_attr(c.name)}" viscurate_id="{_xml_attr(str(c.id))}" '
                     f'background="{_PALETTE[i % len(_PALETTE)]}"/>')
    lines.append("  </RectangleLabels>")
    image_classes = list(dict.fromkeys(image_classes))
    if image_classes:
        lines.append(f'  <Choices name="{CLASS_CONTROL}" toName="{IMAGE_CONTROL}" choice="single">')
        lines += [f'    <Choice value="{_xml_attr(v)}"/>' for v in image_classes]
        lines.append("  </Choices>")
    for name, (kind, choices) in (attributes or {}).items():
        n = _xml_attr(name)
        if kind == "number":
            lines.append(f'  <Number name="{n}" toName="{IMAGE_CONTROL}" perRegion="true"/>')
        elif kind == "text":
            lines.append(f'  <TextArea name="{n}" toName="{IMAGE_CONTROL}" perRegion="true" maxSubmissions="1"/>')
        else:
            values = ["true", "false"] if kind == "bool" else choices
            lines.append(f'  <Choices name="{n}" toName="{IMAGE_CONTROL}" perRegion="true" choice="single" '
                         f'viscurate_type="{"bool" if kind == "bool" else "text"}">')
            lines += [f'    <Choice value="{_xml_attr(v)}"/>' for v in values]
            lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


# ---- reading ------------------------------------------------------------------------------------------

def looks_like_labelstudio(path: Path) -> bool:
    """A ``.json`` file that starts like a Label Studio tasks export (a list of objects with ``data`` and
    ``annotations`` or ``predictions``), or a folder holding ``tasks.json`` and ``label_config.xml``."""
    path = Path(path)
    if path.is_dir():
        return (path / "tasks.json").is_file() and (path / "label_config.xml").is_file()
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 16).lstrip()
    return head.startswith(b"[") and b'"data"' in head and (b'"annotations"' in head or b'"predictions"' in head
                                                           or b'"rectanglelabels"' in head)


def _tasks_and_config(path: Path, label_config: str | os.PathLike | None) -> tuple[Path, LabelConfig | None]:
    if path.is_dir():
        path = path / "tasks.json"
    if label_config is None:
        for cand in (path.with_name(f"{path.stem}.label_config.xml"), path.with_name("label_config.xml")):
            if cand.is_file():
                label_config = cand
                break
    return path, (read_label_config(label_config) if label_config is not None else None)


def _load_tasks(path: Path) -> list:
    try:
        with open(path, "rb") as f:
            tasks = json.load(f)
    except OSError as e:
        raise ViscurateError(f"cannot read Label Studio tasks {path}: {e}") from None
    except ValueError as e:
        raise ViscurateError(f"{path} is not valid JSON ({e}): export the project as JSON from Label Studio") from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise ViscurateError(f"{path} is not a Label Studio export: expected a JSON list of tasks")
    return tasks


def _latest(items: Any, *, model_version: str | None = None) -> dict | None:
    """The most recent annotation (or prediction) that was not cancelled."""
    keep = [a for a in items or [] if isinstance(a, dict) and not a.get("was_cancelled")
            and isinstance(a.get("result"), list)
            and (model_version is None or a.get("model_version") == model_version)]
    if not keep:
        return None
    return max(enumerate(keep), key=lambda ia: (str(ia[1].get("updated_at") or ia[1].get("created_at") or ""),
                                                 ia[1].get("id") if isinstance(ia[1].get("id"), int) else -1,
                                                 ia[0]))[1]


def _local_file(ref: str, root: Path | None, tasks_folder: Path) -> str:
    """A task's image reference as a path or URL: ``/data/local-files/?d=`` resolved under the document
    root (given, else the tasks' folder when the file is there, else ``/``); URLs and other references
    (``/data/upload/...``) as they are."""
    if "/data/local-files/" not in ref or "?" not in ref:
        return ref
    d = parse_qs(urlsplit(ref).query).get("d", [""])[0]
    if root is not None:
        return str(root / d)
    here = tasks_folder / d
    return str(here) if here.exists() else "/" + d.lstrip("/")


def _id_of(region_id: Any) -> Any:
    if not isinstance(region_id, str):
        return region_id
    if _MADE_UP_ID.match(region_id):
        return None
    return int(region_id) if re.fullmatch(r"-?[1-9]\d*|0", region_id) else region_id


def _attribute_value(item: dict, cfg: LabelConfig | None) -> tuple[bool, Any]:
    """``(known, value)`` of a per-region result: a choice, a number, a text."""
    value = item.get("value") if isinstance(item.get("value"), dict) else {}
    kind = item.get("type")
    if kind == "choices" and isinstance(value.get("choices"), list) and value["choices"]:
        ch = value["choices"]
        boolean = (item.get("from_name") in cfg.boolean_controls) if cfg is not None else \
            all(c in ("true", "false") for c in ch)
        if boolean and len(ch) == 1 and ch[0] in ("true", "false"):
            return True, ch[0] == "true"
        return True, ch[0] if len(ch) == 1 else list(ch)
    if kind == "number" and isinstance(value.get("number"), (int, float)):
        return True, value["number"]
    if kind == "rating" and isinstance(value.get("rating"), (int, float)):
        return True, value["rating"]
    if kind == "textarea" and isinstance(value.get("text"), list):
        return True, "\n".join(str(t) for t in value["text"])
    return False, None


def _boxes_of(result: list, cfg: LabelConfig | None, skipped: Counter) -> tuple[list[dict], int | None, int | None, list[dict]]:
    """The boxes of one annotation's ``result`` (with their per-region attributes), the image size it
    states, and its image-level results."""
    boxes: dict[Any, dict] = {}
    order: list[dict] = []
    width = height = None
    per_region: list[dict] = []
    image_level: list[dict] = []
    region_ids = set()
    for item in result:
        if isinstance(item, dict) and item.get("type") in _REGION_TYPES:
            region_ids.add(item.get("id"))
    for n, item in enumerate(result):
        if not isinstance(item, dict):
            skipped["result that is not an object"] += 1
            continue
        kind = item.get("type")
        if kind != "rectanglelabels":
            if kind in _REGION_TYPES:
                skipped[str(kind)] += 1
            elif item.get("id") is not None and item.get("id") in region_ids:
                per_region.append(item)
            else:
                image_level.append(item)
            continue
        value = item.get("value") or {}
        try:
            w = float(item["original_width"])
            h = float(item["original_height"])
            x, y, bw, bh = (float(value[k]) for k in ("x", "y", "width", "height"))
            names = value["rectanglelabels"]
            name = str(names[0])
        except (KeyError, TypeError, ValueError, IndexError):
            skipped["malformed rectangle"] += 1
            continue
        if float(value.get("rotation") or 0) != 0:
            skipped["rotated box"] += 1
            continue
        if len(names) > 1:
            skipped["extra labels of a box"] += len(names) - 1
        width, height = int(round(w)), int(round(h))
        box: dict[str, Any] = {"name": name, "bbox": [x * w / 100.0, y * h / 100.0, bw * w / 100.0, bh * h / 100.0]}
        if isinstance(item.get("score"), (int, float)):
            box["confidence"] = float(item["score"])
        bid = _id_of(item.get("id"))
        if bid is not None:
            box["id"] = bid
        boxes[item.get("id", f"#{n}")] = box
        order.append(box)
    for item in per_region:
        box = boxes.get(item.get("id"))
        if box is None:
            skipped[f"{item.get('type')} of a region that is not a box"] += 1
            continue
        known, v = _attribute_value(item, cfg)
        if not known:
            skipped[f"{item.get('type')} per region"] += 1
            continue
        name = str(item.get("from_name"))
        if name in _FLAGS and isinstance(v, bool):
            box[name] = v
        else:
            box.setdefault("attributes", {})[name] = v
    return order, width, height, image_level


def _min_boxes(task: dict, skipped: Counter) -> tuple[list[dict] | None, int | None, int | None, dict[str, Any]]:
    """The boxes of a ``JSON_MIN`` task: any list of rectangles among its keys; other choices."""
    boxes: list[dict] | None = None
    width = height = None
    choices: dict[str, Any] = {}
    for key, value in task.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) \
                and any("rectanglelabels" in v for v in value):
            boxes = boxes or []
            for v in value:
                try:
                    w, h = float(v["original_width"]), float(v["original_height"])
                    x, y, bw, bh = (float(v[k]) for k in ("x", "y", "width", "height"))
                    name = str(v["rectanglelabels"][0])
                except (KeyError, TypeError, ValueError, IndexError):
                    skipped["malformed rectangle"] += 1
                    continue
                if float(v.get("rotation") or 0) != 0:
                    skipped["rotated box"] += 1
                    continue
                width, height = int(round(w)), int(round(h))
                boxes.append({"name": name, "bbox": [x * w / 100, y * h / 100, bw * w / 100, bh * h / 100]})
        elif isinstance(value, dict) and isinstance(value.get("choices"), list):
            choices[key] = value["choices"]
    return boxes, width, height, choices


def _class_control(cfg: LabelConfig | None, choice_controls: list[str]) -> str | None:
    """The image-level ``<Choices>`` that holds the image's class: the config's, else ours
    (``image_class``), else the only image-level choices an annotation has."""
    if cfg is not None and cfg.class_control:
        return cfg.class_control
    names = set(choice_controls)
    if CLASS_CONTROL in names:
        return CLASS_CONTROL
    return names.pop() if len(names) == 1 else None


def read_labelstudio(path: str | os.PathLike, *, label_config: str | os.PathLike | None = None,
                     source: str = "annotations", model_version: str | None = None,
                     document_root: str | os.PathLike | None = None, image_key: str | None = None,
                     images: str | os.PathLike | None = None) -> LabelSet:
    """A Label Studio ``JSON`` export (or ``JSON_MIN``; or the folder our export wrote) as records:
    per task, the boxes of its latest non-cancelled annotation (``source="predictions"``: its latest
    prediction, of ``model_version`` if given), ``sample_id`` from ``data.viscurate_id``, ``file``
    from the image key (``image_key``, the config's ``<Image value="$...">``, else ``image``),
    ``source_id`` the task id.

    ``label_config``: the project's label config (Settings > Labeling Interface); by default
    ``label_config.xml`` beside the tasks, when there. It gives the class order and ids; without it the
    classes are numbered from 0 in the order the tasks first use them. ``document_root`` (or ``images``,
    the same): the folder ``/data/local-files/?d=`` paths are under (default: the tasks' folder when the
    file is there, else ``/``).

    >>> labels = read_labelstudio("project-3-at-2026-12-03-10-00.json", label_config="label_config.xml")  # doctest: +SKIP
    >>> [c.name for c in labels.classes]                                                                 # doctest: +SKIP
    ['cat', 'dog']
    """
    if source not in ("annotations", "predictions"):
        raise ViscurateError(f"source must be annotations or predictions, not {source!r}")
    tasks_path, cfg = _tasks_and_config(Path(path), label_config)
    tasks = _load_tasks(tasks_path)
    key = image_key or (cfg.image_key if cfg else None) or "image"
    given_root = document_root if document_root is not None else images
    root = Path(given_root) if given_root is not None else None
    skipped: Counter = Counter()
    seen_names: list[str] = []

    def record(task: Any) -> LabeledImage | None:
        if not isinstance(task, dict):
            skipped["task that is not an object"] += 1
            return None
        data = task.get("data") if isinstance(task.get("data"), dict) else None
        minimal = data is None
        data = data if data is not None else task
        ref = data.get(key)
        if ref is None:
            refs = [v for v in data.values() if isinstance(v, str) and ("/" in v or "." in v)]
            ref = refs[0] if refs else None
        if not isinstance(ref, str) or not ref:
            skipped[f"task without data.{key}"] += 1
            return None
        rec = LabeledImage(_local_file(ref, root, tasks_path.parent), source_id=task.get("id"))
        sid = data.get("viscurate_id")
        rec.sample_id = str(sid) if sid is not None else None
        if isinstance(data.get("split"), str):
            rec.split = data["split"]
        if minimal:
            boxes, rec.width, rec.height, choices = _min_boxes(task, skipped)
            rec.detections = boxes
            class_control = _class_control(cfg, list(choices))
            for name, values in choices.items():
                if name == class_control:
                    rec.label = str(values[0]) if values else None
                else:
                    rec.fields[f"labelstudio.{name}"] = values[0] if len(values) == 1 else values
        else:
            chosen = _latest(task.get(source), model_version=model_version if source == "predictions" else None)
            if chosen is None:
                return rec
            boxes, rec.width, rec.height, image_level = _boxes_of(chosen["result"], cfg, skipped)
            rec.detections = boxes
            class_control = _class_control(cfg, [str(it.get("from_name")) for it in image_level
                                                 if it.get("type") == "choices"])
            for it in image_level:
                known, v = _attribute_value(it, cfg)
                if not known:
                    skipped[f"{it.get('type')} of the image"] += 1
                    continue
                name = str(it.get("from_name"))
                if name == class_control and it.get("type") == "choices" and isinstance(v, str):
                    rec.label = v
                else:
                    rec.fields[f"labelstudio.{name}"] = v
        for b in rec.detections or []:
            seen_names.append(b["name"])
        return rec

    # The classes must be known before the records are handed out: one pass over the (already parsed)
    # tasks turns them into records; Label Studio exports are one JSON document, held whole anyway.
    records = [r for t in tasks if (r := record(t)) is not None]
    if cfg is not None and cfg.classes:
        ids = [cfg.class_ids.get(c) for c in cfg.classes]
        if all(i is not None for i in ids) and len(set(ids)) == len(ids):
            classes = [Category(i, c) for i, c in zip(ids, cfg.classes)]
        else:
            classes = categories_from_names(cfg.classes)
        known = {c.name for c in classes}
        extra = [n for n in dict.fromkeys(seen_names) if n not in known]
        if extra:
            skipped["class not in the label config"] += len(extra)
            classes = merge_categories(classes, extra)
    else:
        classes = categories_from_names(seen_names)
    return LabelSet("labelstudio", Path(os.path.abspath(tasks_path.parent)), classes, records,
                    {"source": source, "tasks": len(tasks)}, skipped)


# ---- writing ------------------------------------------------------------------------------------------

def _image_ref(file: str, root: Path) -> str:
    if "://" in file:
        return file
    path = Path(file).resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise ViscurateError(f"{path} is not under the Label Studio document root {root}: pass the folder "
                             f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT names as document_root "
                             f"(--document-root), or copy the images into the export (media=copy)") from None
    return LOCAL_FILES_PREFIX + quote(rel.as_posix(), safe="/")


def _pct(v: float, of: int) -> float:
    return float(v) * 100.0 / float(of)


def _attribute_result(rid: str, name: str, value: Any, w: int, h: int) -> tuple[dict, str]:
    base = {"id": rid, "from_name": name, "to_name": IMAGE_CONTROL, "original_width": w, "original_height": h,
            "image_rotation": 0}
    if isinstance(value, bool):
        return {**base, "type": "choices", "value": {"choices": ["true" if value else "false"]}}, "bool"
    if isinstance(value, (int, float)):
        return {**base, "type": "number", "value": {"number": value}}, "number"
    if isinstance(value, list):
        return {**base, "type": "choices", "value": {"choices": [str(v) for v in value]}}, "choice"
    return {**base, "type": "choices", "value": {"choices": [str(value)]}}, "choice"


@dataclass
class _Collected:
    """What the label config must list, gathered while the tasks stream out."""

    attributes: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    image_classes: dict[str, None] = field(default_factory=dict)
    extra_classes: list[str] = field(default_factory=list)

    def attribute(self, name: str, kind: str, value: Any) -> None:
        have_kind, choices = self.attributes.get(name, (kind, []))
        if have_kind != kind:
            kind = "choice"  # one control per name: mixed kinds are offered as choices
        if kind == "choice":
            for v in value if isinstance(value, list) else [value]:
                if str(v) not in choices:
                    choices.append(str(v))
        self.attributes[name] = (kind, choices)


def _results(boxes: list[dict], w: int | None, h: int | None, known: set[str], got: _Collected,
             dropped: Counter, with_scores: bool) -> list[dict]:
    out: list[dict] = []
    used: set[str] = set()
    for k, box in enumerate(boxes):
        try:
            x, y, bw, bh = (float(v) for v in box["bbox"])
            name = str(box["name"])
        except (KeyError, TypeError, ValueError):
            dropped["box without a name or bbox"] += 1
            continue
        if not w or not h:
            dropped["box of an image without a size"] += 1
            continue
        if name not in known:
            known.add(name)
            got.extra_classes.append(name)
        rid = str(box["id"]) if box.get("id") is not None else f"vc_{k}"
        if rid in used or (box.get("id") is not None and _MADE_UP_ID.match(rid)):
            # a region id links the box to its attributes: two boxes cannot share one
            dropped["id (repeated in its image, or of our own vc_<n> form)"] += 1
            rid = f"vc_{k}"
        used.add(rid)
        item: dict[str, Any] = {
            "id": rid, "type": "rectanglelabels", "from_name": BOX_CONTROL, "to_name": IMAGE_CONTROL,
            "original_width": int(w), "original_height": int(h), "image_rotation": 0,
            "value": {"x": _pct(x, w), "y": _pct(y, h), "width": _pct(bw, w), "height": _pct(bh, h),
                      "rotation": 0, "rectanglelabels": [name]}}
        if with_scores and isinstance(box.get("confidence"), (int, float)):
            item["score"] = float(box["confidence"])
        elif isinstance(box.get("confidence"), (int, float)):
            dropped["confidence"] += 1
        out.append(item)
        for flag in _FLAGS:
            if flag in box:
                res, _ = _attribute_result(rid, flag, bool(box[flag]), w, h)
                out.append(res)
                got.attribute(flag, "bool", None)
        for aname, value in (box.get("attributes") or {}).items():
            if value is None or isinstance(value, dict):
                dropped["attributes"] += 1
                continue
            res, kind = _attribute_result(rid, str(aname), value, w, h)
            out.append(res)
            got.attribute(str(aname), kind, value)
        for other in ("iscrowd", "area", "segmentation", "keypoints"):
            if box.get(other) not in (None, 0, [], {}, False):
                dropped[other] += 1
    return out


def write_labelstudio(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category],
                      media: str = "none", progress: Callable[[int], None] | None = None,
                      boxes_as: str = "predictions", annotations_field: str | None = None,
                      model_version: str = "viscurate", document_root: str | os.PathLike | None = None,
                      image_key: str = "image", image_classes: Iterable[str] = ()) -> dict[str, Any]:
    """Write records as Label Studio tasks (streaming, one task at a time) and the label config.

    ``boxes_as``: the records' boxes become each task's ``predictions`` (pre-annotations with
    ``model_version`` and the boxes' confidences as scores: the default) or ``annotations`` (ground
    truth to review). ``annotations_field``: also write that field of each sample (e.g.
    ``ground_truth.detections``) as the task's annotation. ``media``: ``none`` (the images stay where
    they are, referenced under ``document_root``, default ``/``) or ``copy``/``symlink`` into
    ``out/images/`` (the document root is then ``out``). ``out``: a folder (``tasks.json``,
    ``label_config.xml``) or a ``.json`` file (its config beside it as ``<stem>.label_config.xml``).
    ``image_classes``: the classes an annotator may choose for the whole image (the config's
    ``<Choices>``), offered even when no record carries them yet (the first round of active learning);
    the records' own image classes are added after them. A record's image class goes with its boxes
    (a prediction, with the record's ``label_confidence`` as its ``score``, or an annotation).
    Returns ``{"images", "boxes", "classes", "dropped", "path", "label_config"}``.

    >>> write_labelstudio(records, "to_label", classes=[Category(0, "cat")], media="copy")   # doctest: +SKIP
    {'images': 2, 'boxes': 3, 'classes': 1, 'dropped': {}, ...}
    """
    if boxes_as not in ("predictions", "annotations"):
        raise ViscurateError(f"boxes_as must be predictions or annotations, not {boxes_as!r}")
    if media not in ("none", "copy", "symlink"):
        raise ViscurateError(f"media must be none, copy or symlink, not {media!r}")
    out = Path(out)
    as_file = out.suffix.lower() == ".json"
    if as_file and media != "none":
        raise ViscurateError("copying images needs a folder to write into: give a folder, not a .json file")
    tasks_path = out if as_file else out / "tasks.json"
    config_path = out.with_name(f"{out.stem}.label_config.xml") if as_file else out / "label_config.xml"
    tasks_path.parent.mkdir(parents=True, exist_ok=True)
    if media != "none":
        root = Path(document_root).resolve() if document_root is not None else out.resolve()
    else:
        root = Path(document_root).resolve() if document_root is not None else Path("/")
    known = {c.name for c in classes}
    got = _Collected(image_classes=dict.fromkeys(str(c) for c in image_classes))
    dropped: Counter = Counter()
    n_images = n_boxes = 0
    with atomic_file(tasks_path) as f:
        f.write(b"[")
        for n, rec in enumerate(images):
            file = rec.file
            if media != "none" and "://" not in file:
                try:
                    file = str(place_image(file, out / "images", rec.sample_id, media))
                except ViscurateError:  # one gone image file never stops the export
                    dropped["image file missing"] += 1
                    if progress is not None:
                        progress(n + 1)
                    continue
            data: dict[str, Any] = {image_key: _image_ref(file, root)}
            if rec.sample_id:
                data["viscurate_id"] = rec.sample_id
            if rec.split:
                data["split"] = rec.split
            task: dict[str, Any] = {"data": data}
            image_level: list[dict] = []
            if rec.label is not None:
                got.image_classes[str(rec.label)] = None
                image_level.append({"id": "vc_class", "type": "choices", "from_name": CLASS_CONTROL,
                                    "to_name": IMAGE_CONTROL, "value": {"choices": [str(rec.label)]}})
                if rec.label_confidence is not None and boxes_as == "predictions":
                    image_level[-1]["score"] = float(rec.label_confidence)
                elif rec.label_confidence is not None:
                    dropped["confidence"] += 1  # an annotation is a person's: it has no score
            if rec.detections is not None or image_level:
                results = _results(rec.detections or [], rec.width, rec.height, known, got, dropped,
                                   with_scores=True)
                n_boxes += sum(1 for r in results if r["type"] == "rectanglelabels")
                results += image_level
                if boxes_as == "predictions":
                    scores = [r["score"] for r in results if "score" in r]
                    task["predictions"] = [{"model_version": model_version, "result": results,
                                            **({"score": sum(scores) / len(scores)} if scores else {})}]
                else:
                    task["annotations"] = [{"result": results, "was_cancelled": False, "ground_truth": False}]
            truth = field_value(rec.fields, annotations_field) if annotations_field else None
            if isinstance(truth, list):
                results = _results(truth, rec.width, rec.height, known, got, dropped, with_scores=False)
                task.setdefault("annotations", []).append(
                    {"result": results, "was_cancelled": False, "ground_truth": False})
            f.write((b",\n" if n_images else b"\n") + json.dumps(task, ensure_ascii=False).encode())
            n_images += 1
            if progress is not None:
                progress(n + 1)
        f.write(b"\n]\n")
    all_classes = merge_categories(list(classes), got.extra_classes)
    write_atomic(config_path, label_config_xml(all_classes, image_key=image_key,
                                               image_classes=got.image_classes, attributes=got.attributes).encode())
    return {"images": n_images, "boxes": n_boxes, "classes": len(all_classes), "dropped": dict(dropped),
            "path": str(tasks_path), "label_config": str(config_path), "document_root": str(root)}
