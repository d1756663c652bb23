"""``viscurate demo``: a small dataset built from the photos that ship inside scikit-image and
scikit-learn (nothing is downloaded), plus a few copies made to show what viscurate notices: a
mirrored and a shrunken copy of one photo, a truncated file and an empty one. The photos are then
auto-labeled with the offline models, and a few of them drawn with their labels (``<home>/demo-pictures``)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..dataset import Dataset
from ..store.workspace import Workspace
from .render import print_info

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def bundled_photos() -> list[Path]:
    """Image files inside the installed scikit-image and scikit-learn packages."""
    found: list[Path] = []
    try:
        import skimage
        data = Path(skimage.__file__).parent / "data"
        found += sorted(p for p in data.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.stat().st_size > 0)
    except ImportError:
        pass
    try:
        import sklearn
        images = Path(sklearn.__file__).parent / "datasets" / "images"
        found += sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    except ImportError:
        pass
    return found


def build_demo_folder(target: Path) -> Path:
    from PIL import Image, ImageOps
    if target.exists():
        shutil.rmtree(target)
    photos = target / "photos"
    photos.mkdir(parents=True)
    sources = bundled_photos()
    if not sources:
        raise RuntimeError("no bundled photos found: pip install scikit-image scikit-learn")
    for p in sources:
        shutil.copy2(p, photos / f"{p.parent.parent.name}-{p.name}")
    made = target / "made-by-demo"
    made.mkdir()
    cat = next((p for p in sources if p.stem == "chelsea"), sources[0])
    with Image.open(cat) as im:
        im = im.convert("RGB")
        ImageOps.mirror(im).save(made / "chelsea-mirrored.jpg", quality=90)
        im.resize((im.width // 2, im.height // 2)).save(made / "chelsea-half-size.jpg", quality=85)
        im.save(made / "chelsea-truncated.jpg", quality=90)
    data = (made / "chelsea-truncated.jpg").read_bytes()
    (made / "chelsea-truncated.jpg").write_bytes(data[: len(data) // 2])
    (made / "empty.jpg").write_bytes(b"")
    return target


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def run_demo(name: str, home: os.PathLike | None, console: Console) -> Dataset:
    ws = Workspace(home)
    folder = build_demo_folder(ws.home / "demo-photos")
    if ws.exists(name):
        ws.delete(name)
    ds = Dataset.create(name, home)
    console.print(f"[bold]viscurate demo[/]: profiling the photos bundled with scikit-image and scikit-learn, "
                  f"plus 4 copies made to show what viscurate notices ({folder})")
    report = ds.add_images(folder)
    console.print(f"catalogued {report.files} files in {report.seconds:.1f} s "
                  f"({report.images_per_s:.0f} images/s); {report.failed} could not be decoded\n")
    print_info(ds.info())

    broken = ds.find({"issues": "corrupt"}, projection={"filepath": 1, "issues": 1, "error": 1})
    table = Table("file", "issues", "error", title="broken files are kept, flagged and explained")
    for d in broken["results"]:
        table.add_row(Path(d["filepath"]).name, ", ".join(d["issues"]), d.get("error", ""))
    console.print(table)

    original = ds.find({"filepath": {"$regex": "chelsea\\.png$"}})["results"]
    copies = ds.find({"filepath": {"$regex": "chelsea-(mirrored|half-size)"}})["results"]
    if original and original[0].get("phash"):
        table = Table("copy of chelsea.png", "pHash distance", "flip-invariant distance",
                      title="perceptual hashes: bits that differ from the original (0-64)")
        for d in copies:
            if d.get("phash"):
                table.add_row(Path(d["filepath"]).name, str(hamming(original[0]["phash"], d["phash"])),
                              str(hamming(original[0]["phash_flip"], d["phash_flip"])))
        console.print(table)

    examples = [
        ('{"quality.grayscale": true}', {"quality.grayscale": True}),
        ('{"width": {"$gte": 512}, "format": "PNG"}', {"width": {"$gte": 512}, "format": "PNG"}),
        ('{"issues": {"$in": ["dark", "blurry", "low_information"]}}', {"issues": {"$in": ["dark", "blurry", "low_information"]}}),
    ]
    table = Table("query", "matches", "first matches", title="MongoDB queries over the catalog")
    for text, q in examples:
        res = ds.find(q, page_size=3)
        table.add_row(text, str(res["length"]), ", ".join(Path(d["filepath"]).name for d in res["results"]))
    console.print(table)

    show_labels(ds, ws.home / "demo-pictures", console)
    console.print(f"\nTry: [bold]viscurate find {name} '{{\"issues\": \"grayscale\"}}'[/]  ·  "
                  f"[bold]viscurate info {name}[/]  ·  [bold]viscurate get {name} <_id>[/]  ·  "
                  f"[bold]viscurate draw {name} <_id> -o out.png[/]")
    return ds


#: Photos the demo draws with their labels (file name endings), when present.
PICTURES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png")


def show_labels(ds: Dataset, pictures: Path, console: Console) -> None:
    """Label the demo dataset, print what was found with its quality estimate, draw a few photos."""
    console.print("\n[bold]auto-labeling[/] with the offline models (COCO objects, faces, poses, ImageNet tags, "
                  "embeddings, label quality)")
    report = ds.label()
    console.print(f"labeled {report.processed} images in {report.seconds:.1f} s ({report.images_per_s:.1f} "
                  f"images/s): {report.objects} objects, {report.faces} faces, {report.poses} poses\n")
    found = ds.find({"object_analysis": {"$elemMatch": {"label_quality_estimation": {"$gte": 0}}}},
                    projection={"filepath": 1, "object_analysis": 1, "classifications": 1},
                    sort="-label_quality_estimation", page_size=12)
    table = Table("file", "objects (confidence, label quality)", "top ImageNet tag",
                  title="what the models found; label quality = estimated chance that the box is right")
    for d in found["results"]:
        objs = sorted(d.get("object_analysis") or [], key=lambda o: -(o.get("label_quality_estimation") or 0))
        tags = d.get("classifications") or []
        table.add_row(Path(d["filepath"]).name,
                      ", ".join(f"{o['name']} ({o['confidence']:.2f}, {o['label_quality_estimation']:.2f})"
                                for o in objs[:4]) + (" ..." if len(objs) > 4 else ""),
                      tags[0]["name"] if tags else "")
    console.print(table)
    doubtful = '{"object_analysis": {"$elemMatch": {"label_quality_estimation": {"$lt": 0.3}}}}'
    console.print(f"labels to review first: [bold]viscurate find {ds.name} '{doubtful}'[/] "
                  f"({ds.count({'object_analysis': {'$elemMatch': {'label_quality_estimation': {'$lt': 0.3}}}})} "
                  f"images)")
    pictures.mkdir(parents=True, exist_ok=True)
    drawn = []
    for ending in PICTURES:
        hit = ds.find({"filepath": {"$regex": f"-{ending.replace('.', '[.]')}$"}}, page_size=1)["results"]
        if hit:
            out = pictures / f"{Path(ending).stem}-labels.png"
            ds.draw(hit[0]["_id"], out, max_side=800)
            drawn.append(out)
    if drawn:
        console.print(f"drawn with their labels: {', '.join(str(p) for p in drawn)}")
