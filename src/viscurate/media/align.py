"""Is one picture a scaled crop of the other? Normalized cross-correlation of small grey pictures.

A crop that keeps 70-90% of a photo, downscaled and recompressed, or a photo shown smaller in a window
and screenshotted, moves the perceptual hash too far; but laid over the right place of the other picture
at the right scale it matches it pixel for pixel. :func:`alignment` searches that place: each picture in
turn as a template over the other, with OpenCV's ``matchTemplate`` (``TM_CCOEFF_NORMED``: invariant to
brightness and contrast) at the scales where it covers at least ``min_share`` of the other's area; first on
coarse pictures (longer side 64), then around the best scale on finer ones (128). Mirrored placements are not tried: a mirrored copy is
the flip-invariant hash's to find, and a mirrored piece of a round or symmetric scene (two tiles from either
side of a retina photo) matches another piece as well as a copy does.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> photo = cv2.GaussianBlur(rng.random((120, 160), np.float32) * 255, (0, 0), 3)   # grey levels
>>> crop = photo[6:106, 14:146]                                # 69% of the area
>>> a = alignment(photo, cv2.resize(crop, (99, 75), interpolation=cv2.INTER_AREA))
>>> round(a.score, 2) >= 0.95, round(a.share, 1)    # the share, to the step between scales
(True, 0.7)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from .borders import content_box
from .decode import decode_image
from .profile import DEFAULT_MAX_BYTES

__all__ = ["Alignment", "alignment", "grid_vector", "picture", "COARSE_SIDE", "FINE_SIDE", "GRID_SIDE", "MIN_SHARE"]

#: Longer side of the larger picture in the coarse search (every scale) and the fine one (around the best;
#: refining a second scale found nothing more on the tuning half, at twice the cost).
COARSE_SIDE = 64
FINE_SIDE = 128
#: Small pictures (digits, icons, thumbnails) are compared whole on a grid this many cells a side: the size
#: of the smallest copies people make of them (MNIST's 28 x 28 digits shrunk to 20 x 20 still match at 0.97).
GRID_SIDE = 24
#: The template covers at least this share of the other picture's area: a crop that people keep holds
#: 70-90% of a photo, while a tile of 20-40% of it (not a copy) is a scaled crop too (tuning half of
#: ``bench/planted_edits.py``: a tile and its photo's crops, 0.6 at most).
MIN_SHARE = 0.6
#: Steps between scales of the coarse search (linear factor), and of the fine one around the best.
COARSE_STEP = 1.06
FINE_STEP = 1.03
#: A template smaller than this (pixels, either side) correlates with anything.
MIN_TEMPLATE = 8


@dataclass(frozen=True)
class Alignment:
    """The best placement found: ``score`` (normalized cross-correlation, -1..1), ``share`` (the area of the
    other picture the template covers, 0..1) and ``template`` (0: the first picture was laid
    over the second, 1: the second over the first)."""

    score: float = -1.0
    share: float = 0.0
    template: int = 0


def picture(path: str | os.PathLike[str] | None, max_bytes: int = DEFAULT_MAX_BYTES, *, trim: bool = True
            ) -> np.ndarray | None:
    """The grey picture inside its frame (:func:`viscurate.media.borders.content_box`; the whole of it with
    ``trim=False``) of the small image of the file at ``path`` (float32); ``None`` when the file is
    missing, too large or not decodable."""
    if not path:
        return None
    try:
        if os.path.getsize(path) > max_bytes:
            return None
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    small = decode_image(data).small
    if small is None:
        return None
    grey = np.asarray(small.convert("L"), dtype=np.float32)
    if not trim:
        return grey
    x0, y0, x1, y1 = content_box(grey)
    return np.ascontiguousarray(grey[y0:y1, x0:x1])


def _fit(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` with its longer side ``side`` (area average down, linear up)."""
    h, w = img.shape
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def _scales(step: float, low: float, high: float) -> np.ndarray:
    """Linear scale factors from ``high`` down to ``low``, ``step`` apart (a ratio)."""
    n = int(np.floor(np.log(high / low) / np.log(step))) + 1
    return high / step ** np.arange(n)


def _match(image: np.ndarray, template: np.ndarray, factor: float) -> float:
    """Best correlation of ``template`` scaled by ``factor`` (at most 1) over ``image`` (-1: it does not fit)."""
    h, w = template.shape
    tw, th = round(w * factor), round(h * factor)
    if tw < MIN_TEMPLATE or th < MIN_TEMPLATE or tw > image.shape[1] or th > image.shape[0]:
        return -1.0
    t = template if (tw, th) == (w, h) else cv2.resize(template, (tw, th), interpolation=cv2.INTER_AREA)
    return float(cv2.matchTemplate(image, t, cv2.TM_CCOEFF_NORMED).max())


def _full(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``template`` resized to be as wide or as tall as ``image`` (whichever it reaches first)."""
    f = min(image.shape[1] / template.shape[1], image.shape[0] / template.shape[0])
    size = (min(image.shape[1], max(1, round(template.shape[1] * f))),
            min(image.shape[0], max(1, round(template.shape[0] * f))))
    return cv2.resize(template, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)


def _search(image: np.ndarray, template: np.ndarray, min_share: float) -> tuple[float, float]:
    """(score, share) of the best placement of ``template`` over ``image``, at scales where it covers from
    about ``min_share`` of the image's area to as much as its shape allows. A scale of 1.0 is the template
    as wide or as tall as the image."""
    coarse = _fit(image, COARSE_SIDE)
    full = _full(coarse, template)
    most = full.size / coarse.size  # the share at scale 1.0
    if most < min_share:
        return -1.0, 0.0
    # down to a little under min_share: the fine search moves the best coarse scale by up to a step
    scales = _scales(COARSE_STEP, float(np.sqrt(min_share / most)) / FINE_STEP, 1.0)
    score, f = max((_match(coarse, full, f), float(f)) for f in scales)
    if score <= -1.0:
        return -1.0, 0.0
    fine = _fit(image, FINE_SIDE)
    full = _full(fine, template)
    best, at = -1.0, 1.0
    for g in np.minimum(1.0, f * FINE_STEP ** np.arange(-1, 2)):
        if (m := _match(fine, full, float(g))) > best:
            best, at = m, float(g)
    return best, at * at * most


def grid_vector(picture: np.ndarray, side: int = GRID_SIDE) -> np.ndarray:
    """A grey picture as a ``side`` x ``side`` grid (area average down, linear up), zero mean, unit length
    (all zeros when flat), so that the dot product of two is their normalized cross-correlation laid whole
    one over the other: about 1.0 for a resized, recompressed, brightened or slightly blurred copy.

    >>> import numpy as np
    >>> glyph = np.zeros((28, 28), np.float32); glyph[6:22, 12:16] = 255
    >>> copy, turned = grid_vector(cv2.resize(glyph, (56, 56))), grid_vector(np.ascontiguousarray(glyph.T))
    >>> round(float(grid_vector(glyph) @ copy), 2), round(float(grid_vector(glyph) @ turned), 2)
    (1.0, 0.21)
    """
    img = np.asarray(picture, np.float32)
    grid = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if min(img.shape) >= side else cv2.INTER_LINEAR)
    v = grid.ravel() - grid.mean()
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 1e-3 else np.zeros_like(v)).astype(np.float32)


def alignment(first: np.ndarray, second: np.ndarray, min_share: float = MIN_SHARE) -> Alignment:
    """The best placement of either picture, scaled, over the other, covering at least about ``min_share``
    of its area (grey 2-D arrays of any sizes: the pictures inside their frames, :func:`picture`)."""
    best = Alignment()
    if float(np.std(first)) < 1.0 or float(np.std(second)) < 1.0:
        return best  # a flat picture correlates with nothing (and divides by zero)
    for k, (image, template) in enumerate(((second, first), (first, second))):
        score, share = _search(np.asarray(image, np.float32), np.asarray(template, np.float32), min_share)
        if score > best.score:
            best = Alignment(score, share, k)
    return best
