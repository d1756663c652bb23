"""Downloaded bytes, stored once: ``<media_dir>/<sha[:2]>/<sha><ext>``, content-addressed.

Two URLs with the same bytes are two samples and one file. A file is written under a temporary name
and renamed, so a run killed mid-write never leaves a partial file under its final name (ingest removes
old ``.part-`` files). With ``resize``, an image larger than ``resize`` pixels on its longest side is
scaled down before it is stored (for users bound by disk), in its own format (JPEG at quality 90).

>>> import tempfile; d = tempfile.mkdtemp()
>>> path, digest, size = store_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8), ".png", d)
>>> path.endswith(digest + ".png"), size
(True, 16)
"""
from __future__ import annotations

import io

from ...sources.archive import store_media_bytes

#: Formats re-encoded as themselves after a resize; any other is stored as PNG.
_SAVE_AS = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF"}


def store_bytes(data: bytes, ext: str, media_dir: str, resize: int | None = None) -> tuple[str, str, int]:
    """Keep ``data`` under ``media_dir``; returns ``(path, sha256 hex, size)`` of what was stored."""
    if resize:
        data, ext = shrink(data, ext, resize)
    dst, digest = store_media_bytes(media_dir, data, "x" + ext)  # the same bytes from another URL: stored once
    return dst, digest, len(data)


def shrink(data: bytes, ext: str, max_side: int) -> tuple[bytes, str]:
    """``data`` scaled down to ``max_side`` on its longest side (upright, EXIF orientation applied), or
    as it is when it is small enough or cannot be decoded (the profile then says why)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            if max(im.size) <= max_side:
                return data, ext
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
            small = ImageOps.exif_transpose(im)
            small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            fmt = _SAVE_AS.get(ext, "PNG")
            if fmt == "JPEG" and small.mode not in ("RGB", "L"):
                small = small.convert("RGB")
            out = io.BytesIO()
            small.save(out, fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
            return out.getvalue(), ext if fmt != "PNG" or ext == ".png" else ".png"
    except Exception:  # noqa: BLE001 - a broken image is stored as it came; its profile flags it
        return data, ext
