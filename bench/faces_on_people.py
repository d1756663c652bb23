"""Faces only where a person is: what BlazeFace finds on open-world photos, and what the person filter keeps.

    python bench/faces_on_people.py collect   # run the models as the label stage does -> bench/results/faces-raw.json
    python bench/faces_on_people.py draw      # sheets of every face found, to judge by eye (/tmp/faces-drawn)
    python bench/faces_on_people.py report    # the filter's before/after on each half (split by photo)

The photos: every GCompris picture (bench/gcompris.py: animals, monuments, musicians, paintings, planets,
the word pictures of ``lang``...), the corpus's faces (labeled/lfw_subset, real/pypi_face_recognition-sdist,
real/pypi_insightface) and the hand-labeled photos of bench/data/labeled/coco.json. Which face is real was
decided by eye on the drawn sheets and is recorded in bench/data/faces_judged.json (photo reference -> one
verdict per face >= 0.5, best first: ``face``, ``person`` (a person, no usable face: counted in neither) or
``not``). The filter measured is the label stage's own (viscurate.pipeline.label.faces.on_people).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# per photo: faces >= 0.3, the person boxes >= 0.05 that hold a face's center, the top tag (models' pixels)
RAW = HERE / "results" / "faces-raw.json"
JUDGED = HERE / "data" / "faces_judged.json"
CORPUS = Path.home() / ".cache" / "corpus"
CORPUS_FACES = ("labeled/lfw_subset/all/face", "labeled/lfw_subset/all/nonface", "real/pypi_face_recognition-sdist",
                "real/pypi_insightface")
SCAN_FACE = 0.3  # below the label stage's 0.5: to see what a lower threshold would add
SCAN_DETECTOR = 0.05  # person boxes below the written 0.3 count as evidence too


def refs() -> list[str]:
    """Every photo of the evaluation, as a stable reference."""
    import gcompris
    out = list(gcompris.photos())
    for folder in CORPUS_FACES:
        out += [f"corpus/{folder}/{p.name}" for p in sorted((CORPUS / folder).iterdir()) if p.is_file()]
    coco = json.loads((HERE / "data" / "labeled" / "coco.json").read_text())
    out += [im["file_name"] for im in coco["images"] if im["file_name"] not in out]
    return out


def path_of(ref: str) -> Path:
    import gcompris
    from lqe_eval import resolve_ref
    return gcompris.resolve(ref) if ref.startswith("gcompris/") else resolve_ref(ref, CORPUS)


def half(ref: str) -> str:
    """``"choose"`` or ``"report"``: the photo's half, fixed by a hash of its reference."""
    return "choose" if hashlib.sha256(ref.encode()).digest()[0] % 2 == 0 else "report"


def _holds_a_face(box: list[float], faces: list) -> bool:
    """Whether a face's center lies in ``box``: the only person boxes the filter can use (kept small)."""
    x, y, w, h = box
    return any(x <= f.bbox[0] + f.bbox[2] / 2 <= x + w and y <= f.bbox[1] + f.bbox[3] / 2 <= y + h for f in faces)


def collect() -> None:
    """The models' raw outputs per photo, at the label stage's image size."""
    from viscurate.models import registry
    from viscurate.pipeline.label import worker
    worker._state["max_side"] = worker.DEFAULT_MAX_SIDE
    det = registry.default_model("detector", threads=2)
    clf = registry.default_model("classifier", threads=2)
    face = registry.default_model("face", threads=2)
    out = {}
    for i, ref in enumerate(refs()):
        img, width, height = worker.decode(str(path_of(ref)))
        sx, sy = width / img.shape[1], height / img.shape[0]
        faces = face.faces([img], min_confidence=SCAN_FACE)[0]
        dets = det.detect([img], min_confidence=SCAN_DETECTOR)[0]
        tags = clf.classify([img], top_k=1)[0]
        out[ref] = {
            "size": [width, height], "model_size": [img.shape[1], img.shape[0]], "scale": [sx, sy],
            "faces": [{"confidence": f.confidence, "bbox": f.bbox, "keypoints": f.keypoints} for f in faces],
            "detections": [{"name": d.name, "confidence": round(d.confidence, 4), "bbox": [round(v, 1) for v in d.bbox]}
                           for d in dets if d.name == "person" and _holds_a_face(d.bbox, faces)],
            "top_tag": [tags[0].name, round(float(tags[0].confidence), 4)] if tags else None,
        }
        if i % 50 == 0:
            print(i, ref, file=sys.stderr)
    RAW.write_text(json.dumps(out))
    print(f"{len(out)} photos -> {RAW}", file=sys.stderr)


def draw(folder: Path, threshold: float, tile: int = 220, per_sheet: int = 30) -> None:
    """Sheets of every face >= ``threshold`` to judge by eye: each face enlarged with its surroundings (2.2x
    its box), its box red, eyes/nose/mouth yellow, numbered in the order of the photos and of their faces
    (best first): the order of bench/data/faces_judged.json."""
    from PIL import Image, ImageDraw
    raw = json.loads(RAW.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    for ref, rec in raw.items():
        faces = [f for f in rec["faces"] if f["confidence"] >= threshold]
        if not faces:
            continue
        im = Image.open(path_of(ref)).convert("RGB")
        im.thumbnail(tuple(rec["model_size"]))  # the pixels the models saw
        for f in faces:
            x, y, w, h = f["bbox"]
            side = max(w, h) * 2.2
            x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
            k = tile / side
            t = im.crop((int(x0), int(y0), int(x0 + side), int(y0 + side))).resize((tile, tile))
            d = ImageDraw.Draw(t)
            d.rectangle([(x - x0) * k, (y - y0) * k, (x + w - x0) * k, (y + h - y0) * k], outline=(255, 0, 0), width=2)
            for px, py in f["keypoints"][:4]:
                cx, cy = (px - x0) * k, (py - y0) * k
                d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(255, 255, 0))
            d.rectangle([0, 0, tile, 14], fill=(0, 0, 0))
            d.text((2, 1), f"{len(tiles)} {f['confidence']:.2f} {ref.rsplit('/', 1)[-1][:22]}", fill=(255, 255, 255))
            tiles.append(t)
    cols = 6
    for n, start in enumerate(range(0, len(tiles), per_sheet)):
        part = tiles[start:start + per_sheet]
        sheet = Image.new("RGB", (cols * tile, -(-len(part) // cols) * tile), "white")
        for i, t in enumerate(part):
            sheet.paste(t, ((i % cols) * tile, (i // cols) * tile))
        sheet.save(folder / f"faces_{n}.png")
    print(f"{len(tiles)} faces on {-(-len(tiles) // per_sheet)} sheets in {folder}", file=sys.stderr)


def _judged() -> list[dict]:
    """Every face the label stage wrote before the filter (>= 0.5), with its verdict, photo and half."""
    from viscurate.models.base import Detection, Face
    raw = json.loads(RAW.read_text())
    verdicts = json.loads(JUDGED.read_text())["verdicts"]
    out = []
    for ref, rec in raw.items():
        faces = [Face(f["confidence"], f["bbox"], f["keypoints"]) for f in rec["faces"] if f["confidence"] >= 0.5]
        labels = verdicts.get(ref, [])
        if len(labels) != len(faces):
            raise SystemExit(f"{ref}: {len(faces)} faces, {len(labels)} verdicts: judge them again (draw)")
        dets = [Detection(d["name"], d["confidence"], d["bbox"]) for d in rec["detections"]]
        out.append({"ref": ref, "half": half(ref), "faces": faces, "labels": labels, "dets": dets,
                    "size": tuple(rec["model_size"])})
    return out


def _count(photos: list[dict], keep) -> dict[str, int]:
    """Faces kept by ``keep(photo) -> kept faces`` per verdict, and the photos without people that keep one."""
    n = {"face": 0, "person": 0, "not": 0, "photos_without_people_with_a_face": 0}
    for p in photos:
        kept = {id(f) for f in keep(p)}
        for f, label in zip(p["faces"], p["labels"]):
            n[label] += id(f) in kept
        n["photos_without_people_with_a_face"] += bool(kept) and all(lab == "not" for lab in p["labels"])
    return n


def _choose(photos: list[dict], grid: list[dict], rule) -> dict:
    """The parameters of ``grid`` (ordered, most cautious last) that keep the most real faces of ``photos``
    while keeping no false one; ties go to the later (more cautious) entry."""
    best, best_n = None, -1
    for params in grid:
        n = _count(photos, lambda p: rule(p, params))
        if n["not"] == 0 and n["face"] >= best_n:
            best, best_n = params, n["face"]
    if best is None:
        raise SystemExit("no parameters keep zero false faces on the choosing half")
    return best


def report() -> None:
    """Choose the filter's constants on one half, show before/after on both."""
    from viscurate.pipeline.label.faces import on_people
    photos = _judged()
    halves = {h: [p for p in photos if p["half"] == h] for h in ("choose", "report")}
    steps = [round(0.05 * i, 2) for i in range(1, 20)]
    with_detector = lambda p, c: on_people(p["faces"], p["dets"], p["size"], **c)  # noqa: E731
    alone = lambda p, c: on_people(p["faces"], None, p["size"], **c)  # noqa: E731
    # cautious = a higher bar: every grid ascends, so ties go to the higher one
    chosen = _choose(halves["choose"], [{"person_evidence": pe, "close_up": cu} for pe in steps if pe <= 0.3
                                        for cu in steps if cu >= 0.3], with_detector)
    chosen_alone = _choose(halves["choose"], [{"alone_min_confidence": t, "close_up": chosen["close_up"]}
                                              for t in steps if t >= 0.5], alone)
    print(f"chosen on the 'choose' half: {chosen}; without a detector: {chosen_alone}")
    result = {"chosen": chosen, "chosen_without_detector": chosen_alone, "halves": {}}
    for name, part in halves.items():
        faces = sum(1 for p in part for _ in p["faces"])
        row = {"photos": len(part), "faces_before": faces,
               "before": _count(part, lambda p: p["faces"]),
               "after": _count(part, lambda p: with_detector(p, chosen)),
               "after_without_detector": _count(part, lambda p: alone(p, chosen_alone))}
        for key in ("after", "after_without_detector"):
            row[key]["recall_of_real_faces"] = round(row[key]["face"] / max(row["before"]["face"], 1), 3)
        result["halves"][name] = row
        print(name, json.dumps(row))
    (HERE / "results" / "faces-on-people.json").write_text(json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("collect", "draw", "report"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/faces-drawn"))
    ap.add_argument("--threshold", type=float, default=0.5)
    args = ap.parse_args(argv)
    if args.what == "collect":
        collect()
    elif args.what == "draw":
        draw(args.out, args.threshold)
    else:
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
