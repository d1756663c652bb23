"""The picture inside its frame: the box left once borders are trimmed from a grey small image.

What people add around a photo is made of *background lines*: rows or columns that are mostly one
level (black or white letterbox and pillarbox bars; the flat margins, title bar and toolbar of a
screenshot, whose text and icons cover a small part of a line, or a side panel's lines of text, short
breaks in a column), or smooth (a blurred, stretched copy of the photo filling the bars). A frame ends
at a straight edge; a photo's own flat sky or studio backdrop fades into the picture. So each side is
trimmed through its leading run of background lines up to the innermost strong edge in it (none: that
side stays), a few passes until nothing changes. Trimmed this way, an original and its framed copy
leave the same picture, and their hashes agree.

>>> import numpy as np
>>> photo = np.random.default_rng(0).integers(0, 256, (60, 80)).astype(np.uint8)
>>> framed = np.zeros((100, 80), np.uint8); framed[20:80] = photo       # letterboxed in black
>>> content_box(framed)
(0, 20, 80, 80)
>>> content_box(photo)
(0, 0, 80, 60)
"""
from __future__ import annotations

import numpy as np

__all__ = ["content_box", "NEAR_LEVEL", "NEAR_SHARE", "SPARSE_SHARE", "SPARSE_RUN", "SMOOTH_STEP", "SMOOTH_MAX_STEP",
           "MIN_SIDE_SHARE", "GAP", "EDGE"]

#: Grey levels around a line's median that count as "the same level".
NEAR_LEVEL = 10
#: A line is background when at least this share of it is at its median level (text, icons cover less)
NEAR_SHARE = 0.85
#: ... or when at least this share is, the rest in short breaks (a column through lines of text)
SPARSE_SHARE = 0.6
#: of at most this many pixels (a line of text in the small image)
SPARSE_RUN = 5
#: ... or when neighbouring pixels along it differ by at most this much on average (a blurred fill)
SMOOTH_STEP = 4.0
#: ... and never by more than this (a line across a frame and the photo's flat sky has one big step).
SMOOTH_MAX_STEP = 30
#: ... and its steps change by at most this much on average (a blur bends slowly; a downscaled texture,
#: however flat, does not).
SMOOTH_BEND = 2.0
#: A box narrower or shorter than this share of the image is not a photo in a frame but a flat picture
#: trimmed to its few details: trimming stops before such a pass.
MIN_SIDE_SHARE = 0.25
#: ... or fewer pixels than this.
MIN_SIDE = 16
#: Trimming one side changes the lines of the other two: a window needs 2-3 passes, 8 is a bound.
PASSES = 8
#: Lines of a frame that are not background (a row through a title's letters or toolbar icons) come
#: alone or in pairs in the small image; a photo is many such lines in a row.
GAP = 2
#: A frame ends at a straight edge: neighbouring lines this many grey levels apart on average.
EDGE = 8.0


def _background(lines: np.ndarray) -> np.ndarray:
    """Which rows of ``lines`` (2-D, one line per row) are background."""
    if lines.shape[1] < 2:
        return np.ones(lines.shape[0], bool)
    med = np.median(lines[:, ::4], axis=1, keepdims=True)  # every 4th pixel: as good a level, 4x cheaper
    off = np.abs(lines - med) > NEAR_LEVEL
    share = 1.0 - off.mean(axis=1)
    # mostly one level, or one level with short breaks only (a column through a side panel's text)
    near = (share >= NEAR_SHARE) | ((share >= SPARSE_SHARE) & (_longest_runs(off) <= SPARSE_RUN))
    steps = np.diff(lines, axis=1)
    bends = np.abs(np.diff(steps, axis=1)).mean(axis=1) if lines.shape[1] > 2 else np.zeros(len(lines))
    steps = np.abs(steps)
    smooth = (steps.mean(axis=1) <= SMOOTH_STEP) & (steps.max(axis=1) <= SMOOTH_MAX_STEP) & (bends <= SMOOTH_BEND)
    return near | smooth


def _longest_runs(flags: np.ndarray) -> np.ndarray:
    """The longest run of ``True`` in each row of a 2-D boolean array.

    >>> _longest_runs(np.array([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0]], bool)).tolist()
    [2, 0]
    """
    rows, n = flags.shape
    padded = np.zeros((rows, n + 2), np.int8)
    padded[:, 1:-1] = flags
    edges = np.diff(padded.ravel())
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    out = np.zeros(rows, np.int64)
    if len(starts):
        np.maximum.at(out, starts // (n + 2), ends - starts)
    return out


def _run(background: np.ndarray) -> int:
    """Length of the leading run of background lines, through lone lines of text or icons: the run ends
    where ``GAP + 1`` lines in a row are not background (the photo)."""
    photo = ~background
    if len(photo) <= GAP:
        return 0 if photo.all() else len(photo)
    window = np.lib.stride_tricks.sliding_window_view(photo, GAP + 1).all(axis=1)
    starts = np.flatnonzero(window)
    return int(starts[0]) if len(starts) else len(photo)


def _cut(lines: np.ndarray, background: np.ndarray) -> int:
    """How many lines to trim from the start of ``lines``: up to the innermost strong edge (a step of at
    least ``EDGE`` grey levels on average between two neighbouring lines) inside the leading run of
    background lines or where it ends; none when that run holds no edge (a photo's own sky fades into
    the picture, a frame ends at a straight edge)."""
    run = _run(background)
    if run == 0 or run == len(background):
        return 0
    steps = np.abs(lines[1:run + 1] - lines[:run]).mean(axis=1)  # steps[k - 1]: between lines k - 1 and k
    edges = np.flatnonzero(steps >= EDGE)
    return int(edges[-1]) + 1 if len(edges) else 0


def content_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the picture once background lines are trimmed from every side
    (passes that would leave less than ``MIN_SIDE_SHARE`` of a side are not made)."""
    g = np.asarray(grey, dtype=np.float32)
    h, w = g.shape
    x0, y0, x1, y1 = 0, 0, w, h
    if h <= 2 * (GAP + 1) or w <= 2 * (GAP + 1):
        return x0, y0, x1, y1
    outer = list(range(GAP + 1)) + list(range(-GAP - 1, 0))
    if not (_background(g[outer]).any() or _background(g[:, outer].T).any()):
        return x0, y0, x1, y1  # most photos: no side starts with a background run
    for _ in range(PASSES):
        box = g[y0:y1, x0:x1]
        rows, cols = _background(box), _background(box.T)
        top, bottom = _cut(box, rows), _cut(box[::-1], rows[::-1])
        left, right = _cut(box.T, cols), _cut(box.T[::-1], cols[::-1])
        if not (top or bottom or left or right):
            break
        if min(x1 - right - x0 - left, y1 - bottom - y0 - top) < MIN_SIDE or \
                (x1 - right - x0 - left) < MIN_SIDE_SHARE * w or (y1 - bottom - y0 - top) < MIN_SIDE_SHARE * h:
            break  # into a flat picture's few details: the frame (if any) was trimmed by the passes before
        x0, y0, x1, y1 = x0 + left, y0 + top, x1 - right, y1 - bottom
    return x0, y0, x1, y1
