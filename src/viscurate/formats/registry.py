"""Every label format by name: where its reader and writer live, and which one a path looks like.

Modules are imported only when their format is used, so a format's optional dependency costs nothing
to a user who never names it.

>>> get_format("yolo").name, get_format("YOLO").module
('yolo', 'yolo')
>>> sorted(f.name for f in FORMATS.values() if f.writes)[:3]
['coco', 'csv', 'cvat']
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ViscurateError

__all__ = ["Format", "FORMATS", "get_format", "guess_format", "format_names"]


@dataclass(frozen=True)
class Format:
    """A label format: its ``name``, the module of ``formats/`` holding it, the function names of its
    reader, writer and sniffer there (``None``: it has none), what it holds (``detections`` and/or
    ``label``), and a line for ``--help``."""

    name: str
    module: str
    reader: str | None
    writer: str | None
    sniffer: str | None
    holds: tuple[str, ...]
    help: str

    def _function(self, attr: str | None, what: str) -> Callable[..., Any]:
        if attr is None:
            raise ViscurateError(f"the {self.name} format has no {what}: "
                                 f"{'import' if what == 'reader' else 'export'} with one of "
                                 f"{', '.join(format_names('reads' if what == 'reader' else 'writes'))}")
        return getattr(importlib.import_module(f"{__package__}.{self.module}"), attr)

    @property
    def reads(self) -> bool:
        return self.reader is not None

    @property
    def writes(self) -> bool:
        return self.writer is not None

    def read(self, path: str | Path, **options: Any):
        """The format's reader on ``path``: a :class:`~viscurate.formats.records.LabelSet`."""
        return self._call(self._function(self.reader, "reader"), "import", path, **options)

    def write(self, images, out: str | Path, **options: Any) -> dict:
        """The format's writer: records to ``out``; returns its report."""
        return self._call(self._function(self.writer, "writer"), "export", images, out, **options)

    def _call(self, function: Callable[..., Any], what: str, *args: Any, **options: Any) -> Any:
        import inspect
        params = inspect.signature(function).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = [k for k in options if k not in params]
            if unknown:
                takes = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in ("progress", "classes")]
                raise ViscurateError(f"{self.name} {what} has no option {', '.join(map(repr, unknown))}: it takes "
                                     f"{', '.join(takes) or 'none'}")
        return function(*args, **options)

    def writer_takes(self, option: str) -> bool:
        """Whether the writer has the keyword ``option`` (a format-specific one such as ``embeddings``)."""
        import inspect
        return option in inspect.signature(self._function(self.writer, "writer")).parameters

    def looks_like(self, path: Path) -> bool:
        if self.sniffer is None:
            return False
        try:
            return bool(self._function(self.sniffer, "sniffer")(path))
        except (OSError, ValueError, ImportError, ViscurateError):
            return False


def _f(name: str, module: str, holds: tuple[str, ...], help: str, *, reads: bool = True, writes: bool = True,
       stem: str | None = None) -> Format:
    stem = stem or name
    return Format(name, module, f"read_{stem}" if reads else None, f"write_{stem}" if writes else None,
                  f"looks_like_{stem}" if reads else None, holds, help)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("coco", "coco", "read_coco_set", "write_coco", "looks_like_coco", ("detections",),
           "COCO detection JSON (categories and ids kept, iscrowd, area, attributes, segmentation)"),
    _f("yolo", "yolo", ("detections",), "the ultralytics YOLO layout: data.yaml, images/, labels/"),
    _f("voc", "voc", ("detections",), "Pascal VOC XML: Annotations/, JPEGImages/, ImageSets/Main/"),
    _f("cvat", "cvat", ("detections", "label"), "CVAT for images 1.1 XML"),
    _f("labelstudio", "labelstudio", ("detections", "label"), "Label Studio JSON tasks (and its label config)"),
    _f("huggingface", "huggingface", ("detections", "label"), "the Hugging Face datasets image folder: "
                                                              "<split>/ with metadata.jsonl"),
    _f("csv", "tables", ("detections", "label"), "CSV tables: samples and objects"),
    _f("parquet", "tables", ("detections", "label"), "Parquet tables: samples, objects and embeddings"),
    _f("urllist", "urllist", (), "an img2dataset-ready URL list (parquet with url and caption)"),
    _f("imagefolder", "imagefolder", ("label",), "a plain folder of the images (copied or linked; "
                                                 "by class with --by-class)"),
    Format("jsonl", "jsonl", None, "write_jsonl", None, (), "JSON Lines: every field of every sample"),
)}

_ALIASES = {"hf": "huggingface", "datasets": "huggingface", "label-studio": "labelstudio", "label_studio": "labelstudio",
            "ultralytics": "yolo", "pascal": "voc", "pascal_voc": "voc", "img2dataset": "urllist",
            "folder": "imagefolder", "cvat_images": "cvat"}


def format_names(what: str = "reads") -> list[str]:
    """The names of the formats that read (``"reads"``) or write (``"writes"``)."""
    return [f.name for f in FORMATS.values() if getattr(f, what)]


def get_format(name: str) -> Format:
    """The format called ``name`` (case and a few common aliases allowed: ``hf``, ``label-studio``)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise ViscurateError(f"unknown format {name!r}: use one of {', '.join(FORMATS)}")
    return FORMATS[key]


def guess_format(path: str | Path) -> str:
    """The one format ``path`` looks like; an error naming the candidates (or saying none fits) when
    that is not clear, so the user passes ``--format``.

    >>> guess_format("/no/such/path")
    Traceback (most recent call last):
    ...
    viscurate.errors.ViscurateError: /no/such/path does not exist
    """
    path = Path(path)
    if not path.exists():
        raise ViscurateError(f"{path} does not exist")
    hits = [f.name for f in FORMATS.values() if f.reads and f.name != "imagefolder" and f.looks_like(path)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ViscurateError(f"cannot tell the format of {path}: pass --format (one of "
                             f"{', '.join(format_names('reads'))})")
    raise ViscurateError(f"{path} could be {' or '.join(hits)}: pass --format")
