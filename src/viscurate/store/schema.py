"""The typed part of the sample document: which paths are stored in typed columns and how.

A sample document is free-form JSON, but the fields viscurate writes itself (and any field a user
declares) have a declared type. Declared fields live in typed DuckDB columns, so that queries on them
run as vectorized column scans; everything else lives in one JSON column (`extra`).

Kinds of declared field:
- ``scalar``: one value of a SQL type (VARCHAR, BIGINT, DOUBLE, BOOLEAN). SQL NULL means *missing*.
- ``list``: a list of non-null scalars (VARCHAR[], DOUBLE[], BIGINT[]). NULL means missing.
- ``group``: a closed sub-document whose children are declared fields (``quality.blur``...). It is
  present when any child is present; a group with no child present is omitted from the document.
- ``objects``: a list of sub-documents (boxes), stored one row per element in the ``objects`` table.

Example:
>>> FIELDS["quality.blur"].sql_type
'DOUBLE'
>>> column_name("quality.blur")
'"quality.blur"'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SCHEMA_VERSION = 1

Kind = Literal["scalar", "list", "group", "objects"]


@dataclass(frozen=True)
class FieldSpec:
    """One declared path of the sample (or object) document."""

    path: str
    kind: Kind
    sql_type: str | None = None  # for scalar: VARCHAR/BIGINT/DOUBLE/BOOLEAN; for list: the element type

    @property
    def column(self) -> str:
        return column_name(self.path)

    @property
    def is_leaf(self) -> bool:
        return self.kind in ("scalar", "list")


def column_name(path: str) -> str:
    """Quoted DuckDB column name for a declared path (dots are kept: the column is named by the path)."""
    return '"' + path.replace('"', '""') + '"'


def _f(path: str, kind: Kind, sql_type: str | None = None) -> FieldSpec:
    return FieldSpec(path, kind, sql_type)


# Sample-level declared fields, in document order. The order is the order of keys in documents that
# viscurate returns (Mongo compares sub-documents field by field, so the order is part of the contract).
SAMPLE_FIELDS: tuple[FieldSpec, ...] = (
    _f("_id", "scalar", "VARCHAR"),
    _f("filepath", "scalar", "VARCHAR"),
    _f("url", "scalar", "VARCHAR"),
    _f("origin", "scalar", "VARCHAR"),
    _f("source", "scalar", "VARCHAR"),
    _f("datetime", "scalar", "VARCHAR"),
    _f("type", "scalar", "VARCHAR"),
    _f("width", "scalar", "BIGINT"),
    _f("height", "scalar", "BIGINT"),
    _f("format", "scalar", "VARCHAR"),
    _f("mode", "scalar", "VARCHAR"),
    _f("frames", "scalar", "BIGINT"),
    _f("size_bytes", "scalar", "BIGINT"),
    _f("mtime", "scalar", "DOUBLE"),
    _f("hash", "scalar", "VARCHAR"),
    _f("phash", "scalar", "VARCHAR"),
    _f("dhash", "scalar", "VARCHAR"),
    _f("phash_flip", "scalar", "VARCHAR"),
    _f("phash_trim", "scalar", "VARCHAR"),  # the picture inside its frame (media.borders)
    _f("phash_turns", "scalar", "VARCHAR"),  # the image turned 180, 90, 270 degrees and mirrored (media.hashes)
    _f("histogram", "group"),
    _f("histogram.bins", "scalar", "BIGINT"),
    _f("histogram.r", "list", "DOUBLE"),
    _f("histogram.g", "list", "DOUBLE"),
    _f("histogram.b", "list", "DOUBLE"),
    _f("quality", "group"),
    _f("quality.blur", "scalar", "DOUBLE"),
    _f("quality.brightness", "scalar", "DOUBLE"),
    _f("quality.contrast", "scalar", "DOUBLE"),
    _f("quality.entropy", "scalar", "DOUBLE"),
    _f("quality.grayscale", "scalar", "BOOLEAN"),
    _f("quality.aspect_ratio", "scalar", "DOUBLE"),
    _f("exif", "group"),
    _f("exif.orientation", "scalar", "BIGINT"),
    _f("exif.datetime_original", "scalar", "VARCHAR"),
    _f("exif.make", "scalar", "VARCHAR"),
    _f("exif.model", "scalar", "VARCHAR"),
    _f("exif.gps", "scalar", "BOOLEAN"),
    _f("tiff", "group"),  # a TIFF read by tifffile, not Pillow (media.tiff)
    _f("tiff.dtype", "scalar", "VARCHAR"),
    _f("tiff.channels", "scalar", "BIGINT"),
    _f("tiff.compression", "scalar", "VARCHAR"),
    _f("video", "group"),  # a frame of a video, or a video that could not be read (pipeline.video)
    _f("video.path", "scalar", "VARCHAR"),  # the video's origin
    _f("video.frame", "scalar", "BIGINT"),  # the frame's index among the decoded frames (0-based)
    _f("video.timestamp", "scalar", "DOUBLE"),  # seconds from the start of the video
    _f("video.fps", "scalar", "DOUBLE"),
    _f("video.duration", "scalar", "DOUBLE"),
    _f("video.frames", "scalar", "BIGINT"),  # frames decoded in the whole video
    _f("video.rule", "scalar", "VARCHAR"),  # what picked the frame: every_frames, fps or scene
    _f("video.sampling", "scalar", "VARCHAR"),  # the rules of the extraction (media.video.FrameSampling.key)
    _f("video.size_bytes", "scalar", "BIGINT"),  # the video file's size
    _f("issues", "list", "VARCHAR"),
    _f("error", "scalar", "VARCHAR"),
    _f("decode_warnings", "list", "VARCHAR"),  # what the decoders wrote on stderr (pipeline.ingest)
    _f("download", "group"),  # how a sample's URL was fetched (pipeline.download)
    _f("download.status", "scalar", "VARCHAR"),  # ok, http_404, timeout, too_large, not_an_image...
    _f("download.http_status", "scalar", "BIGINT"),
    _f("download.attempts", "scalar", "BIGINT"),
    _f("download.bytes", "scalar", "BIGINT"),
    _f("download.seconds", "scalar", "DOUBLE"),
    _f("download.content_type", "scalar", "VARCHAR"),
    _f("download.final_url", "scalar", "VARCHAR"),  # after redirects
    _f("split", "scalar", "VARCHAR"),
    _f("tags", "list", "VARCHAR"),
    _f("slices", "list", "VARCHAR"),  # frozen named subsets (curate.views)
    _f("object_analysis_processed", "scalar", "BOOLEAN"),
    _f("object_analysis", "objects"),
    _f("face_analysis_processed", "scalar", "BOOLEAN"),
    _f("face_analysis", "objects"),
    _f("pose_estimation_processed", "scalar", "BOOLEAN"),
    _f("pose_estimation", "objects"),
    _f("label_quality_estimation", "scalar", "DOUBLE"),
    _f("classifications", "objects"),
    _f("models", "group"),
    _f("models.object_analysis", "scalar", "VARCHAR"),
    _f("models.face_analysis", "scalar", "VARCHAR"),
    _f("models.pose_estimation", "scalar", "VARCHAR"),
    _f("models.classifications", "scalar", "VARCHAR"),
    _f("models.label_quality_estimation", "scalar", "VARCHAR"),
    _f("embeddings", "list", "VARCHAR"),
    _f("duplicates", "group"),  # written by viscurate.brain.duplicates
    _f("duplicates.group", "scalar", "VARCHAR"),
    _f("duplicates.representative", "scalar", "BOOLEAN"),
    _f("duplicates.size", "scalar", "BIGINT"),
    _f("duplicates.reason", "scalar", "VARCHAR"),
    _f("duplicates.hash_distance", "scalar", "BIGINT"),
    _f("duplicates.similarity", "scalar", "DOUBLE"),
    _f("scores", "group"),  # written by viscurate.brain.outliers
    _f("scores.knn_distance", "scalar", "DOUBLE"),
    _f("scores.uniqueness", "scalar", "DOUBLE"),
    _f("scores.outlier", "scalar", "DOUBLE"),
    _f("cluster", "group"),  # written by viscurate.brain.clusters
    _f("cluster.id", "scalar", "BIGINT"),
    _f("cluster.size", "scalar", "BIGINT"),
    _f("cluster.similarity", "scalar", "DOUBLE"),
    _f("map", "group"),  # written by viscurate.brain.embedding_map
    _f("map.x", "scalar", "DOUBLE"),
    _f("map.y", "scalar", "DOUBLE"),
    _f("mislabel", "group"),  # written by viscurate.brain.label_errors
    _f("mislabel.score", "scalar", "DOUBLE"),
    _f("mislabel.suggested", "scalar", "VARCHAR"),
    _f("mislabel.neighbour_disagreement", "scalar", "DOUBLE"),
    _f("box_mislabel", "group"),  # written by viscurate.brain.box_label_errors
    _f("box_mislabel.count", "scalar", "BIGINT"),
    _f("box_mislabel.worst", "scalar", "DOUBLE"),
    _f("object_duplicates", "group"),  # written by viscurate.brain.object_duplicates
    _f("object_duplicates.count", "scalar", "BIGINT"),
    _f("object_duplicates.best", "scalar", "DOUBLE"),
    _f("label_conflict", "group"),  # written by viscurate.brain.conflicts
    _f("label_conflict.source", "scalar", "VARCHAR"),
    _f("label_conflict.group", "scalar", "VARCHAR"),
    _f("label_conflict.majority", "scalar", "VARCHAR"),
    _f("label_conflict.share", "scalar", "DOUBLE"),
    _f("leak", "group"),  # written by viscurate.brain.leaks
    _f("leak.field", "scalar", "VARCHAR"),
    _f("leak.value", "scalar", "VARCHAR"),
    _f("leak.with", "scalar", "VARCHAR"),
    _f("leak.with_value", "scalar", "VARCHAR"),
    _f("leak.reason", "scalar", "VARCHAR"),
    _f("leak.count", "scalar", "BIGINT"),
    _f("ground_truth", "group"),
    _f("ground_truth.label", "scalar", "VARCHAR"),
    _f("ground_truth.detections", "objects"),
    _f("predictions", "objects"),  # a model's boxes imported from elsewhere (formats.coco), to evaluate
    _f("eval", "group"),  # written by viscurate.brain.evaluation
    _f("eval.tp", "scalar", "BIGINT"),
    _f("eval.fp", "scalar", "BIGINT"),
    _f("eval.fn", "scalar", "BIGINT"),
    _f("eval.duplicate", "scalar", "BIGINT"),  # false positives by kind (brain.evaluation.ERROR_KINDS)
    _f("eval.wrong_class", "scalar", "BIGINT"),
    _f("eval.badly_placed", "scalar", "BIGINT"),
    _f("eval.spurious", "scalar", "BIGINT"),
)

# Fields added after a dataset was created are added to its catalog when it is next opened for
# writing (new columns are empty, i.e. missing); removing or retyping a field needs a new SCHEMA_VERSION.

# Declared attributes of every object (box) document, in document order. Other attributes of an
# object go to the object's own JSON column.
OBJECT_FIELDS: tuple[FieldSpec, ...] = (
    _f("name", "scalar", "VARCHAR"),
    _f("confidence", "scalar", "DOUBLE"),
    _f("bbox", "list", "DOUBLE"),
    _f("label_quality_estimation", "scalar", "DOUBLE"),
    _f("doubts", "list", "VARCHAR"),  # why the estimate may be low (models.quality.DOUBTS)
    _f("open_set_name", "scalar", "VARCHAR"),  # what the classifier sees in the box instead of its class
    _f("open_set_confidence", "scalar", "DOUBLE"),
    _f("eval", "scalar", "VARCHAR"),  # tp / fp (predictions) or tp / fn (ground truth), from brain.evaluation
    _f("eval_iou", "scalar", "DOUBLE"),
    _f("eval_error", "scalar", "VARCHAR"),  # a false positive's kind: duplicate, wrong_class, badly_placed, spurious
    _f("object_duplicate", "scalar", "VARCHAR"),  # "<sample id>#<box index>", from brain.object_duplicates
    _f("object_duplicate_similarity", "scalar", "DOUBLE"),
    _f("mislabel_score", "scalar", "DOUBLE"),  # share of the box's neighbours with another class (brain.box_label_errors)
    _f("mislabel_suggested", "scalar", "VARCHAR"),
)

FIELDS: dict[str, FieldSpec] = {f.path: f for f in SAMPLE_FIELDS}
OBJECT_ATTRS: dict[str, FieldSpec] = {f.path: f for f in OBJECT_FIELDS}

# Fields that ingest (re)computes from the bytes; a changed file overwrites exactly these.
PROFILE_FIELDS: tuple[str, ...] = (
    "filepath", "origin", "source", "type", "width", "height", "format", "mode", "frames", "size_bytes",
    "mtime", "hash", "phash", "dhash", "phash_flip", "phash_trim", "phash_turns", "histogram", "quality", "exif",
    "tiff", "video", "issues", "error", "decode_warnings",
)


def children(path: str, fields: dict[str, FieldSpec] = FIELDS) -> list[FieldSpec]:
    """Direct children of a group, in declaration order."""
    prefix = path + "."
    return [f for p, f in fields.items() if p.startswith(prefix) and "." not in p[len(prefix):]]


def child_index(fields: dict[str, FieldSpec] = FIELDS) -> dict[str, list[FieldSpec]]:
    """Every group's direct children at once (``""``: the top level), in declaration order: one pass over
    the fields for code that walks every group of many documents.

    >>> [f.path for f in child_index()["quality"]][:2]
    ['quality.blur', 'quality.brightness']
    """
    out: dict[str, list[FieldSpec]] = {}
    for p, f in fields.items():
        out.setdefault(p.rpartition(".")[0], []).append(f)
    return out


def leaves_under(path: str, fields: dict[str, FieldSpec] = FIELDS) -> list[FieldSpec]:
    """Every scalar/list/objects field at or below ``path``."""
    prefix = path + "."
    return [f for p, f in fields.items() if (p == path or p.startswith(prefix)) and f.kind != "group"]


def top_level(fields: dict[str, FieldSpec] = FIELDS) -> list[FieldSpec]:
    return [f for p, f in fields.items() if "." not in p]
