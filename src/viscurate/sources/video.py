"""Video files as sources of frames: which files are videos, the origin of each frame, and where a
frame's pixels are stored.

A frame is a sample of its own. Its origin is the video's with the frame index after
:data:`FRAME_SEP` (``/data/clip.mp4#frame=250``), so its ``_id`` (sha1 of the origin) depends only on the
video and the index: extracting the same video again gives the same samples. Its pixels are written as a
JPEG into the dataset's media folder, named by content (``<media_dir>/<sha[:2]>/<sha>.jpg``, like the
members copied out of archives), so that thumbnails, models and exports open a frame like any image.
The decoding itself is :mod:`viscurate.media.video`.

>>> frame_origin("/data/clip.mp4", 250)
'/data/clip.mp4#frame=250'
>>> video_of("/data/clip.mp4#frame=250"), video_of("/data/cat.jpg")
('/data/clip.mp4', None)
>>> is_video("/data/CLIP.MP4"), is_video("/data/anim.gif")
(True, False)
"""
from __future__ import annotations

import io
import os
from typing import Any

from .archive import store_media_bytes
from .folder import VIDEO_EXTENSIONS

#: Separates a video's origin from a frame index in a frame's origin.
FRAME_SEP = "#frame="
#: The ``source`` of a frame sample.
VIDEO_SOURCE = "video"
#: JPEG quality of stored frames: the video is already lossy; 95 adds no visible loss, 1/5 of a PNG's bytes.
FRAME_JPEG_QUALITY = 95
#: MPEG transport streams are videos when named (or included) explicitly; a folder walk does not take
#: ``.ts`` by default (TypeScript).
_NAMED_ONLY = frozenset({".ts"})


def is_video(path: str) -> bool:
    """Whether ``path`` names a video file (by its extension)."""
    ext = os.path.splitext(path)[1].lower()
    return ext in VIDEO_EXTENSIONS or ext in _NAMED_ONLY


def frame_origin(video: str, index: int) -> str:
    """The origin of frame ``index`` of the video whose origin is ``video``."""
    return f"{video}{FRAME_SEP}{int(index)}"


def video_of(origin: str) -> str | None:
    """The video's origin of a frame's origin, or ``None`` when ``origin`` is not a frame's."""
    video, sep, index = origin.rpartition(FRAME_SEP)
    return video if sep and index.isdigit() else None


def encode_frame(image: Any) -> bytes:
    """A frame's pixels (``PIL.Image``) as the JPEG bytes that are stored (deterministic: the same
    pixels give the same bytes, so a video extracted again writes nothing new)."""
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=FRAME_JPEG_QUALITY)
    return out.getvalue()


def store_frame(media_dir: str | os.PathLike, data: bytes) -> tuple[str, str]:
    """Write a frame's bytes under ``media_dir``, content-addressed; returns ``(path, sha256 hex)``."""
    return store_media_bytes(media_dir, data, "frame.jpg")
