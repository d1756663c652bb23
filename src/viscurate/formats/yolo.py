"""The ultralytics YOLO detection layout, read and written: ``data.yaml`` beside ``images/<split>/`` and
``labels/<split>/`` (one ``.txt`` per image, same stem, a line ``class cx cy w h`` normalized to 0-1).

>>> labels = read_yolo("datasets/coco8/data.yaml")                    # doctest: +SKIP
>>> [c.name for c in labels.classes][:2], next(iter(labels)).split    # doctest: +SKIP
(['person', 'bicycle'], 'train')
>>> write_yolo(labels, "out/", classes=labels.classes, media="symlink")  # doctest: +SKIP
{'images': 8, 'boxes': 29, 'classes': 80, 'dropped': {}, 'left_out': {}, ...}

What is read:

- ``data.yaml`` (or any ``*.yaml`` with ``names``): ``names`` as a list or an ``{id: name}`` dict (ids
  may skip numbers; the dict's order is the class order), ``path`` (the root; default the YAML's
  folder), and ``train`` / ``val`` / ``test``, each a folder of images, a ``.txt`` list of image paths
  or a list of those. Both ``images/train`` + ``labels/train`` and the older ``train/images`` +
  ``train/labels`` layouts work: a label file is the image path with its last ``/images/`` turned into
  ``/labels/`` and ``.txt`` for the suffix, as ultralytics finds it.
- A missing label file and an empty one both mean "no boxes" (``detections == []``), as ultralytics
  treats both as background images.
- Boxes are de-normalized with the image's size, read from its header (nothing is decoded). A 6th
  number on a line is a confidence (ultralytics' ``save_conf`` predictions). Polygon lines (segments:
  more than 6 numbers) are counted in ``skipped["polygon"]`` unless they are an axis-aligned rectangle
  of 4 points; pose lines (``kpt_shape`` in the YAML) keep their box and count ``skipped["keypoints"]``;
  a line that is none of these, or names a class the YAML lacks, is counted and skipped.

What is written: ``data.yaml`` (``names`` as an ``{id: name}`` dict in id order, ``nc``, one key per
split), ``images/<split>/`` (copied or symlinked; YOLO finds labels from images, so ``media="none"``
is refused), ``labels/<split>/<stem>.txt`` (an empty file for an image without boxes) and
``viscurate_ids.csv`` (image path, sample id: a re-import matches samples by id). Records without a
split go to ``default_split`` (``train``). Class ids are kept when they are non-negative integers
(``renumber=True`` numbers the classes 0..n-1 in order instead, which ultralytics needs when ids skip
numbers). Coordinates are written with 12 decimals: a round trip gives boxes back within 1e-12 of the
image size. YOLO has no place for box ids, attributes, flags, areas or image classes: they are
dropped and counted in the report's ``dropped``; confidences are written only with
``confidence=True``.
"""
from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import ViscurateError
from ..files import atomic_file, write_atomic
from .media import image_size, place_image
from .records import Category, LabeledImage, LabelSet, counted, split_file_name

__all__ = ["looks_like_yolo", "read_yolo", "write_yolo", "IMAGE_SUFFIXES"]

#: Image suffixes a YOLO image folder is searched for (ultralytics' IMG_FORMATS).
IMAGE_SUFFIXES = frozenset({".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm",
                            ".heic", ".gif"})
SPLITS = ("train", "val", "test")
IDS_FILE = "viscurate_ids.csv"
_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")


# ---- reading --------------------------------------------------------------------------------------------

def looks_like_yolo(path: Path) -> bool:
    """A YAML with ``names`` (or a folder holding one) next to label ``.txt`` files or split keys."""
    path = Path(path)
    yaml_path = _find_yaml(path) if path.is_dir() else path
    if yaml_path is None or yaml_path.suffix.lower() not in (".yaml", ".yml") or not yaml_path.is_file():
        return False
    try:
        data = _load_yaml(yaml_path)
    except ViscurateError:
        return False
    return "names" in data and any(k in data for k in SPLITS)


def _find_yaml(folder: Path) -> Path | None:
    for name in _YAML_NAMES:
        if (folder / name).is_file():
            return folder / name
    yamls = sorted(p for p in folder.glob("*.y*ml") if p.suffix.lower() in (".yaml", ".yml"))
    return yamls[0] if len(yamls) == 1 else None


def _load_yaml(path: Path) -> dict:
    import yaml  # PyYAML: a dependency of our dependencies (huggingface_hub, ...), imported only here
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ViscurateError(f"cannot read YOLO dataset file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ViscurateError(f"{path} is not a YOLO dataset file (expected a mapping with names and train/val)")
    return data


def _classes(data: dict, path: Path) -> list[Category]:
    names = data.get("names")
    if isinstance(names, list):
        return [Category(i, str(n)) for i, n in enumerate(names)]
    if isinstance(names, dict):
        out = []
        for k, n in names.items():
            try:
                out.append(Category(int(k), str(n)))
            except (TypeError, ValueError):
                raise ViscurateError(f"{path}: names: class id {k!r} is not an integer") from None
        return out
    raise ViscurateError(f"{path}: no 'names' list or {{id: name}} mapping: YOLO needs the class names")


def _resolve(entry: str, root: Path, yaml_dir: Path) -> Path | None:
    """A split entry of data.yaml as an existing path: under ``root``, else the YAML's folder, else the
    YAML's folder without leading ``../`` (Roboflow's exports say ``../train/images`` for ``train/images``)."""
    p = Path(entry)
    if p.is_absolute():
        return p if p.exists() else None
    stripped = Path(*[part for part in p.parts if part != ".."]) if ".." in p.parts else p
    for candidate in (root / p, yaml_dir / p, root / stripped, yaml_dir / stripped):
        if candidate.exists():
            return candidate
    return None


def _split_images(entry: Any, root: Path, yaml_path: Path) -> Iterator[Path]:
    """The image paths of one split entry: a folder (searched recursively, sorted), a .txt list, or a
    list of those."""
    for item in (entry if isinstance(entry, list) else [entry]):
        p = _resolve(str(item), root, yaml_path.parent)
        if p is None:
            raise ViscurateError(f"{yaml_path}: split entry {item!r} not found under {root}")
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        else:
            with open(p, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        q = Path(line)
                        yield q if q.is_absolute() else (p.parent / q if line.startswith("./") else
                                                         (root / q if (root / q).exists() else p.parent / q))


def _label_path(image: Path) -> Path:
    """ultralytics' img2label_paths: the last ``/images/`` of the path becomes ``/labels/``."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(os.path.splitext(s)[0] + ".txt")


def _is_rectangle(pts: list[float]) -> tuple[float, float, float, float] | None:
    xs, ys = pts[0::2], pts[1::2]
    if len(xs) == 4 and len(set(xs)) == 2 and len(set(ys)) == 2 and sorted(Counter(xs).values()) == [2, 2] \
            and sorted(Counter(ys).values()) == [2, 2]:
        return min(xs), min(ys), max(xs), max(ys)
    return None


def _parse_line(line: str, keypoints: bool) -> tuple[int, list[float], float | None, str | None]:
    """``(class id, [cx, cy, w, h], confidence, skipped kind)`` of a label line; raises ValueError when it
    is not a YOLO line."""
    parts = line.split()
    cls = int(parts[0])
    nums = [float(v) for v in parts[1:]]
    if keypoints and len(nums) > 4:
        return cls, nums[:4], None, "keypoints"
    if len(nums) == 4:
        return cls, nums, None, None
    if len(nums) == 5:
        return cls, nums[:4], nums[4], None
    if len(nums) >= 6 and len(nums) % 2 == 0:
        rect = _is_rectangle(nums)
        if rect is None:
            return cls, [], None, "polygon"
        x1, y1, x2, y2 = rect
        return cls, [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], None, None
    raise ValueError(f"{len(parts)} fields")


def _read_labels(label_file: Path, size: tuple[int, int] | None, names: dict[int, str], keypoints: bool,
                 skipped: Counter) -> list[dict] | None:
    try:
        text = label_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise ViscurateError(f"cannot read YOLO label file {label_file}: {e}") from None
    boxes: list[dict] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cls, coords, conf, kind = _parse_line(line, keypoints)
        except (ValueError, IndexError):
            skipped["bad line"] += 1
            continue
        if kind == "polygon":
            skipped["polygon"] += 1
            continue
        cx, cy, w, h = coords
        if kind:
            skipped[kind] += 1
        if cls not in names:
            skipped["unknown class id"] += 1
            continue
        if size is None:
            skipped["box of an unreadable image"] += 1
            continue
        width, height = size
        box: dict[str, Any] = {"name": names[cls], "bbox": [(cx - w / 2) * width, (cy - h / 2) * height,
                                                            w * width, h * height]}
        if conf is not None:
            box["confidence"] = conf
        boxes.append(box)
    return boxes


def _read_ids(root: Path) -> dict[str, str]:
    try:
        with open(root / IDS_FILE, encoding="utf-8", newline="") as f:
            return {row[0]: row[1] for row in csv.reader(f) if len(row) == 2 and row[0] != "image"}
    except FileNotFoundError:
        return {}


def read_yolo(path: str | os.PathLike, *, splits: Iterable[str] | None = None, images: Any = None,
              **_: Any) -> LabelSet:
    """The YOLO dataset at ``path`` (its ``data.yaml``, or the folder holding it) as a
    :class:`~viscurate.formats.records.LabelSet`; images are read lazily, split by split
    (``splits``: which of train/val/test, default all the YAML names). See the module docstring.

    >>> read_yolo("data.yaml").class_ids()                              # doctest: +SKIP
    {'person': 0, 'bicycle': 1}
    """
    path = Path(path)
    yaml_path = _find_yaml(path) if path.is_dir() else path
    if yaml_path is None:
        raise ViscurateError(f"no data.yaml in {path}: a YOLO dataset needs one naming its classes "
                             "(names:) and splits (train:, val:)")
    data = _load_yaml(yaml_path)
    classes = _classes(data, yaml_path)
    root = Path(data["path"]) if isinstance(data.get("path"), str) and data["path"] else yaml_path.parent
    if not root.is_absolute():
        root = yaml_path.parent / root
    if not root.is_dir():
        root = yaml_path.parent  # a path: for the machine it was made on
    root = Path(os.path.abspath(root))
    wanted = [s for s in (splits or SPLITS) if data.get(s)]
    if not wanted:
        raise ViscurateError(f"{yaml_path} names no split: add train: (and val:) with the images' folder")
    info = {k: v for k, v in data.items() if k not in ("names", "path", *SPLITS)}
    labels = LabelSet("yolo", root, classes, iter(()), info=info)
    labels.images = _images(labels, data, yaml_path, wanted)
    return labels


def _images(labels: LabelSet, data: dict, yaml_path: Path, splits: list[str]) -> Iterator[LabeledImage]:
    names = {c.id: c.name for c in labels.classes}
    keypoints = "kpt_shape" in data
    ids = _read_ids(labels.root)
    seen: set[Path] = set()  # one folder may back two splits (val: images/train): first split wins
    for split in splits:
        for image in _split_images(data[split], labels.root, yaml_path):
            image = Path(os.path.normpath(image))
            if image in seen:
                continue
            seen.add(image)
            size = image_size(image)
            boxes = _read_labels(_label_path(image), size, names, keypoints, labels.skipped)
            rel = image.relative_to(labels.root).as_posix() if image.is_relative_to(labels.root) else str(image)
            yield LabeledImage(rel, sample_id=ids.get(rel), width=size[0] if size else None,
                               height=size[1] if size else None, detections=boxes, split=split)


# ---- writing --------------------------------------------------------------------------------------------

def _number(v: float) -> str:
    """A coordinate in plain decimals (no exponent: datumaro and some trainers reject ``1e-05``)."""
    s = f"{v:.12f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _class_ids(classes: list[Category], renumber: bool) -> dict[str, int]:
    ids = [c.id for c in classes]
    if not renumber and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids) \
            and len(set(ids)) == len(ids):
        return {c.name: int(c.id) for c in classes}
    return {c.name: i for i, c in enumerate(classes)}


def write_yolo(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category],
               media: str = "copy", progress: Callable[[int], None] | None = None, confidence: bool = False,
               default_split: str = "train", renumber: bool = False, **_: Any) -> dict:
    """Write ``images`` (records with absolute ``file`` paths) as a YOLO dataset in the folder ``out``:
    see the module docstring. Streams: one label file per image, ``data.yaml`` last. Returns
    ``{"images", "boxes", "classes", "splits", "dropped", "left_out", "path"}``.

    >>> write_yolo(records, "out/", classes=[Category(0, "cat")], media="symlink")  # doctest: +SKIP
    """
    if media not in ("copy", "symlink"):
        raise ViscurateError(f"YOLO finds each label file from its image: export with media copy or symlink, "
                             f"not {media!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = _class_ids(list(classes), renumber)
    dropped: Counter = Counter()
    left_out: Counter = Counter()
    used: dict[str, set[str]] = {}  # the label stems of each split: two images never share a label file
    n_images = n_boxes = 0
    with atomic_file(out / IDS_FILE) as raw:
        ids_file = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        id_rows = csv.writer(ids_file)
        id_rows.writerow(["image", "sample_id"])
        for n, rec in enumerate(counted(images, progress), 1):
            written = _write_one(rec, n, out, media, split_file_name(rec.split, default_split), used, ids, confidence,
                                 dropped, left_out)
            if written is not None:
                rel, boxes = written
                if rec.sample_id:
                    id_rows.writerow([rel, rec.sample_id])
                n_images += 1
                n_boxes += boxes
        ids_file.flush()
        ids_file.detach()
    _write_data_yaml(out, ids, sorted(used))
    return {"images": n_images, "boxes": n_boxes, "classes": len(ids), "splits": sorted(used),
            "dropped": dict(dropped), "left_out": dict(left_out), "path": str(out / "data.yaml")}


def _write_one(rec: LabeledImage, n: int, out: Path, media: str, split: str, used: dict[str, set[str]],
               ids: dict[str, int], confidence: bool, dropped: Counter, left_out: Counter) -> tuple[str, int] | None:
    """Place one record's image and write its label file: ``(image path in the export, boxes written)``,
    or ``None`` (counted in ``left_out``) when its image cannot be placed."""
    if "://" in rec.file:
        left_out["url (no local file)"] += 1
        return None
    src = Path(rec.file)
    stems = used.get(split, set())
    name = src.name
    if src.stem in stems:
        name = f"{src.stem}_{(rec.sample_id or str(n))[:12]}{src.suffix}"
    try:
        placed = place_image(src, out / "images" / split, rec.sample_id, media, name=name)
    except ViscurateError:
        left_out["image file missing"] += 1
        return None
    used.setdefault(split, set()).add(placed.stem)
    size = (rec.width, rec.height) if rec.width and rec.height else image_size(placed)
    lines = [line for box in rec.detections or () if (line := _box_line(box, size, ids, confidence, dropped))]
    if rec.label is not None:
        dropped["label"] += 1
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    write_atomic(out / "labels" / split / f"{placed.stem}.txt", "".join(lines).encode())
    return placed.relative_to(out).as_posix(), len(lines)


def _box_line(box: dict, size: tuple[int, int] | tuple[None, None] | None, ids: dict[str, int],
              confidence: bool, dropped: Counter) -> str | None:
    name, bbox = box.get("name"), box.get("bbox")
    if not name or not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not size or not all(size):
        dropped["box without a name, bbox or image size"] += 1
        return None
    if name not in ids:
        ids[name] = max(ids.values(), default=-1) + 1  # a class the list lacked: a new id, the others kept
    width, height = size
    x, y, w, h = (float(v) for v in bbox)
    fields = [str(ids[name]), _number((x + w / 2) / width), _number((y + h / 2) / height), _number(w / width),
              _number(h / height)]
    for key in box:
        if key in ("name", "bbox") or (key == "confidence" and confidence):
            continue
        dropped[key] += 1
    if confidence and box.get("confidence") is not None:
        fields.append(_number(float(box["confidence"])))
    return " ".join(fields) + "\n"


def _write_data_yaml(out: Path, ids: dict[str, int], splits: list[str]) -> None:
    import yaml
    by_id = dict(sorted(((i, n) for n, i in ids.items())))
    data: dict[str, Any] = {s: f"images/{s}" for s in splits}
    data.update({"nc": len(by_id), "names": by_id})
    text = "# written by viscurate: ultralytics YOLO detection layout\n" + \
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    write_atomic(out / "data.yaml", text.encode())
