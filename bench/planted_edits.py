"""A planted near-duplicate set of *edits users make*, on real photos the duplicate thresholds were never
chosen on: GCompris's pictures (``bench/gcompris.py``: animals, monuments, fish, tools, instruments...).

    python bench/planted_edits.py OUT          # OUT/images/* and OUT/ground_truth.json (deterministic)

Every photo of the chosen activities is kept as an original; most of them get one edited copy, a few two.
The edits (``EDITS``) are what people do to photos they pass around: letterbox and pillarbox bars (black,
white, or a blurred stretched copy of the photo) to another aspect ratio, a caption or a watermark/logo
drawn over it, a crop keeping 70-90% of the area combined with another edit (contrast, JPEG, resize),
a mirrored smaller copy, 90/180/270 degree rotations, a "screenshot" (the photo shown smaller in a window
with a title bar, a toolbar, a side panel and margins, saved as PNG), and the edits of the older planted
set (exact copy, half size, JPEG quality 25, +30% brightness, blur).

Hard negatives, which are *not* duplicates: the photos themselves (GCompris has 14 different windmills,
26 fish on sand or reef, many monuments, hammers, screwdrivers, measuring tapes...) and tiles that hold
less than 40% of a photo's area.

``ground_truth.json`` has ``n_images``, ``groups`` (each a list of ``{"file", "kind"}``, the original
first), ``dup_pairs`` (every pair inside a group), ``half`` (file -> ``"tune"`` or ``"test"``: the split is
by photo, so an original, its copies and its tiles share a half; choose thresholds on ``tune``, report
``test``) and ``edits`` (pair -> the edit that made it).
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gcompris  # noqa: E402

ACTIVITIES = ("categorization", "erase", "details", "explore_monuments", "explore_world_animals",
              "explore_farm_animals", "explore_world_music")
#: Pictures of these activities that are not photos (an alphabet chart, a digits chart) or that repeat
#: another activity's photo (found by running the duplicate finder on the originals alone).
EXCLUDE = ("categorization/images/alphabets/alphabets.webp", "categorization/images/numbers/numbers.webp",
           "explore_monuments/egypt/greatPyramidOfGiza.webp", "explore_monuments/germany/brandenburgGate.webp",
           "explore_monuments/germany/neuschwansteinCastle.webp", "explore_monuments/wonders/colosseum.webp")
Edit = Callable[[Image.Image, np.random.Generator], tuple[Image.Image, str]]


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _fit(im: Image.Image, box: tuple[int, int]) -> Image.Image:
    """``im`` scaled to fit inside ``box`` (aspect kept)."""
    s = min(box[0] / im.width, box[1] / im.height)
    return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)


def _bars(im: Image.Image, rng: np.random.Generator, fill: str) -> Image.Image:
    """The photo on a canvas of another aspect ratio: bars top/bottom (letterbox) for a canvas taller than
    the photo, left/right (pillarbox) for a wider one."""
    photo_ratio = im.width / im.height
    target = float(rng.choice([16 / 9, 21 / 9, 1.0, 9 / 16, 4 / 5]))
    if abs(target - photo_ratio) < 0.2:
        target = 16 / 9 if photo_ratio < 1.5 else 1.0
    long_side = int(rng.integers(640, 1281))
    size = (long_side, round(long_side / target)) if target >= 1 else (round(long_side * target), long_side)
    if fill == "blurred":
        canvas = ImageOps.fit(im, size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(size[0] / 30))
    else:
        canvas = Image.new("RGB", size, (0, 0, 0) if fill == "black" else (255, 255, 255))
    photo = _fit(im, size)
    canvas.paste(photo, ((size[0] - photo.width) // 2, (size[1] - photo.height) // 2))
    return canvas


def _kind_of_bars(im: Image.Image, out: Image.Image) -> str:
    return "letterbox" if out.width / out.height < im.width / im.height else "pillarbox"


def e_bars(fill: str) -> Edit:
    def edit(im, rng):
        out = _bars(im, rng, fill)
        return out, f"{_kind_of_bars(im, out)}_{fill}"
    return edit


CAPTIONS = ("Summer 2019", "best day ever!", "look at this", "ZOO TRIP", "Holidays - day 3", "wow", "#nature")


def e_text(im, rng):
    out = im.copy()
    d = ImageDraw.Draw(out)
    size = max(12, im.height // 8)
    text = str(rng.choice(CAPTIONS))
    f = _font(size)
    w = d.textlength(text, font=f)
    x, y = (im.width - w) / 2, im.height - 1.6 * size if rng.random() < 0.6 else 0.3 * size
    d.text((x, y), text, font=f, fill=(255, 255, 255), stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return out, "text"


def e_watermark(im, rng):
    """A semi-transparent logo (a disc and a name) in a corner and a faint name across the photo."""
    base = im.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    r = max(10, min(im.size) // 7)
    cx, cy = (im.width - 1.4 * r, im.height - 1.4 * r) if rng.random() < 0.5 else (1.4 * r, 1.4 * r)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 255, 255, 150), outline=(0, 0, 0, 150), width=max(1, r // 8))
    f = _font(max(8, r))
    d.text((cx, cy), "P", font=f, fill=(20, 20, 160, 200), anchor="mm")
    f2 = _font(max(10, im.width // 10))
    d.text((im.width / 2, im.height / 2), "(c) photostock", font=f2, fill=(255, 255, 255, 90), anchor="mm")
    return Image.alpha_composite(base, layer).convert("RGB"), "watermark"


def _crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop keeping 70-90% of the area, off-centre."""
    area = rng.uniform(0.70, 0.90)
    aspect = rng.uniform(0.9, 1.1)
    fw, fh = min(1.0, np.sqrt(area) * aspect), min(1.0, np.sqrt(area) / aspect)
    w, h = round(im.width * fw), round(im.height * fh)
    x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
    return im.crop((x, y, x + w, y + h))


def e_crop_contrast(im, rng):
    return ImageEnhance.Contrast(_crop(im, rng)).enhance(float(rng.uniform(1.3, 1.6))), "crop_contrast"


def e_crop_jpeg(im, rng):
    return _jpeg(_crop(im, rng), 40), "crop_jpeg"


def e_crop_resize(im, rng):
    c = _crop(im, rng)
    s = rng.uniform(0.5, 0.8)
    return c.resize((max(8, round(c.width * s)), max(8, round(c.height * s))), Image.Resampling.BILINEAR), "crop_resize"


def e_mirror_resize(im, rng):
    s = rng.uniform(0.5, 0.8)
    m = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    size = (max(8, round(im.width * s)), max(8, round(im.height * s)))
    return m.resize(size, Image.Resampling.BILINEAR), "mirror_resize"


def e_rotate(angle: int) -> Edit:
    t = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}[angle]
    return lambda im, rng: (im.transpose(t), f"rot{angle}")


def e_screenshot(im, rng):
    """The photo shown in an application window: title bar (with a title), toolbar (icons), a side panel
    (lines of text), margins and a status bar; saved as PNG by the caller."""
    W, H = (int(rng.choice([1280, 1366, 1440])), int(rng.choice([800, 768, 900])))
    dark = rng.random() < 0.4
    bg = (43, 43, 48) if dark else (236, 236, 236)
    fg = (220, 220, 220) if dark else (40, 40, 40)
    out = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(out)
    title_h, tool_h, status_h = 32, 44, 24
    bar = tuple(int(v) for v in rng.integers(30, 90, 3)) if rng.random() < 0.5 else (60, 60, 66)
    d.rectangle((0, 0, W, title_h), fill=bar)
    d.text((W // 2, title_h // 2), str(rng.choice(["IMG_2041.jpg - Photos", "Image Viewer", "photo.png"])),
           font=_font(16), fill=(240, 240, 240), anchor="mm")
    for k, c in enumerate(((237, 95, 85), (245, 190, 80), (98, 197, 84))):
        d.ellipse((12 + 22 * k, 9, 26 + 22 * k, 23), fill=c)
    for k in range(int(rng.integers(5, 10))):  # toolbar icons
        x = 14 + 40 * k
        d.rounded_rectangle((x, title_h + 10, x + 24, title_h + 34), 5, outline=fg, width=2)
    side = int(rng.integers(160, 260)) if rng.random() < 0.6 else 0
    if side:
        for k in range(int(rng.integers(6, 14))):
            d.text((16, title_h + tool_h + 20 + 28 * k), f"Album {k + 1}", font=_font(14), fill=fg)
    area = (side + 24, title_h + tool_h + 12, W - 24, H - status_h - 12)
    fw = rng.uniform(0.75, 0.95)  # (drawn in this order: the set stays the same)
    fh = rng.uniform(0.75, 0.95)
    photo = _fit(im, (round((area[2] - area[0]) * fw), round((area[3] - area[1]) * fh)))
    x = area[0] + (area[2] - area[0] - photo.width) // 2
    y = area[1] + (area[3] - area[1] - photo.height) // 2
    out.paste(photo, (x, y))
    d.text((12, H - status_h // 2), f"{im.width} x {im.height}   100%", font=_font(13), fill=fg, anchor="lm")
    return out, "screenshot"


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def e_exact(im, rng):
    return im, "exact"


def e_resize(im, rng):
    return im.resize((max(8, im.width // 2), max(8, im.height // 2)), Image.Resampling.BILINEAR), "resize"


def e_jpeg25(im, rng):
    return _jpeg(im, 25), "jpeg25"


def e_bright(im, rng):
    return ImageEnhance.Brightness(im).enhance(1.3), "bright"


def e_blur(im, rng):
    return im.filter(ImageFilter.GaussianBlur(1.5)), "blur"


EDITS: tuple[Edit, ...] = (
    e_bars("black"), e_bars("white"), e_bars("blurred"), e_text, e_watermark, e_crop_contrast, e_crop_jpeg,
    e_crop_resize, e_mirror_resize, e_rotate(90), e_rotate(180), e_rotate(270), e_screenshot,
    e_exact, e_resize, e_jpeg25, e_bright, e_blur,
)


def half_of(ref: str) -> str:
    """``tune`` or ``test``, by a hash of the photo's reference (stable whatever else is in the set)."""
    return "tune" if hashlib.sha256(ref.encode()).digest()[0] % 2 == 0 else "test"


def tile(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A piece holding 20-40% of the photo's area: not a duplicate of it."""
    area = rng.uniform(0.2, 0.4)
    w, h = round(im.width * np.sqrt(area)), round(im.height * np.sqrt(area))
    x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
    return im.crop((x, y, x + w, y + h))


def sources() -> list[str]:
    return [r for r in gcompris.photos() if r.split("/")[1] in ACTIVITIES and r.split("/", 1)[1] not in EXCLUDE]


def build(out: Path, copies_every: int = 5, tiles_every: int = 7) -> dict:
    """Write ``out/images`` and ``out/ground_truth.json``; return the ground truth.

    Every photo gets one edited copy (edits taken in turn), every ``copies_every``-th a second one, every
    ``tiles_every``-th a tile. Originals keep their format (WebP); copies are JPEG (quality 92) except
    screenshots (PNG) and exact copies (the same bytes)."""
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(16)
    refs = sources()
    groups, half, edits = [], {}, {}
    turn = 0
    for n, ref in enumerate(refs):
        src = gcompris.resolve(ref)
        stem = f"p{n:03d}_" + Path(ref).stem.replace(" ", "_")
        orig_name = stem + src.suffix.lower()
        (img_dir / orig_name).write_bytes(src.read_bytes())
        h = half_of(ref)
        half[orig_name] = h
        with Image.open(src) as raw:
            im = raw.convert("RGB")
        members = [{"file": orig_name, "kind": "original"}]
        for c in range(2 if n % copies_every == 0 else 1):
            # the first copy takes the edits in turn (each edit as often), a second one any edit
            edit = EDITS[turn % len(EDITS)] if c == 0 else EDITS[int(rng.integers(len(EDITS)))]
            turn += c == 0
            copy, kind = edit(im, rng)
            if any(m["kind"] == kind for m in members):
                continue
            if kind == "exact":
                name = f"{stem}__exact{src.suffix.lower()}"
                (img_dir / name).write_bytes(src.read_bytes())
            elif kind == "screenshot":
                name = f"{stem}__screenshot.png"
                copy.save(img_dir / name)
            else:
                name = f"{stem}__{kind}.jpg"
                copy.save(img_dir / name, quality=92)
            members.append({"file": name, "kind": kind})
            half[name] = h
        groups.append(members)
        if n % tiles_every == 3:
            name = f"{stem}__tile.jpg"
            tile(im, rng).save(img_dir / name, quality=92)
            half[name] = h
    pairs = []
    for g in groups:
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                p = sorted((g[a]["file"], g[b]["file"]))
                pairs.append(p)
                edits["|".join(p)] = g[b]["kind"] if a == 0 else f"{g[a]['kind']}+{g[b]['kind']}"
    truth = {"n_images": len(list(img_dir.iterdir())), "groups": [g for g in groups if len(g) > 1],
             "dup_pairs": sorted(pairs), "half": half, "edits": edits}
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python bench/planted_edits.py OUT")
    t = build(Path(args[0]))
    print(f"{t['n_images']} images, {len(t['dup_pairs'])} planted pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
