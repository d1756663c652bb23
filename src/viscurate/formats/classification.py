"""Image-classification folders, read: the class is the folder an image sits in, the split the folder
above it. The reader turns the folders of the ingested images into their labels; the ``Dataset`` ingests
and stores (:meth:`~viscurate.dataset.Dataset.import_classification`).

>>> from pathlib import Path
>>> fields, report = read_classification_labels(
...     Path("/data"), {"/data/train/cat/1.jpg": "s1", "/data/val/dog/2.jpg": "s2"}, with_splits=True)
>>> fields["s1"]
{'ground_truth.label': 'cat', 'split': 'train'}
>>> report
ClassificationImport(images=2, classes=2, splits={'train': 1, 'val': 1}, unlabeled=0, failed=0)

Two layouts are recognized, the ones torchvision's ``ImageFolder`` and most dataset downloads use:

- ``ROOT/<class>/<image>``: every image gets ``ground_truth.label`` = its folder's name;
- ``ROOT/<split>/<class>/<image>`` when the folders right under ROOT are split names (``train``, ``val``,
  ``valid``, ``validation``, ``test``, ``dev``): the image also gets ``split``.

Images directly under ROOT (no class folder) are ingested without a label. Labels are written after the
images are ingested, so importing again (after adding images, or moving one to another class folder)
updates exactly what changed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ViscurateError

__all__ = ["SPLIT_NAMES", "ClassificationImport", "check_classification_root", "has_split_folders",
           "read_classification_labels"]

SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing", "dev"})


@dataclass
class ClassificationImport:
    """``images``: samples labeled; ``classes``: how many; ``splits``: images per split (empty without
    split folders); ``unlabeled``: images that sat in no class folder; ``failed``: files ingest could not
    decode (kept, flagged ``corrupt``, labeled all the same)."""

    images: int = 0
    classes: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    unlabeled: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "classes": self.classes, "splits": self.splits,
                "unlabeled": self.unlabeled, "failed": self.failed}


def _label_of(path: Path, root: Path, with_splits: bool) -> tuple[str | None, str | None]:
    parts = path.relative_to(root).parts[:-1]  # folders between root and the file
    if with_splits:
        split = parts[0] if parts else None
        label = parts[1] if len(parts) > 1 else None
        return label, split
    return (parts[0] if parts else None), None


def check_classification_root(root: str | os.PathLike) -> Path:
    """The absolute ``root`` of a classification tree, checked to be a folder that can be read (raises
    :class:`~viscurate.errors.ViscurateError`); reads no image."""
    path = Path(root).expanduser().resolve()
    if not path.exists():
        raise ViscurateError(f"input not found: {root}")
    if not path.is_dir():
        raise ViscurateError(f"{root} is not a folder (a classification tree is ROOT/<class>/<image>)")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ViscurateError(f"input not readable (permission denied): {root}")
    return path


def has_split_folders(root: Path) -> bool:
    """Whether the folders right under ``root`` are all split names (``ROOT/<split>/<class>/<image>``)."""
    top = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(top) and all(p.name.lower() in SPLIT_NAMES for p in top)


def read_classification_labels(root: Path, samples: Mapping[str, str], *, with_splits: bool
                               ) -> tuple[dict[str, dict[str, str]], ClassificationImport]:
    """The fields to set on each sample under ``root`` (``{sample id: {"ground_truth.label": class,
    "split": split}}``, ``split`` only ``with_splits``) and the counts of the import (all but
    ``failed``). ``samples``: ``{origin (absolute path): sample id}`` of the ingested images; those from
    elsewhere are left out."""
    report = ClassificationImport()
    fields: dict[str, dict[str, str]] = {}
    classes = set()
    for origin, sid in samples.items():
        try:
            label, split = _label_of(Path(origin), root, with_splits)
        except ValueError:
            continue  # a sample from elsewhere in the same dataset
        if label is None:
            report.unlabeled += 1
            continue
        classes.add(label)
        report.images += 1
        fields[sid] = {"ground_truth.label": label}
        if split is not None:
            report.splits[split] = report.splits.get(split, 0) + 1
            fields[sid]["split"] = split
    report.classes = len(classes)
    return fields, report
