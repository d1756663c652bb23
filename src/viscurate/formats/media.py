"""Images placed into an export's folder: copied or linked under a name that cannot collide.

Two samples may share a file name (``a/1.jpg`` and ``b/1.jpg``) and one file may back two samples; an
export folder holds one file per sample, named ``<stem>_<sample id prefix><suffix>`` when the plain name is
taken by different bytes, so re-exporting into the same folder gives the same names.

>>> import tempfile; src = Path(tempfile.mkdtemp()) / "cat.jpg"; _ = src.write_bytes(b"x")
>>> out = Path(tempfile.mkdtemp())
>>> place_image(src, out, "s1", "copy").name, place_image(src, out, "s1", "copy").name
('cat.jpg', 'cat.jpg')
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ViscurateError

__all__ = ["place_image", "image_size", "MEDIA_MODES"]

MEDIA_MODES = ("copy", "symlink", "none")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if b.is_symlink():
            return Path(os.path.realpath(b)) == Path(os.path.realpath(a))
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def place_image(src: str | os.PathLike, folder: str | os.PathLike, sample_id: str | None, mode: str,
                name: str | None = None) -> Path:
    """Copy (``mode="copy"``) or symlink (``"symlink"``) the image ``src`` into ``folder`` (created),
    under ``name`` (default: its own file name) or, when that name holds other bytes, the name with the
    first 12 characters of ``sample_id`` appended. Returns the placed path."""
    if mode not in ("copy", "symlink"):
        raise ViscurateError(f"media must be copy or symlink here, not {mode!r}")
    src = Path(src)
    if not src.is_file():
        raise ViscurateError(f"cannot export {src}: the image file is gone")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or src.name
    target = folder / name
    if (target.exists() or target.is_symlink()) and not _same_file(src, target):
        stem, suffix = os.path.splitext(name)
        target = folder / f"{stem}_{(sample_id or 'x')[:12]}{suffix}"
    if target.exists() or target.is_symlink():
        if _same_file(src, target):
            return target
        target.unlink()
    if mode == "copy":
        shutil.copy2(src, target)
    else:
        os.symlink(os.path.abspath(src), target)
    return target


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` of an image from its header (Pillow decodes no pixels), upright (after its EXIF
    orientation, as the catalog and ultralytics measure it), ``None`` when the file is missing or
    unreadable (the caller counts it): what YOLO needs to de-normalize its boxes, and VOC and CVAT to
    write a size a record lacks.

    >>> image_size("/no/such.jpg") is None
    True
    """
    from PIL import Image

    from ..media.exif import read_exif  # header EXIF only: Pillow would decode a PNG to look further
    try:
        with Image.open(path) as im:
            w, h = im.size
            exif = read_exif(im, False)
    except Exception:  # Pillow raises many kinds for a bad file; any of them means "no size"
        return None
    turned = exif is not None and exif.get(0x0112) in (5, 6, 7, 8)  # EXIF Orientation: a quarter turn
    return (h, w) if turned else (w, h)
