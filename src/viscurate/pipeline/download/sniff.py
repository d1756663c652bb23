"""What the first bytes of a body say it is: the image formats viscurate decodes, by their signatures.

The bytes decide, not the ``Content-Type``: servers label JPEGs ``text/plain`` or
``application/octet-stream`` and serve HTML error pages as ``image/jpeg``.

>>> image_extension(bytes.fromhex("ffd8ffe0") + b"JFIF"), image_extension(b"<!doctype html>")
('.jpg', None)
"""
from __future__ import annotations

#: Bytes needed to recognise every format below.
SNIFF_BYTES = 32

_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"),
    (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"), (b"II+\x00", ".tif"), (b"MM\x00+", ".tif"), (b"BM", ".bmp"),
    (b"\x00\x00\x01\x00", ".ico"), (b"\xff\x0a", ".jxl"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", ".jxl"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", ".jp2"), (b"\xff\x4f\xff\x51", ".j2k"), (b"8BPS", ".psd"),
    (b"P1", ".pbm"), (b"P2", ".pgm"), (b"P3", ".ppm"), (b"P4", ".pbm"), (b"P5", ".pgm"), (b"P6", ".ppm"),
    (b"qoif", ".qoi"), (b"DDS ", ".dds"),
)
_FTYP_BRANDS = {b"heic": ".heic", b"heix": ".heic", b"hevc": ".heic", b"heim": ".heic", b"heis": ".heic",
                b"mif1": ".heif", b"msf1": ".heif", b"avif": ".avif", b"avis": ".avif"}


def image_extension(head: bytes) -> str | None:
    """The file ending of the image format ``head`` starts with, or ``None`` when it is not an image."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12])
    for prefix, ext in _PREFIXES:
        if head.startswith(prefix):
            if ext in (".pbm", ".pgm", ".ppm") and (len(head) < 3 or head[2:3] not in b" \t\r\n#"):
                return None  # "P5" then whitespace; "P1ease..." is text
            if ext == ".bmp" and len(head) >= 14 and head[6:10] != b"\x00\x00\x00\x00":
                return None  # a BMP's reserved bytes are zero; "BM..." text is not
            return ext
    return None
