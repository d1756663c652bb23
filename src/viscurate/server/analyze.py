"""Cortex's "analyze this image": bytes from a URL or an upload become a profiled, labeled sample document.

The bytes are kept content-addressed under ``<workspace>/server/media/`` (so the same image sent twice is
one file), ingested into a dataset (the caller's, or a scratch one deleted again right after) and
labeled in this process (the models stay loaded between calls), with the same pipeline as
``viscurate ingest`` and ``viscurate label``: the answer is exactly what the catalog would hold.

The bytes are one image: an archive is refused before anything is written (ingest would unpack it,
member by member, far past the upload's size limit), and an analysis that fails takes back what it wrote.
"""
from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

from ..errors import ViscurateError
from ..sources.archive import archive_signature

__all__ = ["analyze_bytes", "archive_kind_of", "image_pixels", "original_name", "remove_scratch", "SCRATCH_DATASET"]

SCRATCH_DATASET = "analyze-scratch"
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


def archive_kind_of(data: bytes) -> str | None:
    """What archive or compressed stream ``data`` opens as (``"zip"``, ``"tar"``, ``"gzip"``, ``"bzip2"``,
    ``"xz"``), by the signatures ingest sniffs a file by (:func:`~viscurate.sources.archive.archive_kind`),
    or ``None``. No image starts with one of them.

    >>> archive_kind_of(b"PK\\x03\\x04" + bytes(26)), archive_kind_of(bytes.fromhex("89504e470d0a1a0a"))
    ('zip', None)
    """
    return archive_signature(data[:512])


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


def remove_scratch(home: str | os.PathLike | None) -> bool:
    """Delete the scratch dataset (left behind only by a crash mid-analysis); True when there was one.

    The web app and ``GET /v1/datasets`` never show it either way."""
    from ..dataset import Dataset

    if not Dataset.exists(SCRATCH_DATASET, home):
        return False
    Dataset.open(SCRATCH_DATASET, home).delete()
    return True


def original_name(filename: str | None) -> str | None:
    r"""An uploaded file's name as the client gave it, kept as ``metadata.original_filename``: its last
    path part only (a client's folders are not ours to record), printable, 255 characters at most.

    >>> original_name(r"C:\Users\me\cat.png"), original_name("../../etc/passwd"), original_name("")
    ('cat.png', 'passwd', None)
    """
    if not filename:
        return None
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()[:255]
    return name if name not in ("", ".", "..") else None


def analyze_bytes(data: bytes, home: str | os.PathLike | None, *, dataset: str | None = None,
                  url: str | None = None, filename: str | None = None) -> dict:
    """The sample document of ``data`` after ingest and label. ``dataset``: keep it there (created if
    missing), else it is analyzed in :data:`SCRATCH_DATASET`, which is deleted again afterwards;
    ``filename``: an upload's original name, kept (sanitized, :func:`original_name`) as
    ``metadata.original_filename``.

    ``data`` must be one image: an archive is refused before anything is written. When the analysis
    fails, what it wrote goes again (the file, the sample, a dataset it created) and the error is raised.
    """
    from ..dataset import Dataset
    from ..store.workspace import Workspace

    if not data:
        raise ViscurateError("the image is empty")
    kind = archive_kind_of(data)
    if kind is not None:
        raise ViscurateError(f"uploads are single images, and this is a {kind} archive: send its images one by one")
    digest = hashlib.sha256(data).hexdigest()
    folder = Workspace(home).home / "server" / "media"
    path = folder / f"{digest}{_suffix(data)}"
    name = dataset or SCRATCH_DATASET
    with _lock:  # the file is written under the lock too: a concurrent failure could remove it otherwise
        written = not path.is_file()
        if written:
            from ..files import write_atomic
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
        fresh = dataset is None or not Dataset.exists(name, home)
        ds = Dataset.create(name, home, exist_ok=True)
        known_before = set() if fresh else set(ds.ids({"filepath": str(path)}))
        done = False
        try:
            doc = _ingest_and_label(ds, path, url=url, filename=filename)
            done = True
        finally:
            if dataset is None or (fresh and not done):  # the scratch dataset always goes, a new one on failure
                ds.delete()
            elif not done:  # a dataset that was there before keeps only what it had
                _remove_new_samples(ds, path, known_before)
            if written and not done:
                path.unlink(missing_ok=True)
    if dataset is None:
        doc.pop("filepath", None)  # a scratch file's path means nothing to a client
    return doc


def _ingest_and_label(ds: Any, path: Any, *, url: str | None, filename: str | None) -> dict:
    """Ingest the one file at ``path`` into ``ds``, record where it came from, label it: its document."""
    ds.add_images([path], workers=0, progress=False)
    ids = ds.ids({"filepath": str(path)})
    if not ids:
        raise ViscurateError("the image could not be added")
    sid = ids[0]
    known: dict[str, Any] = {}  # what the bytes alone do not say: where they came from
    if url is not None:
        known["url"] = url
    name = original_name(filename)
    if name is not None:
        known["metadata.original_filename"] = name
    if known:
        ds.update(sid, {"$set": known})
    ds.label(query={"_id": sid}, workers=0, progress=False, neighbours=None)
    doc: dict[str, Any] = ds.get(sid)
    return doc


def _remove_new_samples(ds: Any, path: Any, known_before: set[str]) -> None:
    """Delete the samples of ``path`` that a failed analysis added to an existing dataset."""
    added = [sid for sid in ds.ids({"filepath": str(path)}) if sid not in known_before]
    if added:
        ds.delete_samples(added)
