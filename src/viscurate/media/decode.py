"""Safe decoding of untrusted image bytes into one small, upright, 8-bit image.

Everything the profile measures is computed on the *small image*: the first frame of the file,
EXIF-orientation applied, converted to 8-bit ``"RGB"`` (or ``"L"`` for single-channel sources) and
downscaled so that its longer side is at most :data:`SMALL_SIDE` (256) pixels, aspect kept, never
upscaled. It is made the cheapest way that gives those pixels:

- JPEG (and MPO) are decoded with ``Image.draft`` so that libjpeg scales the DCT by 1/2, 1/4 or 1/8
  while keeping the longer side at least 256 px: a 24 MP photo is decoded as ~0.4 MP.
- other formats are decoded at full size.
- the downscale is Pillow's ``resize`` with the BOX filter and ``reducing_gap=2`` (an exact integer
  box ``reduce`` first while the image is more than twice the target, as ``Image.thumbnail`` does):
  the cheapest antialiased filter, and an area average, so measures such as ``blur`` agree with an
  independent area resampler (OpenCV's ``INTER_AREA``).
- the downscale happens before the EXIF transpose and before colour conversions wherever these
  commute with it, so that they run on the small image.

Conversions (documented in ``docs/profile.md``): ``1`` -> ``L`` (0/255); ``P``/``PA`` -> ``RGB(A)``;
``CMYK``/``YCbCr``/``LAB``/``HSV``/``RGBX`` -> ``RGB`` (Pillow's conversions); alpha (``LA``, ``RGBA``,
``PA``, palette or colour-key transparency) is composited on white; 16-bit integers (``I;16*``, and
``I`` whose values fit 0..65535) keep their high byte (``v >> 8``: scaled, not clipped); other ``I``
and ``F`` are scaled by their range (``F`` already within 0..1 is multiplied by 255, ``F`` within
0..255 is kept, anything else is stretched min..max to 0..255).

Safety: the bytes are decoded from memory; Pillow's ``Image.MAX_IMAGE_PIXELS`` limit stays on and its
``DecompressionBombWarning`` (more than the limit, less than twice it) is an error here too; the
width/height of such a bomb are still read from its header. ``ImageFile.LOAD_TRUNCATED_IMAGES`` is
never touched: a truncated file is reported, not half-decoded. EPS is not decoded (Pillow would run
Ghostscript, an external program, on untrusted input). :func:`decode_image` never raises for bad input.

TIFFs Pillow cannot decode (float64, float16, more than four channels, codecs its libtiff lacks) get a
second chance with tifffile (:mod:`viscurate.media.tiff`), under the same limits; one that needs a codec
neither has fails as ``unsupported``, not as corrupt.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .exif import exif_fields, read_exif
from .small import SMALL_SIDE, DecodeFailure, small_size
from .tiff import LIBTIFF_CODECS, decode_tiff, is_tiff

#: Bytes of a too-large file that are read to parse its header.
HEADER_BYTES = 1 << 20

#: Formats whose pixels are never decoded (external programs would run on the bytes).
UNSAFE_FORMATS = frozenset({"EPS"})

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SINGLE_CHANNEL = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S"})
_OPAQUE_CHECK_PIXELS = 1 << 20
_RESIZABLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


@dataclass
class Decoded:
    """What :func:`decode_image` learned about one file. ``small`` is ``None`` when pixels failed."""

    format: str | None = None
    mode: str | None = None
    width: int | None = None  # upright (after EXIF orientation)
    height: int | None = None
    frames: int | None = None
    exif: dict[str, Any] = field(default_factory=dict)
    small: Image.Image | None = None  # upright, 8-bit "RGB" or "L", longer side <= SMALL_SIDE
    single_channel: bool = False  # the stored image has one colour channel
    stored_size: tuple[int, int] | None = None  # (width, height) as stored, before orientation
    failure: str | None = None  # failure flag (truncated, not_an_image, ..., unsupported)
    error: str | None = None  # "<failure>: <message>"
    tiff: dict[str, Any] = field(default_factory=dict)  # dtype/channels/compression when tifffile read it


# --------------------------------------------------------------------------------------------------
# opening


def open_image(data: bytes) -> Image.Image:
    """``Image.open`` on in-memory bytes, with ``DecompressionBombWarning`` raised as an error.

    Raises :class:`DecodeFailure` (``not_an_image`` / ``decompression_bomb``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeFailure("decompression_bomb", str(e)) from None
    except UnidentifiedImageError:
        raise DecodeFailure("not_an_image", "cannot identify image file") from None
    except Exception as e:  # noqa: BLE001 - a plugin failing on a garbled or cut header
        reason = "truncated" if _classify_load_error(e) == "truncated" else "not_an_image"
        raise DecodeFailure(reason, _describe(e)) from None


def header_only(data: bytes) -> Image.Image | None:
    """Parse the header with the format plugins but skip the decompression-bomb check.

    Used only to report the width/height of a file that :func:`open_image` refused as a bomb (or of a
    too-large file's first bytes): the returned image's pixels must never be loaded.
    """
    prefix = data[:16]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fmt in list(Image.ID):
            try:
                factory, accept = Image.OPEN[fmt]
                ok = not accept or accept(prefix)
                if not ok or isinstance(ok, str):
                    continue
                return factory(io.BytesIO(data), "")
            except Exception:  # noqa: BLE001 - not this format, or a bomb check inside the plugin
                continue
    return None


def _describe(e: BaseException) -> str:
    msg = str(e).strip()
    return msg if msg else type(e).__name__


_TRUNCATION_HINTS = ("truncated", "not enough data", "premature end", "unexpected end", "buffer is not large enough")


def _classify_load_error(e: BaseException) -> str:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "decompression_bomb"
    if isinstance(e, EOFError):
        return "truncated"
    msg = str(e).lower()
    if any(h in msg for h in _TRUNCATION_HINTS):
        return "truncated"
    return "decode_error"


# --------------------------------------------------------------------------------------------------
# geometry


def _draft_size(w: int, h: int, side: int) -> tuple[int, int]:
    """Size to ask ``Image.draft`` for so that the decoded longer side stays >= ``side``."""
    longer = max(w, h)
    return max(1, -(-w * side // longer)), max(1, -(-h * side // longer))


def _resize(im: Image.Image, side: int) -> Image.Image:
    size = small_size(im.width, im.height, side)
    if size == im.size:
        return im
    return im.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


# --------------------------------------------------------------------------------------------------
# conversions


def _high_bit_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float single-channel image -> 8-bit ``L``, scaled (never clipped)."""
    arr = np.asarray(im)
    if arr.ndim != 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.dtype.kind in "ui" and arr.dtype.itemsize == 1:
        return Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8, copy=False)), "L")
    if arr.dtype.kind == "f":
        a = arr.astype(np.float32, copy=False)
        finite = np.isfinite(a)
        if not finite.all():
            a = np.where(finite, a, 0.0).astype(np.float32)
        lo = float(a.min()) if a.size else 0.0
        hi = float(a.max()) if a.size else 0.0
        if lo >= 0.0 and hi <= 1.0:
            out = a * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            out = a
        else:
            out = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "L")
    # integers
    lo = int(arr.min()) if arr.size else 0
    hi = int(arr.max()) if arr.size else 0
    if lo >= 0 and hi <= 0xFFFF:
        out8 = (arr.astype(np.uint16, copy=False) >> 8).astype(np.uint8)
    elif hi > lo:
        out8 = ((arr.astype(np.float64) - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)
    else:
        out8 = np.zeros(arr.shape, np.uint8)
    return Image.fromarray(np.ascontiguousarray(out8), "L")


def _composite_on_white(im: Image.Image) -> Image.Image:
    """``LA``/``RGBA`` -> ``L``/``RGB`` composited on a white background (vectorized)."""
    a = np.asarray(im)
    alpha = a[..., -1:].astype(np.uint16)
    colour = a[..., :-1].astype(np.uint16)
    out = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    out = out.astype(np.uint8)
    if out.shape[-1] == 1:
        return Image.fromarray(np.ascontiguousarray(out[..., 0]), "L")
    return Image.fromarray(np.ascontiguousarray(out), "RGB")


def to_small_8bit(im: Image.Image, side: int = SMALL_SIDE) -> Image.Image:
    """Loaded frame (any mode) -> 8-bit ``L`` or ``RGB`` whose longer side is <= ``side``.

    The result is always a new image (the caller may close ``im``).
    """
    source = im
    mode = im.mode
    has_key = "transparency" in im.info and mode in ("L", "RGB", "P", "1")
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if (mode == "PA" or has_key) else "RGB")
        mode = im.mode
        has_key = False
    elif mode.startswith("I") or mode == "F":
        im = _high_bit_to_l(im)
        mode = "L"
    elif mode in ("La", "RGBa"):
        im = im.convert("LA" if mode == "La" else "RGBA")
        mode = im.mode
    elif mode not in _RESIZABLE:
        try:
            im = im.convert("RGB")
        except Exception:  # noqa: BLE001 - exotic mode: its first band, as grey
            im = _high_bit_to_l(im.getchannel(0) if len(im.getbands()) > 1 else im)
        mode = im.mode
    if has_key:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA" and im.width * im.height > _OPAQUE_CHECK_PIXELS and im.getchannel("A").getextrema()[0] == 255:
        # Resizing RGBA premultiplies alpha over the full image; a fully opaque one (most RGBA
        # wallpapers and screenshots) is resized as RGB instead, at about half the cost.
        im = im.convert("RGB")
        mode = "RGB"

    im = _resize(im, side)

    if mode in ("LA", "RGBA"):
        return _composite_on_white(im)
    if mode in ("L", "RGB"):
        return im.copy() if im is source else im
    return im.convert("RGB")


# --------------------------------------------------------------------------------------------------
# the whole decode


def _upright(w: int, h: int, orientation: int | None) -> tuple[int, int]:
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _header_facts(out: Decoded, im: Image.Image, loaded: bool) -> int | None:
    """Fill format/mode/width/height/exif from an opened image; return the orientation to apply."""
    out.format = im.format or None
    out.mode = im.mode or None
    out.exif = exif_fields(read_exif(im, loaded))
    orientation = out.exif.get("orientation")
    out.width, out.height = _upright(int(im.width), int(im.height), orientation)
    return orientation


def decode_image(data: bytes, side: int = SMALL_SIDE) -> Decoded:
    """Decode untrusted bytes into a :class:`Decoded`. Never raises for bad input."""
    out = Decoded()
    if not data:
        out.failure, out.error = "empty_file", "empty_file: the file has no bytes"
        return out
    try:
        im = open_image(data)
    except DecodeFailure as f:
        out.failure, out.error = f.reason, f"{f.reason}: {f}"
        if f.reason == "not_an_image" and is_tiff(data):  # float64, float16, 5 channels...
            _decode_with_tifffile(data, out, side)
        elif f.reason == "decompression_bomb":
            hdr = header_only(data)
            if hdr is not None:
                try:
                    _header_facts(out, hdr, loaded=False)
                except Exception:  # noqa: BLE001
                    pass
        return out

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            _decode_opened(im, out, side)
    except Exception as e:  # noqa: BLE001 - anything a hostile file can provoke
        out.small = None
        out.failure = e.reason if isinstance(e, DecodeFailure) else _classify_load_error(e)
        out.error = f"{out.failure}: {_describe(e)}"
        try:
            if not out.exif:
                out.exif = exif_fields(read_exif(im, False))
        except Exception:  # noqa: BLE001
            pass
        if out.stored_size is not None:
            out.width, out.height = _upright(*out.stored_size, out.exif.get("orientation"))
        if out.failure == "decode_error" and is_tiff(data):  # e.g. a codec Pillow's libtiff lacks
            _decode_with_tifffile(data, out, side)
    finally:
        try:
            im.close()
        except Exception:  # noqa: BLE001
            pass
    return out


def _decode_opened(im: Image.Image, out: Decoded, side: int) -> None:
    out.format = im.format or None
    out.mode = im.mode or None
    w0, h0 = int(im.width), int(im.height)
    out.stored_size = (w0, h0)
    out.width, out.height = w0, h0
    out.single_channel = im.mode in _SINGLE_CHANNEL
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w0 * h0 > limit:
        # normally already refused by open_image (the warning is an error there); this check does
        # not depend on the process-wide warning filters (threads may race on them)
        raise DecodeFailure("decompression_bomb", f"Image size ({w0 * h0} pixels) exceeds limit of {limit} pixels")

    if out.format in UNSAFE_FORMATS:
        out.exif = exif_fields(read_exif(im, False))
        raise DecodeFailure("not_an_image", f"{out.format} pixels are not decoded (needs an external program)")

    try:
        out.frames = max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - broken (or bomb-sized) later frame: the first may still decode
        out.frames = 1
    try:
        if im.tell() != 0:
            im.seek(0)
    except Exception:  # noqa: BLE001
        pass

    if out.format in ("JPEG", "MPO") and max(w0, h0) >= 2 * side:
        im.draft("RGB", _draft_size(w0, h0, side))
    im.load()

    stored_mode = out.mode
    orientation = _header_facts(out, im, loaded=True)
    # draft may shrink the image: the stored geometry and mode are the header's
    out.mode = stored_mode
    out.width, out.height = _upright(w0, h0, orientation)

    small = to_small_8bit(im, side)
    t = _TRANSPOSE.get(orientation) if orientation is not None else None
    if t is not None:
        small = small.transpose(t)
    out.small = small


def _decode_with_tifffile(data: bytes, out: Decoded, side: int) -> None:
    """Second chance for a TIFF Pillow could not decode: ``out`` (Pillow's failure) is overwritten with
    what tifffile reads, or left as it is when tifffile cannot parse the file either."""
    pillow_said = out.error.partition(": ")[2] if out.error and out.format else ""  # Pillow opened it
    try:
        page = decode_tiff(data, side)
    except DecodeFailure:
        return
    if (pillow_said and page.failure is not None and page.failure.reason == "unsupported"
            and page.facts.get("compression") in LIBTIFF_CODECS):
        return  # Pillow's libtiff has that codec and still failed: the data is broken, as Pillow said
    out.format = "TIFF"
    out.frames = page.pages
    out.tiff = page.facts
    out.stored_size = (page.width, page.height)
    out.exif = exif_fields(page.exif)
    orientation = out.exif.get("orientation")
    out.width, out.height = _upright(page.width, page.height, orientation)
    out.single_channel = page.single_channel
    if page.failure is not None:
        out.small = None
        out.failure = page.failure.reason
        out.error = f"{out.failure}: {page.failure}" + (f" (Pillow: {pillow_said})" if pillow_said else "")
        return
    small = page.small
    t = _TRANSPOSE.get(orientation) if orientation is not None else None
    out.small = small.transpose(t) if t is not None and small is not None else small
    out.failure = out.error = None


def decode_header(prefix: bytes) -> Decoded:
    """Format/mode/upright size from the first bytes of a file that is not decoded (too large)."""
    out = Decoded()
    try:
        im = header_only(prefix)
        if im is not None:
            _header_facts(out, im, loaded=False)
    except Exception:  # noqa: BLE001
        pass
    return out
