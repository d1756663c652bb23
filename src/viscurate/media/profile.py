"""The profile of one image file: a plain dict computed from its bytes. See ``docs/profile.md``.

>>> doc = profile_bytes(b"")
>>> doc["issues"], doc["size_bytes"]
(['corrupt', 'empty_file'], 0)
"""
from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

import numpy as np

from .decode import HEADER_BYTES, Decoded, decode_header, decode_image
from .hashes import perceptual_hashes
from .quality import DEFAULT_THRESHOLDS, QualityThresholds, colour_histogram, measure, quality_issues, size_issues

#: Files bigger than this are not read (flag ``too_large``), unless ``max_bytes`` says otherwise.
DEFAULT_MAX_BYTES = 512 * 2**20

#: Failure reasons; each comes with ``corrupt`` in ``issues``.
FAILURE_FLAGS = ("empty_file", "not_an_image", "truncated", "decompression_bomb", "too_large", "decode_error", "unreadable")

#: A file that may well be valid but that no decoder viscurate has can read (flagged alone, never ``corrupt``).
UNSUPPORTED = "unsupported"


def profile_file(
    path: str | os.PathLike[str],
    thresholds: QualityThresholds | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """Profile the file at ``path``: it is read once, hashed and decoded from memory.

    Never raises for bad input: unreadable, empty, non-image, truncated, bomb or too large files give
    a document whose ``issues`` say so (with ``corrupt``) and whose ``error`` has the message.
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return _failed("unreadable", "not a regular file", None)
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                prefix = _read_upto(f, min(HEADER_BYTES, max_bytes))
                return _too_large(prefix, size, max_bytes, thresholds)
            data = _read_upto(f, max_bytes + 1)
    except Exception as e:  # noqa: BLE001 - permissions, vanished file, I/O error...
        return _failed("unreadable", f"{type(e).__name__}: {e}", None)
    if len(data) > max_bytes:  # grew while we read it
        return _too_large(data[:HEADER_BYTES], len(data), max_bytes, thresholds)
    return profile_bytes(data, thresholds)


def profile_bytes(data: bytes, thresholds: QualityThresholds | None = None) -> dict[str, Any]:
    """Profile an image given as bytes. Never raises for bad input."""
    th = thresholds if thresholds is not None else DEFAULT_THRESHOLDS
    try:
        data = bytes(data) if not isinstance(data, bytes) else data
        digest = hashlib.sha256(data).hexdigest()
        d = decode_image(data)
        return _document(d, len(data), digest, th)
    except Exception as e:  # noqa: BLE001 - last line of defence: a bug must not stop a million-file scan
        size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else None
        return _failed("decode_error", f"{type(e).__name__}: {e}", size)


# --------------------------------------------------------------------------------------------------


def _read_upto(f: Any, limit: int) -> bytes:
    chunks = []
    got = 0
    while got < limit:
        b = f.read(limit - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _failed(reason: str, message: str, size: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "image"}
    if size is not None:
        doc["size_bytes"] = size
    doc["issues"] = ["corrupt", reason]
    doc["error"] = f"{reason}: {message}"
    return doc


def _too_large(prefix: bytes, size: int, max_bytes: int, thresholds: QualityThresholds | None) -> dict[str, Any]:
    d = decode_header(prefix)
    d.failure = "too_large"
    d.error = f"too_large: the file has {size} bytes, more than max_bytes={max_bytes}"
    return _document(d, size, None, thresholds if thresholds is not None else DEFAULT_THRESHOLDS)


def _document(d: Decoded, size: int, digest: str | None, th: QualityThresholds) -> dict[str, Any]:
    """Assemble the profile in the schema's key order."""
    doc: dict[str, Any] = {"type": "image"}
    if d.width is not None and d.height is not None:
        doc["width"] = d.width
        doc["height"] = d.height
    if d.format:
        doc["format"] = d.format
    if d.mode:
        doc["mode"] = d.mode
    if d.frames is not None:
        doc["frames"] = d.frames
    doc["size_bytes"] = size
    if digest is not None:
        doc["hash"] = digest

    issues: list[str] = []
    if d.small is not None:
        small = d.small
        grey_img = small if small.mode == "L" else small.convert("L")
        grey = np.asarray(grey_img)
        rgb = None if small.mode == "L" else np.asarray(small)
        doc.update(perceptual_hashes(grey_img))
        grey_hist = grey_img.histogram()
        doc["histogram"] = colour_histogram(grey_hist if rgb is None else small.histogram())
        w, h = (d.width, d.height) if d.width and d.height else small.size
        q = measure(rgb, grey, d.single_channel, w, h, th, grey_hist=grey_hist)
        doc["quality"] = q
        issues += quality_issues(q, th)
    elif d.failure == UNSUPPORTED:
        issues.append(UNSUPPORTED)
    else:
        issues += ["corrupt", d.failure or "decode_error"]
    if d.exif:
        doc["exif"] = d.exif
    if d.tiff:
        doc["tiff"] = {k: v for k, v in d.tiff.items() if v is not None}
    if d.width and d.height:
        issues += size_issues(d.width, d.height, th)
    doc["issues"] = issues
    if d.small is None and d.error:
        doc["error"] = d.error
    return doc
