"""The size of the small image every measure is computed on, and why a decode failed: what both image
readers (:mod:`viscurate.media.decode` with Pillow, :mod:`viscurate.media.tiff` with tifffile) share."""
from __future__ import annotations

__all__ = ["SMALL_SIDE", "small_size", "DecodeFailure"]

#: Longer side of the small image, in pixels.
SMALL_SIDE = 256


def small_size(w: int, h: int, side: int = SMALL_SIDE) -> tuple[int, int]:
    """Longer side <= ``side``, aspect kept, never upscaled, never 0.

    >>> small_size(4000, 3000)
    (256, 192)
    >>> small_size(4000, 10)
    (256, 1)
    >>> small_size(100, 50)
    (100, 50)
    """
    longer = max(w, h)
    if longer <= side:
        return w, h
    return max(1, round(w * side / longer)), max(1, round(h * side / longer))


class DecodeFailure(Exception):
    """Pixels could not be decoded; ``reason`` is one of the profile's failure flags."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
