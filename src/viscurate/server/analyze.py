"""Cortex's "analyze this image": bytes from a URL or an upload become a profiled, labeled sample document.

The bytes are kept content-addressed under ``<workspace>/server/media/`` (so the same image sent twice is
one file), ingested into a dataset (the caller's, or a scratch one whose sample is removed again) and
labeled in this process (the models stay loaded between calls), with the same pipeline as
``viscurate ingest`` and ``viscurate label``: the answer is exactly what the catalog would hold.
"""
from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

from ..errors import ViscurateError

__all__ = ["analyze_bytes", "image_pixels", "SCRATCH_DATASET", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_MAX_PIXELS"]

SCRATCH_DATASET = "analyze-scratch"
DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
DEFAULT_MAX_PIXELS = 50_000_000  # a 50 MB file can still declare gigapixels (a decompression bomb)
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
_lock = threading.Lock()  # one analysis at a time: the models are shared and each run holds a dataset's lock


def _suffix(data: bytes) -> str:
    import io

    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _SUFFIXES.get(str(im.format), ".img")
    except Exception:  # noqa: BLE001 - not an image: ingest flags it, with the reason
        return ".img"


def image_pixels(data: bytes) -> int | None:
    """Width x height declared by the image's header (nothing decoded), or ``None`` when it is not an
    image Pillow can open (ingest then flags it with the reason)."""
    import io
    import warnings

    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bomb's size is what we want to read, not a warning
            with Image.open(io.BytesIO(data)) as im:
                return int(im.width) * int(im.height)
    except Image.DecompressionBombError as e:  # over twice Pillow's own limit: its message holds the size
        import re
        found = re.search(r"\((\d+) pixels\)", str(e))
        return int(found.group(1)) if found else 2**62
    except Exception:  # noqa: BLE001
        return None


def analyze_bytes(data: bytes, home: str | os.PathLike | None, *, dataset: str | None = None,
                  url: str | None = None) -> dict:
    """The sample document of ``data`` after ingest and label. ``dataset``: keep it there (created if
    missing); else it is analyzed in :data:`SCRATCH_DATASET` and removed from it afterwards."""
    from ..dataset import Dataset
    from ..store.workspace import Workspace

    if not data:
        raise ViscurateError("the image is empty")
    digest = hashlib.sha256(data).hexdigest()
    folder = Workspace(home).home / "server" / "media"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{_suffix(data)}"
    if not path.is_file():
        from ..files import write_atomic
        write_atomic(path, data)
    name = dataset or SCRATCH_DATASET
    with _lock:
        ds = Dataset.create(name, home, exist_ok=True)
        ds.add_images([path], workers=0, progress=False)
        ids = ds.ids({"filepath": str(path)})
        if not ids:
            raise ViscurateError("the image could not be added")
        sid = ids[0]
        if url is not None:
            ds.set_field(sid, "url", url)
        ds.label(query={"_id": sid}, workers=0, progress=False, neighbours=None)
        doc: dict[str, Any] = ds.get(sid)
        if dataset is None:
            ds.delete_samples(sid)
    if dataset is None:
        doc.pop("filepath", None)  # a scratch file's path means nothing to a client
    return doc
