"""The Python face: a named dataset in a workspace, queried with MongoDB's query language.

>>> import viscurate, tempfile
>>> ds = viscurate.Dataset.create("pets", home=tempfile.mkdtemp())
>>> ds.add_documents([{"filepath": "/data/cat.jpg", "width": 640, "tags": ["cute"]}])
{'inserted': 1, 'updated': 0, 'skipped': 0}
>>> ds.find({"width": {"$gt": 100}})["length"]
1
>>> ds.tag({"width": 640}, "reviewed")
1
>>> ds.count({"tags": "reviewed"})
1

Reads keep the catalog open (and DuckDB's caches warm) for a moment after each call, and let go at
once when another process asks to write; writes hold it for the call. A long write (label, embed,
ingest, an analysis) lets waiting reads in between its batches, so reads keep answering, within about a
second, with what its last batch committed. So several processes can take turns on one dataset.
``with ds.session():`` keeps it open for a whole block. A call that must wait for another process's
write waits up to ``lock_timeout`` seconds (default 10, or ``VISCURATE_LOCK_TIMEOUT``) and then raises
``DatasetBusy`` naming that process. How the calls share the catalog: :mod:`viscurate.catalog_access`.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .catalog_access import CatalogAccess
from .errors import SampleNotFound, ViscurateError
from .store.catalog import DEFAULT_PAGE_SIZE, Catalog, WriteMode
from .store.summaries import summarize
from .store.workspace import Workspace

IdsOrQuery = str | Sequence[str] | dict | None
#: The catalog's meta key for the classes of each label field, as imported (ids and order kept).
CLASSES_KEY = "label_classes"


class Dataset:
    """A dataset: a catalog of samples plus its indexes, media and thumbnails on disk."""

    def __init__(self, name: str, home: str | os.PathLike | None = None, *, lock_timeout: float | None = None):
        self.workspace = Workspace(home)
        self.name = name
        self.directory: Path = self.workspace.require(name)
        self.lock_timeout = lock_timeout
        self._access = CatalogAccess(self)  # the shared reader, the writers, session(): catalog_access.py

    # ---- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, home: str | os.PathLike | None = None, *, exist_ok: bool = False,
               lock_timeout: float | None = None) -> "Dataset":
        ws = Workspace(home)
        if not (exist_ok and ws.exists(name)):
            ws.create(name)
        ds = cls(name, home, lock_timeout=lock_timeout)
        with ds._access.catalog(write=True):
            pass  # creates the catalog file and its schema
        return ds

    @classmethod
    def open(cls, name: str, home: str | os.PathLike | None = None, *, lock_timeout: float | None = None) -> "Dataset":
        return cls(name, home, lock_timeout=lock_timeout)

    @staticmethod
    def list(home: str | os.PathLike | None = None) -> list[str]:
        return Workspace(home).list()

    @staticmethod
    def exists(name: str, home: str | os.PathLike | None = None) -> bool:
        return Workspace(home).exists(name)

    def delete(self) -> None:
        """Delete the dataset and everything under its directory (not the original image files)."""
        self._access.release()
        self.workspace.delete(self.name, timeout=self._access.lock_wait())

    def rename(self, new_name: str) -> None:
        self._access.release()
        self.workspace.rename(self.name, new_name, timeout=self._access.lock_wait())
        self.name = new_name
        self.directory = self.workspace.dataset_dir(new_name)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, home={str(self.workspace.home)!r})"

    # ---- catalog access -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the catalog now (it is also released by itself when idle)."""
        self._access.release()

    @contextlib.contextmanager
    def session(self, write: bool = False) -> Iterator["Dataset"]:
        """Keep the catalog open across calls (``write=True`` holds the write lock throughout)."""
        with self._access.session(write):
            yield self

    # ---- adding samples ---------------------------------------------------------------------------

    def add_images(self, paths: str | os.PathLike | Iterable[str | os.PathLike], *,
                   include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                   workers: int | None = None, batch_size: int = 256, progress: bool = True,
                   thresholds: Any = None, prune: bool = False, video: Any = None,
                   allow_private_urls: bool = False, download: Any = None):
        """Ingest folders, files, zip/tar archives or path lists: profile every image, incrementally.

        Image URLs (``https://...``), ``.txt`` lists of URLs and ``.csv``/``.parquet`` tables with a ``url``
        column (the other columns become ``metadata``) are downloaded, stored in the dataset's ``media/``
        and profiled as they arrive; every URL becomes a sample with its ``url`` and a ``download`` record,
        one that gave no image has the issue ``download_failed``, and a re-run fetches only those.
        Loopback, private and link-local addresses are refused unless ``allow_private_urls=True``.
        ``download``: a ``viscurate.pipeline.download.DownloadOptions`` or a dict of its options
        (``{"concurrency": 64, "timeout": 30, "retries": 2, "resize": 512, "honour_opt_out": True}``).

        Videos (in folders or named) become frames: ``video`` says which, as a
        ``viscurate.media.video.FrameSampling`` or a dict of its options (``{"fps": 2}``,
        ``{"every_frames": 30}``, ``{"scenes": True}``); default one frame per second (docs/ingest.md).

        A bad input (not found, unreadable, not a folder or file) raises ``ViscurateError`` before the
        catalog is touched. Samples under these inputs whose file is gone are flagged ``missing``
        (``prune=True``: removed, with their boxes and vectors).

        Returns an ``IngestReport`` (added, changed, unchanged, failed, missing, pruned, files, bytes, seconds).

        >>> ds.add_images("~/photos", prune=True).missing                               # doctest: +SKIP
        0
        """
        from .pipeline.ingest import ingest
        from .sources.resolve import check_inputs
        from .media.video import frame_sampling
        from .pipeline.download.client import download_options
        paths = check_inputs([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
        sampling = frame_sampling(video)  # a bad option raises before the catalog is touched
        options = download_options(download, allow_private=allow_private_urls)
        with self._access.catalog(write=True) as cat:
            return ingest(cat, paths, include=include, exclude=exclude,
                          media_dir=self.directory / "media", workers=workers, batch_size=batch_size,
                          progress=progress, thresholds=thresholds, prune=prune, video=sampling,
                          download=options)

    def add_documents(self, docs: Any, *, mode: WriteMode = "error", batch_size: int | None = None,
                      progress: Any = False) -> dict:
        """Insert ready-made sample documents (a missing ``_id`` is generated). ``mode`` decides what
        happens to an existing ``_id``: error, skip, replace or merge. Returns the counts
        ``{"inserted", "updated", "skipped"}``; each batch is one transaction.

        ``docs``: dicts, or Arrow data loaded without a dict per document (9-15x faster): a pyarrow
        ``Table``, ``RecordBatch`` or ``RecordBatchReader``, anything with the Arrow stream interface (a
        pandas >= 2.2 or polars DataFrame, a DuckDB relation), or the path of a Parquet file or folder.
        In Arrow data a null is a missing field (see docs/python.md). ``batch_size``: documents per
        transaction (5,000 dicts, 245,760 Arrow rows). ``progress``: draw a bar, or ``progress(done, total)``.

        >>> ds.add_documents(pa.table({"filepath": ["/data/a.jpg"], "width": [640]}))    # doctest: +SKIP
        {'inserted': 1, 'updated': 0, 'skipped': 0}
        >>> ds.add_documents("labels.parquet", mode="skip")                               # doctest: +SKIP
        """
        from .store.bulk import ARROW_ROWS, arrow_batches, is_arrow_data
        totals = {"inserted": 0, "updated": 0, "skipped": 0}
        arrow = is_arrow_data(docs)
        with self._access.catalog(write=True) as cat, contextlib.ExitStack() as stack:
            bar = None
            if progress:  # (the pipeline's bar is imported only when asked for: a second at import)
                from .pipeline.progress import BarLook, ProgressBar
                total = _rows_known(docs) if arrow else (len(docs) if isinstance(docs, (list, tuple)) else None)
                bar = stack.enter_context(ProgressBar(progress, "add documents", total=total,
                                                      look=BarLook(unit="documents")))

            def count(written: dict) -> None:
                for k, v in written.items():
                    totals[k] += v
                if bar is not None:
                    bar.update(done=sum(totals.values()), found=sum(totals.values()))

            if arrow:
                for batch in arrow_batches(docs, batch_size or ARROW_ROWS):
                    count(cat.write_arrow(batch, mode=mode, first_row=sum(totals.values())))
                return totals
            batch: list[dict] = []
            for doc in docs:
                batch.append(dict(doc))
                if len(batch) >= (batch_size or 5000):
                    count(cat.write(batch, mode=mode))
                    batch = []
            if batch:
                count(cat.write(batch, mode=mode))
        return totals

    # ---- reading ----------------------------------------------------------------------------------

    def find(self, query: dict | None = None, *, page: int = 1, page_size: int = DEFAULT_PAGE_SIZE,
             sort: Any = None, projection: dict | None = None) -> dict:
        """One page of the samples matching a MongoDB query: ``{"length", "page", "page_size", "results"}``,
        and ``"warnings"`` when the query names a field no sample has (see :meth:`check_query`).

        Pages are 1-based; without ``sort`` they come in insertion order, so paging visits every match
        once. ``sort`` is ``[("width", -1), ...]`` or ``{"width": -1}``."""
        with self._access.catalog() as cat:
            return cat.find(query, sort=sort, projection=projection, page=page, page_size=page_size)

    def count(self, query: dict | None = None) -> int:
        with self._access.catalog() as cat:
            return cat.count(query)

    def check_query(self, query: dict | None) -> list[str]:
        """Warnings about ``query``: each field it names that no sample has, with the closest field that
        exists (``find`` returns them too, as ``"warnings"``). An unknown operator is an error instead.

        >>> ds.check_query({"isues": "dark"})                                            # doctest: +SKIP
        ["no sample has field 'isues' — did you mean 'issues'?"]
        """
        with self._access.catalog() as cat:
            return cat.check_query(query)  # a malformed query is an error here as in find

    def get(self, sample_id: str) -> dict:
        with self._access.catalog() as cat:
            doc = cat.get(sample_id)
        if doc is None:
            raise SampleNotFound(f"no sample with _id {sample_id!r} in dataset {self.name!r}")
        return doc

    def iter(self, query: dict | None = None, *, sort: Any = None, batch_size: int = 1000) -> Iterator[dict]:
        """Every matching document (holds a read session while iterating)."""
        with self._access.catalog() as cat:
            yield from cat.iter_docs(query, sort=sort, batch_size=batch_size)

    def ids(self, query: dict | None = None) -> list[str]:
        with self._access.catalog() as cat:
            return cat.ids(query)

    def object_classes(self, field: str = "object_analysis", top: int = 200) -> dict[str, int]:
        """``{class name: samples with such a box in field}``, most common first."""
        with self._access.catalog() as cat:
            return cat.object_classes(field, top)

    def info(self) -> dict:
        """Counts and distributions: samples, bytes, issues, formats, sizes, quality, labels."""
        with self._access.catalog() as cat:
            out = summarize(cat)
        out["name"] = self.name
        out["directory"] = str(self.directory)
        out.update({k: v for k, v in self.workspace.info(self.name).items() if k in ("created_at", "schema_version")})
        return out

    # ---- changing samples -------------------------------------------------------------------------

    @staticmethod
    def _target(target: IdsOrQuery) -> tuple[dict | None, list[str] | None]:
        if target is None or isinstance(target, dict):
            return target or {}, None
        if isinstance(target, str):
            return None, [target]
        return None, list(target)

    def update(self, target: IdsOrQuery, changes: dict) -> int:
        """Apply MongoDB update operators (``$set``, ``$unset``, ``$addToSet``, ``$pull``) to the samples
        matching a query (or with these ids). Returns how many changed."""
        query, ids = self._target(target)
        with self._access.catalog(write=True) as cat:
            return cat.update(query, changes, ids=ids)

    def set_field(self, target: IdsOrQuery, path: str, value: Any) -> int:
        return self.update(target, {"$set": {path: value}})

    def tag(self, target: IdsOrQuery, *tags: str) -> int:
        if not tags:
            raise ViscurateError("give at least one tag")
        return self.update(target, {"$addToSet": {"tags": {"$each": list(tags)}}})

    def untag(self, target: IdsOrQuery, *tags: str) -> int:
        if not tags:
            raise ViscurateError("give at least one tag")
        return self.update(target, {"$pull": {"tags": {"$in": list(tags)}}})

    def delete_samples(self, target: IdsOrQuery) -> int:
        """Remove samples from the catalog (the image files themselves are left alone)."""
        query, ids = self._target(target)
        with self._access.catalog(write=True) as cat:
            return cat.delete(query, ids=ids)

    # ---- curation: views, slices, reviews, edits --------------------------------------------------

    def save_view(self, name: str, query: dict, sort: Any = None, *, by: str | None = None) -> dict:
        """Save a query (and sort) under ``name``; it is evaluated again each time it is opened.

        >>> ds.save_view("dogs-to-check", {"object_analysis.name": "dog", "label_quality_estimation": {"$lt": 0.5}})  # doctest: +SKIP
        """
        from .curate.views import save_view
        with self._access.catalog(write=True) as cat:
            return save_view(cat, name, query, sort, by=by)

    def views(self) -> dict[str, dict]:
        """Every saved view: ``{name: {"query", "sort", "created_at", "created_by"}}``."""
        from .curate.views import list_views
        with self._access.catalog() as cat:
            return list_views(cat)

    def view(self, name: str) -> dict:
        found = self.views().get(name)
        if found is None:
            raise ViscurateError(f"no view named {name!r} in dataset {self.name!r}")
        return found

    def delete_view(self, name: str) -> bool:
        from .curate.views import delete_view
        with self._access.catalog(write=True) as cat:
            return delete_view(cat, name)

    def save_slice(self, name: str, target: IdsOrQuery) -> int:
        """Freeze the samples matching a query (or these ids) as the slice ``name``: they get ``name`` in
        their ``slices`` field, so ``{"slices": name}`` finds exactly them later. Replaces an older slice
        of that name. Returns its size."""
        from .curate.views import SLICE_FIELD, validate_label
        validate_label(name, "slice")
        query, ids = self._target(target)
        with self._access.catalog(write=True) as cat:
            chosen = cat.ids(query if ids is None else {"_id": {"$in": ids}})
            cat.update({SLICE_FIELD: name}, {"$pull": {SLICE_FIELD: name}})
            return cat.update(None, {"$addToSet": {SLICE_FIELD: name}}, ids=chosen) if chosen else 0

    def slices(self) -> dict[str, int]:
        """``{slice name: samples}``, largest first."""
        from .curate.views import SLICE_FIELD
        with self._access.catalog() as cat:
            return cat.list_value_counts(SLICE_FIELD)

    def delete_slice(self, name: str) -> int:
        from .curate.views import SLICE_FIELD
        with self._access.catalog(write=True) as cat:
            return cat.update({SLICE_FIELD: name}, {"$pull": {SLICE_FIELD: name}})

    def review(self, kind: str, *, state: str = "open", page: int = 1, page_size: int = DEFAULT_PAGE_SIZE) -> dict:
        """One page of a review queue (``duplicates``, ``leaks``, ``outliers``, ``label_errors``,
        ``box_label_errors``, ``label_conflicts``; see :mod:`viscurate.curate.review`), worst first.
        ``state``: ``open`` (no verdict yet), ``decided`` or ``all``."""
        from .curate.review import REVIEW_KINDS, review_query
        query = review_query(kind, state)  # type: ignore[arg-type]
        found = self.find(query, page=page, page_size=page_size, sort=list(REVIEW_KINDS[kind].sort) or None)
        found["kind"] = kind
        found["state"] = state
        return found

    def decide(self, kind: str, target: IdsOrQuery, decision: str, *, by: str | None = None) -> int:
        """Record a verdict on flagged samples: ``accept`` (the problem is real), ``ignore`` (a false
        alarm) or ``reopen`` (no verdict). Written as the tag ``review:<kind>:accepted`` / ``ignored``,
        and in the audit trail. Returns the samples changed."""
        from .curate.edits import utc_timestamp
        from .curate.review import review_query, verdict_tag
        both = [verdict_tag(kind, "accept"), verdict_tag(kind, "ignore")]
        query, ids = self._target(target)
        scope = review_query(kind, "all")
        with self._access.catalog(write=True) as cat:
            chosen = cat.ids({"$and": [scope, query]} if query is not None else {"$and": [scope, {"_id": {"$in": ids}}]})
            if not chosen:
                return 0
            if decision == "reopen":
                changes: dict = {"$pull": {"tags": {"$in": both}}}
            else:
                tag = verdict_tag(kind, decision)
                cat.update(None, {"$pull": {"tags": {"$in": [t for t in both if t != tag]}}}, ids=chosen)
                changes = {"$addToSet": {"tags": tag}}
            at = utc_timestamp()
            audit = [{"at": at, "by": by, "sample_id": sid, "action": f"review:{decision}", "field": kind} for sid in chosen]
            cat.update(None, changes, ids=chosen, audit=audit)
            return len(chosen)

    def edit(self, sample_id: str, edit: dict, *, by: str | None = None) -> dict:
        """One hand edit of a sample's labels, recorded with ``by`` and the time (see
        :func:`viscurate.curate.edits.apply_edit`); returns the document after it.

        >>> ds.edit(sid, {"action": "relabel", "field": "ground_truth.detections", "index": 0, "name": "dog"}, by="ana")  # doctest: +SKIP
        """
        from .curate.edits import apply_edit
        with self._access.catalog(write=True) as cat:
            return apply_edit(cat, sample_id, edit, by=by)

    def edits(self, sample_id: str | None = None, *, limit: int = 100, offset: int = 0) -> dict:
        """The audit trail, newest first: ``{"length", "results": [{"at", "by", "sample_id", "action",
        "field", "idx", "before", "after"}]}``."""
        with self._access.catalog() as cat:
            total, rows = cat.edits(sample_id, limit=limit, offset=offset)
        return {"length": total, "results": rows}

    def compute_map(self, *, model: str | None = None, query: dict | None = None):
        """Place the samples on the 2-D map (``map.x``, ``map.y``) from their embeddings; a ``MapReport``."""
        from .brain.embedding_map import compute_map
        with self._access.catalog(write=True) as cat:
            return compute_map(cat, model=model, query=query)

    def map_points(self, query: dict | None = None, *, color_by: str | None = None) -> dict:
        """The map's points: ``{"ids", "x", "y", "color"?}`` (parallel lists) of the samples matching
        ``query`` that have a place on it; ``color_by`` adds a field's value per point (e.g. ``cluster.id``)."""
        import json as _json
        base = {"map.x": {"$exists": True}}
        where = {"$and": [query, base]} if query else base
        paths = ["_id", "map.x", "map.y"] + ([color_by] if color_by else [])
        with self._access.catalog() as cat:
            cols = cat.columns(paths, where)
            info = cat.meta_get("map")
        out: dict[str, Any] = {"ids": cols["_id"], "x": cols["map.x"], "y": cols["map.y"],
                               "map": _json.loads(info) if info else None}
        if color_by:
            out["color"] = cols[color_by]
        return out

    def export(self, out_path: str | os.PathLike, *, format: str = "jsonl", query: dict | None = None,
               view: str | None = None, slice: str | None = None, field: str | None = None,
               label_field: str = "ground_truth.label", media: str | None = None, progress: Any = None,
               **options: Any) -> dict:
        """Write the samples matching ``query`` (and the saved ``view``, and the ``slice``) to ``out_path``
        in ``format``: ``jsonl`` (every field) or a label format (``viscurate formats``; docs/formats.md):
        ``coco``, ``yolo``, ``voc``, ``cvat``, ``labelstudio``, ``huggingface``, ``csv``, ``parquet``,
        ``urllist``, ``imagefolder``. ``field``: the boxes to write (default: the ground truth if a sample
        has some, else the auto-labels); the classes keep the ids and order they were imported with.
        ``media``: ``copy``, ``symlink`` or ``none`` for the images, where the format's layout holds them.
        Exports stream: memory stays bounded whatever the count. Corrupt samples (no size) are left out
        of label formats and counted. ``progress``: ``True`` draws a bar, a function is told ``(done,
        total)`` as it goes.

        >>> ds.export("out/", format="yolo", slice="to-label", media="symlink")           # doctest: +SKIP
        """
        from .formats.registry import get_format
        from .pipeline.progress import BarLook, ProgressBar
        query = self._export_query(query, view, slice)
        total = self.count(query)
        fmt = get_format(format)
        with ProgressBar(progress or False, f"export {fmt.name}", total=total, look=BarLook(unit="samples")) as bar:
            return self._export(fmt, out_path, query, total, field, label_field, media,
                                lambda n: bar.update(done=n), options)

    def _export(self, fmt: Any, out_path: str | os.PathLike, query: dict | None, total: int, field: str | None,
                label_field: str, media: str | None, done: Callable[[int], None], options: dict) -> dict:
        if fmt.name == "jsonl":
            from .formats.jsonl import write_jsonl
            return write_jsonl(self.iter(query), out_path, total=total, progress=lambda n, _total: done(n))
        from .formats.coco import default_export_field
        from .formats.records import record_from_sample
        if field is None and "detections" in fmt.holds:
            field = default_export_field(self.count, query)
        left_out = {"corrupt": 0}

        def records() -> Iterator:
            for doc in self.iter(query):
                if "corrupt" in (doc.get("issues") or ()) or not doc.get("width") or not doc.get("height"):
                    left_out["corrupt"] += 1  # no size: no format can place its boxes
                    continue
                yield record_from_sample(doc, field=field, label_field=label_field)

        if media is not None:
            options["media"] = media
        if fmt.writer_takes("field"):
            options.setdefault("field", field)
        if fmt.writer_takes("boxes_as"):  # ground truth goes to annotators as annotations, a model's as predictions
            from .formats.coco import GROUND_TRUTH
            options.setdefault("boxes_as", "annotations" if field == GROUND_TRUTH else "predictions")
        if fmt.writer_takes("embeddings") and "embeddings" not in options:
            options["embeddings"] = self._embedding_blocks(query)
        out = Path(out_path)
        if out.is_dir() and any(out.iterdir()):
            raise ViscurateError(f"{out} is not empty: export into a new or empty folder (the files of an earlier "
                                 "export would mix with the new ones)")
        report = fmt.write(records(), out_path, classes=self.label_classes(field or label_field), progress=done,
                           **options)
        report.update({"format": fmt.name, "field": field, "corrupt_left_out": left_out["corrupt"]})
        return report

    def _embedding_blocks(self, query: dict | None, chunk: int = 10_000) -> Iterator[tuple[str, list, Any]]:
        """The image embeddings of the samples matching ``query``, ``(model, sample ids, matrix)`` blocks of
        at most ``chunk`` samples per model, read as the writer asks for them (bounded memory)."""
        with self._access.catalog() as cat:
            models = list(cat.vector_models(None))
        if not models:
            return
        ids = self.ids(query)
        for model in models:
            for start in range(0, len(ids), chunk):
                with self._access.catalog() as cat:
                    got, _, matrix = cat.read_vectors(model, None, {"_id": {"$in": ids[start:start + chunk]}})
                if got:
                    yield model, got, matrix

    def _export_query(self, query: dict | None, view: str | None, slice: str | None) -> dict | None:
        parts = [q for q in (query, self.view(view)["query"] if view else None,
                             {"slices": slice} if slice else None) if q]
        return None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}

    def label_classes(self, field: str) -> list:
        """The classes of a label field, as :class:`~viscurate.formats.records.Category`: those an import
        stored (ids and order as the source had them), then every other class a sample has there.

        >>> [c.name for c in ds.label_classes("ground_truth.detections")]               # doctest: +SKIP
        ['person', 'bicycle', 'car']
        """
        import json as _json
        from .formats.records import Category, merge_categories
        with self._access.catalog() as cat:
            stored = _json.loads(cat.meta_get(CLASSES_KEY) or "{}").get(field) or []
            if field.endswith("label"):
                names = [str(v) for v in cat.value_counts(field)]
            else:
                names = list(cat.object_classes(field, 1_000_000))
        return merge_categories([Category.from_dict(c) for c in stored], sorted(names))

    def import_labels(self, path: str | os.PathLike, *, format: str | None = None,
                      field: str | None = None, label_field: str = "ground_truth.label",
                      images: str | os.PathLike | None = None, by: str | None = None, progress: bool = True,
                      batch_size: int = 20_000, **options: Any) -> dict:
        """Ingest a labeled dataset in any format of ``viscurate formats`` (guessed from ``path`` when
        ``format`` is not given) and store its labels: boxes as ``field`` (default: the field a table
        export names, else ``ground_truth.detections``), image classes as ``label_field``, splits as
        ``split``, other per-image values as fields (never those ingest computes from the bytes), the
        classes with their ids and order (:meth:`label_classes`).

        Image files are taken when their names have an image or video extension; a name outside the label
        set's folder (absolute, or with ``..``) is taken only then too, so a label file cannot pull other
        files into the catalog. References other than files and http(s) URLs (``s3://``) are counted as
        ``missing``.

        A record that carries a sample id of this dataset (our own exports write it: a Label Studio or
        CVAT file coming back from annotators) updates that sample; the others are matched by their image
        file, which is ingested first. Where an import changes labels a sample already had, or labels a
        sample matched by id, the change is written to the edit audit trail (``by``), so
        ``ds.edits(sid)`` shows what the annotators changed. ``images``: the folder relative file names
        are under (default: what the format says). Returns counts.

        >>> ds.import_labels("data.yaml")                                                 # doctest: +SKIP
        {'format': 'yolo', 'images': 128, 'samples': 128, 'boxes': 929, 'classes': 80, ...}
        >>> ds.import_labels("export.json", format="labelstudio", by="annotators")       # doctest: +SKIP
        """
        from .formats.registry import get_format, guess_format
        fmt = get_format(format or guess_format(path))
        if images is not None:
            options["images"] = images
        labels = fmt.read(path, **options)
        # boxes go back where a table says they came from (a parquet export of predictions stays predictions)
        field = field or labels.info.get("field") or "ground_truth.detections"
        report = {"format": fmt.name, "images": 0, "samples": 0, "matched_by_id": 0, "boxes": 0,
                  "labels": 0, "classes": len(labels.classes), "missing": 0, "changed": 0, "skipped": {}}
        batch: list = []
        for rec in labels:
            batch.append(rec)
            if len(batch) >= batch_size:
                self._import_batch(labels, batch, field, label_field, by, progress, report)
                batch = []
        if batch or not report["images"]:
            self._import_batch(labels, batch, field, label_field, by, progress, report)
        report["skipped"] = {**dict(labels.skipped), **report["skipped"]}
        if labels.classes:  # the classes name the boxes, or the image classes of a set without boxes
            self._store_classes(label_field if report["labels"] and not report["boxes"] else field, labels.classes)
        return report

    def _store_classes(self, field: str, classes: list) -> None:
        import json as _json
        with self._access.catalog(write=True) as cat:
            stored = _json.loads(cat.meta_get(CLASSES_KEY) or "{}")
            stored[field] = [c.as_dict() for c in classes]
            cat.meta_set(CLASSES_KEY, _json.dumps(stored))

    def _import_batch(self, labels: Any, batch: list, field: str, label_field: str, by: str | None,
                      progress: bool, report: dict) -> None:
        from .formats.records import sample_fields_from_record
        from .curate.edits import utc_timestamp
        report["images"] += len(batch)
        with self._access.catalog() as cat:
            given = [r.sample_id for r in batch if r.sample_id]
            known = set(cat.ids({"_id": {"$in": given}})) if given else set()
        by_id = [r for r in batch if r.sample_id in known]
        by_file = [r for r in batch if r.sample_id not in known]
        paths = {id(r): labels.path_of(r) for r in by_file}
        present = sorted({p for p in paths.values() if _importable(p, report)})
        if present:
            self.add_images(present, progress=progress)
        with self._access.catalog() as cat:  # only this batch's files: a big import stays linear
            origins = cat.ids_of_origins(sorted(set(paths.values())))

        def fields_of(r: Any) -> dict[str, Any]:
            values = sample_fields_from_record(r, field=field, label_field=label_field)
            kept = {p: v for p, v in values.items() if not _computed_path(p)}
            for p in values.keys() - kept.keys():
                _count_skipped(report, f"field ingest computes: {p}")
            return kept

        values: dict[str, dict[str, Any]] = {}
        for r in by_id:
            values[r.sample_id] = fields_of(r)
        for r in by_file:
            sid = origins.get(paths[id(r)])
            if sid is None:
                report["missing"] += 1
                continue
            values.setdefault(sid, {}).update(fields_of(r))
        report["matched_by_id"] += len(by_id)
        report["samples"] += len(values)
        report["boxes"] += sum(len(v.get(field) or ()) for v in values.values())
        report["labels"] += sum(1 for v in values.values() if label_field in v)
        if values:
            with self._access.catalog(write=True) as cat:
                report["changed"] += _write_imported(cat, values, audited={r.sample_id for r in by_id},
                                                     by=by, at=utc_timestamp(), action=f"import:{labels.format}")

    # ---- labels, embeddings, pictures -------------------------------------------------------------

    def label(self, *, models: str | Sequence[str] | None = None, batch_size: int = 16, workers: int | None = None,
              threads: int | None = None, progress: "bool | Callable[[int, int], None]" = True, query: dict | None = None, force: bool = False,
              **options: Any):
        """Auto-label the samples with the offline models, incrementally: objects (with label quality
        estimation), ImageNet tags, image and box embeddings, faces, poses. ``models``: roles and/or model
        names (default: every role's default; see ``viscurate models``). Returns a ``LabelReport``.

        Other options (``max_side``, ``neighbours``, ``item_timeout``): see
        :func:`viscurate.pipeline.label.label`."""
        from .pipeline.label import label
        with self._access.catalog(write=True) as cat:
            return label(cat, models=models, batch_size=batch_size, workers=workers, threads=threads,
                         progress=progress, query=query, force=force, **options)

    def embed(self, model: str | None = None, *, batch_size: int = 16, workers: int | None = None,
              threads: int | None = None, progress: "bool | Callable[[int, int], None]" = True, query: dict | None = None, force: bool = False,
              boxes: bool = False, **options: Any):
        """Store image embeddings of ``model`` (default: the default embedder) for the samples lacking
        one (``boxes=True``: box crops too). Returns an ``EmbedReport``."""
        from .pipeline.embed import embed
        with self._access.catalog(write=True) as cat:
            return embed(cat, model, batch_size=batch_size, workers=workers, threads=threads, progress=progress,
                         query=query, force=force, boxes=boxes, **options)

    def find_duplicates(self, *, model: str | bool | None = None, rules: Any = None, query: dict | None = None,
                        write: bool = True, **thresholds: Any):
        """Exact and near duplicates, grouped around a representative, stored on the samples
        (``duplicates.*`` and the issues ``duplicate`` / ``near_duplicate``) unless ``write=False``.
        Thresholds: ``rules`` (a :class:`~viscurate.brain.duplicates.DuplicateRules`) or its fields as
        keywords (``hash_distance=6``). ``model``: the embedding model whose vectors add the embedding
        rule (default: the default embedder when stored; ``False``: hashes only). Returns a
        ``DuplicatesReport``.

        >>> report = ds.find_duplicates()                                              # doctest: +SKIP
        >>> ds.find({"issues": "near_duplicate"}, sort="duplicates.group")             # doctest: +SKIP
        """
        from .brain.duplicates import DuplicateRules, find_duplicates
        if rules is None:
            rules = DuplicateRules(**thresholds)
        elif thresholds:
            raise ViscurateError("give either rules or threshold keywords, not both")
        with self._access.catalog(write=write) as cat:
            return find_duplicates(cat, model=model, rules=rules, query=query, write=write)

    def calibrate(self, out_path: str | os.PathLike, *, model: str | None = None, query: dict | None = None):
        """Write an HTML page with the distribution of nearest-neighbour distances (perceptual hash, and
        embedding when stored) and example pairs per band of distances, to choose duplicate thresholds
        from. Returns a ``CalibrationReport``.

        >>> ds.calibrate("thresholds.html")                                            # doctest: +SKIP
        """
        from .brain.calibrate import calibrate
        with self._access.catalog() as cat:
            return calibrate(cat, out_path, model=model, query=query)

    def find_leaks(self, split_field: str = "split", *, model: str | bool | None = None, query: dict | None = None,
                   write: bool = True, **thresholds: Any):
        """Duplicates (exact or near, as :meth:`find_duplicates` defines them; same threshold keywords) whose
        ``split_field`` values differ: train/val leaks. Stored as the issue ``leak`` and the ``leak``
        sub-document (``with``: the counterpart). Returns a ``LeaksReport``.

        >>> ds.find_leaks("split").leaks[:3]                                            # doctest: +SKIP
        """
        from .brain.duplicates import DuplicateRules
        from .brain.leaks import find_leaks
        with self._access.catalog(write=write) as cat:
            return find_leaks(cat, split_field, model=model, rules=DuplicateRules(**thresholds), query=query,
                              write=write)

    def find_outliers(self, *, model: str | None = None, k: int = 10, query: dict | None = None,
                      write: bool = True, **options: Any):
        """Uniqueness and outlier scores from k-nearest-neighbour distances of the embeddings, stored as
        ``scores.*`` and the issue ``outlier``. Returns an ``OutliersReport``.

        >>> ds.find_outliers(); ds.find({"issues": "outlier"}, sort=[("scores.outlier", -1)])   # doctest: +SKIP
        """
        from .brain.outliers import find_outliers
        with self._access.catalog(write=write) as cat:
            return find_outliers(cat, model=model, k=k, query=query, write=write, **options)

    def find_object_duplicates(self, *, field: str = "object_analysis", model: str | None = None,
                               min_similarity: float | None = None, query: dict | None = None,
                               write: bool = True, **options: Any):
        """Boxes whose crop embeddings nearly match a box in another image, marked on the boxes
        (``object_duplicate``, ``object_duplicate_similarity``) and counted on the samples
        (``object_duplicates.*``, the issue ``object_duplicate``). Returns an ``ObjectDuplicatesReport``.

        >>> ds.find_object_duplicates(min_similarity=0.97)                              # doctest: +SKIP
        >>> ds.find({"issues": "object_duplicate"}, sort=[("object_duplicates.best", -1)])  # doctest: +SKIP
        """
        from .brain.object_duplicates import MIN_SIMILARITY, find_object_duplicates
        with self._access.catalog(write=write) as cat:
            return find_object_duplicates(cat, field=field, model=model, query=query, write=write,
                                          min_similarity=MIN_SIMILARITY if min_similarity is None else min_similarity,
                                          **options)

    def find_box_label_errors(self, *, field: str = "ground_truth.detections", model: str | None = None, k: int = 10,
                              min_score: float | None = None, query: dict | None = None, write: bool = True,
                              **options: Any):
        """Boxes whose nearest boxes in other images (crop embeddings) carry another class: per box
        ``mislabel_score`` and ``mislabel_suggested``, per sample ``box_mislabel.*`` and the issue
        ``mislabeled_box``. Returns a ``BoxLabelErrorsReport``.

        >>> ds.embed(boxes=True); ds.find_box_label_errors()                             # doctest: +SKIP
        >>> ds.find({"ground_truth.detections": {"$elemMatch": {"mislabel_score": {"$gte": 0.8}}}})  # doctest: +SKIP
        """
        from .brain.box_label_errors import MIN_SCORE, find_box_label_errors
        with self._access.catalog(write=write) as cat:
            return find_box_label_errors(cat, field=field, model=model, k=k, query=query, write=write,
                                         min_score=MIN_SCORE if min_score is None else min_score, **options)

    def find_clusters(self, *, model: str | None = None, clusters: int | None = None, query: dict | None = None,
                      write: bool = True, **options: Any):
        """k-means clusters of the embeddings, stored as ``cluster.*``; members of very small clusters get the
        issue ``edge_case``. Returns a ``ClustersReport``."""
        from .brain.clusters import find_clusters
        with self._access.catalog(write=write) as cat:
            return find_clusters(cat, model=model, clusters=clusters, query=query, write=write, **options)

    def find_label_errors(self, *, label_field: str = "ground_truth.label", model: str | None = None,
                          pred_probs: Any = None, classes: Sequence[str] | None = None, query: dict | None = None,
                          write: bool = True):
        """Probable label errors of a classification dataset (confident learning; see
        ``docs/brain.md``), stored as ``mislabel.*`` and the issue ``mislabeled``. ``pred_probs``: your
        model's out-of-sample probabilities (else a cross-validated logistic regression on ``model``'s
        embeddings). Returns a ``LabelErrorsReport``.

        >>> ds.find_label_errors().errors[:5]                                          # doctest: +SKIP
        """
        from .brain.label_errors import find_label_errors
        with self._access.catalog(write=write) as cat:
            return find_label_errors(cat, label_field=label_field, model=model, pred_probs=pred_probs,
                                     classes=classes, query=query, write=write)

    def import_coco(self, path: str | os.PathLike, *, images: str | os.PathLike | None = None,
                    predictions: str | os.PathLike | None = None, field: str = "predictions",
                    progress: bool = True) -> dict:
        """Ingest the images of a COCO detection file and store its boxes as ``ground_truth.detections``;
        with ``predictions`` (a COCO results file), store those as ``field`` too. Returns counts. Bad inputs
        (unreadable files, no images folder, none of its images there) raise before anything is written.

        >>> ds.import_coco("instances_val.json", images="val2017", predictions="results.json")  # doctest: +SKIP
        """
        from .formats.coco import (GROUND_TRUTH, CocoImport, check_coco_inputs, coco_ground_truth_boxes,
                                   coco_image_files, coco_predicted_boxes, read_coco_results)
        # a bad results file must not leave the ground truth half-imported
        rows = read_coco_results(predictions) if predictions is not None else None
        coco = check_coco_inputs(path, images=images)
        files = coco_image_files(coco, path, images)
        present = {iid: p for iid, p in files.items() if p.is_file()}
        if present:
            self.add_images(sorted({str(p) for p in present.values()}), progress=progress)
        with self._access.catalog() as cat:
            origins = _sample_ids_by_origin(cat)
        sample_ids = {iid: origins[str(p)] for iid, p in present.items() if str(p) in origins}
        counts = {"images": len(coco["images"]), "missing": len(files) - len(present)}
        truth = coco_ground_truth_boxes(coco, sample_ids)
        with self._access.catalog(write=True) as cat:
            written = _store_boxes(cat, GROUND_TRUTH, truth)
        out = {"ground_truth": CocoImport(samples=len(truth), boxes=written, **counts).as_dict()}
        if rows is not None:
            predicted = coco_predicted_boxes(coco, rows, sample_ids)
            with self._access.catalog(write=True) as cat:
                written = _store_boxes(cat, field, predicted)
            out[field] = CocoImport(samples=len(predicted), boxes=written, **counts).as_dict()
        return out

    def import_classification(self, root: str | os.PathLike, *, progress: bool = True):
        """Ingest an image-classification folder tree (``ROOT/<class>/*`` or ``ROOT/<split>/<class>/*``):
        ``ground_truth.label`` from the class folder, ``split`` from the split folder. Returns a
        ``ClassificationImport``.

        >>> ds.import_classification("data/")                                          # doctest: +SKIP
        """
        from .formats.classification import check_classification_root, has_split_folders, read_classification_labels
        root = check_classification_root(root)
        with_splits = has_split_folders(root)
        ingest = self.add_images(root, progress=progress)
        with self._access.catalog(write=True) as cat:
            fields, report = read_classification_labels(root, _sample_ids_by_origin(cat), with_splits=with_splits)
            _set_sample_fields(cat, fields)
        report.failed = int(getattr(ingest, "failed", 0) or 0)
        return report

    def evaluate(self, *, pred_field: str = "predictions", gt_field: str = "ground_truth.detections",
                 iou: float = 0.5, query: dict | None = None, write: bool = True):
        """Predictions against ground truth, the COCO way: mAP, AP50, AP75, per-class precision and recall,
        and ``eval`` marks on every box and ``eval.tp/fp/fn`` on every sample. Returns an
        ``EvaluationReport``.

        >>> ds.evaluate(pred_field="object_analysis").map                                # doctest: +SKIP
        """
        from .brain.evaluation import evaluate_detections
        with self._access.catalog(write=write) as cat:
            return evaluate_detections(cat, pred_field=pred_field, gt_field=gt_field, iou=iou, query=query,
                                       write=write)

    def find_label_conflicts(self, *, label_field: str = "ground_truth.label", query: dict | None = None,
                             write: bool = True):
        """Duplicates with different labels, and dissenters in nearly pure clusters (run
        :meth:`find_duplicates` / :meth:`find_clusters` first); the issue ``label_conflict`` with the
        majority label as the suggestion. Returns a ``ConflictsReport``."""
        from .brain.conflicts import find_label_conflicts
        with self._access.catalog(write=write) as cat:
            return find_label_conflicts(cat, label_field=label_field, query=query, write=write)

    def analyze(self, *, split_field: str = "split", model: str | None = None, progress: Any = None) -> dict:
        """Every data-quality analysis that the dataset has the data for, in one call: duplicates (always),
        leaks (when a sample has a ``split_field`` value), outliers and clusters (when embeddings are
        stored), object duplicates (when box embeddings are), detection label errors (ground-truth boxes
        with embeddings, 30 or more), label errors and label conflicts
        (``ground_truth.label`` values of 2 classes or more; label errors also need embeddings). Returns ``{analysis: report}``; ``progress(name)`` is called before each."""
        from .brain.findings import default_model
        from .usable import usable
        out: dict[str, Any] = {}
        steps: list[tuple[str, Any]] = [("duplicates", lambda: self.find_duplicates(model=model))]
        if self.count({split_field: {"$exists": True, "$ne": None}}):
            steps.append(("leaks", lambda: self.find_leaks(split_field, model=model)))
        with self._access.catalog() as cat:
            has_vectors = bool(model or default_model(cat))
            label_classes = cat.distinct_values("ground_truth.label")
            box_vectors = cat.box_vector_count("object_analysis")[1]
            gt_box_vectors = cat.box_vector_count("ground_truth.detections")[0]
        if has_vectors and self.count(usable()) >= 3:
            steps.append(("outliers", lambda: self.find_outliers(model=model)))
            steps.append(("clusters", lambda: self.find_clusters(model=model)))
            if label_classes >= 2:
                steps.append(("label_errors", lambda: self.find_label_errors(model=model)))
        if box_vectors >= 2:
            steps.append(("object_duplicates", lambda: self.find_object_duplicates(model=model)))
        from .brain.box_label_errors import MIN_EMBEDDED_BOXES_PER_K
        if gt_box_vectors >= MIN_EMBEDDED_BOXES_PER_K * 10:
            steps.append(("box_label_errors", lambda: self.find_box_label_errors(model=model)))
        if label_classes >= 2:
            steps.append(("label_conflicts", lambda: self.find_label_conflicts()))
        for name, run in steps:
            if progress is not None:
                progress(name)
            out[name] = run()
        return out

    def similar(self, target: Any, k: int = 10, *, model: str | None = None, field: str | None = None,
                exact: bool = False) -> list[dict]:
        """The ``k`` samples most similar to ``target`` (a sample id, an image path / ``PIL.Image`` /
        array, or a vector), by the cosine similarity of ``model``'s embeddings (default: the default
        embedder; run :meth:`embed` first). ``[{"_id", "similarity", "filepath"}]``, best first. The
        index behind it is kept next to the catalog and updated incrementally; above 100,000 vectors it
        searches an inverted file (approximate) unless ``exact``.

        >>> ds.similar(ds.find({})["results"][0]["_id"], k=5)                         # doctest: +SKIP
        """
        from .brain.index import similar
        with self._access.catalog() as cat:
            hits = similar(cat, target, k, model=model, field=field, exact=exact)
            paths = {d["_id"]: d.get("filepath") for d in cat.find(
                {"_id": {"$in": [h["_id"] for h in hits]}}, projection={"filepath": 1},
                page_size=max(1, len(hits)))["results"]} if hits else {}
        return [dict(h, filepath=paths.get(h["_id"])) for h in hits]

    # ---- curation (issue 18): selection -------------------------------------------------------------------

    def select(self, n: int, strategy: str = "cluster_coverage", *, query: dict | None = None,
               view: str | None = None, slice: str | None = None, seed: int = 0, model: str | None = None,
               field: str | None = None, examples: IdsOrQuery = None, negatives: IdsOrQuery = None,
               measure: str = "margin", weights: dict[str, float] | str | None = None,
               clusters: int | None = None, keep_duplicates: bool = False, keep_leaks: bool = False,
               write: bool = True, report: str | os.PathLike | None = None,
               progress: "bool | Callable[[int, int], None]" = False, by: str | None = None):
        """Pick ``n`` samples to label by ``strategy`` (``random``, ``cluster_coverage``, ``k_center``,
        ``typicality``, ``edge_cases``, ``balance``, ``uncertainty``, ``similarity``, ``weighted``) among the
        usable, embedded samples matching ``query`` (and the saved ``view``), near duplicates and leaks dropped
        unless ``keep_duplicates`` / ``keep_leaks``. Deterministic for a ``seed``. Stored (unless
        ``write=False``: a preview) as the slice ``slice`` (default ``f"{strategy}-{n}"``), each pick with a
        ``selections`` entry saying why, replacing an earlier selection of that slice. ``report``: a path
        for the curation report. Options: ``field`` (balance: the field; uncertainty: the prediction),
        ``examples``/``negatives`` (similarity: ids or a query), ``measure`` (uncertainty: ``entropy``,
        ``least_confidence``, ``margin``), ``weights`` (weighted), ``clusters`` (k-means count instead of
        the stored clusters). Returns a ``Selection`` (see docs/curation.md).

        >>> sel = ds.select(200, "cluster_coverage", slice="to-label")                    # doctest: +SKIP
        >>> sel.picks[0]["reason"]                                                        # doctest: +SKIP
        'only pick of cluster 57 (4 members): its most typical (similarity 0.93 to the centre)'
        >>> ds.find({"selections.slice": "to-label"}, sort="selections.rank")             # doctest: +SKIP
        """
        from .brain.selection import select
        from .curate.views import validate_label
        from .pipeline.progress import ProgressBar
        if slice is not None:
            validate_label(slice, "slice")
        elif isinstance(n, int) and isinstance(strategy, str):
            validate_label(f"{strategy}-{n}", "slice")
        if view is not None:
            query = self._export_query(query, view, None)
        examples = examples.split(",") if isinstance(examples, str) and "," in examples else examples
        negatives = negatives.split(",") if isinstance(negatives, str) and "," in negatives else negatives
        with ProgressBar(bool(progress) and not callable(progress), "select", total=None) as bar, \
                self._access.catalog(write=write) as cat:
            # a callable is told (done, total) of each step (reading the pool, k-center's picks)
            told = progress if callable(progress) else (lambda done, total: bar.update(done=done, found=total))
            return select(cat, n, strategy, query=query, slice=slice, seed=seed, model=model, field=field,
                          examples=examples, negatives=negatives, measure=measure, weights=weights,
                          clusters=clusters, keep_duplicates=keep_duplicates, keep_leaks=keep_leaks, write=write,
                          report=None if report is None else str(report), progress=told, by=by)

    # ---- curation (issue 18): curation report --------------------------------------------------------------

    def curation_report(self, slice: str, out_path: str | os.PathLike, *, random_subsets: int = 20,
                        label_field: str | None = None, fields: Sequence[str] = (), seed: int = 0) -> dict:
        """Does the selection saved as ``slice`` beat random sampling? Its cluster coverage, class and
        field balance (``label_field``, default ``ground_truth.label`` else the predicted class; and each of
        ``fields``), edge-case share, duplicate rate and embedding-space coverage, each beside the mean and
        spread of ``random_subsets`` random subsets of its size from the same pool, with a plain verdict;
        written to ``out_path`` (one self-contained HTML page) and its JSON twin (same stem, ``.json``),
        which is also returned. A slice no selection made is compared with random subsets of every usable
        embedded sample. See docs/curation.md.

        >>> ds.select(200, "cluster_coverage", slice="to-label")                       # doctest: +SKIP
        >>> ds.curation_report("to-label", "to-label.html")["metrics"]["cluster_coverage"]["verdict"]  # doctest: +SKIP
        'better than random by 9.8 std'
        """
        from .brain.selection.report import curation_report
        with self._access.catalog() as cat:
            return curation_report(cat, slice, out_path, random_subsets=random_subsets, label_field=label_field,
                                   fields=fields, seed=seed)

    # ---- curation (issue 18): autotag and splits ----------------------------------------------------------

    def autotag(self, name: str, positive: IdsOrQuery, negative: IdsOrQuery = None, *, model: str | None = None,
                query: dict | None = None, threshold: float = 0.5, tag: str | bool | None = None,
                slice: str | None = None, write: bool = True, seed: int = 0, neighbours: int = 10):
        """Teach the concept ``name`` from examples (ids, or a query) and score every sample matching
        ``query`` that has an embedding into ``autotag.<name>`` in [0, 1] (a logistic regression on the
        embeddings; without negatives, unlabeled samples stand in for them). ``tag`` (a tag name, or
        ``True`` for ``name``): the samples scoring at least ``threshold`` get it (tags are only added:
        untag with ``ds.untag({"autotag.NAME": {"$lt": 0.5}}, tag)``); ``slice``: they become the slice,
        replacing it. Refine by calling again with more examples: the scores are replaced.
        ``neighbours``: each score is averaged with its nearest samples' (0: the model's own scores).
        Returns an ``AutotagResult`` (``top``, ``borderline``: what to label next).

        >>> r = ds.autotag("sneaker", positive=ids[:10]); r.borderline[:3]            # doctest: +SKIP
        >>> ds.find({"autotag.sneaker": {"$gte": 0.9}})                                 # doctest: +SKIP
        """
        from .brain.autotag import autotag, save_recipe
        from .curate.views import SLICE_FIELD, validate_label
        tag_name = name if tag is True else (tag or None)
        for label, what in ((tag_name, "tag"), (slice, "slice")):
            if label is not None:
                validate_label(label, what)
        if not write and (tag_name or slice):
            raise ViscurateError("tag and slice save the result: drop them, or leave write=True")
        with self._access.catalog(write=write) as cat:
            result = autotag(cat, name, positive, negative, model=model, query=query, threshold=threshold,
                             seed=seed, write=write, neighbours=neighbours, dataset=self.name)
            if not write:
                return result
            if slice is not None:  # a slice is a frozen set: "above the threshold now", nothing older
                cat.update({SLICE_FIELD: slice}, {"$pull": {SLICE_FIELD: slice}})
            for label, path in ((tag_name, "tags"), (slice, SLICE_FIELD)):
                if label is not None and result.above_ids:
                    cat.update(None, {"$addToSet": {path: label}}, ids=result.above_ids)
            result.tag, result.slice = tag_name, slice
            save_recipe(cat, result, query, seed)
        return result

    def autotags(self) -> dict[str, dict]:
        """Every concept taught with :meth:`autotag`, by name: ``{"positive", "negative", "threshold",
        "model", "query", "tag", "slice", "scored", "above", "created_at", ...}`` (to show or refine it)."""
        from .brain.autotag import recipes
        with self._access.catalog() as cat:
            return recipes(cat)

    def split(self, ratios: dict[str, float] | None = None, *, stratify: str | None = "ground_truth.label",
              group: str | None = None, field: str = "split", seed: int = 0, query: dict | None = None,
              near_identical: float | None = 0.95, model: str | None = None, write: bool = True):
        """Propose splits (``ratios``, default ``{"train": 0.8, "val": 0.1, "test": 0.1}``) stratified by
        ``stratify`` that never divide a near-duplicate group (run :meth:`find_duplicates` first), images
        whose embeddings are at least ``near_identical`` alike, or samples sharing a ``group`` value
        (same video, scene, patient); written into ``field`` unless ``write=False``. Returns a
        ``SplitReport`` (``print(report.table())``: the class balance per split).

        >>> ds.find_duplicates(); r = ds.split(group="metadata.video"); print(r.table())  # doctest: +SKIP
        >>> ds.find_leaks("split").leaks                                                 # doctest: +SKIP
        []
        """
        from .brain.splits import split
        with self._access.catalog(write=write) as cat:
            return split(cat, ratios, stratify=stratify, group=group, field=field, seed=seed, query=query,
                         near_identical=near_identical, model=model, write=write)
    # ---- curation (issue 18): active learning -------------------------------------------------------------

    def fit_head(self, label_field: str = "ground_truth.label", *, field: str = "head", model: str | None = None,
                 query: dict | None = None):
        """Fit a light classifier (logistic regression on the image embeddings) on the samples of ``query``
        that have ``label_field``, and store its prediction as ``field`` (``label``, ``confidence``,
        ``margin``, ``entropy``, ``probs``, ``model``, ``labels``) on every sample of ``query`` with an
        embedding: what ``select(strategy="uncertainty")`` ranks and an export sends as pre-annotations
        (``label_field="head.label"``). Returns a ``HeadReport`` (docs/active-learning.md).

        >>> ds.fit_head().cv_accuracy                                                      # doctest: +SKIP
        0.79
        """
        from .brain.head import fit_head
        with self._access.catalog(write=True) as cat:
            return fit_head(cat, label_field, field=field, model=model, query=query)

    # ---- curation (issue 18): saved selections, for the faces ---------------------------------------------

    def selections(self) -> dict[str, dict]:
        """Every saved selection's recipe and outcome, by slice name: ``{slice: {"strategy", "n", "seed",
        "query", "options", "model", "pool", "dropped", "ids", "created_at", "by"}}`` (docs/curation.md).

        >>> ds.selections()["to-label"]["strategy"]                                    # doctest: +SKIP
        'cluster_coverage'
        """
        import json as _json
        with self._access.catalog() as cat:
            return _json.loads(cat.meta_get("selections") or "{}")

    # ---- end of curation (issue 18) -----------------------------------------------------------------------

    def draw(self, sample_id: str, out_path: str | os.PathLike | None = None, *,
             show: Sequence[str] | None = None, max_side: int | None = None, min_confidence: float = 0.0):
        """The sample's picture with its labels drawn on it (a ``PIL.Image``), saved to ``out_path`` when
        given (format from the extension, PNG by default). ``show``: layers among ``object_analysis``,
        ``ground_truth``, ``face_analysis``, ``pose_estimation``, ``classifications``."""
        from .media.draw import DEFAULT_LAYERS, draw_sample
        doc = self.get(sample_id)
        path = doc.get("filepath")
        if not path or not os.path.isfile(path):
            raise ViscurateError(f"sample {sample_id!r} has no readable image file ({path or 'no filepath'})")
        try:
            image = draw_sample(doc, path, show=tuple(show) if show is not None else DEFAULT_LAYERS,
                                max_side=max_side, min_confidence=min_confidence)
        except (OSError, ValueError) as e:
            raise ViscurateError(f"cannot draw sample {sample_id!r}: {e}") from None
        if out_path is not None:
            out = Path(out_path)
            if out.parent and not out.parent.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
            fmt = None if out.suffix else "PNG"
            image.save(out, format=fmt)
        return image


def _rows_known(data: Any) -> int | None:
    """How many rows Arrow data holds when that is known without reading it (a progress bar's total)."""
    rows = getattr(data, "num_rows", None)
    if isinstance(rows, int):
        return rows
    if isinstance(data, (str, os.PathLike)) and Path(data).expanduser().is_file():
        try:
            import pyarrow.parquet as pq
            return pq.ParquetFile(Path(data).expanduser()).metadata.num_rows
        except Exception:  # noqa: BLE001 - no total then; reading it says what is wrong
            return None
    return None


def _sample_ids_by_origin(cat: Catalog) -> dict[str, str]:
    """``{origin: sample id}`` of every sample that came from a file."""
    return {origin: sid for origin, (*_, sid) in cat.file_index().items()}


def _store_boxes(cat: Catalog, field: str, boxes: dict[str, list[dict]]) -> int:
    """Replace the box list ``field`` of each sample, ``{sample id: [box]}``; returns the boxes written."""
    written = _set_sample_fields(cat, {sid: {field: sample_boxes} for sid, sample_boxes in boxes.items()})
    return sum(len(boxes[sid]) for sid in written)


def _set_sample_fields(cat: Catalog, fields: dict[str, dict[str, Any]]) -> list[str]:
    """Set fields of existing samples, ``{sample id: {path: value}}``, keeping the other fields of a group
    (``ground_truth.label`` leaves ``ground_truth.detections`` as it was); every sample sets the same paths.
    Returns the ids of the samples found (and written), in the order written."""
    from .brain.findings import rewrite_samples

    groups = tuple(dict.fromkeys(path.split(".")[0] for values in fields.values() for path in values))
    written: list[str] = []

    def with_fields(doc: dict) -> dict:
        new = {"_id": doc["_id"]}
        for path, value in fields[doc["_id"]].items():
            group, _, rest = path.partition(".")
            if rest:
                new.setdefault(group, dict(doc.get(group) or {}))[rest] = value
            else:
                new[group] = value
        written.append(doc["_id"])
        return new

    rewrite_samples(cat, list(fields), with_fields, groups)
    return written


def _computed_path(path: str) -> bool:
    """A path an import must not set: the id, or a field ingest computes from the bytes (a label file's
    ``width`` or ``hash`` column would contradict the image's own)."""
    from .store.schema import PROFILE_FIELDS
    top = path.split(".", 1)[0]  # every profile field is a top-level one
    return top == "_id" or top in PROFILE_FIELDS


def _count_skipped(report: dict, why: str) -> None:
    report["skipped"][why] = report["skipped"].get(why, 0) + 1


def _importable(path: str, report: dict) -> bool:
    """Whether an import ingests the image a label file names: an http(s) URL, or an existing file whose
    name has an image or video extension (so a label file naming ``/etc/passwd``, ``../../.ssh/id_rsa`` or
    a ``.zip`` cannot pull other files into the catalog). Others are counted in ``report["skipped"]``."""
    from .sources.folder import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
    if "://" in path:
        if path.lower().startswith(("http://", "https://")):
            return True
        _count_skipped(report, "not a file or http(s) URL")
        return False
    if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
        _count_skipped(report, "not an image file name")
        return False
    return os.path.isfile(path)


def _set_path(doc: dict, path: str, value: Any) -> Any:
    """Set ``value`` at the dotted ``path`` of ``doc`` (copying the dicts on the way); returns the old value."""
    *parents, leaf = path.split(".")
    node = doc
    for part in parents:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    old = node.get(leaf)
    node[leaf] = value
    return old


def _write_imported(cat: Catalog, values: dict[str, dict[str, Any]], *, audited: set, by: str | None, at: str,
                    action: str) -> int:
    """Write imported labels onto their samples, ``{sample id: {path: value}}``, keeping every other field;
    an audit record for each label path that changes on a sample that had a value there, or that is in
    ``audited`` (matched by id: labels coming back from annotators). Returns the samples changed."""
    from .brain.findings import WRITE_BATCH
    ids = list(values)
    changed = 0
    for start in range(0, len(ids), WRITE_BATCH):
        part = ids[start:start + WRITE_BATCH]
        docs = cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]
        new_docs, audit = [], []
        keys = tuple(dict.fromkeys(p.split(".")[0] for sid in part for p in values[sid]))
        for doc in docs:
            sid = doc["_id"]
            new = {k: v for k, v in doc.items()}
            touched = False
            for path, value in values[sid].items():
                old = _set_path(new, path, value)
                if old != value:
                    touched = True
                    if old is not None or sid in audited:
                        audit.append({"at": at, "by": by, "sample_id": sid, "action": action, "field": path,
                                      "idx": None, "before": old, "after": value})
            if touched:  # every key of the batch: merge_keys removes a key a document leaves out
                new_docs.append({"_id": sid, **{k: new[k] for k in keys if k in new}})
        if new_docs:
            cat.write(new_docs, mode="merge", merge_keys=keys, audit=audit)
            changed += len(new_docs)
    return changed
