"""Image-classification folders: the class is the folder an image sits in, the split the folder above it.

>>> import_classification_folders(ds, "data/")                                     # doctest: +SKIP
ClassificationImport(images=12000, classes=10, splits={'train': 10000, 'val': 2000}, ...)

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
from typing import TYPE_CHECKING, Any

from ..errors import ViscurateError

if TYPE_CHECKING:
    from ..dataset import Dataset

__all__ = ["SPLIT_NAMES", "ClassificationImport", "check_classification_root", "import_classification_folders"]

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


def import_classification_folders(ds: "Dataset", root: str | os.PathLike, *, progress: bool = True
                                  ) -> ClassificationImport:
    """Ingest every image under ``root`` and set ``ground_truth.label`` (and ``split``) from its folders."""
    root = check_classification_root(root)
    top = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    with_splits = bool(top) and all(p.name.lower() in SPLIT_NAMES for p in top)
    ingest = ds.add_images(root, progress=progress)
    report = ClassificationImport(failed=int(getattr(ingest, "failed", 0) or 0))
    with ds._catalog(write=True) as cat:
        index = cat.file_index()
        updates = []
        classes = set()
        for origin, (_, _, _, sid) in index.items():
            path = Path(origin)
            try:
                label, split = _label_of(path, root, with_splits)
            except ValueError:
                continue  # a sample from elsewhere in the same dataset
            if label is None:
                report.unlabeled += 1
                continue
            classes.add(label)
            report.images += 1
            if split is not None:
                report.splits[split] = report.splits.get(split, 0) + 1
            updates.append((sid, label, split))
        for start in range(0, len(updates), 2000):
            part = updates[start:start + 2000]
            by_id = {sid: (label, split) for sid, label, split in part}
            docs = []
            for d in cat.find({"_id": {"$in": list(by_id)}}, page_size=len(part))["results"]:
                label, split = by_id[d["_id"]]
                gt = dict(d.get("ground_truth") or {})
                gt["label"] = label
                new = {"_id": d["_id"], "ground_truth": gt}
                if split is not None:
                    new["split"] = split
                docs.append(new)
            cat.write(docs, mode="merge", merge_keys=("ground_truth", "split") if with_splits else ("ground_truth",))
    report.classes = len(classes)
    return report
