"""CRC32C as TensorFlow's checkpoints store it: LevelDB's masked form.

Masking (rotate, add a constant) keeps a CRC stored next to the data it covers from being a valid
CRC of a buffer that contains it; see `tensorflow/tsl/lib/hash/crc32c.h`.
"""

from __future__ import annotations

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def extend(crc: int, data: bytes) -> int:
    """The CRC32C of the bytes already covered by `crc` followed by `data` (which must be bytes:
    google-crc32c refuses memoryviews and bytearrays)."""
    return google_crc32c.extend(crc, data)


def mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
