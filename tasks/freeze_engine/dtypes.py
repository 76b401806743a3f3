"""TensorFlow DataType numbers: their Python names and the byte size of one element.

Numbers are those of `tensorflow/core/framework/types.proto`; names are those of `tf.dtypes`.
"""

from __future__ import annotations

STRING = 7
RESOURCE = 20

# DataType -> (tf.dtypes name, bytes per element); None: not a fixed-size type.
_TYPES: dict[int, tuple[str, int | None]] = {
    1: ("float32", 4),
    2: ("float64", 8),
    3: ("int32", 4),
    4: ("uint8", 1),
    5: ("int16", 2),
    6: ("int8", 1),
    STRING: ("string", None),
    8: ("complex64", 8),
    9: ("int64", 8),
    10: ("bool", 1),
    11: ("qint8", 1),
    12: ("quint8", 1),
    13: ("qint32", 4),
    14: ("bfloat16", 2),
    15: ("qint16", 2),
    16: ("quint16", 2),
    17: ("uint16", 2),
    18: ("complex128", 16),
    19: ("float16", 2),
    RESOURCE: ("resource", None),
    21: ("variant", None),
    22: ("uint32", 4),
    23: ("uint64", 8),
    24: ("float8_e5m2", 1),
    25: ("float8_e4m3fn", 1),
    26: ("float8_e4m3fnuz", 1),
    27: ("float8_e4m3b11fnuz", 1),
    28: ("float8_e5m2fnuz", 1),
}


def name(dtype: int) -> str:
    """`tf.dtypes` name of a DataType number, e.g. 1 -> 'float32'."""
    known = _TYPES.get(dtype)
    return known[0] if known else f"DataType({dtype})"


def item_size(dtype: int) -> int | None:
    """Bytes per element in a checkpoint and in `tensor_content`; None when not a plain array
    (strings have their own layout; resources and variants cannot be frozen)."""
    known = _TYPES.get(dtype)
    return known[1] if known else None
