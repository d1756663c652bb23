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

The DCT is two products with a precomputed (unnormalized, like ``scipy.fftpack.dct``) DCT-II matrix;
the scale of the coefficients does not change which are above the median.
"""
from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

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
    """``phash``, ``dhash`` and ``phash_flip`` of an ``L`` image (one DCT for both pHashes)."""
    block = dct_block(grey)
    return {"phash": phash_from_block(block), "dhash": dhash(grey), "phash_flip": phash_flip_from_block(block)}
