"""Video files as frames: decode with PyAV (FFmpeg) and pick frames every N frames, N per second, or at
scene changes. Pure pixels: paths in, frames out; where the frames go is the caller's business.

>>> sampling = FrameSampling.of(fps=2, scenes=True)
>>> sampling.key
'fps=2,scenes=30'
>>> with VideoReader("clip.mp4") as video:                                     # doctest: +SKIP
...     picked = [(f.index, round(f.timestamp, 2), f.rule) for f in video.frames(sampling)]
...     video.damage                        # None, or ("video_truncated", "the video ends at 4.2 s ...")

Rules (``FrameSampling``):

- ``every_frames=N``: frames 0, N, 2N, ... (in presentation order, counting every decoded frame);
- ``fps=F``: the first frame at or after each tick of a clock at F per second (0, 1/F, 2/F ... seconds
  from the start), so a 25 fps video sampled at ``fps=1`` gives frames 0, 25, 50, ...;
- ``scenes``: the first frame, then every frame whose mean absolute difference of luma from the frame
  before it, both shrunk to 64x36, exceeds ``scene_threshold`` (0-255), at most one per
  :data:`MIN_SCENE_SECONDS` (a one-frame flash or glitch is one change, not two).

``every_frames`` and ``fps`` exclude each other; ``scenes`` combines with either. With no rule at all,
``fps=1`` (:data:`DEFAULT_FPS`).

The scene threshold was chosen on Megamind.avi, bikes.mp4 and vtest.avi (9 hard cuts, checked by eye: a
mean absolute difference of 35-83; fast motion without a cut: at most 20.3) and checked on
bigbuckbunny.mp4, cityCC0.mpg, tree.avi, the carphone clips and Megamind_bugy.avi: every cut found (5),
no motion taken for a cut (a hand swept over the lens: 17.6); only the injected one-frame glitches of
Megamind_bugy.avi (a white box, a green bar) pass it. Gradual transitions (fades, dissolves) are not
detected.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

#: Frames per second taken when no rule is given.
DEFAULT_FPS = 1.0
#: Mean absolute luma difference (0-255) between two consecutive 64x36 thumbnails that makes a cut.
SCENE_THRESHOLD = 30.0
#: A second scene change within this many seconds of the last one is ignored (flashes, glitches).
MIN_SCENE_SECONDS = 0.5
#: The thumbnail the scene detector compares: small enough to be cheap, large enough to see a cut.
SCENE_THUMB = (64, 36)
#: How many undecodable packets are skipped before the rest of the video is given up.
MAX_BAD_PACKETS = 50

RULES = ("every_frames", "fps", "scene")
#: Why a video could not be read to its end (each comes with ``corrupt`` on the video's own sample).
VIDEO_FAILURES = ("empty_file", "unreadable", "not_a_video", "decompression_bomb", "video_truncated", "decode_error",
                  "video_timeout")


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a video become samples (see the module doc). Build it with :meth:`of`.

    >>> FrameSampling.of().key, FrameSampling.of(every_frames=30).key
    ('fps=1', 'every_frames=30')
    """

    every_frames: int | None = None
    fps: float | None = None
    scenes: bool = False
    scene_threshold: float = SCENE_THRESHOLD

    def __post_init__(self) -> None:
        if self.every_frames is not None and self.fps is not None:
            raise ValueError("choose every_frames or fps, not both (scenes combines with either)")
        if self.every_frames is not None and (isinstance(self.every_frames, bool) or int(self.every_frames) < 1
                                              or int(self.every_frames) != self.every_frames):
            raise ValueError(f"every_frames must be a whole number >= 1, got {self.every_frames!r}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a number > 0, got {self.fps!r}")
        if not (math.isfinite(self.scene_threshold) and 0 < self.scene_threshold < 255):
            raise ValueError(f"scene_threshold must be between 0 and 255, got {self.scene_threshold!r}")
        if self.every_frames is None and self.fps is None and not self.scenes:
            raise ValueError("no rule: give every_frames, fps or scenes (FrameSampling.of() gives fps=1)")

    @classmethod
    def of(cls, every_frames: int | None = None, fps: float | None = None, scenes: bool = False,
           scene_threshold: float | None = None) -> "FrameSampling":
        """The sampling these options ask for; no rule at all means ``fps=1``."""
        scenes = bool(scenes) or scene_threshold is not None  # a threshold asks for scenes
        if every_frames is None and fps is None and not scenes:
            fps = DEFAULT_FPS
        return cls(every_frames=int(every_frames) if every_frames is not None else None,
                   fps=float(fps) if fps is not None else None, scenes=bool(scenes),
                   scene_threshold=SCENE_THRESHOLD if scene_threshold is None else float(scene_threshold))

    @property
    def key(self) -> str:
        """The sampling as text, stored with each frame: a video sampled another way is extracted again."""
        parts = []
        if self.every_frames is not None:
            parts.append(f"every_frames={self.every_frames}")
        if self.fps is not None:
            parts.append(f"fps={self.fps:g}")
        if self.scenes:
            parts.append(f"scenes={self.scene_threshold:g}")
        return ",".join(parts)


def frame_sampling(options: "FrameSampling | dict | None") -> FrameSampling:
    """The sampling a user asked for: a :class:`FrameSampling`, a dict of its options, or ``None``
    (one frame per second). A bad option raises :class:`~viscurate.errors.ViscurateError` saying what to give.

    >>> frame_sampling({"every_frames": 10, "scenes": True}).key
    'every_frames=10,scenes=30'
    """
    from ..errors import ViscurateError

    if isinstance(options, FrameSampling):
        return options
    known = ("every_frames", "fps", "scenes", "scene_threshold")
    if options is not None and not isinstance(options, dict):
        raise ViscurateError(f"video options: give a dict with some of {', '.join(known)}, not {type(options).__name__}")
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ViscurateError(f"video options: unknown {', '.join(unknown)}; use {', '.join(known)}")
    try:
        return FrameSampling.of(**(options or {}))
    except (TypeError, ValueError) as e:
        raise ViscurateError(f"video options: {e}") from None


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream (``None`` where it does not say)."""

    fps: float | None
    duration: float | None
    width: int
    height: int
    codec: str
    declared_frames: int | None

    @property
    def expected_end(self) -> float | None:
        """Where the video should end, in seconds: the longest of the durations the file declares (an
        AVI cut short still declares all its frames in its header, while FFmpeg estimates the duration
        from what is left)."""
        ends = [self.duration or 0.0]
        if self.declared_frames and self.fps:
            ends.append(self.declared_frames / self.fps)
        end = max(ends)
        return end if end > 0 else None


@dataclass
class VideoFrame:
    """One picked frame: its ``index`` among the decoded frames, its ``timestamp`` (seconds from the start
    of the video), the ``rule`` that picked it and its pixels (``image``, RGB ``PIL.Image``)."""

    index: int
    timestamp: float
    rule: str
    image: Any


class VideoError(Exception):
    """The file cannot be read as a video at all; ``reason``: ``empty_file``, ``unreadable``, ``not_a_video``
    or ``decompression_bomb``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class _SceneDetector:
    threshold: float
    previous: np.ndarray | None = None
    last_cut: float = -math.inf
    _scaler: Any = None

    def is_cut(self, frame: Any, timestamp: float) -> bool:
        if self._scaler is None:  # one scaler for the whole video: frame.reformat() builds one per frame (3x slower)
            from av.video.reformatter import VideoReformatter
            self._scaler = VideoReformatter()
        w, h = SCENE_THUMB
        small = self._scaler.reformat(frame, width=w, height=h, format="gray", interpolation="AREA")
        thumb = small.to_ndarray().astype(np.int16)
        before, self.previous = self.previous, thumb
        if before is None:
            return True  # the first frame starts the first scene (and may be a black lead-in: no quiet time after it)
        cut = float(np.abs(thumb - before).mean()) > self.threshold
        cut = cut and timestamp - self.last_cut >= MIN_SCENE_SECONDS
        if cut:
            self.last_cut = timestamp
        return cut


@dataclass
class _IntervalClock:
    """``fps`` sampling: is this timestamp at or past the next tick?"""

    fps: float
    next_tick: float = 0.0

    def due(self, timestamp: float) -> bool:
        if timestamp + 1e-6 < self.next_tick:
            return False
        self.next_tick = (math.floor(timestamp * self.fps + 1e-6) + 1) / self.fps
        return True


@dataclass
class VideoReader:
    """``with VideoReader(path) as video: for f in video.frames(sampling): ...`` (see the module doc).

    Opening raises :class:`VideoError` when the file is not a video FFmpeg can read. After
    :meth:`frames` is exhausted: ``decoded`` (frames decoded), ``last_timestamp`` and ``damage``:
    ``None``, or ``(reason, message)`` when the video stopped early (``video_truncated``) or had packets
    FFmpeg could not decode (``decode_error``); the frames before the damage were yielded."""

    path: str
    threads: bool = True
    info: VideoInfo = field(init=False)
    decoded: int = field(init=False, default=0)
    last_timestamp: float | None = field(init=False, default=None)
    damage: tuple[str, str] | None = field(init=False, default=None)
    _bad_packets: str = field(init=False, default="", repr=False)

    def __post_init__(self) -> None:
        import av

        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except Exception as e:  # noqa: BLE001 - FFmpeg's errors are many; all say "cannot read this"
            raise VideoError(*_open_failure(self.path, e)) from None
        streams = self._container.streams.video
        if not streams:
            self._container.close()
            raise VideoError("not_a_video", "not_a_video: the file holds no video stream")
        self._stream = stream = streams[0]
        if self.threads:
            stream.thread_type = "AUTO"  # frame and slice threads: 2-3x on a 1080p h264
        rate = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / 1e6
        cc = stream.codec_context
        self.info = VideoInfo(fps=float(rate) if rate else None, duration=duration, width=int(cc.width or 0),
                              height=int(cc.height or 0), codec=str(cc.name), declared_frames=int(stream.frames) or None)
        self._start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        from PIL import Image

        if Image.MAX_IMAGE_PIXELS and self.info.width * self.info.height > Image.MAX_IMAGE_PIXELS:
            self._container.close()  # each picked frame would be an image Pillow refuses as a bomb
            raise VideoError("decompression_bomb", f"decompression_bomb: frames of {self.info.width}x{self.info.height} "
                             f"pixels, more than Pillow's limit of {Image.MAX_IMAGE_PIXELS}")

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._container.close()

    def frames(self, sampling: FrameSampling, deadline: float | None = None) -> Iterator[VideoFrame]:
        """The frames ``sampling`` picks, in order, decoded one at a time (memory: one frame).

        ``deadline`` (``time.monotonic()``): stop there, keeping what was picked, and say so in
        ``damage`` (``video_timeout``): better the first hour of a film than a worker killed with nothing."""
        scenes = _SceneDetector(sampling.scene_threshold) if sampling.scenes else None
        clock = _IntervalClock(sampling.fps) if sampling.fps is not None else None
        every = sampling.every_frames
        for index, frame in enumerate(self._decoded()):
            if deadline is not None and index and index % 64 == 0 and time.monotonic() > deadline:
                self.damage = ("video_timeout", f"video_timeout: decoding was stopped at {self.last_timestamp or 0:.1f} s "
                               f"of {self.info.expected_end or 0:.1f} s ({self.decoded} frames) by the time limit "
                               f"of one file; the frames before were kept (a longer item_timeout reads it whole)")
                return
            t = self._timestamp(frame, index)
            self.decoded, self.last_timestamp = index + 1, t
            rules = []
            if every is not None and index % every == 0:
                rules.append("every_frames")
            if clock is not None and clock.due(t):
                rules.append("fps")
            if scenes is not None and scenes.is_cut(frame, t):
                rules.append("scene")
            if rules:  # a scene change says more than a tick of the clock
                yield VideoFrame(index, t, rules[-1], upright(frame))
        self._check_end()

    def _decoded(self) -> Iterator[Any]:
        bad, first_error = 0, ""
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except Exception as e:  # noqa: BLE001 - the demuxer gave up: a damaged or cut file
                self.damage = ("video_truncated", f"video_truncated: reading stopped after {self.decoded} frames "
                               f"({type(e).__name__}: {e}); the frames before it were kept")
                return
            try:
                frames = packet.decode()
            except Exception as e:  # noqa: BLE001 - one bad packet: skip it, as players do
                bad += 1
                first_error = first_error or f"{type(e).__name__}: {e}"
                self._bad_packets = f"{bad} packet(s) could not be decoded (first: {first_error})"
                if bad >= MAX_BAD_PACKETS:
                    self.damage = ("decode_error", f"decode_error: {self._bad_packets}; reading stopped after "
                                   f"{self.decoded} frames, which were kept")
                    return
                continue
            yield from frames

    def _timestamp(self, frame: Any, index: int) -> float:
        t = frame.time
        if t is None:  # no timestamps in the stream: count frames
            return index / self.info.fps if self.info.fps else float(index)
        return max(0.0, float(t) - self._start)

    def _check_end(self) -> None:
        """A video whose frames stop well before its declared end was cut short; one that played to its
        end with packets it could not decode is damaged inside."""
        if self.damage is not None:
            return
        bad = f"; {self._bad_packets}" if self._bad_packets else ""
        if self.decoded == 0:
            self.damage = ("video_truncated", f"video_truncated: no frame could be decoded{bad}")
            return
        end = self.info.expected_end
        step = 1 / self.info.fps if self.info.fps else 0.0
        reached = (self.last_timestamp or 0.0) + step
        if end is not None and reached < end - max(0.25, 3 * step, 0.01 * end):
            self.damage = ("video_truncated", f"video_truncated: the frames stop at {reached:.2f} s of {end:.2f} s "
                           f"({self.decoded} frames decoded){bad}; the frames before the cut were kept")
        elif bad:
            self.damage = ("decode_error", f"decode_error: {self._bad_packets}; the {self.decoded} frames that could "
                           f"be decoded were kept")


def upright(frame: Any) -> Any:
    """A decoded frame as an RGB ``PIL.Image``, turned as a player shows it: a phone's portrait video is
    stored sideways with a rotation in its display matrix (``frame.rotation``: degrees counterclockwise)."""
    from PIL import Image

    image = frame.to_image()
    turn = round(getattr(frame, "rotation", 0) or 0) % 360
    if turn in (90, 180, 270):  # (exact and lossless)
        return image.transpose({90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
                                270: Image.Transpose.ROTATE_270}[turn])
    return image.rotate(turn, expand=True) if turn else image


def _open_failure(path: str, e: Exception) -> tuple[str, str]:
    import os

    try:
        if os.path.getsize(path) == 0:
            return "empty_file", "empty_file: the file is empty"
    except OSError as oe:
        return "unreadable", f"unreadable: {oe.strerror or oe}"
    return "not_a_video", (f"not_a_video: FFmpeg cannot read it as a video ({type(e).__name__}: {e}); an MP4 "
                           f"cut short before its index (the 'moov' box, often at the end) reads like this too")
