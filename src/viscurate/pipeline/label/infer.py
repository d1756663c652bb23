"""The worker side of the label stage: one sample through the models it still needs.

:func:`label_item` is what the pool runs (a module-level function: forkserver workers import it by this
module's path). It decodes the image once and runs the steps the sample's tasks ask for, in order:
detector (with the test-time augmentation passes), the classifier on the boxes' crops, tags and the image
embedding, faces, poses in the person boxes, the label quality estimation of the boxes, box-crop vectors.
Boxes are reported in pixels of the original upright image; the models see it with its longest side
capped (see :class:`Pixels`).
"""
from __future__ import annotations

import functools
import inspect
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .worker import ModelUnavailable, decode, model, model_key

DETECTOR_MIN_CONFIDENCE = 0.3  # boxes written to object_analysis
PERSON_MIN_CONFIDENCE = 0.3  # person boxes pose is estimated in
MAX_POSES = 20
FACE_MIN_CONFIDENCE = 0.5
TOP_K_TAGS = 5


def label_item(item: tuple) -> dict:
    """Run the models a sample needs. ``item`` = (id, filepath, tasks, stored) where ``stored`` holds the
    sample's current label fields that this run does not recompute but needs (boxes to crop, person
    boxes, tags/faces for the LQE). Returns the result the writer stores (``fields``, ``image_vec``,
    ``box_vecs``, ``times``; or ``error`` / ``missing``; or ``fatal`` when a model cannot be built)."""
    sid, path, tasks, stored = item
    try:
        return _label_sample(sid, path, tasks, stored)
    except ModelUnavailable as e:
        return {"id": sid, "fatal": str(e)}


def _rounded(v: float, nd: int = 1) -> float:
    return round(float(v), nd)


@dataclass(frozen=True)
class Pixels:
    """The decoded image the models see, and the scale back to the original upright image."""

    img: np.ndarray
    width: int  # of the original upright image
    height: int
    sx: float  # model pixels -> original pixels
    sy: float

    @classmethod
    def of(cls, img: np.ndarray, width: int, height: int) -> "Pixels":
        h, w = img.shape[:2]
        return cls(img, width, height, width / w, height / h)

    def to_original(self, box: Sequence[float]) -> list[float]:
        """A model's ``[x, y, w, h]`` in original pixels (rounded to 0.1)."""
        return [_rounded(box[0] * self.sx), _rounded(box[1] * self.sy), _rounded(box[2] * self.sx),
                _rounded(box[3] * self.sy)]

    def point_to_original(self, k: Sequence[float]) -> list[float]:
        return [_rounded(k[0] * self.sx), _rounded(k[1] * self.sy)]

    def to_model(self, box: Sequence[float]) -> list[float]:
        """An original ``[x, y, w, h]`` in the pixels the models see."""
        return [box[0] / self.sx, box[1] / self.sy, box[2] / self.sx, box[3] / self.sy]

    def crop(self, box: Sequence[float]) -> np.ndarray:
        """The pixels of ``box`` (original coordinates), at least 1x1, clamped to the image."""
        img = self.img
        h, w = img.shape[:2]
        x, y, bw, bh = (float(v) for v in self.to_model(box))
        x0 = min(max(int(math.floor(x)), 0), w - 1)
        y0 = min(max(int(math.floor(y)), 0), h - 1)
        x1 = min(max(int(math.ceil(x + bw)), x0 + 1), w)
        y1 = min(max(int(math.ceil(y + bh)), y0 + 1), h)
        return np.ascontiguousarray(img[y0:y1, x0:x1])


class _Clock:
    """Seconds spent per model key (and ``decode``, ``label_quality``), summed."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def add(self, key: str | None, t0: float) -> None:
        self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0


def _label_sample(sid: str, path: str | None, tasks: frozenset, stored: dict) -> dict:
    clock = _Clock()
    out: dict[str, Any] = {"id": sid, "tasks": tasks, "fields": {}, "image_vec": None, "box_vecs": {},
                           "times": clock.times}
    fields = out["fields"]
    if not path:
        out["error"] = "no_file: the sample has no local file (filepath) to read"
        return out
    t0 = time.perf_counter()
    try:
        px = Pixels.of(*decode(path))
    except (FileNotFoundError, NotADirectoryError) as e:  # gone since ingest: skipped, not failed
        out["missing"] = f"{type(e).__name__}: {e}"
        return out
    except Exception as e:  # noqa: BLE001 - unreadable or undecodable file: flag it, go on
        out["error"] = f"decode_error: {type(e).__name__}: {e}"
        return out
    clock.add("decode", t0)

    dets = flip_dets = scale_dets = None
    people = _as_detections(stored["person_boxes"]) if "person_boxes" in stored else None  # where faces may be
    if "detector" in tasks:
        dets, flip_dets, scale_dets, people = _detect(px, clock)
    crop_tags = box_vecs = None
    if dets and model_key("classifier") is not None:
        crop_tags, box_vecs = _classify_crops(px, dets, tasks, clock)
    tags = None
    if "classifier" in tasks or "embedder" in tasks:
        tags, out["image_vec"] = _tag_and_embed(px, tasks, clock)
        if tags is not None:
            fields["classifications"] = [{"name": t.name, "confidence": _rounded(t.confidence, 4),
                                          **({"class_id": int(t.class_id)} if t.class_id is not None else {})}
                                         for t in tags]
    faces = None
    if "face" in tasks:
        faces = _faces(px, people, clock)
        fields["face_analysis"] = [{"name": "face", "confidence": _rounded(f.confidence, 4), "bbox": f.bbox,
                                    "keypoints": f.keypoints} for f in faces]
        fields["face_analysis_processed"] = True
    poses = None
    if "pose" in tasks:
        poses = _poses(px, dets if dets is not None else _as_detections(stored.get("object_analysis")), clock)
        fields["pose_estimation"] = [{"name": "person", "confidence": p.confidence, "bbox": p.bbox,
                                      "keypoints": p.keypoints} for p in poses]
        fields["pose_estimation_processed"] = True
    if dets is not None:
        evidence = (tags if tags is not None else _as_tags(stored.get("classifications")),
                    faces if faces is not None else _as_faces(stored.get("face_analysis")),
                    poses if poses is not None else _as_poses(stored.get("pose_estimation")))
        fields.update(_box_quality(dets, flip_dets, scale_dets, evidence, crop_tags, clock,
                                   image_size=(px.width, px.height)))
    if "crops" in tasks:
        boxes_by_field = {"object_analysis": fields["object_analysis"] if dets is not None
                          else stored.get("object_analysis") or [],
                          "ground_truth.detections": stored.get("ground_truth.detections") or []}
        if box_vecs is not None:  # made with the crop tags
            out["box_vecs"]["object_analysis"] = box_vecs
            del boxes_by_field["object_analysis"]
        out["box_vecs"].update({fname: _embed_boxes(px, objs, clock) for fname, objs in boxes_by_field.items()})
    return out


# ---- the steps ----------------------------------------------------------------------------------


def _detect(px: Pixels, clock: _Clock) -> tuple[list, list | None, list | None, list]:
    """(boxes of the plain image, of the flipped view, of the scaled view, the person boxes that faces may
    lie in), in original pixels; the augmented views run only when the quality model needs them (see
    ``quality.needs_tta``). The person boxes go below the written threshold (``faces.PERSON_EVIDENCE``):
    the pass runs that low, and its boxes above the threshold are the same (NMS only ever suppresses a box
    for a better one)."""
    from ...models import quality  # the TTA protocol its constants were fitted with
    from ...models.base import Detection
    from .faces import PERSON_EVIDENCE, person_boxes
    det = model("detector")
    t0 = time.perf_counter()
    found_all = det.detect([px.img], min_confidence=min(DETECTOR_MIN_CONFIDENCE, PERSON_EVIDENCE))[0]
    main = [d for d in found_all if d.confidence >= DETECTOR_MIN_CONFIDENCE]
    found: dict[str, list] = {}
    transform: tuple = (px.img.shape[1], 0, 0, 1, 1)
    if quality.needs_tta(main):
        views, transform = quality.tta_views(px.img)
        found = dict(zip(views, _detect_again(det, list(views.values()), main)))
    clock.add(model_key("detector"), t0)

    def original(ds: list | None) -> list | None:
        return None if ds is None else [Detection(d.name, d.confidence, px.to_original(d.bbox), d.class_id,
                                                  d.evidence) for d in ds]
    flip, scale = quality.tta_map_back(found.get("flip"), found.get("scale"), transform)
    return original(main), original(flip), original(scale), original(person_boxes(found_all))


def _detect_again(det: Any, views: list, main: list) -> list:
    """The augmented pass. Its boxes only ever count against a box of the same class (the estimate's
    test-time-augmentation signals), so a detector that can score a few classes (the default SSD:
    about half a pass) looks for the classes of the plain pass only; its boxes of those are the same."""
    from ...models import quality
    classes = {d.class_id for d in main}
    if None not in classes and _accepts(det.detect, "classes"):
        return det.detect(views, min_confidence=quality.TTA_MIN_CONFIDENCE, classes=classes)
    return det.detect(views, min_confidence=quality.TTA_MIN_CONFIDENCE)


def _classify_crops(px: Pixels, dets: list, tasks: frozenset, clock: _Clock) -> tuple[list, np.ndarray | None]:
    """The classifier on each box's crop: evidence for the LQE; and, from the same pass when the
    classifier is also the embedder, the box embeddings (else ``None``)."""
    ckey = model_key("classifier")
    crops = [px.crop(d.bbox) for d in dets]
    clf = model("classifier")
    t0 = time.perf_counter()
    box_vecs = None
    if "crops" in tasks and ckey == model_key("embedder") and hasattr(clf, "classify_and_embed"):
        crop_tags, vecs = _on_objects(clf.classify_and_embed)(crops, top_k=TOP_K_TAGS)
        box_vecs = np.asarray(vecs, np.float32).astype(np.float16)
    else:
        crop_tags = _on_objects(clf.classify)(crops, top_k=TOP_K_TAGS)
    clock.add(ckey, t0)
    return crop_tags, box_vecs


def _tag_and_embed(px: Pixels, tasks: frozenset, clock: _Clock) -> tuple[list | None, np.ndarray | None]:
    """(the image's top tags, its embedding), each ``None`` when the tasks do not ask for it; one pass
    when one model is both classifier and embedder."""
    ckey, ekey = model_key("classifier"), model_key("embedder")
    want_tags, want_vec = "classifier" in tasks, "embedder" in tasks
    tags = vec = None
    if want_tags and want_vec and ckey == ekey and hasattr(model("classifier"), "classify_and_embed"):
        t0 = time.perf_counter()
        tag_lists, vecs = model("classifier").classify_and_embed([px.img], top_k=TOP_K_TAGS)
        clock.add(ckey, t0)
        return tag_lists[0], np.asarray(vecs[0], np.float32).astype(np.float16)
    if want_tags:
        t0 = time.perf_counter()
        tags = model("classifier").classify([px.img], top_k=TOP_K_TAGS)[0]
        clock.add(ckey, t0)
    if want_vec:
        t0 = time.perf_counter()
        vec = np.asarray(model("embedder").embed([px.img])[0], np.float32).astype(np.float16)
        clock.add(ekey, t0)
    return tags, vec


def _faces(px: Pixels, people: list | None, clock: _Clock) -> list:
    """The faces found where a person is (``people``: the detector's person boxes, ``None`` when this sample
    has no detector output; see :mod:`.faces`), boxes and keypoints in original pixels."""
    from ...models.base import Face
    from .faces import on_people
    t0 = time.perf_counter()
    found = model("face").faces([px.img], min_confidence=FACE_MIN_CONFIDENCE)[0]
    clock.add(model_key("face"), t0)
    return on_people([Face(f.confidence, px.to_original(f.bbox), [px.point_to_original(k) for k in f.keypoints])
                      for f in found], people, (px.width, px.height))


def _poses(px: Pixels, people: list, clock: _Clock) -> list:
    """Poses in the most confident person boxes of ``people`` (original pixels)."""
    from ...models.base import Pose
    boxes = [px.to_model(d.bbox) for d in sorted(people, key=lambda d: -d.confidence)
             if d.name == "person" and d.confidence >= PERSON_MIN_CONFIDENCE][:MAX_POSES]
    t0 = time.perf_counter()
    found = model("pose").poses(px.img, boxes) if boxes else []
    clock.add(model_key("pose"), t0)
    return [Pose(px.to_original(p.bbox), [px.point_to_original(k) + [_rounded(k[2], 3)] for k in p.keypoints],
                 _rounded(p.confidence, 4)) for p in found]


def _box_quality(dets: list, flip_dets: list | None, scale_dets: list | None, evidence: tuple,
                 crop_tags: list | None, clock: _Clock, image_size: tuple[int, int] | None = None
                 ) -> dict[str, Any]:
    """``object_analysis`` (each box with its LQE and the signals it came from) and the image's
    ``label_quality_estimation``. ``evidence``: the image's (tags, faces, poses)."""
    from ...models import quality
    t0 = time.perf_counter()
    tags, faces, poses = evidence
    lq = quality.label_quality(dets, flip_dets, scale_dets, tags, faces, poses,
                               crop_tags=crop_tags if model_key("classifier") is not None else None,
                               image_size=image_size)
    key = model_key("detector")
    objs = []
    for i, (d, (lqe, signals)) in enumerate(zip(dets, lq)):
        signals = dict(signals or {})
        signals["lqe_own"] = None if lqe is None else _rounded(lqe, 4)  # the unrefined estimate
        signals["neighbour_agreement"] = None  # set by the dataset-wide pass (refine)
        obj = {"name": d.name, "confidence": _rounded(d.confidence, 4), "bbox": d.bbox,
               "label_quality_estimation": None if lqe is None else _rounded(lqe, 4),
               "doubts": quality.doubts(signals, d.name), "signals": signals, "model": key}
        # the box keeps the detector's COCO name; what the classifier sees instead rides beside it
        better = quality.open_set_name(d.name, crop_tags[i] if crop_tags else None)
        if better is not None:
            obj["open_set_name"], obj["open_set_confidence"] = better
        objs.append(obj)
    image_lqe = quality.image_label_quality([o["label_quality_estimation"] for o in objs])
    clock.add("label_quality", t0)
    fields: dict[str, Any] = {"object_analysis": objs, "object_analysis_processed": True}
    if image_lqe is not None:  # no box, no estimate: the field stays missing
        fields["label_quality_estimation"] = _rounded(image_lqe, 4)
    return fields


def _embed_boxes(px: Pixels, objs: list, clock: _Clock) -> np.ndarray | None:
    """The embedder's vector of each box's crop (``None`` for no box)."""
    crops = []
    for o in objs:
        b = o.get("bbox") if isinstance(o, dict) else None
        if not (isinstance(b, (list, tuple)) and len(b) == 4 and
                all(isinstance(v, (int, float)) and math.isfinite(v) for v in b)):
            b = [0, 0, px.width, px.height]  # a box without usable geometry: the whole image stands in
        crops.append(px.crop(b))
    if not crops:
        return None
    t0 = time.perf_counter()
    vecs = np.asarray(_on_objects(model("embedder").embed)(crops), np.float32)
    clock.add(model_key("embedder"), t0)
    return vecs.astype(np.float16)


# ---- helpers ------------------------------------------------------------------------------------


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


def _as_detections(objs: Iterable[dict]) -> list:
    from ...models.base import Detection
    return [Detection(name=str(o.get("name")), confidence=float(o.get("confidence") or 0.0),
                      bbox=list(o.get("bbox") or [0, 0, 0, 0])) for o in objs or () if isinstance(o, dict)]


def _as_tags(objs: Iterable[dict]) -> list:
    from ...models.base import Tag
    return [Tag(name=str(o.get("name")), confidence=float(o.get("confidence") or 0.0), class_id=o.get("class_id"))
            for o in objs or () if isinstance(o, dict)]


def _as_faces(objs: Iterable[dict]) -> list:
    from ...models.base import Face
    return [Face(confidence=float(o.get("confidence") or 0.0), bbox=list(o.get("bbox") or [0, 0, 0, 0]),
                 keypoints=[list(k) for k in o.get("keypoints") or ()]) for o in objs or () if isinstance(o, dict)]


def _as_poses(objs: Iterable[dict]) -> list:
    from ...models.base import Pose
    return [Pose(bbox=list(o.get("bbox") or [0, 0, 0, 0]), keypoints=[list(k) for k in o.get("keypoints") or ()],
                 confidence=float(o.get("confidence") or 0.0)) for o in objs or () if isinstance(o, dict)]
