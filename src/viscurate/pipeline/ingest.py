"""Ingest: turn folders, archives and path lists into profiled samples of a catalog, incrementally.

>>> from viscurate.pipeline.ingest import ingest                                  # doctest: +SKIP
>>> with Catalog(directory, "pets", write=True) as cat:                            # doctest: +SKIP
...     report = ingest(cat, ["~/photos"], workers=2)
...     print(report.added, report.images_per_s)

Three steps, streamed (nothing holds the whole file list but the catalog's ``file_index()``):

1. **plan** (parent): every ``MediaRef`` from :mod:`viscurate.sources` is compared with the catalog's
   file index: same size and mtime -> unchanged (never read); same size, new mtime -> its bytes are
   hashed (in a worker): same hash -> unchanged (the stored mtime is updated), else changed; another
   size -> changed; not in the index -> added. Archive members are copied out by the parent, in one
   pass over each archive, into ``media_dir`` (content-addressed) and profiled from there.
2. **run** (worker processes, :class:`~viscurate.pipeline.pool.ProcessPool`): ``profile_file`` on
   chunks of files; a crash or an exception costs one file. Results are put back in the order of the
   plan (``ProcessPool.imap``), so the catalog holds the files in the order they were listed (a folder
   walk is sorted) on every run: what a seeded ``select`` or a page of ``find`` shows does not depend
   on which worker finished first.
3. **write** (parent): every ``batch_size`` documents -> one ``catalog.write(mode="merge")``
   transaction that replaces exactly the profile fields, so user fields (tags, labels, metadata)
   survive a re-profile. A run killed at any point loses at most the work not yet committed (its last
   batch, and results waiting for a slower file); the next run's plan skips what was committed, and
   deterministic ``_id``s (sha1 of the origin) make duplicates impossible.

A sample's ``_id`` is the first 24 hex digits of sha1(origin). See ``docs/ingest.md``.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..errors import FieldTypeError, ViscurateError
from ..media import profile_bytes, profile_file
from ..media.video import FrameSampling
from ..sources.archive import MemberError, extract_member
from ..sources.coverage import InputCoverage
from ..sources.ref import MediaRef, sample_id
from ..sources.resolve import check_inputs, resolve_entries
from ..sources.urls import split_url_inputs
from ..sources.video import VIDEO_SOURCE, is_video, video_of
from ..store.schema import PROFILE_FIELDS
from ..usable import MISSING
from .download import DownloadOptions
from .download.stage import DUPLICATE, STORED, URL_SOURCE, UrlStage, failed_profile, url_fields, url_merge_keys
from .pool import ItemError, ProcessPool
from .stderr_capture import captured_stderr, warning_lines
from .video import VideoFrames, VideoIndex, extract_video, failure_doc

if TYPE_CHECKING:  # the store is imported by the parent only, never by workers
    from ..media import QualityThresholds
    from ..store.catalog import Catalog

log = logging.getLogger("viscurate.ingest")

#: Keys an ingest (re)writes on a sample; every other field (tags, labels, metadata...) is kept.
PROFILE_FIELDS_PLUS: tuple[str, ...] = tuple(PROFILE_FIELDS) + ("datetime",)

DEFAULT_MAX_BYTES = 512 * 2**20
DEFAULT_CHUNK_SIZE = 8
#: A chunk also closes once it holds this many bytes of files (big files travel alone).
CHUNK_BYTES = 8 * 2**20
#: Seconds one file may take in a worker before the worker is stopped and the file flagged.
DEFAULT_ITEM_TIMEOUT = 600.0
#: At most this many warnings are kept in the report (the count goes on).
MAX_WARNINGS = 1000


@dataclass
class IngestReport:
    """What one ingest did.

    - ``added`` / ``changed`` / ``unchanged``: samples new, re-profiled, left as they were;
    - ``failed``: samples written flagged ``corrupt`` (they are also counted as added or changed);
    - ``unsupported``: samples written flagged ``unsupported``: valid files in an encoding viscurate
      cannot decode (also counted as added or changed, never as failed);
    - ``files``: media references found in the inputs (every file or member, unchanged included);
    - ``skipped``: references not ingested (a duplicate origin, a path that cannot be stored);
    - ``bytes``: bytes read and profiled; ``seconds``: wall time of the whole call;
    - ``downloaded`` / ``download_failed``: URLs fetched, and URLs that gave no image (their samples carry
      the issue ``download_failed`` and a ``download.status``; both also count as added or changed);
    - ``warnings``: what was skipped on the way (unreadable folders, broken links, bad archives);
    - ``videos`` / ``frames``: videos decoded, and the frame samples they gave (frames also count as added
      or changed; a video that cannot be read to its end also gives one sample flagged ``corrupt``);
    - ``missing``: samples under this run's inputs whose file is gone (flagged ``missing``, or removed
      with ``prune``: then also counted in ``pruned``); ``restored``: samples flagged ``missing`` whose
      file is back (the flag is cleared).
    """

    added: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    missing: int = 0
    pruned: int = 0
    restored: int = 0
    unsupported: int = 0
    downloaded: int = 0
    download_failed: int = 0
    videos: int = 0
    frames: int = 0
    #: samples written for videos (frames and failures): the progress bar counts each video as one file
    video_samples: int = field(default=0, repr=False)

    @property
    def profiled(self) -> int:
        """Files whose bytes were profiled (added + changed)."""
        return self.added + self.changed

    @property
    def images_per_s(self) -> float:
        return self.profiled / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Profiled bytes per second, 1 MB = 2**20 bytes."""
        return self.bytes / 2**20 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "changed": self.changed, "unchanged": self.unchanged, "failed": self.failed,
                "files": self.files, "skipped": self.skipped, "bytes": self.bytes, "seconds": self.seconds,
                "images_per_s": self.images_per_s, "mb_per_s": self.mb_per_s, "warnings": self.warning_count,
                "missing": self.missing, "pruned": self.pruned, "restored": self.restored,
                "unsupported": self.unsupported, "downloaded": self.downloaded,
                "download_failed": self.download_failed, "videos": self.videos, "frames": self.frames}


# ---- worker side ---------------------------------------------------------------------------------
# A work item is a tuple; workers read only the first two fields.

_PATH, _EXPECT, _ORIGIN, _ID, _SOURCE, _SIZE, _MTIME, _STATUS, _EXTRA = range(9)
_ADDED, _CHANGED = "added", "changed"

_worker_state: dict[str, Any] = {"thresholds": None, "max_bytes": DEFAULT_MAX_BYTES, "own_process": False,
                                 "media_dir": None, "video": None, "video_seconds": None}
#: A video stops decoding (keeping its frames) at this share of the item timeout, before its worker is killed.
VIDEO_TIME_SHARE = 0.8


def _init_worker(thresholds: Any, max_bytes: int, own_process: bool = True, media_dir: str | None = None,
                 video: FrameSampling | None = None, item_timeout: float | None = None) -> None:
    _worker_state["thresholds"] = thresholds
    _worker_state["max_bytes"] = max_bytes
    _worker_state["own_process"] = own_process
    _worker_state["media_dir"] = media_dir
    _worker_state["video"] = video
    _worker_state["video_seconds"] = item_timeout * VIDEO_TIME_SHARE if item_timeout else None


def _profile_item(item: tuple) -> dict | None:
    """:func:`_profile`, plus ``decode_warnings``: what the decoders (libtiff...) wrote on stderr for this
    file, caught in a worker process so that the terminal stays clean (see ``stderr_capture``)."""
    if not _worker_state["own_process"]:
        return _profile(item)
    with captured_stderr() as said:
        doc = _profile(item)
        text = said()
    lines = warning_lines(text) if text else []
    if isinstance(doc, VideoFrames):
        doc.attach_warnings(lines)
    elif doc is not None and lines:
        doc["decode_warnings"] = lines
    return doc


def _profile(item: tuple) -> dict | VideoFrames | None:
    """The profile of the item's file, or ``None`` when its bytes hash to the expected sha256; for a
    video, its frames (:func:`~viscurate.pipeline.video.extract_video`; no size limit: it is streamed)."""
    path, expect = item[_PATH], item[_EXPECT]
    th, max_bytes = _worker_state["thresholds"], _worker_state["max_bytes"]
    if item[_SOURCE] == VIDEO_SOURCE:
        return extract_video(path, item[_ORIGIN], item[_SIZE], item[_MTIME], _worker_state["video"],
                             _worker_state["media_dir"], th, seconds=_worker_state["video_seconds"])
    if expect is not None:
        data = None
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size <= max_bytes:
                    data = f.read(max_bytes + 1)
        except OSError:
            data = None
        if data is not None and len(data) <= max_bytes:
            if hashlib.sha256(data).hexdigest() == expect:
                return None
            return profile_bytes(data, th)
    return profile_file(path, th, max_bytes)


# ---- parent side ---------------------------------------------------------------------------------


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Writer:
    """Buffers sample documents and mtime updates; one catalog transaction per ``batch_size``."""

    def __init__(self, catalog: "Catalog", report: IngestReport, batch_size: int,
                 on_batch: Callable[[IngestReport], None] | None):
        self.catalog = catalog
        self.report = report
        self.batch_size = max(1, int(batch_size))
        self.on_batch = on_batch
        self.docs: list[dict] = []
        self.mtimes: list[dict] = []
        self.stale: list[str] = []

    def _count(self, doc: dict, status: str) -> None:
        r = self.report
        if status == _ADDED:
            r.added += 1
        else:
            r.changed += 1
        issues = doc.get("issues") or ()
        if "corrupt" in issues:
            r.failed += 1
        elif "unsupported" in issues:
            r.unsupported += 1

    def add(self, doc: dict, status: str) -> None:
        self._count(doc, status)
        self.docs.append(doc)
        if len(self.docs) >= self.batch_size:
            self.flush()

    def add_video(self, samples: list[dict], previous: set[str]) -> None:
        """Every sample of one video, in one transaction (a batch may grow past ``batch_size`` for it: a
        video is never half written); then the samples of an earlier extraction that this one did not
        give (``previous`` minus these) are removed."""
        r = self.report
        r.videos += 1
        r.video_samples += len(samples)
        for doc in samples:
            r.frames += int(doc.get("source") == VIDEO_SOURCE)
            self._count(doc, _CHANGED if doc["_id"] in previous else _ADDED)
        self.docs.extend(samples)
        self.stale.extend(previous - {d["_id"] for d in samples})
        if len(self.docs) >= self.batch_size:
            self.flush()

    def touch(self, sid: str, mtime: float | None) -> None:
        """Same bytes, new mtime: record the mtime so the next run does not hash it again."""
        self.report.unchanged += 1
        self.mtimes.append({"_id": sid, "mtime": mtime})
        if len(self.mtimes) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        docs, self.docs = self.docs, []
        mtimes, self.mtimes = self.mtimes, []
        stale, self.stale = self.stale, []
        if docs:
            self._write_docs(docs)
        if stale:  # after the samples that replace them: a kill in between leaves both, and a re-run
            self.catalog.delete(ids=stale)  # sees a video sampled two ways and extracts it again
        if mtimes:
            self.catalog.write(mtimes, mode="merge", merge_keys=("mtime",))
        if (docs or mtimes) and self.on_batch is not None:
            self.on_batch(self.report)

    def _write_docs(self, docs: list[dict]) -> None:
        groups: dict[tuple[str, ...], list[dict]] = {}
        for doc in docs:  # a URL's sample also (re)writes its url, download record and table metadata
            groups.setdefault(url_merge_keys(doc, PROFILE_FIELDS_PLUS), []).append(doc)
        for keys, group in groups.items():
            self._write_group(group, keys)

    def _write_group(self, docs: list[dict], keys: tuple[str, ...]) -> None:
        try:
            self.catalog.write(docs, mode="merge", merge_keys=keys)
            return
        except (FieldTypeError, ValueError, TypeError, UnicodeError) as e:
            # a value the catalog refuses (it is our bug, or a decoder's): find it, keep the rest
            log.warning("a batch could not be written (%s); writing its samples one by one", e)
        for doc in docs:
            try:
                self.catalog.write([doc], mode="merge", merge_keys=keys)
            except (FieldTypeError, ValueError, TypeError, UnicodeError) as e:
                keep = {k: doc.get(k) for k in ("_id", "origin", "filepath", "source", "mtime", "datetime",
                                                "size_bytes", "hash", "url", "download")}
                keep.update(type="image", issues=["corrupt", "decode_error"],
                            error=f"decode_error: the profile could not be stored: {type(e).__name__}: {e}")
                if "corrupt" not in (doc.get("issues") or ()):
                    self.report.failed += 1
                self.catalog.write([keep], mode="merge", merge_keys=keys)


def _failed_doc(reason: str, error: str, size: int | None) -> dict:
    doc: dict[str, Any] = {"type": "image"}
    if size is not None:
        doc["size_bytes"] = size
    doc["issues"] = ["corrupt", reason]
    doc["error"] = error
    return doc


def _sample(item: tuple, profile: dict, now: str) -> dict:
    doc = {"_id": item[_ID], "origin": item[_ORIGIN], "filepath": item[_PATH], "source": item[_SOURCE],
           "mtime": item[_MTIME], "datetime": now}
    doc.update(profile)
    if len(item) > _EXTRA:  # a URL's: its url, download record, metadata
        doc.update(item[_EXTRA])
    return doc


class _Planner:
    """Compares references with the catalog's file index and yields the work items to profile."""

    def __init__(self, index: dict, writer: _Writer, report: IngestReport, media_dir: str, max_bytes: int,
                 tick: Callable[[], None], videos: VideoIndex, sampling: FrameSampling):
        self.index = index
        self.videos = videos
        self.sampling = sampling
        self.writer = writer
        self.report = report
        self.media_dir = media_dir
        self.max_bytes = max_bytes
        self.tick = tick
        self.seen: set[str] = set()
        self.done = False

    def stored_image(self, origin: str) -> bool:
        """Whether the sample of ``origin`` holds a profiled image (read from the download thread too:
        the index is not changed while it runs)."""
        old = self.index.get(origin)
        return old is not None and old[2] is not None

    def warn(self, message: str) -> None:
        r = self.report
        r.warning_count += 1
        if len(r.warnings) < MAX_WARNINGS:
            r.warnings.append(message)
        log.warning(message)

    def items(self, entries: Iterable[tuple[MediaRef, Any]]) -> Iterator[tuple]:
        r = self.report
        index = self.index
        for n, (ref, member) in enumerate(entries):
            r.files += 1
            if n % 512 == 0:
                self.tick()
            origin = ref.origin
            if origin in self.seen:
                r.skipped += 1
                self.warn(f"skipped a second reference to {origin}")
                continue
            try:
                origin.encode("utf-8")
            except UnicodeEncodeError:
                r.skipped += 1
                self.warn(f"skipped {origin.encode('utf-8', 'backslashreplace').decode()}: its name is not valid "
                          f"UTF-8 and cannot be stored")
                continue
            self.seen.add(origin)
            if member is None and is_video(origin):  # (videos in archives are not decoded)
                if self.videos.unchanged(origin, ref.size, ref.mtime, self.sampling.key):
                    r.unchanged += 1
                else:
                    yield (ref.filepath, None, origin, sample_id(origin), VIDEO_SOURCE, ref.size, ref.mtime, _ADDED)
                continue
            old = index.get(origin)
            sid = old[3] if old is not None else sample_id(origin)
            if old is not None and old[0] == ref.size and old[1] == ref.mtime and ref.size is not None:
                r.unchanged += 1
                continue
            status = _ADDED if old is None else _CHANGED
            if member is None:
                expect = old[2] if old is not None and old[0] == ref.size and old[2] else None
                yield (ref.filepath, expect, origin, sid, ref.source, ref.size, ref.mtime, status)
                continue
            # an archive member: copy it out (this is the one read of its bytes), then profile the copy
            item = (None, None, origin, sid, ref.source, ref.size, ref.mtime, status)
            try:
                path, digest, size = extract_member(member, self.media_dir, self.max_bytes)
            except MemberError as e:
                self.writer.add(_sample(item, _failed_doc(e.reason, str(e), ref.size), _utc_now()), status)
                continue
            if old is not None and old[0] == size and old[2] == digest:
                self.writer.touch(sid, ref.mtime)
                continue
            yield (path, None, origin, sid, ref.source, size, ref.mtime, status)
        self.done = True
        self.tick()


def ingest(catalog: "Catalog", inputs: Iterable[str | os.PathLike] | str | os.PathLike, *,
           include: Iterable[str] | str | None = None, exclude: Iterable[str] | str | None = None,
           media_dir: str | os.PathLike | None = None, workers: int | None = None, batch_size: int = 256,
           progress: bool = True, thresholds: "QualityThresholds | None" = None,
           max_bytes: int = DEFAULT_MAX_BYTES, chunk_size: int = DEFAULT_CHUNK_SIZE,
           item_timeout: float | None = DEFAULT_ITEM_TIMEOUT,
           on_batch: Callable[[IngestReport], None] | None = None, prune: bool = False,
           video: "FrameSampling | None" = None, download: DownloadOptions | None = None) -> IngestReport:
    """Profile every media file under ``inputs`` into ``catalog`` (open with ``write=True``).

    ``inputs``: folders, zip/tar archives, path lists (``.txt``/``.lst``) or files; a missing one raises
    :class:`~viscurate.errors.ViscurateError` before anything is read. ``include``/``exclude``: globs
    (see :mod:`viscurate.sources.folder`). ``media_dir``: where archive members are copied (default:
    the dataset's ``media/``). ``workers``: processes (default: all cores; ``0`` profiles in this
    process, without crash isolation). ``batch_size``: samples per catalog transaction.
    ``on_batch(report)`` is called after every committed batch. Samples under these inputs whose file
    is gone get the issue ``missing`` (cleared when the file comes back); ``prune=True`` removes them
    instead (see :func:`settle_missing`). ``video``: which frames of each video become samples
    (:class:`~viscurate.media.video.FrameSampling`; default one per second); each frame's JPEG goes
    to ``media_dir``. URLs (``http(s)://...``, ``.txt`` lists of them, ``.csv``/``.parquet`` tables with a
    ``url`` column) are downloaded as ``download`` says (:class:`~viscurate.pipeline.download.DownloadOptions`:
    concurrency, timeouts, retries, ``allow_private``...), stored content-addressed in ``media_dir`` and
    profiled as they arrive; a URL that gives no image is a sample with the issue ``download_failed``.

    Returns an :class:`IngestReport`."""
    t0 = time.monotonic()
    if not getattr(catalog, "write_mode", False):
        raise ViscurateError("ingest needs a catalog opened for writing (Catalog(..., write=True))")
    report = IngestReport()
    planner: _Planner | None = None

    def warn(message: str) -> None:
        planner.warn(message) if planner is not None else log.warning(message)

    paths = check_inputs(inputs)  # raises on a bad input, before anything is written
    url_inputs, paths = split_url_inputs(paths)  # URLs, and lists or tables of them: downloaded
    entries = resolve_entries(paths, include, exclude, on_warning=warn) if paths else iter(())
    coverage = InputCoverage.of(paths)
    was_missing = _flagged_missing(catalog)
    media_dir = os.path.abspath(os.fspath(media_dir if media_dir is not None else catalog.directory / "media"))
    _remove_partial_copies(media_dir)
    index = catalog.file_index()
    videos = VideoIndex.of(catalog)
    sampling = video if video is not None else FrameSampling.of()
    writer = _Writer(catalog, report, batch_size, on_batch)

    from .progress import FILES, ProgressBar

    with ProgressBar(progress, "ingest", look=FILES) as bar:
        def tick(force: bool = False) -> None:
            files_done = report.profiled - report.video_samples + report.videos + report.unchanged
            bar.update(done=files_done, found=report.files, rated=report.profiled, bytes=report.bytes,
                       failed=report.failed, planning_done=planner is not None and planner.done, force=force,
                       frames=report.frames)

        planner = _Planner(index, writer, report, media_dir, max_bytes, tick, videos, sampling)
        del index  # the planner holds the only reference
        items: Iterator[tuple] = planner.items(entries)
        urls = None
        if url_inputs:  # downloads start now, beside the files' profiles, and feed the same pool
            urls = UrlStage(url_inputs, planner.stored_image, download or DownloadOptions(), media_dir)
            items = itertools.chain(items, _url_items(urls, planner, writer))
        try:
            if workers == 0:
                _init_worker(thresholds, max_bytes, own_process=False, media_dir=media_dir, video=sampling)
                chunks: Iterator[list[tuple[tuple, Any]]] = ([(it, _run_inline(it))] for it in items)
                _consume(chunks, writer, report, tick, planner)
            else:
                with ProcessPool(_profile_item, workers, chunk_size=chunk_size, in_flight=2,
                                 initializer=_init_worker,
                                 initargs=(thresholds, max_bytes, True, media_dir, sampling, item_timeout),
                                 preload=["viscurate.pipeline.ingest"], item_timeout=item_timeout,
                                 cost=_item_bytes, max_chunk_cost=CHUNK_BYTES) as pool:
                    _consume(pool.imap(items), writer, report, tick, planner)
        except KeyboardInterrupt:
            writer.flush()  # keep the profiles already computed (the workers are stopped by now)
            raise
        finally:
            if urls is not None:
                urls.close()
        writer.flush()
        if planner.done:  # the inputs were listed to their end: what was not seen is not there
            settle_missing(catalog, coverage, planner.seen, was_missing, report, prune=prune)
        report.seconds = time.monotonic() - t0
        tick(force=True)
    report.seconds = time.monotonic() - t0
    return report


def _write_video(item: tuple, result: Any, writer: _Writer, planner: _Planner, now: str) -> None:
    """A video's samples: its frames (and a failure), or one failure when it crashed or hung its worker."""
    origin = item[_ORIGIN]
    if isinstance(result, VideoFrames):
        samples = result.samples
    else:
        error = result.error if isinstance(result, ItemError) else f"worker_error: unexpected result {result!r}"
        samples = [failure_doc(item[_PATH], origin, item[_SIZE], item[_MTIME], planner.sampling, "decode_error", error)]
    for doc in samples:
        doc["datetime"] = now
    writer.report.bytes += item[_SIZE] or 0
    previous = planner.videos.ids(origin)
    if origin in planner.index:  # the file's own sample from before (an earlier failure, or a run that took it for an image)
        previous.add(planner.index[origin][3])
    writer.add_video(samples, previous)


def _url_items(urls: UrlStage, planner: _Planner, writer: _Writer) -> Iterator[tuple]:
    """The work items of the URLs, as their downloads finish: a downloaded image goes to the pool to be
    profiled; a URL that gave no image is written at once, as a sample flagged ``download_failed``."""
    r = writer.report
    for n, ((entry, kind), got) in enumerate(urls.results()):
        r.files += 1
        for message in urls.warnings():
            planner.warn(message)
        if n % 64 == 0:
            planner.tick()
        if kind == DUPLICATE:
            r.skipped += 1
            planner.warn(f"skipped a second reference to {entry.url}")
            continue
        if kind == STORED or got is None:
            r.unchanged += 1
            continue
        old = planner.index.get(entry.url)
        sid = old[3] if old is not None else sample_id(entry.url)
        status = _ADDED if old is None else _CHANGED
        item = (got.path, None, entry.url, sid, URL_SOURCE, got.bytes, None, status, url_fields(entry, got))
        if got.ok:
            r.downloaded += 1
            yield item
        else:
            r.download_failed += 1
            writer.add(_sample(item, failed_profile(got), _utc_now()), status)
    for message in urls.warnings():
        planner.warn(message)


def _flagged_missing(catalog: "Catalog") -> dict[str, str]:
    """origin -> _id of every sample flagged ``missing`` now (few, usually)."""
    return catalog.origins_with_issue(MISSING)


def settle_missing(catalog: "Catalog", coverage: InputCoverage, seen: set[str], was_missing: dict[str, str],
                   report: IngestReport, *, prune: bool = False) -> None:
    """After a complete listing of the inputs: flag ``missing`` (or, with ``prune``, delete with their
    boxes and vectors) the samples the inputs cover whose file is gone, and clear the flag of those
    listed again (``seen``). A covered file that still exists but was not listed (now excluded,
    unreadable) is left alone: only a file that no longer exists is missing."""
    back = [sid for origin, sid in was_missing.items() if _listed(origin, seen)]
    if back:  # a changed file was re-profiled (its issues rewritten); an unchanged one keeps its flag until here
        catalog.update(None, {"$pull": {"issues": MISSING}}, ids=back)
        report.restored = len(back)
    rows = catalog.samples_from(coverage.files, coverage.prefixes(), MISSING)
    gone = [(sid, flagged) for sid, origin, source, flagged in rows
            if not _listed(origin, seen) and coverage.covers(origin, source) and coverage.gone(origin, source)]
    report.missing = len(gone)
    if prune:
        if gone:  # the catalog's delete takes the boxes and vectors along
            report.pruned = catalog.delete(ids=[sid for sid, _ in gone])
        return
    unflagged = [sid for sid, flagged in gone if not flagged]  # (an update of many samples is not free)
    if unflagged:
        catalog.update(None, {"$addToSet": {"issues": MISSING}}, ids=unflagged)


def _listed(origin: str, seen: set[str]) -> bool:
    """Whether this run listed the file of a sample: a frame's file is its video."""
    return origin in seen or video_of(origin) in seen


def _remove_partial_copies(media_dir: str) -> None:
    """Temporary copies of archive members left by a killed run. Only old ones: a ``media_dir`` given by
    the user may be shared with another dataset's live ingest, whose copy in progress is fresh."""
    try:
        names = [n for n in os.listdir(media_dir) if n.startswith(".part-")]
    except OSError:
        return
    stale = time.time() - 600
    for n in names:
        p = os.path.join(media_dir, n)
        try:
            if os.stat(p).st_mtime < stale:
                os.unlink(p)
        except OSError:
            pass


def _item_bytes(item: tuple) -> int:
    return item[_SIZE] or 0


def _run_inline(item: tuple) -> Any:
    try:
        return _profile_item(item)
    except Exception as e:  # noqa: BLE001 - same contract as a worker
        return ItemError(f"worker_error: {type(e).__name__}: {e}")


def _consume(chunks: Iterator[list[tuple[tuple, Any]]], writer: _Writer, report: IngestReport,
             tick: Callable[[], None], planner: _Planner) -> None:
    now_s, now = 0, _utc_now()
    for chunk in chunks:
        t = int(time.time())
        if t != now_s:
            now_s, now = t, _utc_now()
        for item, result in chunk:
            if item[_SOURCE] == VIDEO_SOURCE:
                _write_video(item, result, writer, planner, now)
                continue
            if result is None:  # same bytes as before, new mtime
                report.bytes += item[_SIZE] or 0
                writer.touch(item[_ID], item[_MTIME])
                continue
            if isinstance(result, ItemError):
                # the file crashed or hung its worker twice, or a bug raised: a sample that says so
                profile = _failed_doc("decode_error", result.error, item[_SIZE])
            else:
                profile = result
                if "hash" in profile:
                    report.bytes += profile.get("size_bytes") or 0
            writer.add(_sample(item, profile, now), item[_STATUS])
        tick()
