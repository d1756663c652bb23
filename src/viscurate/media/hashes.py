"""Content hashes: sha256 of the bytes, and 64-bit perceptual hashes of the small image.

``phash`` and ``dhash`` follow the definitions (and the bit order) of ``imagehash.phash`` and
``imagehash.dhash`` with their default sizes:

- pHash: grey image resized to 32x32 with LANCZOS, 2-D DCT-II, the top-left 8x8 block of
  coefficients (lowest frequencies, DC included), one bit per coefficient: ``coef > median(block)``.
- dHash: grey image resized to 9x8 (w x h) with LANCZOS, one bit per pixel: ``right > left``.

Bits are read row by row, the first bit is the most significant; the result is 16 lowercase hex
characters, so ``str(imagehash.phash(img))`` and :func:`phash` agree on the same grey pixels.

``phash_flip`` is invariant under horizontal mirroring. Mirroring the 32x32 image left-right maps the
DCT coefficient ``C[v, u]`` to ``(-1)**u * C[v, u]`` (``u`` is the horizontal frequency), so it only
negates the odd-``u`` columns. ``phash_flip`` takes the same 8x8 block, replaces those columns by
their absolute values and thresholds at the block's median: the block, hence the hash, is the same
for an image and its mirror (up to resampling noise).

``phash_trim`` is the pHash of the picture inside its frame (:func:`viscurate.media.borders.content_box`:
letterbox and pillarbox bars, a screenshot's window trimmed), present only when there was a frame to trim.

``phash_turns`` holds the pHashes of the image turned by 180, 90 and 270 degrees and mirrored left-right,
from the same DCT block: turning the 32x32 image by 90 degrees transposes the block and negates its odd
rows or columns, turning it by 180 negates the coefficients whose two frequencies have odd sum, mirroring
negates the odd columns. An image and its turned copy have one of these within 0-2 bits of the other's
hash (GCompris photos), where their plain hashes are ~32 bits apart.

The DCT is two products with a precomputed (unnormalized, like ``scipy.fftpack.dct``) DCT-II matrix;
the scale of the coefficients does not change which are above the median.
"""
from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from .borders import content_box

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
_N = HASH_SIZE * HIGHFREQ_FACTOR


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * x + 1) / (2 * n))


# only the first HASH_SIZE rows are ever needed: D8 @ X @ D8.T is the top-left block of D X D^T
_DCT8 = np.ascontiguousarray(_dct_matrix(_N)[:HASH_SIZE])
_DCT8_T = np.ascontiguousarray(_DCT8.T)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bits_to_hex(bits: np.ndarray) -> str:
    """Boolean array (row-major, first bit most significant) -> lowercase hex.

    >>> bits_to_hex(np.array([True] + [False] * 63))
    '8000000000000000'
    """
    return np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes().hex()


def _grey(img: Image.Image) -> Image.Image:
    return img if img.mode == "L" else img.convert("L")


def dct_block(img: Image.Image) -> np.ndarray:
    """Top-left 8x8 block of the 2-D DCT-II of the grey image resized to 32x32 (LANCZOS)."""
    px = np.asarray(_grey(img).resize((_N, _N), Image.Resampling.LANCZOS), dtype=np.float64)
    # Rounding removes the ~1e-10 noise of the matrix products: coefficients that are exactly 0
    # (e.g. every vertical frequency of an image that is constant down its columns) stay exactly 0,
    # so they compare with the median the way scipy's DCT makes them compare in imagehash.
    return np.round(_DCT8 @ px @ _DCT8_T, 6)


def phash_from_block(block: np.ndarray) -> str:
    return bits_to_hex(block > np.median(block))


def phash_flip_from_block(block: np.ndarray) -> str:
    b = block.copy()
    b[:, 1::2] = np.abs(b[:, 1::2])
    return bits_to_hex(b > np.median(b))


def phash(img: Image.Image) -> str:
    return phash_from_block(dct_block(img))


def phash_flip(img: Image.Image) -> str:
    return phash_flip_from_block(dct_block(img))


_ODD = np.arange(HASH_SIZE) % 2 == 1
_U = np.broadcast_to(_ODD[None, :], (HASH_SIZE, HASH_SIZE))  # odd horizontal frequencies
_V = np.broadcast_to(_ODD[:, None], (HASH_SIZE, HASH_SIZE))  # odd vertical frequencies
#: Turns by 180, 90 and 270 degrees, and the left-right mirror, as (transpose the block?, which
#: coefficients change sign).
_TURNS = ((False, _U ^ _V), (True, _U), (True, _V), (False, _U))


def turned_from_block(block: np.ndarray) -> str:
    """The pHashes of the image turned by 180, 90 and 270 degrees and mirrored left-right, from its DCT
    block (no new DCT), as one string of 4 x 16 hex characters."""
    out = []
    for transpose, negate in _TURNS:
        b = (block.T if transpose else block).copy()
        b[negate] *= -1
        out.append(phash_from_block(b))
    return "".join(out)


def turns(stored: str) -> list[str]:
    """The four hashes of a ``phash_turns`` string.

    >>> turns("0" * 16 + "1" * 16 + "2" * 16 + "3" * 16)[1]
    '1111111111111111'
    """
    return [stored[k:k + 16] for k in range(0, len(stored) - 15, 16)]


def content_block(grey: Image.Image, block: np.ndarray) -> tuple[np.ndarray, bool]:
    """The DCT block of the picture inside its frame (``block``, the whole image's, when there is no
    frame), and whether there was one."""
    px = np.asarray(_grey(grey))
    box = content_box(px)
    if box == (0, 0, px.shape[1], px.shape[0]):
        return block, False
    return dct_block(Image.fromarray(px[box[1]:box[3], box[0]:box[2]])), True


def dhash(img: Image.Image) -> str:
    px = np.asarray(_grey(img).resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS))
    return bits_to_hex(px[:, 1:] > px[:, :-1])


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of the same length.

    >>> hamming("ff00", "0f01")
    5
    """
    return (int(a, 16) ^ int(b, 16)).bit_count()


def perceptual_hashes(grey: Image.Image) -> dict[str, str]:
    """``phash``, ``dhash``, ``phash_flip``, ``phash_turns`` (one DCT for the three) and, when the image has
    a frame, ``phash_trim`` of an ``L`` image."""
    block = dct_block(grey)
    out = {"phash": phash_from_block(block), "dhash": dhash(grey), "phash_flip": phash_flip_from_block(block)}
    inside, framed = content_block(grey, block)
    if framed:
        out["phash_trim"] = phash_from_block(inside)
    out["phash_turns"] = turned_from_block(block)
    return out
