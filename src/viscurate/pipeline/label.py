"""Label: auto-label every sample with the offline models, incrementally, in a crash-safe process pool.

>>> from viscurate.pipeline.label import label                                   # doctest: +SKIP
>>> with Catalog(directory, "pets", write=True) as cat:                           # doctest: +SKIP
...     report = label(cat)                       # detector, classifier/embedder, faces, poses
...     print(report.processed, report.images_per_s, report.model_seconds)

For each sample (``corrupt`` and ``missing`` ones are skipped and left alone; a file gone since ingest is
flagged ``missing``, not failed) whose labels were not made by the current
model versions, a worker process decodes the upright RGB image (EXIF orientation applied; longest side
capped at ``max_side``, default 1024, for speed; boxes are reported in pixels of the *original* upright
image) and runs what that sample still needs:

- **detector** on the image and, when it found a box to write, on the test-time augmentation views the
  quality model was fitted with (:data:`viscurate.models.quality.TTA_PASSES`: a 0.75x shrunk copy padded
  back to the image's size; the augmented boxes are mapped back): ``object_analysis`` = the detections of the plain image, each with
  ``label_quality_estimation`` (LQE), the ``signals`` it was computed from and the ``model`` key; the
  sample's ``label_quality_estimation`` summarizes its boxes. The classifier also tags each box's crop,
  as evidence for the LQE;
- **classifier**: top-5 ImageNet tags -> ``classifications``;
- **embedder**: the image embedding -> the catalog's vectors (``write_vectors``), its key added to
  ``embeddings``; and a crop of every box (``object_analysis`` and ``ground_truth.detections``) embedded
  as box-level vectors (``field`` + ``idxs``);
- **face** -> ``face_analysis`` (boxes and 6 keypoints); **pose** on the person boxes ->
  ``pose_estimation`` (17 COCO keypoints ``[x, y, score]``).

Which model made what is recorded in ``models.<field>`` (``name@version``); a sample is processed again
only for the roles whose model changed (or with ``force``). A detector re-run re-runs pose too (it looks in
the person boxes) and re-embeds the box crops.

Results are written every ``batch_size`` samples: one ``catalog.write(mode="merge")`` transaction that
replaces exactly the label fields, then the vectors. A run killed at any point loses at most its last
batch; the next run continues where it stopped (a batch whose vectors did not make it is re-embedded:
the plan checks the vectors themselves, not only the fields). A failing image is written with a
``label_error`` and never stops the run; it is tried again by the next run.

After the run, a dataset-wide pass compares every box's embedding with its nearest neighbours
(``quality.neighbour_agreement``) and refines each box's LQE and each image's LQE with it
(``quality.refine_with_neighbours``), always starting from the box's own (unrefined) estimate, kept in
``signals``, so the pass gives the same answer however often it runs (and only once the dataset has
enough boxes for neighbours to mean something, see :data:`MIN_BOXES_PER_NEIGHBOUR`).

Vectors and rewrites: ``Catalog.write(mode="merge")`` keeps a sample's vectors unless its bytes changed
or a box list got other boxes; each batch writes its documents, then its new vectors (two transactions;
if a run dies between them, the next run's plan sees the missing vectors and embeds those samples again).

See ``docs/labeling.md``.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import ViscurateError
from ..usable import MISSING, usable
from ..common.cores import cpu_count
from .pool import ItemError, ProcessPool

if TYPE_CHECKING:
    from ..models.base import ModelSpec
    from ..store.catalog import Catalog

log = logging.getLogger("viscurate.label")

#: Roles the label stage runs, in the order they run on an image.
ROLES: tuple[str, ...] = ("detector", "classifier", "embedder", "face", "pose")
#: Top-level sample keys the label stage writes (a batch replaces exactly these).
LABEL_KEYS: tuple[str, ...] = (
    "object_analysis_processed", "object_analysis", "face_analysis_processed", "face_analysis",
    "pose_estimation_processed", "pose_estimation", "label_quality_estimation", "classifications", "models",
    "embeddings", "label_error",
)
#: Box lists whose crops are embedded (box-level vectors, ``field`` = the list's path).
BOX_FIELDS: tuple[str, ...] = ("object_analysis", "ground_truth.detections")
#: The ``models.<field>`` entry of each role.
MODEL_FIELD = {"detector": "object_analysis", "classifier": "classifications", "face": "face_analysis",
               "pose": "pose_estimation"}

DEFAULT_MAX_SIDE = 1024
DEFAULT_BATCH_SIZE = 16
DETECTOR_MIN_CONFIDENCE = 0.3  # boxes written to object_analysis
PERSON_MIN_CONFIDENCE = 0.3  # person boxes pose is estimated in
MAX_POSES = 20
FACE_MIN_CONFIDENCE = 0.5
TOP_K_TAGS = 5
NEIGHBOURS = 10
DEFAULT_ITEM_TIMEOUT = 600.0
MAX_ERRORS = 100
MAX_FILE_BYTES = 512 * 2**20


@dataclass
class LabelReport:
    """What one label (or embed) run did.

    - ``processed``: samples that went through the models this run (``failed`` included);
    - ``failed``: samples written with a ``label_error`` (unreadable file, a model raised, a crash);
    - ``up_to_date``: samples skipped because the current models had labelled them already;
    - ``corrupt``: samples skipped because ingest flagged them ``corrupt``;
    - ``missing``: samples skipped because their file is gone: flagged ``missing`` by ingest, or found
      gone by this run (which flags them ``missing``); never counted as ``failed``;
    - ``objects`` / ``faces`` / ``poses``: what was found; ``image_vectors`` / ``box_vectors``: vectors stored;
    - ``refined``: boxes whose LQE the neighbour pass changed;
    - ``model_seconds``: seconds spent in each model (summed over workers), plus ``decode``;
    - ``seconds``: wall time of the whole call; ``models``: role -> ``name@version``.
    """

    processed: int = 0
    failed: int = 0
    up_to_date: int = 0
    corrupt: int = 0
    missing: int = 0
    objects: int = 0
    faces: int = 0
    poses: int = 0
    image_vectors: int = 0
    box_vectors: int = 0
    refined: int = 0
    seconds: float = 0.0
    refine_seconds: float = 0.0
    model_seconds: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    workers: int = 0
    threads: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        """Samples processed per second of the model pass (the neighbour pass excluded)."""
        t = self.seconds - self.refine_seconds
        return self.processed / t if t > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"processed": self.processed, "failed": self.failed, "up_to_date": self.up_to_date,
                "corrupt": self.corrupt, "missing": self.missing, "objects": self.objects, "faces": self.faces,
                "poses": self.poses,
                "image_vectors": self.image_vectors, "box_vectors": self.box_vectors, "refined": self.refined,
                "seconds": round(self.seconds, 3), "refine_seconds": round(self.refine_seconds, 3),
                "images_per_s": round(self.images_per_s, 2),
                "model_seconds": {k: round(v, 3) for k, v in self.model_seconds.items()},
                "models": dict(self.models), "workers": self.workers, "threads": self.threads,
                "errors": list(self.errors)}


# ---- which models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """role -> model spec for one run, and whether box crops are embedded."""

    roles: dict[str, "ModelSpec"]
    crops: bool = True

    def key(self, role: str) -> str | None:
        spec = self.roles.get(role)
        return spec.key if spec is not None else None


def select_models(models: str | Sequence[str] | None = None, *, crops: bool = True) -> Selection:
    """Resolve ``models``: ``None`` (every role's default), or role names (``detector``, ``classifier``,
    ``embedder``, ``face``, ``pose``; ``all``) and/or model names or ``name@version`` keys, as a list or
    one comma-separated string. A named model plays its main role, and its extra roles when no other
    model was named for them (``efficientnet_lite3`` is classifier and embedder)."""
    from ..models import registry

    if models is None:
        tokens = list(ROLES)
    elif isinstance(models, str):
        tokens = [t.strip() for t in models.split(",") if t.strip()]
    else:
        tokens = [str(t).strip() for t in models if str(t).strip()]
    if not tokens:
        raise ViscurateError("no model selected; give roles (detector, classifier, embedder, face, pose) or "
                             "model names (see `viscurate models`)")
    main: dict[str, ModelSpec] = {}
    extra: dict[str, ModelSpec] = {}
    for token in tokens:
        if token in ("all", "defaults"):
            for role in ROLES:
                main.setdefault(role, registry.get_spec(registry.DEFAULTS[role]))
            continue
        if token in ROLES:
            spec = registry.get_spec(registry.DEFAULTS[token])
            role = token
        else:
            spec = registry.get_spec(token)  # raises ModelNotFound naming the known models
            role = spec.role
        if role in main and main[role].key != spec.key:
            raise ViscurateError(f"two models for the {role} role: {main[role].key} and {spec.key}")
        main[role] = spec
        if token not in ROLES:
            for r in spec.roles:
                if r in ROLES:
                    extra.setdefault(r, spec)
    for role, spec in extra.items():
        main.setdefault(role, spec)
    roles = {r: main[r] for r in ROLES if r in main}
    return Selection(roles, crops=crops and "embedder" in roles)


def _model_ref(spec: "ModelSpec") -> tuple["ModelSpec", Any]:
    """What a worker needs to build a model: its spec, and its factory when the worker's own registry
    will not know it (a model registered at run time, e.g. a bring-your-own ONNX file)."""
    from ..models import registry
    return spec, registry.runtime_factory(spec.key)


def _picklable(obj: Any) -> bool:
    """Whether a worker process can receive ``obj`` (workers do not import the parent's ``__main__``)."""
    try:
        return b"__main__" not in pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - lambdas, closures, open handles...
        return False


# ---- worker side --------------------------------------------------------------------------------


class _Fatal(Exception):
    """A model cannot be built at all: stop the run (it is not one image's fault)."""


_state: dict[str, Any] = {"refs": {}, "threads": 1, "max_side": DEFAULT_MAX_SIDE, "models": {}}


def _init_worker(refs: dict[str, tuple], threads: int, max_side: int, own_process: bool = True) -> None:
    if own_process:  # a worker: keep OpenMP/BLAS runtimes (if any loads) to our thread count
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        # NumPy's BLAS started its threads when the worker's preload imported it, before the variables
        # above: limit them now, or every matrix product wakes threads that spin on the other workers' cores
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    _state["own_process"] = own_process
    _state["refs"] = refs
    _state["threads"] = threads
    _state["max_side"] = max_side
    _state["models"] = {}


def _model(role: str) -> Any:
    models = _state["models"]
    if role in models:
        return models[role]
    from ..models import registry
    spec, factory = _state["refs"][role]
    try:
        try:
            registry.get_spec(spec.key)
        except registry.ModelNotFound:
            if factory is None:
                raise _Fatal(f"model {spec.key} was registered in the parent process only and cannot be "
                             f"rebuilt in a worker; run with workers=0") from None
            registry.register(spec, factory)
        with _quiet_stderr(_state.get("own_process", False)) as said:
            try:
                model = registry.get_model(spec.key, threads=_state["threads"])
            except Exception as e:  # noqa: BLE001 - missing weights or runtime: the whole run cannot go on
                said_text = said()
                raise _Fatal(f"cannot load model {spec.key}: {type(e).__name__}: {e}"
                             + (f" ({said_text})" if said_text else "")) from None
    except _Fatal:
        raise
    models[role] = model
    return model


@contextlib.contextmanager
def _quiet_stderr(enabled: bool) -> Iterator[Callable[[], str]]:
    """In a worker, keep the runtimes' start-up chatter ("INFO: Created TensorFlow Lite XNNPACK delegate")
    off the user's terminal, where it would break the progress bar. Yields a function returning what was
    said besides INFO lines (for an error message)."""
    if not enabled:
        yield lambda: ""
        return
    from .stderr_capture import captured_stderr
    with captured_stderr() as text:
        def said() -> str:
            lines = text().splitlines()
            return " ".join(ln.strip() for ln in lines if ln.strip() and not ln.startswith("INFO:"))[-500:]
        yield said


def _r(v: float, nd: int = 1) -> float:
    return round(float(v), nd)


def _scale_box(b: Sequence[float], sx: float, sy: float) -> list[float]:
    return [_r(b[0] * sx), _r(b[1] * sy), _r(b[2] * sx), _r(b[3] * sy)]


def _decode(path: str, max_side: int) -> tuple[np.ndarray, int, int]:
    """(upright RGB pixels, longest side <= max_side; original upright width, height)."""
    from ..media.decode import decode_image
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
            raise ValueError(f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = f.read()
    with _quiet_stderr(_state.get("own_process", False)):  # libtiff's warnings: ingest recorded them already
        dec = decode_image(data, side=max_side)
    if dec.small is None or not dec.width or not dec.height:
        raise ValueError(dec.error or "the image could not be decoded")
    small = dec.small if dec.small.mode == "RGB" else dec.small.convert("RGB")
    return np.asarray(small), int(dec.width), int(dec.height)


def _accepts(method: Callable[..., Any], keyword: str) -> bool:
    """Whether ``method`` takes ``keyword`` (an option only some models of a role have)."""
    try:
        return keyword in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _on_objects(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` told that its images are box crops, where it takes ``objects=`` (the default classifier
    runs crops at a smaller input); other models see crops as images."""
    return functools.partial(method, objects=True) if _accepts(method, "objects") else method


def _crop(img: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of ``box`` (image coordinates), at least 1x1, clamped to the image."""
    h, w = img.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    x0 = min(max(int(math.floor(x)), 0), w - 1)
    y0 = min(max(int(math.floor(y)), 0), h - 1)
    x1 = min(max(int(math.ceil(x + bw)), x0 + 1), w)
    y1 = min(max(int(math.ceil(y + bh)), y0 + 1), h)
    return np.ascontiguousarray(img[y0:y1, x0:x1])


def _as_detections(objs: Iterable[dict]) -> list:
    from ..models.base import Detection
    return [Detection(name=str(o.get("name")), confidence=float(o.get("confidence") or 0.0),
                      bbox=list(o.get("bbox") or [0, 0, 0, 0])) for o in objs or () if isinstance(o, dict)]


def _as_tags(objs: Iterable[dict]) -> list:
    from ..models.base import Tag
    return [Tag(name=str(o.get("name")), confidence=float(o.get("confidence") or 0.0), class_id=o.get("class_id"))
            for o in objs or () if isinstance(o, dict)]


def _as_faces(objs: Iterable[dict]) -> list:
    from ..models.base import Face
    return [Face(confidence=float(o.get("confidence") or 0.0), bbox=list(o.get("bbox") or [0, 0, 0, 0]),
                 keypoints=[list(k) for k in o.get("keypoints") or ()]) for o in objs or () if isinstance(o, dict)]


def _as_poses(objs: Iterable[dict]) -> list:
    from ..models.base import Pose
    return [Pose(bbox=list(o.get("bbox") or [0, 0, 0, 0]), keypoints=[list(k) for k in o.get("keypoints") or ()],
                 confidence=float(o.get("confidence") or 0.0)) for o in objs or () if isinstance(o, dict)]


class _Clock:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def add(self, key: str, t0: float) -> None:
        self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0


def _detect_again(det: Any, views: list, main: list) -> list:
    """The augmented pass. Its boxes only ever count against a box of the same class (the estimate's
    test-time-augmentation signals), so a detector that can score a few classes (the default SSD:
    about half a pass) looks for the classes of the plain pass only; its boxes of those are the same."""
    from ..models import quality
    classes = {d.class_id for d in main}
    if None not in classes and _accepts(det.detect, "classes"):
        return det.detect(views, min_confidence=quality.TTA_MIN_CONFIDENCE, classes=classes)
    return det.detect(views, min_confidence=quality.TTA_MIN_CONFIDENCE)


def _label_item(item: tuple) -> dict:
    """Run the models a sample needs. ``item`` = (id, filepath, tasks, stored) where ``stored`` holds the
    sample's current label fields that this run does not recompute but needs (boxes to crop, person
    boxes, tags/faces for the LQE)."""
    sid, path, tasks, stored = item
    try:
        return _label_sample(sid, path, tasks, stored)
    except _Fatal as e:
        return {"id": sid, "fatal": str(e)}


def _label_sample(sid: str, path: str | None, tasks: frozenset, stored: dict) -> dict:
    clock = _Clock()
    out: dict[str, Any] = {"id": sid, "tasks": tasks, "fields": {}, "image_vec": None, "box_vecs": {},
                           "times": clock.times}
    fields = out["fields"]
    refs = _state["refs"]
    if not path:
        out["error"] = "no_file: the sample has no local file (filepath) to read"
        return out
    t0 = time.perf_counter()
    try:
        img, width, height = _decode(path, _state["max_side"])
    except (FileNotFoundError, NotADirectoryError) as e:  # gone since ingest: skipped, not failed
        out["missing"] = f"{type(e).__name__}: {e}"
        return out
    except Exception as e:  # noqa: BLE001 - unreadable or undecodable file: flag it, go on
        out["error"] = f"decode_error: {type(e).__name__}: {e}"
        return out
    clock.add("decode", t0)
    h, w = img.shape[:2]
    sx, sy = width / w, height / h  # small image -> original upright pixels
    to_orig = lambda b: _scale_box(b, sx, sy)  # noqa: E731

    dets = flip_dets = scale_dets = None
    if "detector" in tasks:
        from ..models import quality  # the TTA protocol its constants were fitted with
        from ..models.base import Detection
        det = _model("detector")
        key = refs["detector"][0].key
        t0 = time.perf_counter()
        main = det.detect([img], min_confidence=DETECTOR_MIN_CONFIDENCE)[0]
        found: dict[str, list] = {}
        transform: tuple = (w, 0, 0, 1, 1)
        if quality.needs_tta(main):
            views, transform = quality.tta_views(img)
            found = dict(zip(views, _detect_again(det, list(views.values()), main)))
        clock.add(key, t0)
        orig = lambda ds: None if ds is None else [  # noqa: E731
            Detection(d.name, d.confidence, to_orig(d.bbox), d.class_id, d.evidence) for d in ds]
        dets = orig(main)
        flip_dets, scale_dets = (orig(x) for x in quality.tta_map_back(found.get("flip"), found.get("scale"),
                                                                         transform))

    ckey = refs["classifier"][0].key if "classifier" in refs else None
    ekey = refs["embedder"][0].key if "embedder" in refs else None
    crop_tags = box_vecs = None
    if dets and ckey is not None:
        # the classifier on each box's crop: evidence for the LQE (and, from the same pass when the
        # classifier is also the embedder, the box embeddings)
        crops = [_crop(img, [b / k for b, k in zip(d.bbox, (sx, sy, sx, sy))]) for d in dets]
        clf = _model("classifier")
        t0 = time.perf_counter()
        if "crops" in tasks and ckey == ekey and hasattr(clf, "classify_and_embed"):
            crop_tags, vecs = _on_objects(clf.classify_and_embed)(crops, top_k=TOP_K_TAGS)
            box_vecs = np.asarray(vecs, np.float32).astype(np.float16)
        else:
            crop_tags = _on_objects(clf.classify)(crops, top_k=TOP_K_TAGS)
        clock.add(ckey, t0)

    tags = None
    want_tags, want_vec = "classifier" in tasks, "embedder" in tasks
    if want_tags or want_vec:
        if want_tags and want_vec and ckey == ekey and hasattr(_model("classifier"), "classify_and_embed"):
            t0 = time.perf_counter()
            tag_lists, vecs = _model("classifier").classify_and_embed([img], top_k=TOP_K_TAGS)
            clock.add(ckey, t0)
            tags, out["image_vec"] = tag_lists[0], np.asarray(vecs[0], np.float32).astype(np.float16)
        else:
            if want_tags:
                t0 = time.perf_counter()
                tags = _model("classifier").classify([img], top_k=TOP_K_TAGS)[0]
                clock.add(ckey, t0)
            if want_vec:
                t0 = time.perf_counter()
                out["image_vec"] = np.asarray(_model("embedder").embed([img])[0], np.float32).astype(np.float16)
                clock.add(ekey, t0)
        if tags is not None:
            fields["classifications"] = [{"name": t.name, "confidence": _r(t.confidence, 4),
                                          **({"class_id": int(t.class_id)} if t.class_id is not None else {})}
                                         for t in tags]

    faces = None
    if "face" in tasks:
        key = refs["face"][0].key
        t0 = time.perf_counter()
        found = _model("face").faces([img], min_confidence=FACE_MIN_CONFIDENCE)[0]
        clock.add(key, t0)
        from ..models.base import Face
        faces = [Face(f.confidence, to_orig(f.bbox), [[_r(k[0] * sx), _r(k[1] * sy)] for k in f.keypoints])
                 for f in found]
        fields["face_analysis"] = [{"name": "face", "confidence": _r(f.confidence, 4), "bbox": f.bbox,
                                    "keypoints": f.keypoints} for f in faces]
        fields["face_analysis_processed"] = True

    poses = None
    if "pose" in tasks:
        key = refs["pose"][0].key
        people = dets if dets is not None else _as_detections(stored.get("object_analysis"))
        boxes = [[d.bbox[0] / sx, d.bbox[1] / sy, d.bbox[2] / sx, d.bbox[3] / sy]
                 for d in sorted(people, key=lambda d: -d.confidence)
                 if d.name == "person" and d.confidence >= PERSON_MIN_CONFIDENCE][:MAX_POSES]
        t0 = time.perf_counter()
        found = _model("pose").poses(img, boxes) if boxes else []
        clock.add(key, t0)
        from ..models.base import Pose
        poses = [Pose(to_orig(p.bbox), [[_r(k[0] * sx), _r(k[1] * sy), _r(k[2], 3)] for k in p.keypoints],
                      _r(p.confidence, 4)) for p in found]
        fields["pose_estimation"] = [{"name": "person", "confidence": p.confidence, "bbox": p.bbox,
                                      "keypoints": p.keypoints} for p in poses]
        fields["pose_estimation_processed"] = True

    if dets is not None:
        from ..models import quality
        t0 = time.perf_counter()
        lq = quality.label_quality(
            dets, flip_dets, scale_dets,
            tags if tags is not None else _as_tags(stored.get("classifications")),
            faces if faces is not None else _as_faces(stored.get("face_analysis")),
            poses if poses is not None else _as_poses(stored.get("pose_estimation")),
            crop_tags=crop_tags if ckey is not None else None)
        key = refs["detector"][0].key
        objs = []
        for d, (lqe, signals) in zip(dets, lq):
            signals = dict(signals or {})
            signals["lqe_own"] = None if lqe is None else _r(lqe, 4)  # the unrefined estimate
            signals["neighbour_agreement"] = None  # set by the dataset-wide pass (refine)
            objs.append({"name": d.name, "confidence": _r(d.confidence, 4), "bbox": d.bbox,
                         "label_quality_estimation": None if lqe is None else _r(lqe, 4),
                         "signals": signals, "model": key})
        image_lqe = quality.image_label_quality([o["label_quality_estimation"] for o in objs])
        clock.add("label_quality", t0)
        fields["object_analysis"] = objs
        fields["object_analysis_processed"] = True
        if image_lqe is not None:  # no box, no estimate: the field stays missing
            fields["label_quality_estimation"] = _r(image_lqe, 4)

    if "crops" in tasks:
        ekey = refs["embedder"][0].key
        boxes_by_field = {"object_analysis": fields["object_analysis"] if dets is not None
                          else stored.get("object_analysis") or [],
                          "ground_truth.detections": stored.get("ground_truth.detections") or []}
        for fname, objs in boxes_by_field.items():
            if fname == "object_analysis" and box_vecs is not None:
                out["box_vecs"][fname] = box_vecs  # made with the crop tags
                continue
            crops = []
            for o in objs:
                b = o.get("bbox") if isinstance(o, dict) else None
                if not (isinstance(b, (list, tuple)) and len(b) == 4 and
                        all(isinstance(v, (int, float)) and math.isfinite(v) for v in b)):
                    b = [0, 0, width, height]  # a box without usable geometry: the whole image stands in
                crops.append(_crop(img, [b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy]))
            if crops:
                t0 = time.perf_counter()
                vecs = np.asarray(_on_objects(_model("embedder").embed)(crops), np.float32)
                clock.add(ekey, t0)
                out["box_vecs"][fname] = vecs.astype(np.float16)
            else:
                out["box_vecs"][fname] = None
    return out


# ---- parent side: plan ------------------------------------------------------------------------------


def lqe_version() -> str:
    """``lqe@<version>`` of the label quality estimation (``models.label_quality_estimation``)."""
    from ..models import quality
    return f"lqe@{getattr(quality, 'VERSION', '1')}"


def _base_query(query: dict | None) -> dict:
    return usable(query)


def plan(cat: "Catalog", sel: Selection, query: dict | None = None, force: bool = False,
         report: LabelReport | None = None) -> list[tuple[str, frozenset]]:
    """(sample id, roles to run) for every sample that needs work, in catalog order."""
    base = _base_query(query)
    ids = cat.ids(base)
    if report is not None:
        flagged = {"issues": MISSING}
        report.missing = cat.count({"$and": [query, flagged]} if query else flagged)
        report.corrupt = cat.count(query or {}) - len(ids) - report.missing
    if force:
        tasks = frozenset(sel.roles) | ({"crops"} if sel.crops else set())
        return [(i, tasks) for i in ids]
    need: dict[str, set[str]] = {}
    for role, fld in MODEL_FIELD.items():
        if role not in sel.roles:
            continue
        stale: list[dict] = [{f"models.{fld}": {"$ne": sel.key(role)}}]
        if role != "classifier":
            stale.append({f"{fld}_processed": {"$ne": True}})
        if role == "detector":  # a new LQE version needs the detector's augmented passes again
            stale.append({"models.label_quality_estimation": {"$ne": lqe_version()}})
        need[role] = set(cat.ids({"$and": [base, {"$or": stale}]}))
    if "pose" in need and "detector" in need:
        need["pose"] |= need["detector"]  # new boxes: new person boxes
    if "embedder" in sel.roles:
        key = sel.key("embedder")
        with_vec = cat.ids_with_image_vector(key)
        lacking = set(cat.ids({"$and": [base, {"embeddings": {"$ne": key}}]}))
        need["embedder"] = {i for i in ids if i not in with_vec} | lacking
        if sel.crops:
            crops = set(need.get("detector", ()))
            for fld in BOX_FIELDS:
                crops |= cat.ids_missing_box_vectors(key, fld)
            need["crops"] = crops
    out = []
    for i in ids:
        tasks = frozenset(r for r, s in need.items() if i in s)
        if tasks:
            out.append((i, tasks))
    if report is not None:
        report.up_to_date = len(ids) - len(out)
    return out


def _items(cat: "Catalog", todo: list[tuple[str, frozenset]], chunk: int = 256) -> Iterator[tuple]:
    """Work items, fetching the documents a chunk at a time (the catalog may be written meanwhile)."""
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        docs = {d["_id"]: d for d in cat.find({"_id": {"$in": [i for i, _ in part]}}, page_size=len(part))["results"]}
        for sid, tasks in part:
            doc = docs.get(sid)
            if doc is None:
                continue  # deleted since the plan
            stored: dict[str, Any] = {}
            if "detector" in tasks:
                # the LQE also weighs the tags, faces and poses this run does not recompute
                for role, fld in (("classifier", "classifications"), ("face", "face_analysis"),
                                  ("pose", "pose_estimation")):
                    if role not in tasks and fld in doc:
                        stored[fld] = doc[fld]
            elif "pose" in tasks or "crops" in tasks:
                stored["object_analysis"] = doc.get("object_analysis") or []
            if "crops" in tasks:
                gt = doc.get("ground_truth")
                if isinstance(gt, dict) and isinstance(gt.get("detections"), list):
                    stored["ground_truth.detections"] = gt["detections"]
            yield (sid, doc.get("filepath"), tasks, stored)


# ---- parent side: write -------------------------------------------------------------------------


class _Writer:
    """Buffers worker results; every ``batch_size`` of them: one document transaction, then the vectors."""

    def __init__(self, cat: "Catalog", sel: Selection, report: LabelReport, batch_size: int):
        self.cat = cat
        self.sel = sel
        self.report = report
        self.batch_size = max(1, int(batch_size))
        self.pending: list[dict] = []
        self.vanished = 0  # samples whose file was gone when a worker looked
        self.detector_ran = False
        self.lqe_version = lqe_version() if "detector" in sel.roles else None

    def add(self, result: dict) -> None:
        self.pending.append(result)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        results, self.pending = self.pending, []
        if not results:
            return
        with self.cat.hold():  # readers waiting get in after the batch's documents and its vectors, not between
            self._write(results)

    def _write(self, results: list[dict]) -> None:
        cat, sel, r = self.cat, self.sel, self.report
        ids = [res["id"] for res in results]
        current = {d["_id"]: d for d in cat.find({"_id": {"$in": ids}}, page_size=len(ids))["results"]}
        docs = []
        vectors: dict[tuple[str, str | None], list[tuple[str, int | None, np.ndarray]]] = {}
        gone: list[str] = []
        for res in results:
            old = current.get(res["id"])
            if old is None:
                continue
            if res.get("missing"):
                gone.append(res["id"])
                continue
            doc = {"_id": res["id"]}
            doc.update({k: old[k] for k in LABEL_KEYS if k in old})
            r.processed += 1
            for k, v in res.get("times", {}).items():
                r.model_seconds[k] = r.model_seconds.get(k, 0.0) + v
            if res.get("error"):
                r.failed += 1
                doc["label_error"] = res["error"]
                if len(r.errors) < MAX_ERRORS:
                    r.errors.append(f"{old.get('filepath') or res['id']}: {res['error']}")
                docs.append(doc)
                continue
            doc.pop("label_error", None)
            tasks = res["tasks"]
            models = dict(doc.get("models") or {})
            if "detector" in tasks:
                doc.pop("label_quality_estimation", None)  # the new boxes' estimate, or none
            doc.update(res["fields"])
            for role, fld in MODEL_FIELD.items():
                if role in tasks:
                    models[fld] = sel.key(role)
            if "detector" in tasks:
                models["label_quality_estimation"] = self.lqe_version
                self.detector_ran = True
                r.objects += len(res["fields"].get("object_analysis") or ())
            r.faces += len(res["fields"].get("face_analysis") or ())
            r.poses += len(res["fields"].get("pose_estimation") or ())
            doc["models"] = models
            if res.get("image_vec") is not None:
                ekey = sel.key("embedder")
                emb = list(doc.get("embeddings") or [])
                if ekey not in emb:
                    emb.append(ekey)
                doc["embeddings"] = emb
                vectors.setdefault((ekey, None), []).append((res["id"], None, res["image_vec"]))
                r.image_vectors += 1
            for fld, vecs in (res.get("box_vecs") or {}).items():
                if vecs is not None:
                    ekey = sel.key("embedder")
                    for idx, v in enumerate(vecs):
                        vectors.setdefault((ekey, fld), []).append((res["id"], idx, v))
                    r.box_vectors += len(vecs)
            docs.append(doc)
        if gone:  # the file vanished since ingest: say so on the sample, as ingest would
            r.missing += len(gone)
            self.vanished += len(gone)
            cat.update(None, {"$addToSet": {"issues": MISSING}}, ids=gone)
        if not docs:
            return
        # the merge keeps every vector whose boxes it leaves where they were (and the image vectors); the
        # box lists the detector replaced lose theirs, and this batch's new vectors go in after
        cat.write(docs, mode="merge", merge_keys=LABEL_KEYS)
        _write_vectors(cat, vectors)


def _write_vectors(cat: "Catalog", vectors: dict[tuple[str, str | None], list[tuple]]) -> None:
    for (model, fld), rows in vectors.items():
        if not rows:
            continue
        ids = [s for s, _, _ in rows]
        matrix = np.stack([np.asarray(v, np.float32) for _, _, v in rows])
        idxs = [x for _, x, _ in rows] if fld is not None else None
        cat.write_vectors(model, ids, matrix, field=fld, idxs=idxs)


# ---- parent side: the neighbour pass ------------------------------------------------------------


#: The neighbour pass needs at least this many boxes per neighbour asked for: with fewer, the "nearest"
#: boxes are most of the dataset, and a class seen once (a cat among three photos) would look doubtful.
MIN_BOXES_PER_NEIGHBOUR = 5


def refine(cat: "Catalog", embedder_key: str, *, k: int = NEIGHBOURS, batch_size: int = 256,
           min_boxes: int | None = None) -> int:
    """Dataset-wide: each predicted box's LQE refined by how its nearest neighbours (box embeddings of
    ``embedder_key``) agree with its class; image LQEs follow. Returns how many boxes changed.

    With fewer than ``min_boxes`` boxes (default ``MIN_BOXES_PER_NEIGHBOUR * k``) no box is refined:
    every box gets its own estimate back."""
    from ..models import quality
    ids, idxs, matrix = cat.read_vectors(embedder_key, field="object_analysis")
    if not ids:
        return 0
    docs: dict[str, dict] = {}
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), 1000):
        part = wanted[start:start + 1000]
        for d in cat.find({"_id": {"$in": part}}, page_size=len(part))["results"]:
            docs[d["_id"]] = d
    rows, names = [], []
    for n, (sid, idx) in enumerate(zip(ids, idxs)):
        objs = (docs.get(sid) or {}).get("object_analysis") or []
        if idx is not None and 0 <= idx < len(objs) and isinstance(objs[idx], dict):
            rows.append(n)
            names.append(str(objs[idx].get("name")))
    if not rows:
        return 0
    if len(rows) >= (MIN_BOXES_PER_NEIGHBOUR * k if min_boxes is None else min_boxes):
        # neighbours from other images only: two boxes of one image share pixels, not evidence
        agreement = quality.neighbour_agreement(names, matrix[rows], k, groups=[ids[n] for n in rows])
    else:
        agreement = [None] * len(rows)
    changed_docs: dict[str, dict] = {}
    changed = 0
    for n, agree in zip(rows, agreement):
        sid, idx = ids[n], idxs[n]
        doc = changed_docs.get(sid) or docs[sid]
        obj = doc["object_analysis"][idx]
        signals = dict(obj.get("signals") or {})
        own = signals.get("lqe_own", obj.get("label_quality_estimation"))
        if own is None:
            continue
        agree = float(agree) if agree is not None and math.isfinite(float(agree)) else None
        signals["neighbour_agreement"] = None
        new = _r(quality.refine_with_neighbours(own, signals, agree), 4)  # records the agreement in signals
        signals["lqe_own"] = own
        if new == obj.get("label_quality_estimation") and signals == obj.get("signals"):
            continue
        if sid not in changed_docs:
            doc = changed_docs[sid] = {"_id": sid, "object_analysis": [dict(o) for o in doc["object_analysis"]]}
        doc["object_analysis"][idx] = dict(obj, label_quality_estimation=new, signals=signals)
        changed += 1
    out = []
    for sid, doc in changed_docs.items():
        lqe = quality.image_label_quality([o.get("label_quality_estimation") for o in doc["object_analysis"]])
        doc["label_quality_estimation"] = None if lqe is None else _r(lqe, 4)
        out.append(doc)
    keys = ("object_analysis", "label_quality_estimation")
    for start in range(0, len(out), batch_size):
        cat.write(out[start:start + batch_size], mode="merge", merge_keys=keys)  # same boxes: vectors stay
    return changed


# ---- progress -----------------------------------------------------------------------------------


class _Progress:
    """images done / to do, images/s, failures (drawn on stderr when enabled)."""

    def __init__(self, enabled: Any, total: int, description: str):
        # ``enabled``: True draws a bar; a callable ``f(done, total)`` is told instead (the server's jobs)
        self.callback = enabled if callable(enabled) else None
        self.enabled = enabled is True and total > 0
        self.total = total
        self.description = description
        self._p: Any = None
        self._t0 = time.monotonic()
        self._last = 0.0

    def __enter__(self) -> "_Progress":
        self._t0 = time.monotonic()
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        console = Console(file=sys.stderr)
        self._p = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                           TextColumn("{task.completed:,.0f}/{task.total:,.0f} images"),
                           TextColumn("[cyan]{task.fields[ips]:,.2f} img/s"), TextColumn("{task.fields[failed]}"),
                           TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                           transient=not console.is_terminal, refresh_per_second=4)
        self._p.__enter__()
        self._task = self._p.add_task(self.description, total=self.total, ips=0.0, failed="")
        return self

    def update(self, done: int, failed: int, force: bool = False) -> None:
        if self.callback is not None:
            self.callback(done, self.total)
        if self._p is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        self._p.update(self._task, completed=done, ips=done / max(now - self._t0, 1e-9),
                       failed=f"[yellow]{failed:,} failed" if failed else "")

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
            self._p = None


# ---- the stage ----------------------------------------------------------------------------------


#: Most worker processes a run starts by default (each holds its own copy of the models, ~360 MB with
#: every default model loaded); past that, workers get more threads.
MAX_DEFAULT_WORKERS = 8


def default_workers_threads(workers: int | None, threads: int | None, n_items: int) -> tuple[int, int]:
    """(worker processes, threads per model) for a run of ``n_items`` images.

    By default one single-threaded worker per core (at most :data:`MAX_DEFAULT_WORKERS`, never more than
    the images), the rest of the cores going to threads. Measured on 2 cores (120 photos, every model,
    ``bench/models.py``): 2 workers x 1 thread 7.9-8.6 images/s, 1 worker x 2 threads 5.5-5.8 (one
    worker decodes, crops and runs Python serially). Separate processes also degrade more gently
    when another job takes a core (a multi-threaded forward pass waits for its slowest thread), and a
    crash stalls only one of them."""
    cores = cpu_count()
    if workers is None:
        workers = max(1, min(cores // max(1, threads or 1), MAX_DEFAULT_WORKERS, n_items or 1))
    if threads is None:
        threads = max(1, cores // max(1, workers))
    return int(workers), int(threads)


def run_stage(cat: "Catalog", sel: Selection, *, batch_size: int = DEFAULT_BATCH_SIZE, workers: int | None = None,
              threads: int | None = None, progress: "bool | Callable[[int, int], None]" = True, query: dict | None = None, force: bool = False,
              max_side: int = DEFAULT_MAX_SIDE, neighbours: int | None = NEIGHBOURS,
              item_timeout: float | None = DEFAULT_ITEM_TIMEOUT, description: str = "label",
              on_batch: Callable[[LabelReport], None] | None = None) -> LabelReport:
    """The engine behind :func:`label` and :func:`~viscurate.pipeline.embed.embed`."""
    t0 = time.monotonic()
    if not getattr(cat, "write_mode", False):
        raise ViscurateError(f"{description} needs a catalog opened for writing (Catalog(..., write=True))")
    if not sel.roles:
        raise ViscurateError("no model selected")
    report = LabelReport(models={r: s.key for r, s in sel.roles.items()})
    todo = plan(cat, sel, query, force, report)
    refs = {role: _model_ref(spec) for role, spec in sel.roles.items()}
    inline = workers == 0
    if not inline and not all(f is None or _picklable(f) for _, f in refs.values()):
        log.warning("a selected model was registered with a factory that cannot be sent to worker processes; "
                    "labelling in this process")
        inline = True
    if inline:  # one process: every core to the models
        n_workers, n_threads = 0, int(threads or cpu_count())
    else:
        n_workers, n_threads = default_workers_threads(workers, threads, len(todo))
    report.workers, report.threads = (0 if inline else n_workers), n_threads
    writer = _Writer(cat, sel, report, batch_size)

    def consume(chunks: Iterator[list[tuple[tuple, Any]]], bar: _Progress) -> None:
        for chunk in chunks:
            for item, result in chunk:
                if isinstance(result, ItemError):
                    result = {"id": item[0], "tasks": item[2], "error": result.error}
                elif "fatal" in result:
                    raise _Fatal(result["fatal"])
                writer.add(result)
                if on_batch is not None and not writer.pending:
                    on_batch(report)
            bar.update(report.processed + writer.vanished + len(writer.pending), report.failed)

    if todo:
        with _Progress(progress, len(todo), description) as bar:
            try:
                if inline:
                    _init_worker(refs, n_threads, max_side, own_process=False)
                    try:
                        consume(([(it, _run_inline(it))] for it in _items(cat, todo)), bar)
                    finally:
                        _state["models"] = {}
                else:
                    with ProcessPool(_label_item, n_workers, chunk_size=2, in_flight=2, initializer=_init_worker,
                                     initargs=(refs, n_threads, max_side), preload=["viscurate.pipeline.label"],
                                     item_timeout=item_timeout) as pool:
                        consume(pool.imap_unordered(_items(cat, todo)), bar)
            except _Fatal as e:
                writer.flush()
                raise ViscurateError(str(e)) from None
            except KeyboardInterrupt:
                writer.flush()  # keep what the models already computed
                raise
            writer.flush()
            bar.update(report.processed + writer.vanished, report.failed, force=True)
    if neighbours and sel.crops and (writer.detector_ran or report.box_vectors or force):
        t1 = time.monotonic()
        report.refined = refine(cat, sel.key("embedder"), k=neighbours)
        report.refine_seconds = time.monotonic() - t1
    report.seconds = time.monotonic() - t0
    return report


def _run_inline(item: tuple) -> Any:
    try:
        return _label_item(item)
    except Exception as e:  # noqa: BLE001 - same contract as a worker
        return ItemError(f"worker_error: {type(e).__name__}: {e}")


def label(catalog: "Catalog", *, models: str | Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
          workers: int | None = None, threads: int | None = None, progress: "bool | Callable[[int, int], None]" = True, query: dict | None = None,
          force: bool = False, max_side: int = DEFAULT_MAX_SIDE, neighbours: int | None = NEIGHBOURS,
          item_timeout: float | None = DEFAULT_ITEM_TIMEOUT,
          on_batch: Callable[[LabelReport], None] | None = None) -> LabelReport:
    """Auto-label the samples of ``catalog`` (opened with ``write=True``), incrementally.

    ``models``: roles and/or model names (see :func:`select_models`; default: every role's default
    model). ``batch_size``: samples per catalog transaction. ``workers``: processes (default: one per
    core, at most 8; ``0`` runs in this process, without crash isolation); ``threads``: CPU threads per
    model (default: cores / workers). ``query``: only the samples matching
    it. ``force``: label again even what the current models labelled already. ``max_side``: longest
    side the models see. ``neighbours``: k of the neighbour pass that refines the LQE (``0``/``None``:
    no pass). ``on_batch(report)`` is called after every committed batch.

    Returns a :class:`LabelReport`."""
    sel = select_models(models)
    return run_stage(catalog, sel, batch_size=batch_size, workers=workers, threads=threads, progress=progress,
                     query=query, force=force, max_side=max_side, neighbours=neighbours,
                     item_timeout=item_timeout, description="label", on_batch=on_batch)
