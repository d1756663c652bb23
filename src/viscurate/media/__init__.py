"""viscurate.media: safe decoding and the profile of every image (pure functions over bytes/pixels).

>>> from viscurate.media import profile_file, profile_bytes, QualityThresholds
>>> profile_bytes(b"not an image")["issues"]
['corrupt', 'not_an_image']
"""
from .decode import Decoded, decode_image
from .exif import exif_fields, parse_exif_datetime
from .hashes import dhash, hamming, perceptual_hashes, phash, phash_flip, sha256_hex
from .profile import DEFAULT_MAX_BYTES, FAILURE_FLAGS, profile_bytes, profile_file
from .quality import DEFAULT_THRESHOLDS, QualityThresholds
from .small import SMALL_SIDE

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_THRESHOLDS",
    "FAILURE_FLAGS",
    "SMALL_SIDE",
    "Decoded",
    "QualityThresholds",
    "decode_image",
    "dhash",
    "exif_fields",
    "hamming",
    "parse_exif_datetime",
    "perceptual_hashes",
    "phash",
    "phash_flip",
    "profile_bytes",
    "profile_file",
    "sha256_hex",
]
