"""The video part of ingest: a worker turns one video into frame samples; the parent knows which videos
the catalog already holds, and how they were sampled.

>>> frames = extract_video("/data/clip.mp4", "/data/clip.mp4", 1_000_000, 1700000000.0,   # doctest: +SKIP
...                        FrameSampling.of(fps=1), "/datasets/pets/media")
>>> [d["video"]["timestamp"] for d in frames.docs]                                         # doctest: +SKIP
[0.0, 1.0, 2.0]

A video is one work item: a worker decodes it (crash isolation and the item timeout apply to the whole
video), writes each picked frame as a JPEG under the media folder (:mod:`viscurate.sources.video`) and
profiles it like any image. The parent writes all the samples of one video in one transaction, then
removes the frames of an earlier extraction that this one did not pick, so a killed run never leaves a
video half-extracted and marked done.

A video that is unchanged (same size, same mtime) and was sampled the same way is not read again; any
difference (new bytes, another ``--fps``...) extracts it again: frames at the same index keep their
``_id`` and everything users added to them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..media import profile_bytes
from ..media.video import FrameSampling, VideoError, VideoReader
from ..sources.ref import sample_id
from ..sources.video import VIDEO_SOURCE, encode_frame, frame_origin, store_frame

if TYPE_CHECKING:
    from ..media import QualityThresholds
    from ..store.catalog import Catalog


@dataclass
class VideoFrames:
    """What a worker made of one video: the frame samples (``docs``) and, when the video could not be read
    to its end, one sample flagged ``corrupt`` with the reason (``failure``, at the video's own origin)."""

    docs: list[dict]
    failure: dict | None = None
    decoded: int = 0

    @property
    def samples(self) -> list[dict]:
        return self.docs + ([self.failure] if self.failure is not None else [])

    def attach_warnings(self, lines: list[str]) -> None:
        """What FFmpeg printed on stderr goes with the video: on its failure sample, else its first frame."""
        target = self.failure if self.failure is not None else (self.docs[0] if self.docs else None)
        if target is not None and lines:
            target["decode_warnings"] = lines


def _video_record(origin: str, size: int | None, sampling: FrameSampling, **more: Any) -> dict:
    rec = {"path": origin, **more, "sampling": sampling.key, "size_bytes": size}
    return {k: v for k, v in rec.items() if v is not None}


def failure_doc(path: str | None, origin: str, size: int | None, mtime: float | None, sampling: FrameSampling,
                reason: str, error: str, **video: Any) -> dict:
    """The sample that says a video could not be read (to its end): at the video's own origin, flagged
    ``corrupt`` + ``reason``, with the video record (so an unchanged file is not read again)."""
    doc: dict[str, Any] = {"_id": sample_id(origin), "origin": origin, "filepath": path, "source": "local",
                           "mtime": mtime, "type": "video"}
    if size is not None:
        doc["size_bytes"] = size
    doc["video"] = _video_record(origin, size, sampling, **video)
    doc["issues"] = ["corrupt", reason]
    doc["error"] = error
    return doc


def extract_video(path: str, origin: str, size: int | None, mtime: float | None, sampling: FrameSampling,
                  media_dir: str, thresholds: "QualityThresholds | None" = None,
                  seconds: float | None = None) -> VideoFrames:
    """Decode the video at ``path``, store and profile the frames ``sampling`` picks. Never raises for a
    bad video: what could not be read is in ``failure``, with the frames decoded before the damage.
    ``seconds``: stop after that long, keeping the frames so far (``video_timeout``)."""
    deadline = time.monotonic() + seconds if seconds else None
    try:
        reader = VideoReader(path)
    except VideoError as e:
        return VideoFrames([], failure_doc(path, origin, size, mtime, sampling, e.reason, str(e)))
    docs: list[dict] = []
    with reader:
        info = reader.info
        try:
            for frame in reader.frames(sampling, deadline):
                data = encode_frame(frame.image)
                stored, _ = store_frame(media_dir, data)
                fo = frame_origin(origin, frame.index)
                doc = {"_id": sample_id(fo), "origin": fo, "filepath": stored, "source": VIDEO_SOURCE, "mtime": mtime}
                doc.update(profile_bytes(data, thresholds))
                doc["video"] = _video_record(origin, size, sampling, frame=frame.index,
                                             timestamp=round(frame.timestamp, 6), fps=info.fps,
                                             duration=info.duration, rule=frame.rule)
                docs.append(doc)
            damage = reader.damage
        except Exception as e:  # noqa: BLE001 - a frame PyAV or Pillow cannot convert: keep the frames before it
            damage = ("decode_error", f"decode_error: reading stopped after {reader.decoded} frames "
                      f"({type(e).__name__}: {e}); the frames before were kept")
        decoded = reader.decoded
    for doc in docs:
        doc["video"]["frames"] = decoded
    failure = None
    if damage is not None:
        failure = failure_doc(path, origin, size, mtime, sampling, damage[0], damage[1], fps=info.fps,
                              duration=info.duration, frames=decoded)
    return VideoFrames(docs, failure, decoded)


@dataclass
class _Known:
    ids: set[str] = field(default_factory=set)
    states: set[tuple] = field(default_factory=set)


class VideoIndex:
    """The videos a catalog holds samples of: for each, its samples' ``_id``s and how it was extracted.

    >>> index = VideoIndex.of(catalog)                                             # doctest: +SKIP
    >>> index.unchanged("/data/clip.mp4", 1_000_000, 1700000000.0, "fps=1")          # doctest: +SKIP
    True
    """

    def __init__(self, rows: dict[str, list]):
        self._known: dict[str, _Known] = {}
        for sid, path, size, mtime, key in zip(rows["_id"], rows["video.path"], rows["video.size_bytes"],
                                               rows["mtime"], rows["video.sampling"]):
            k = self._known.setdefault(path, _Known())
            k.ids.add(sid)
            k.states.add((size, mtime, key))

    @classmethod
    def of(cls, catalog: "Catalog") -> "VideoIndex":
        return cls(catalog.columns(["video.path", "video.size_bytes", "mtime", "video.sampling"],
                                   {"video.path": {"$exists": True}}))

    def unchanged(self, origin: str, size: int | None, mtime: float | None, sampling_key: str) -> bool:
        """Whether every sample of this video came from this very file, sampled this very way."""
        k = self._known.get(origin)
        return k is not None and size is not None and k.states == {(size, mtime, sampling_key)}

    def ids(self, origin: str) -> set[str]:
        """The ``_id`` of every sample the catalog holds for this video (frames and failure)."""
        k = self._known.get(origin)
        return set(k.ids) if k is not None else set()
