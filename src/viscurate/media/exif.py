"""EXIF fields of the profile, read defensively.

Only five facts are kept: ``orientation`` (tag 0x0112), ``datetime_original`` (0x9003 in the Exif
IFD, rewritten as ISO ``YYYY-MM-DDTHH:MM:SS``), ``make`` (0x010F), ``model`` (0x0110) and ``gps`` (the
GPS IFD exists; ``True`` when it holds a latitude and a longitude). A key is present only when the file
has that tag with a usable value. Corrupt EXIF never raises: each tag is read on its own, and a tag
that cannot be read is simply absent.

>>> parse_exif_datetime("2021:07:04 18:30:00")
'2021-07-04T18:30:00'
>>> parse_exif_datetime("0000:00:00 00:00:00") is None
True
"""
from __future__ import annotations

import re
from typing import Any

from PIL import Image

TAG_ORIENTATION = 0x0112
TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_EXIF_IFD = 0x8769
TAG_GPS_IFD = 0x8825
TAG_DATETIME_ORIGINAL = 0x9003
GPS_LATITUDE = 2
GPS_LONGITUDE = 4

_DT = re.compile(r"\s*(\d{4})[:\-/.](\d{2})[:\-/.](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


def parse_exif_datetime(value: Any) -> str | None:
    """EXIF ``YYYY:MM:DD HH:MM:SS`` -> ``YYYY-MM-DDTHH:MM:SS``; ``None`` when it is not a real date."""
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if not isinstance(value, str):
        return None
    m = _DT.match(value)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups())
    if not (1 <= y <= 9999 and 1 <= mo <= 12 and 1 <= d <= 31 and h <= 24 and mi <= 59 and s <= 60):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", " ").strip()
    if not value or len(value) > 256:
        return None
    return value


def _orientation(value: Any) -> int | None:
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def exif_fields(exif: Image.Exif | None) -> dict[str, Any]:
    """The profile's ``exif`` sub-document from a Pillow ``Exif`` mapping (empty dict when none)."""
    out: dict[str, Any] = {}
    if exif is None:
        return out
    try:
        o = _orientation(exif.get(TAG_ORIENTATION))
        if o is not None:
            out["orientation"] = o
    except Exception:  # noqa: BLE001 - corrupt EXIF: the tag is absent
        pass
    try:
        if TAG_EXIF_IFD in exif:
            dt = parse_exif_datetime(exif.get_ifd(TAG_EXIF_IFD).get(TAG_DATETIME_ORIGINAL))
            if dt is not None:
                out["datetime_original"] = dt
    except Exception:  # noqa: BLE001
        pass
    for key, tag in (("make", TAG_MAKE), ("model", TAG_MODEL)):
        try:
            t = _text(exif.get(tag))
            if t is not None:
                out[key] = t
        except Exception:  # noqa: BLE001
            pass
    try:
        if TAG_GPS_IFD in exif:
            gps = exif.get_ifd(TAG_GPS_IFD)
            out["gps"] = bool(gps.get(GPS_LATITUDE) is not None and gps.get(GPS_LONGITUDE) is not None)
    except Exception:  # noqa: BLE001
        pass
    return out


def read_exif(im: Image.Image, pixels_loaded: bool) -> Image.Exif | None:
    """The image's EXIF, or ``None``. Never raises and never decodes pixels.

    Pillow's PNG reader looks for an ``eXIf`` chunk after the pixel data by loading the image, so when
    the pixels were not (or could not be) loaded only EXIF already found in the header is read.
    """
    try:
        if pixels_loaded or im.format in ("JPEG", "MPO", "TIFF", "WEBP"):
            return im.getexif()
        raw = im.info.get("exif")
        if isinstance(raw, (bytes, bytearray)) and raw:
            ex = Image.Exif()
            ex.load(bytes(raw))
            return ex
    except Exception:  # noqa: BLE001 - corrupt EXIF is treated as no EXIF
        return None
    return None
