"""TIFFs that Pillow cannot decode, read with ``tifffile``: the first page, as one small 8-bit image.

Scientific, medical and microscopy TIFFs are often float64, float16, many-channel or compressed with
codecs Pillow lacks. :func:`decode_tiff` reads them the way :mod:`viscurate.media.decode` reads
everything else: from memory, first page only, bounded before anything is allocated (the page's
declared pixels against Pillow's ``MAX_IMAGE_PIXELS``, its decoded bytes against 8 bytes per allowed
pixel), and reduced to the same small image (longer side <= 256, BOX filter):

- channels: 1 -> grey; 2 -> the first, as grey; 3 or more -> the first three, as RGB;
- values, one range for the page (all kept channels): floats (complex: their magnitude) within 0..1 are
  multiplied by 255, within 0..255 kept, otherwise stretched min..max, NaN/inf -> 0; ``uint8`` kept;
  ``int8`` shifted by 128; other integers within 0..65535 divided by 256 (the high byte, as Pillow's
  16-bit modes), otherwise stretched; booleans -> 0/255.

A page whose compression (or predictor) needs the optional ``imagecodecs`` package raises
:class:`~viscurate.media.small.DecodeFailure` with reason ``unsupported``: the file may be fine, viscurate cannot read it.

>>> import io, numpy as np, tifffile
>>> buf = io.BytesIO(); tifffile.imwrite(buf, np.linspace(0, 1, 60).reshape(6, 10))  # float64
>>> page = decode_tiff(buf.getvalue(), side=256)
>>> page.small.mode, page.small.size, page.facts
('L', (10, 6), {'dtype': 'float64', 'channels': 1, 'compression': 'NONE'})
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .small import DecodeFailure, small_size

#: The four ways a TIFF (classic or BigTIFF, either byte order) begins.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Decoded bytes of a first page allowed per pixel of Pillow's pixel limit (one float64 channel).
BYTES_PER_ALLOWED_PIXEL = 8

#: Compressions every libtiff decodes (Pillow's included): a file Pillow opened but could not decode
#: with one of these is broken, whatever tifffile lacks (names as tifffile spells them).
LIBTIFF_CODECS = frozenset({"NONE", "CCITTRLE", "CCITTFAX3", "CCITTFAX4", "LZW", "JPEG", "ADOBE_DEFLATE",
                            "PACKBITS", "DEFLATE"})

_EXIF_TAGS = (0x0112, 0x010F, 0x0110)  # orientation, make, model: what a BigTIFF's own tags can tell


def is_tiff(data: bytes) -> bool:
    """Whether ``data`` starts like a TIFF file.

    >>> is_tiff(b"II*\\x00rest"), is_tiff(b"\\x89PNG")
    (True, False)
    """
    return data[:4] in TIFF_MAGIC


@dataclass
class TiffPage:
    """The first page of a TIFF, as far as :func:`decode_tiff` got. ``small`` is not yet upright."""

    width: int
    height: int
    pages: int
    exif: Image.Exif
    facts: dict[str, Any] = field(default_factory=dict)  # the profile's ``tiff`` group
    small: Image.Image | None = None
    single_channel: bool = False
    failure: DecodeFailure | None = None  # why ``small`` is None: the header was read, the pixels were not


def decode_tiff(data: bytes, side: int, max_pixels: int | None = None) -> TiffPage:
    """The first page of the TIFF ``data`` reduced to a small 8-bit image (see the module's doc).

    ``max_pixels``: refuse pages with more pixels (default: Pillow's ``Image.MAX_IMAGE_PIXELS``).
    Raises :class:`~viscurate.media.small.DecodeFailure` (``not_an_image``) when tifffile cannot parse the header. When the
    header is read but the pixels are not, the page's ``failure`` says why: ``decompression_bomb``,
    ``truncated``, ``decode_error`` or ``unsupported``.
    """
    import tifffile

    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - tifffile refuses a broken header in many ways
        raise DecodeFailure("not_an_image", f"tifffile cannot read it: {_text(e)}") from None
    with tif:
        try:
            page = tif.pages[0]
            info = TiffPage(int(page.imagewidth), int(page.imagelength), _page_count(tif), _exif(data, page))
            info.facts = {"dtype": str(page.dtype) if page.dtype is not None else None,
                          "channels": int(page.samplesperpixel), "compression": _name(page.compression)}
        except Exception as e:  # noqa: BLE001
            raise DecodeFailure("not_an_image", f"tifffile cannot read its first page: {_text(e)}") from None
        try:
            _check_before_reading(page, info, len(data), limit)
            pixels = _read_pixels(page)
            info.small, info.single_channel = _small_8bit(_channels(pixels, page.shaped), side)
        except DecodeFailure as f:
            info.failure = f
    return info


# --------------------------------------------------------------------------------------------------
# header


def _page_count(tif: Any) -> int:
    try:
        return max(1, len(tif.pages))
    except Exception:  # noqa: BLE001 - a broken later page: the first may still decode
        return 1


def _name(value: Any) -> str:
    return getattr(value, "name", None) or str(value)


def _text(e: BaseException) -> str:
    msg = str(e).strip()
    return msg if msg else type(e).__name__


def _exif(data: bytes, page: Any) -> Image.Exif:
    """The file's first IFD as a Pillow ``Exif`` mapping (what :func:`~viscurate.media.exif.exif_fields` reads).

    Pillow parses a classic TIFF's IFD itself (EXIF is one); for a BigTIFF, which it cannot, the few
    tags the profile keeps are copied from tifffile's reading of the page.
    """
    exif = Image.Exif()
    try:
        exif.load(data)
        return exif
    except Exception:  # noqa: BLE001 - a BigTIFF, or tags Pillow cannot parse
        exif = Image.Exif()
    for code in _EXIF_TAGS:
        try:
            tag = page.tags.get(code)
            if tag is not None:
                exif[code] = tag.value
        except Exception:  # noqa: BLE001 - unreadable tag: absent
            pass
    return exif


def _check_before_reading(page: Any, info: TiffPage, size: int, limit: int | None) -> None:
    """Refuse what must not be decoded, from the header alone: nothing is allocated before this."""
    pixels = info.width * info.height
    if limit and pixels > limit:
        raise DecodeFailure("decompression_bomb", f"Image size ({pixels} pixels) exceeds limit of {limit} pixels")
    if page.dtype is None:
        raise DecodeFailure("unsupported", f"TIFF samples of {page.bitspersample} bits, format "
                                           f"{_name(page.sampleformat)}, cannot be read")
    nbytes = int(np.prod(page.shaped, dtype=np.int64)) * page.dtype.itemsize
    if limit and nbytes > limit * BYTES_PER_ALLOWED_PIXEL:
        raise DecodeFailure("decompression_bomb", f"the first page would take {nbytes} bytes decoded, more than "
                                                  f"{limit * BYTES_PER_ALLOWED_PIXEL}")
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        if count and offset + count > size:
            raise DecodeFailure("truncated", f"image file is truncated (pixel data ends at byte {offset + count}, "
                                             f"the file has {size})")


def _read_pixels(page: Any) -> np.ndarray:
    try:
        return page.asarray()
    except Exception as e:  # noqa: BLE001 - a missing codec, or broken compressed data
        if isinstance(e, ImportError) or "imagecodecs" in str(e):
            what = f"compression {_name(page.compression)}"
            if _name(page.predictor) not in ("NONE", "1"):
                what += f" (predictor {_name(page.predictor)})"
            raise DecodeFailure("unsupported", f"TIFF {what} needs the imagecodecs package, which is not "
                                               f"installed") from None
        reason = "truncated" if isinstance(e, EOFError) or "truncat" in str(e).lower() else "decode_error"
        raise DecodeFailure(reason, f"tifffile: {_text(e)}") from None


# --------------------------------------------------------------------------------------------------
# pixels


def _channels(pixels: np.ndarray, shaped: tuple[int, ...]) -> np.ndarray:
    """The page's pixels as (height, width, 1 or 3): the first plane of a volume, the channels kept.

    ``shaped`` is tifffile's (separate samples, depth, height, width, interleaved samples).
    """
    a = pixels.reshape(shaped)[:, 0]  # first plane of a volumetric page
    a = np.moveaxis(a[:, :, :, 0], 0, -1) if shaped[0] > 1 else a[0]
    keep = 3 if a.shape[-1] >= 3 else 1
    return a[..., :keep]


def _small_8bit(a: np.ndarray, side: int) -> tuple[Image.Image, bool]:
    """(height, width, 1 or 3) of any dtype -> small 8-bit ``L``/``RGB`` image; and whether it is grey.

    Each channel is reduced in float32 *before* the values are scaled to 8 bits (one float32 copy of
    one channel at a time, never a float copy of the whole page).
    """
    h, w, n = a.shape
    size = small_size(w, h, side)
    kind = a.dtype.kind
    lo, hi = np.inf, -np.inf
    planes = []
    for c in range(n):
        ch = np.abs(a[..., c]) if kind == "c" else a[..., c]
        f = np.ascontiguousarray(ch, dtype=np.float32)
        if kind in "fc":
            np.nan_to_num(f, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        if f.size:
            lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
        im = Image.fromarray(f)
        if im.size != size:
            im = im.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
        planes.append(np.asarray(im, dtype=np.float32))
    scale, offset = _to_8bit(a.dtype, lo, hi)
    out = [np.clip(p * scale + offset + 0.5, 0, 255).astype(np.uint8) for p in planes]
    if n == 1:
        return Image.fromarray(out[0], "L"), True
    return Image.fromarray(np.dstack(out), "RGB"), False


def _to_8bit(dtype: np.dtype, lo: float, hi: float) -> tuple[float, float]:
    """``(scale, offset)`` with ``v * scale + offset`` in 0..255 for the page's values ``lo..hi``.

    >>> _to_8bit(np.dtype("float64"), 0.0, 0.5), _to_8bit(np.dtype("uint16"), 0, 4095)
    ((255.0, 0.0), (0.00390625, 0.0))
    >>> _to_8bit(np.dtype("float32"), -1.0, 1.0)
    (127.5, 127.5)
    """
    kind = dtype.kind
    if kind == "b":
        return 255.0, 0.0
    if kind == "u" and dtype.itemsize == 1:
        return 1.0, 0.0
    if kind == "i" and dtype.itemsize == 1:
        return 1.0, 128.0
    if not np.isfinite(lo) or not np.isfinite(hi):  # an empty page
        return 0.0, 0.0
    if kind in "fc":
        if lo >= 0.0 and hi <= 1.0:
            return 255.0, 0.0
        if lo >= 0.0 and hi <= 255.0:
            return 1.0, 0.0
    elif lo >= 0 and hi <= 0xFFFF:
        return 1.0 / 256.0, 0.0
    if hi <= lo:
        return 0.0, 0.0
    scale = 255.0 / (hi - lo)
    return scale, -lo * scale
