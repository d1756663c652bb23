"""Judging sheets for the open-world evaluation (bench/data/openworld): every box and face the default
models write on a set of photos, drawn so that a person can judge each one by eye.

    python bench/openworld_sheets.py OUT_DIR [--refs FILE] [--per-sheet 2]
    python bench/openworld_sheets.py OUT_DIR --collect judge1.jsonl judge2.jsonl ...   # -> verdicts.json

For each photo with at least one box (confidence >= 0.3, what the label stage writes) or face: the photo
with numbered boxes (``b12``) and faces (``f3``), and every box's crop enlarged beside it with its class and
confidence. ``OUT_DIR/items.json`` lists the ids with their photo, class, box and confidence: the judges'
verdicts refer to these ids, and ``bench/data/openworld/verdicts.json`` is built from both. The model outputs
are cached in ``OUT_DIR/outputs.pkl``, so re-running is cheap. ``--collect`` joins the judges' verdicts
(JSON lines) with ``items.json`` into ``bench/data/openworld/verdicts.json`` (see the README there).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from pathlib import Path


BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))

import gcompris  # noqa: E402
import lqe_eval  # noqa: E402

WRITE_MIN_CONFIDENCE = 0.3
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (255, 225, 25), (0, 128, 128)]


def resolve(ref: str, corpus: Path) -> Path:
    return gcompris.resolve(ref) if ref.startswith("gcompris/") else lqe_eval.resolve_ref(ref, corpus)


def panel(path: Path, boxes: list[dict], faces: list[dict], width: int = 1400):
    from PIL import Image, ImageDraw, ImageOps

    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    W, H = im.size
    side = 820
    s = min(side / W, side / H)
    view = im.resize((max(1, round(W * s)), max(1, round(H * s))))
    d = ImageDraw.Draw(view)
    for k, b in enumerate(boxes):
        c = PALETTE[k % len(PALETTE)]
        x, y, w, h = (v * s for v in b["bbox"])
        d.rectangle([x, y, x + w, y + h], outline=c, width=3)
        d.rectangle([x, y, x + 46, y + 12], fill=c)
        d.text((x + 2, y), b["id"], fill="white")
    for f in faces:
        x, y, w, h = (v * s for v in f["bbox"])
        d.rectangle([x, y, x + w, y + h], outline=(255, 255, 255), width=2)
        d.text((x, y + h + 1), f["id"], fill=(255, 255, 0))
    tiles = []
    for k, b in enumerate(boxes):
        x, y, w, h = b["bbox"]
        pad = 0.15
        box = (max(0, x - pad * w), max(0, y - pad * h), min(W, x + w * (1 + pad)), min(H, y + h * (1 + pad)))
        piece = im.crop(tuple(int(round(v)) for v in box))
        piece.thumbnail((260, 200))
        t = Image.new("RGB", (264, 222), "white")
        t.paste(piece, (2, 20))
        td = ImageDraw.Draw(t)
        td.rectangle([0, 0, 263, 17], fill=PALETTE[k % len(PALETTE)])
        td.text((3, 3), f"{b['id']} {b['name']} {b['confidence']:.2f}", fill="white")
        # the box's own edges inside the padded crop
        sx, sy = piece.size[0] / max(1e-9, box[2] - box[0]), piece.size[1] / max(1e-9, box[3] - box[1])
        td.rectangle([2 + (x - box[0]) * sx, 20 + (y - box[1]) * sy, 2 + (x + w - box[0]) * sx,
                      20 + (y + h - box[1]) * sy], outline=PALETTE[k % len(PALETTE)], width=1)
        tiles.append(t)
    cols = max(1, (width - view.size[0] - 10) // 264)
    rows = -(-len(tiles) // cols) if tiles else 0
    ph = max(view.size[1], rows * 222) + 24
    out = Image.new("RGB", (width, ph), (235, 235, 235))
    out.paste(view, (0, 24))
    for i, t in enumerate(tiles):
        out.paste(t, (view.size[0] + 10 + (i % cols) * 264, 24 + (i // cols) * 222))
    return out


VERDICTS = ("correct", "wrong_class", "bad_box", "spurious")
FACE_VERDICTS = ("face", "depicted_face", "not_face")
GROUPS = ("coco", "open-world", "crowd", "art")


def collect(out: Path, verdict_files: list[Path], dest: Path) -> dict:
    """The judges' JSON lines (per photo, box and face id) joined with ``OUT/items.json`` into the evaluation
    file ``dest`` (bench/data/openworld/verdicts.json); refuses a box or photo judged twice or not at all."""
    items = json.loads((out / "items.json").read_text())
    by_id = {i["id"]: i for i in items["items"]}
    judged: dict[str, dict] = {}
    for f in verdict_files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if not line.strip():
                continue
            v = json.loads(line)
            key = v.get("photo") or v.get("id")
            if key in judged:
                raise SystemExit(f"{f}:{n}: {key} judged twice")
            judged[key] = v
    shown = [p for p in items["photos"] if p["boxes"] or p["faces"]]
    missing = [k for p in shown for k in [p["id"], *p["boxes"], *p["faces"]] if k not in judged]
    if missing:
        raise SystemExit(f"{len(missing)} photo/box/face ids without a verdict, e.g. {missing[:5]}")
    data: dict = {"photos": [], "boxes": [], "faces": []}
    for p in shown:
        v = judged[p["id"]]
        if v["group"] not in GROUPS:
            raise SystemExit(f"{p['id']}: group {v['group']!r} not in {GROUPS}")
        data["photos"].append({"ref": p["ref"], "sha256": p["sha256"], "size": p["size"], "group": v["group"],
                               "people": bool(v["people"]), "missed": int(v.get("missed") or 0),
                               "note": v.get("note", "")})
        for kind, ids, allowed in (("boxes", p["boxes"], VERDICTS), ("faces", p["faces"], FACE_VERDICTS)):
            for i in ids:
                j, it = judged[i], by_id[i]
                if j["verdict"] not in allowed:
                    raise SystemExit(f"{i}: verdict {j['verdict']!r} not in {allowed}")
                row = {"ref": p["ref"], "bbox": it["bbox"], "confidence": it["confidence"], "verdict": j["verdict"],
                       "true_name": j.get("true_name", "")}
                if kind == "boxes":
                    row = {"ref": p["ref"], "name": it["name"], **{k: row[k] for k in row if k != "ref"}}
                if j.get("unsure"):
                    row["unsure"] = True
                data[kind].append(row)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(data, indent=0, ensure_ascii=False) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--refs", type=Path, help="photo references, one per line (default: stdin)")
    ap.add_argument("--corpus", type=Path, default=Path("~/.cache/corpus").expanduser())
    ap.add_argument("--per-sheet", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--collect", type=Path, nargs="+", metavar="VERDICTS_JSONL",
                    help="instead: join the judges' verdict files with OUT/items.json into --dest")
    ap.add_argument("--dest", type=Path, default=BENCH / "data" / "openworld" / "verdicts.json")
    args = ap.parse_args(argv)
    if args.collect:
        data = collect(args.out, args.collect, args.dest)
        print(f"{args.dest}: {len(data['photos'])} photos, {len(data['boxes'])} boxes, {len(data['faces'])} faces")
        return 0
    from PIL import Image, ImageDraw

    refs = [r.strip() for r in (args.refs.read_text() if args.refs else sys.stdin.read()).splitlines() if r.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "outputs.pkl"
    store = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    models = None
    items: list[dict] = []
    photos: list[dict] = []
    nb = nf = 0
    for n, ref in enumerate(refs):
        path = resolve(ref, args.corpus)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        out = store.get(sha)
        if out is None:
            models = models or lqe_eval.Models(args.threads)
            out = store[sha] = lqe_eval.run_image(models, path)
        pid = f"p{n:03d}"
        boxes = []
        for d in out["dets"]:
            if d.confidence >= WRITE_MIN_CONFIDENCE:
                nb += 1
                boxes.append({"id": f"b{nb:04d}", "photo": pid, "ref": ref, "name": d.name,
                              "confidence": round(float(d.confidence), 4), "bbox": [round(float(v), 1) for v in d.bbox]})
        faces = []
        for f in out["faces"]:
            nf += 1
            faces.append({"id": f"f{nf:03d}", "photo": pid, "ref": ref, "confidence": round(float(f.confidence), 4),
                          "bbox": [round(float(v), 1) for v in f.bbox]})
        photos.append({"id": pid, "ref": ref, "sha256": sha, "boxes": [b["id"] for b in boxes],
                       "faces": [f["id"] for f in faces], "size": list(out["size"])})
        items += boxes + faces
        print(f"\r{n + 1}/{len(refs)} photos, {nb} boxes, {nf} faces", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    cache.write_bytes(pickle.dumps(store))
    (args.out / "items.json").write_text(json.dumps({"photos": photos, "items": items}, indent=1))
    by_id = {i["id"]: i for i in items}
    shown = [p for p in photos if p["boxes"] or p["faces"]]
    for s in range(0, len(shown), args.per_sheet):
        panels = []
        for p in shown[s:s + args.per_sheet]:
            pan = panel(resolve(p["ref"], args.corpus), [by_id[i] for i in p["boxes"]], [by_id[i] for i in p["faces"]])
            ImageDraw.Draw(pan).text((4, 6), f"{p['id']}  {p['ref']}", fill="black")
            panels.append(pan)
        sheet = Image.new("RGB", (1400, sum(q.size[1] for q in panels) + 8 * len(panels)), "white")
        y = 0
        for q in panels:
            sheet.paste(q, (0, y))
            y += q.size[1] + 8
        sheet.save(args.out / f"sheet_{s // args.per_sheet:03d}.png")
    print(f"{len(shown)} photos with boxes or faces on {-(-len(shown) // args.per_sheet)} sheets in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
