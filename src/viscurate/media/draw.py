"""Draw a sample's labels on its image: predicted boxes, ground truth, faces and pose skeletons.

>>> import numpy as np
>>> doc = {"width": 64, "height": 48,
...        "object_analysis": [{"name": "cat", "confidence": 0.91, "bbox": [8, 8, 40, 30],
...                             "label_quality_estimation": 0.88}]}
>>> im = draw_sample(doc, np.zeros((48, 64, 3), np.uint8))
>>> im.size, im.mode
((64, 48), 'RGB')
>>> class_colour("cat") == class_colour("cat") != class_colour("dog")
True

What is drawn (``show`` picks the layers, in this order, bottom to top):

- ``ground_truth``: ``ground_truth.detections`` as *dashed* boxes in the class colour, labelled
  ``GT name``, the tag drawn in outline (white with coloured text);
- ``object_analysis``: predictions as solid boxes with a light fill in the class colour, labelled
  ``name 0.91`` and, when the box has one, its label quality estimation (``LQE 0.88``);
- ``face_analysis``: face boxes (one fixed colour) labelled ``face 0.97``, with their keypoints as dots;
- ``pose_estimation``: COCO 17-keypoint skeletons (the person's left side orange, right side blue, the
  trunk and head yellow), keypoints whose score is below ``min_keypoint_score`` left out;
- ``classifications`` (not drawn unless asked): the top image tags as a caption in the bottom-left corner.

Colours are stable per class name (a hash of the name picks the hue), so the same class has the same
colour in every picture. Boxes are ``[x, y, w, h]`` in pixels of the upright original image; when the
picture given is another size (a thumbnail, ``max_side``) they are scaled to it using the document's
``width``/``height``. Text uses Pillow's built-in font (no font file is read or downloaded).
"""
from __future__ import annotations

import colorsys
import hashlib
import os
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["draw_sample", "load_upright", "class_colour", "DEFAULT_LAYERS", "SKELETON"]

#: What :func:`draw_sample` draws by default.
DEFAULT_LAYERS: tuple[str, ...] = ("object_analysis", "ground_truth", "face_analysis", "pose_estimation")
_LAYERS = frozenset(DEFAULT_LAYERS + ("classifications",))

#: COCO person skeleton (keypoint index pairs), as in ``viscurate.models.coco.COCO_SKELETON``.
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16),
)
_LEFT = frozenset({1, 3, 5, 7, 9, 11, 13, 15})  # COCO keypoints on the person's left
_RIGHT = frozenset({2, 4, 6, 8, 10, 12, 14, 16})
_LEFT_COLOUR = (255, 140, 0)
_RIGHT_COLOUR = (30, 144, 255)
_MID_COLOUR = (255, 215, 0)
_FACE_COLOUR = (40, 230, 90)
_FACE_POINT = (255, 255, 255)


def class_colour(name: str) -> tuple[int, int, int]:
    """A bright colour that depends only on the class name (stable across runs and pictures)."""
    digest = hashlib.sha1(str(name).encode("utf-8")).digest()
    hue = int.from_bytes(digest[:4], "big") / 2**32
    sat = 0.65 + 0.3 * digest[4] / 255
    val = 0.85 + 0.15 * digest[5] / 255
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def load_upright(source: Any) -> Image.Image:
    """An RGB picture from a path (EXIF orientation applied), a numpy array (H x W [x 3|4]) or a PIL image."""
    if isinstance(source, Image.Image):
        im = source
    elif isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        im = Image.fromarray(np.ascontiguousarray(arr))
    elif isinstance(source, (str, os.PathLike)):
        from .decode import open_image
        with open(source, "rb") as f:
            data = f.read()
        try:
            im = open_image(data)  # keeps Pillow's decompression-bomb check
            im.load()
            im = ImageOps.exif_transpose(im)
        except Exception as e:  # noqa: BLE001 - e.g. a float64 TIFF: the profile's decoder reads more
            im = _decoded_full_size(data, source, e)
    else:
        raise TypeError(f"expected a path, a numpy array or a PIL image, got {type(source).__name__}")
    if im.mode != "RGB":
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im)
        im = im.convert("RGB")
    return im


def _decoded_full_size(data: bytes, source: Any, pillow_error: BaseException) -> Image.Image:
    """The upright picture as the profile decodes it, at full size: the way to draw what Pillow alone
    cannot open (a float64 or five-channel TIFF, read by tifffile). Raises ``ValueError``."""
    from .decode import decode_image
    decoded = decode_image(data, side=1 << 30)  # never upscaled: the full size
    if decoded.small is None:
        raise ValueError(f"cannot draw {os.fspath(source)!r}: {decoded.error or pillow_error}") from None
    return decoded.small


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if np.isfinite(v) else None


def _box(obj: Any, sx: float, sy: float) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) in picture pixels, or None for a missing or malformed box."""
    if not isinstance(obj, dict):
        return None
    bbox = obj.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    vals = [_num(v) for v in bbox]
    if any(v is None for v in vals):
        return None
    x, y, w, h = vals  # type: ignore[misc]
    if w <= 0 or h <= 0:
        return None
    return x * sx, y * sy, (x + w) * sx, (y + h) * sy


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], colour, width: int, dash: int) -> None:
    x0, y0, x1, y1 = box
    gap = max(2, dash // 2)
    for (ax, ay, bx, by) in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)):
        length = float(np.hypot(bx - ax, by - ay))
        if length == 0:
            continue
        ux, uy = (bx - ax) / length, (by - ay) / length
        t = 0.0
        while t < length:
            e = min(t + dash, length)
            draw.line([(ax + ux * t, ay + uy * t), (ax + ux * e, ay + uy * e)], fill=colour, width=width)
            t = e + gap


class _Painter:
    """Geometry and style of one picture: line width and font scale with its size."""

    def __init__(self, im: Image.Image, font_size: int | None, line_width: int | None):
        self.im = im
        side = max(im.size)
        self.lw = line_width or max(2, round(side / 320))
        self.font = _font(font_size or max(11, min(48, round(side / 42))))
        self.pad = max(2, self.lw)
        self.fills = Image.new("RGBA", im.size, (0, 0, 0, 0))  # translucent box fills, under everything
        self.lines = Image.new("RGBA", im.size, (0, 0, 0, 0))  # outlines, skeletons, points
        self.fill = ImageDraw.Draw(self.fills)
        self.draw = ImageDraw.Draw(self.lines)
        self.labels: list[tuple[tuple[float, float, float, float], str, tuple, bool]] = []

    def box(self, box, colour, *, dashed: bool = False, fill_alpha: int = 0) -> None:
        if fill_alpha:
            self.fill.rectangle(box, fill=colour + (fill_alpha,))
        if dashed:
            _dashed_rectangle(self.draw, box, colour, self.lw, dash=max(6, self.lw * 4))
        else:
            self.draw.rectangle(box, outline=colour, width=self.lw)

    def label(self, box, text: str, colour, *, outlined: bool = False, below: bool = False) -> None:
        self.labels.append((box, text, colour, outlined or below))

    def flush(self) -> Image.Image:
        """Composite the fills and the lines on the picture, then draw every label on top."""
        out = Image.alpha_composite(Image.alpha_composite(self.im.convert("RGBA"), self.fills), self.lines)
        out = out.convert("RGB")
        draw = ImageDraw.Draw(out)
        W, H = out.size
        sizes = []
        for _, text, _, _ in self.labels:
            l, t, r, b = draw.textbbox((0, 0), text, font=self.font)
            sizes.append(((r - l) + 2 * self.pad, (b - t) + 2 * self.pad, l, t))
        spots = place_labels([(box, outlined) for box, _, _, outlined in self.labels],
                             [(w, h) for w, h, _, _ in sizes], (W, H))
        rects = {i: (x, y, w, h, l, t) for i, ((x, y), (w, h, l, t)) in enumerate(zip(spots, sizes))}
        for i, (_, text, colour, outlined) in enumerate(self.labels):
            lx, ly, bw, bh, l, t = rects[i]
            rect = (lx, ly, lx + bw, ly + bh)
            if outlined:
                draw.rectangle(rect, fill=(255, 255, 255), outline=colour, width=max(1, self.lw // 2))
                fg = tuple(max(0, int(c * 0.7)) for c in colour)
            else:
                draw.rectangle(rect, fill=colour)
                fg = _text_colour(colour)
            draw.text((lx + self.pad - l, ly + self.pad - t), text, fill=fg, font=self.font)
        return out


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(boxes: Sequence[tuple[Sequence[float], bool]], sizes: Sequence[tuple[float, float]],
                 image_size: tuple[int, int]) -> list[tuple[float, float]]:
    """Top-left corners of the label tags of ``boxes`` (``((x0, y0, x1, y1), below)``; ``below``: a ground
    truth tag, under the box) of ``sizes`` ``(w, h)``, in a picture of ``image_size``. Tags are placed
    from the last box to the first (the last is drawn on top: the most confident), each at the first of
    its candidate spots that no tag placed before covers: above the box, inside its top, further in...

    >>> place_labels([((10, 30, 90, 90), False), ((10, 30, 80, 80), False)], [(40, 10), (40, 10)], (100, 100))
    [(10, 30), (10, 20)]
    """
    W, H = image_size
    placed: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(boxes)
    for i in range(len(boxes) - 1, -1, -1):
        (x0, y0, x1, y1), below = boxes[i]
        bw, bh = sizes[i]
        lx = min(max(0.0, x0), max(0.0, W - bw))
        if below:
            spots = [y1, y1 - bh, y1 + bh, y1 - 2 * bh]
        else:
            spots = [y0 - bh, y0, y0 + bh, y0 + 2 * bh, y1 - bh]
        spots = [y for y in spots if 0 <= y <= H - bh] or [min(max(0.0, spots[0]), max(0.0, H - bh))]
        ly = next((y for y in spots if not any(_overlap((lx, y, lx + bw, y + bh), q) for q in placed)), spots[0])
        placed.append((lx, ly, lx + bw, ly + bh))
        out[i] = (lx, ly)
    return out


def _objects(doc: dict, path: str) -> list:
    from ..store.documents import get_path
    cur = get_path(doc, path)
    return cur if isinstance(cur, list) else []


def _fmt(value: Any) -> str | None:
    v = _num(value)
    return None if v is None else f"{v:.2f}"


def draw_sample(doc: dict, image: Any, *, show: Iterable[str] = DEFAULT_LAYERS, min_confidence: float = 0.0,
                min_keypoint_score: float = 0.25, max_side: int | None = None, font_size: int | None = None,
                line_width: int | None = None) -> Image.Image:
    """The picture of a sample with its labels drawn on it (a new RGB ``PIL.Image``).

    ``image``: the sample's file path (EXIF orientation is applied), or the upright pixels as a numpy
    array or PIL image. ``show``: the layers to draw (see the module doc). ``min_confidence``: predictions
    and faces below it are left out. ``max_side``: shrink the picture first so its longer side is at most
    this many pixels (labels are drawn at that size, crisp)."""
    layers = tuple(show)
    unknown = [s for s in layers if s not in _LAYERS]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(map(repr, unknown))}; choose from {', '.join(sorted(_LAYERS))}")
    im = load_upright(image)
    if max_side and max(im.size) > max_side:
        k = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.Resampling.LANCZOS)
    dw, dh = _num(doc.get("width")), _num(doc.get("height"))
    sx = im.width / dw if dw else 1.0
    sy = im.height / dh if dh else 1.0
    p = _Painter(im, font_size, line_width)

    if "ground_truth" in layers:
        for obj in _objects(doc, "ground_truth.detections"):
            box = _box(obj, sx, sy)
            if box is None:
                continue
            colour = class_colour(obj.get("name", "?"))
            p.box(box, colour, dashed=True)
            p.label(box, f"GT {obj.get('name', '?')}", colour, outlined=True)

    if "object_analysis" in layers:
        objs = [o for o in _objects(doc, "object_analysis") if isinstance(o, dict)]
        # draw the most confident last, so that it ends on top
        objs.sort(key=lambda o: _num(o.get("confidence")) or 0.0)
        for obj in objs:
            conf = _num(obj.get("confidence"))
            if conf is not None and conf < min_confidence:
                continue
            box = _box(obj, sx, sy)
            if box is None:
                continue
            name = str(obj.get("name", "?"))
            colour = class_colour(name)
            p.box(box, colour, fill_alpha=38)
            text = name if conf is None else f"{name} {conf:.2f}"
            lqe = _fmt(obj.get("label_quality_estimation"))
            if lqe is not None:
                text += f" | LQE {lqe}"
            p.label(box, text, colour)

    if "pose_estimation" in layers:
        r = max(2, p.lw + 1)
        for pose in _objects(doc, "pose_estimation"):
            kps = pose.get("keypoints") if isinstance(pose, dict) else None
            if not isinstance(kps, list):
                continue
            pts: dict[int, tuple[float, float]] = {}
            for i, kp in enumerate(kps):
                if not isinstance(kp, (list, tuple)) or len(kp) < 2:
                    continue
                x, y = _num(kp[0]), _num(kp[1])
                score = _num(kp[2]) if len(kp) > 2 else 1.0
                if x is None or y is None or score is None or score < min_keypoint_score:
                    continue
                pts[i] = (x * sx, y * sy)
            for a, b in SKELETON:
                if a in pts and b in pts:
                    colour = _LEFT_COLOUR if {a, b} <= _LEFT else _RIGHT_COLOUR if {a, b} <= _RIGHT else _MID_COLOUR
                    p.draw.line([pts[a], pts[b]], fill=colour, width=max(2, p.lw + 1))
            for i, (x, y) in pts.items():
                colour = _LEFT_COLOUR if i in _LEFT else _RIGHT_COLOUR if i in _RIGHT else _MID_COLOUR
                p.draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(0, 0, 0))

    if "face_analysis" in layers:
        r = max(2, p.lw)
        for face in _objects(doc, "face_analysis"):
            if not isinstance(face, dict):
                continue
            conf = _num(face.get("confidence"))
            if conf is not None and conf < min_confidence:
                continue
            box = _box(face, sx, sy)
            if box is not None:
                p.box(box, _FACE_COLOUR)
                p.label(box, "face" if conf is None else f"face {conf:.2f}", _FACE_COLOUR)
            for kp in face.get("keypoints") or ():
                if isinstance(kp, (list, tuple)) and len(kp) >= 2:
                    x, y = _num(kp[0]), _num(kp[1])
                    if x is not None and y is not None:
                        x, y = x * sx, y * sy
                        p.draw.ellipse((x - r, y - r, x + r, y + r), fill=_FACE_POINT, outline=(0, 0, 0))

    out = p.flush()
    if "classifications" in layers:
        tags = [t for t in _objects(doc, "classifications") if isinstance(t, dict)][:3]
        if tags:
            draw = ImageDraw.Draw(out)
            text = ", ".join(f"{t.get('name', '?')} {_fmt(t.get('confidence')) or ''}".strip() for t in tags)
            l, t, r_, b = draw.textbbox((0, 0), text, font=p.font)
            y0 = out.height - (b - t + 2 * p.pad)  # bottom-left corner, clear of the box labels
            draw.rectangle((0, y0, r_ - l + 2 * p.pad, out.height), fill=(0, 0, 0))
            draw.text((p.pad - l, y0 + p.pad - t), text, fill=(255, 255, 255), font=p.font)
    return out
