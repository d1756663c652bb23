"""A plain folder of the images: copied or linked, each under a name no other image takes, optionally one
subfolder per class (``by_class``: the layout torchvision's ``ImageFolder`` reads back as labels).

>>> write_imagefolder(records, "picked/", media="symlink")                     # doctest: +SKIP
{'images': 40, 'boxes': 0, 'classes': 0, 'dropped': {}, 'path': 'picked'}
>>> write_imagefolder(records, "by_class/", by_class=True)                     # doctest: +SKIP

- Names: the image's own file name; when two samples share it (``a/1.jpg``, ``b/1.jpg``), the second gets
  its sample id's first 12 characters appended, so exporting again into the same folder names every image
  the same way and adds no copy.
- ``by_class``: ``OUT/<class>/`` from each sample's image-level class; samples without one go to
  ``OUT/_unlabeled/``. A class name is made safe for a folder name (``/`` and other separators replaced).
- Images given by URL have no file to copy: counted in ``dropped``.

Reading gives every image under a folder (``by_class``: the folder right under ROOT is the class).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import ViscurateError
from ..sources import IMAGE_EXTENSIONS
from .media import place_image
from .records import Category, LabeledImage, LabelSet, categories_from_names

__all__ = ["looks_like_imagefolder", "read_imagefolder", "write_imagefolder", "UNLABELED"]

UNLABELED = "_unlabeled"


def _folder_name(name: str) -> str:
    safe = re.sub(r'[/\\\x00-\x1f:*?"<>|]+', "_", name).strip().strip(".")
    return safe or "_"


def write_imagefolder(images: Iterable[LabeledImage], out: str | os.PathLike, *, classes: list[Category] | None = None,
                      media: str = "copy", progress: Callable[[int], None] | None = None,
                      by_class: bool = False) -> dict[str, Any]:
    """Copy (``media="copy"``) or symlink (``"symlink"``) each record's image into ``out`` (``by_class``:
    into ``out/<class>/``). Returns ``{"images", "boxes", "classes", "dropped", "path"}``; boxes are not
    written (``dropped["boxes"]`` counts them), nor images given by URL."""
    if media not in ("copy", "symlink"):
        raise ViscurateError(f"an image folder holds the images: media must be copy or symlink, not {media!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dropped: Counter = Counter()
    seen_classes: dict[str, None] = {}
    n_images = 0
    for n, rec in enumerate(images, 1):
        if "://" in rec.file:
            dropped["image given by URL"] += 1
        else:
            folder = out
            if by_class:
                folder = out / (_folder_name(rec.label) if rec.label is not None else UNLABELED)
                if rec.label is not None:
                    seen_classes[rec.label] = None
            try:
                place_image(rec.file, folder, rec.sample_id, media)
                n_images += 1
            except ViscurateError:
                dropped["image file missing"] += 1  # one gone file never stops the export
        if rec.detections:
            dropped["boxes"] += len(rec.detections)
        if progress is not None:
            progress(n)
    return {"images": n_images, "boxes": 0, "classes": len(seen_classes), "dropped": dict(dropped), "path": str(out)}


def looks_like_imagefolder(path: Path) -> bool:
    """A folder with an image in it or in a folder right under it."""
    path = Path(path)
    if not path.is_dir():
        return False
    for p in path.iterdir():
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            return True
        if p.is_dir() and any(q.suffix.lower() in IMAGE_EXTENSIONS for q in p.iterdir() if q.is_file()):
            return True
    return False


def read_imagefolder(path: str | os.PathLike, *, by_class: bool = False,
                     images: str | os.PathLike | None = None) -> LabelSet:
    """Every image under the folder ``path`` (sorted, hidden files and folders left out) as a record
    with its path relative to ``path``; ``by_class``: its class is the folder right under ``path``
    (images directly in ``path`` and in ``_unlabeled/`` have none).

    >>> [r.label for r in read_imagefolder("by_class", by_class=True)][:2]      # doctest: +SKIP
    ['cat', 'cat']
    """
    if images is not None and Path(images) != Path(path):
        raise ViscurateError("an image folder is its own images folder: give it as PATH, without --images")
    root = Path(path)
    if not root.is_dir():
        raise ViscurateError(f"{root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))

    def label_of(p: Path) -> str | None:
        parts = p.relative_to(root).parts
        return parts[0] if by_class and len(parts) > 1 and parts[0] != UNLABELED else None

    names = [lab for p in files if (lab := label_of(p)) is not None] if by_class else []

    def records() -> Iterator[LabeledImage]:
        for p in files:
            yield LabeledImage(p.relative_to(root).as_posix(), label=label_of(p))

    return LabelSet("imagefolder", Path(os.path.abspath(root)), categories_from_names(names), records())
