"""A checkpoint's tensor bundle index: which tensors it holds, and where each one's bytes lie.

`PREFIX.index` is a sorted table (see sstable.py) whose entry "" is a BundleHeaderProto and whose
other entries are BundleEntryProtos (dtype, shape, shard, offset, size, masked CRC32C). A
partitioned variable is stored as one entry per slice under a binary key (`EncodeTensorNameSlice`
in `tensorflow/core/util/saved_tensor_slice_util.cc`), and an entry under its own name that lists
the slices. This module turns a restore request (key plus `shape_and_slice` spec, as RestoreV2
receives them) into a `TensorSource` naming exactly which stored bytes make up the tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from tasks.core.errors import CheckpointError, UnsupportedGraphError
from tasks.freeze_engine import dtypes, protos
from tasks.freeze_engine.files import CheckpointFiles
from tasks.freeze_engine.graph_names import Message
from tasks.freeze_engine.sstable import TableFormatError, iterate_table

# The bundle format version this reader understands (kTensorBundleVersion in tensor_bundle.h).
_BUNDLE_VERSION = 1
_FULL_EXTENT = -1

# A slice: per dimension (start, length), length -1 meaning the whole dimension.
Extents = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class BundleEntry:
    """One index entry, copied out of its proto."""

    key: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc32c: int
    slices: tuple[Extents, ...]


@dataclass(frozen=True)
class Piece:
    """One stored tensor read whole (so that its CRC32C can be checked), of which the bytes
    [keep_start, keep_stop) belong to the tensor being frozen."""

    path: Path
    shard: int
    num_shards: int
    offset: int
    size: int
    masked_crc32c: int
    keep_start: int
    keep_stop: int


@dataclass(frozen=True)
class TensorSource:
    """Where the value of one variable lies in the checkpoint."""

    variable: str
    key: str
    dtype: int
    shape: tuple[int, ...]
    pieces: tuple[Piece, ...]

    @property
    def element_count(self) -> int:
        return math.prod(self.shape)

    @property
    def is_string(self) -> bool:
        return self.dtype == dtypes.STRING


def _entry(key: str, proto: Message) -> BundleEntry:
    slices = tuple(
        tuple(
            (extent.start, extent.length if extent.HasField("length") else _FULL_EXTENT)
            for extent in slice_proto.extent
        )
        for slice_proto in proto.slices
    )
    return BundleEntry(
        key=key,
        dtype=proto.dtype,
        shape=tuple(dim.size for dim in proto.shape.dim),
        shard_id=proto.shard_id,
        offset=proto.offset,
        size=proto.size,
        masked_crc32c=proto.crc32c,
        slices=slices,
    )


class TensorBundle:
    """The parsed index of one checkpoint."""

    def __init__(self, files: CheckpointFiles, num_shards: int, entries: dict[bytes, BundleEntry]):
        self.files = files
        self.num_shards = num_shards
        self._entries = entries

    @classmethod
    def read(cls, files: CheckpointFiles) -> TensorBundle:
        bundle_pb2 = protos.tensor_bundle_pb2
        index = files.index
        entries: dict[bytes, BundleEntry] = {}
        header = None
        try:
            # The index holds one small record per tensor: reading it whole is cheap.
            for key, value in iterate_table(index.read_bytes()):
                if key == b"":
                    header = bundle_pb2.BundleHeaderProto.FromString(value)
                    continue
                entries[key] = _entry(key.decode("utf-8", "replace"), bundle_pb2.BundleEntryProto.FromString(value))
        except OSError as error:
            raise CheckpointError(f"cannot read checkpoint index {index}: {error.strerror}") from None
        except (TableFormatError, DecodeError) as error:
            raise CheckpointError(
                f"{index} is not a TensorFlow tensor bundle index ({error}): pass the prefix of a "
                "checkpoint written by tf.compat.v1.train.Saver"
            ) from None
        if header is None:
            raise CheckpointError(
                f"{index} is not a TensorFlow tensor bundle index (it has no bundle header): pass "
                "the prefix of a checkpoint written by tf.compat.v1.train.Saver"
            )
        if header.version.min_consumer > _BUNDLE_VERSION:
            raise CheckpointError(
                f"{index} needs a tensor bundle reader of version {header.version.min_consumer}; "
                f"this one reads version {_BUNDLE_VERSION}: re-save it with an older TensorFlow"
            )
        if header.endianness != bundle_pb2.BundleHeaderProto.LITTLE:
            raise CheckpointError(f"{index} holds a big-endian checkpoint, which the freeze engine does not read")
        if header.num_shards < 1:
            raise CheckpointError(
                f"{index} is not a TensorFlow tensor bundle index (it names {header.num_shards} shards)"
            )
        return cls(files, header.num_shards, entries)

    def named_entries(self) -> list[BundleEntry]:
        """The entry of every tensor saved under a name, in key order."""
        return [
            entry
            for raw_key, entry in self._entries.items()
            if not raw_key.startswith(b"\x00")  # binary slice keys are parts of a named entry
        ]

    def variables(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """(key, dtype name, shape) of every tensor saved under a name, in key order."""
        return [(entry.key, dtypes.name(entry.dtype), entry.shape) for entry in self.named_entries()]

    def source(self, variable: str, key: str, shape_and_slice: str) -> TensorSource:
        """Where the value that RestoreV2(key, shape_and_slice) would assign to `variable` lies."""
        entry = self._entries.get(key.encode("utf-8"))
        if entry is None:
            raise CheckpointError(
                f"checkpoint {self.files.index} holds no tensor '{key}', which variable '{variable}' "
                "is restored from: the checkpoint was written for another graph"
            )
        if shape_and_slice:
            full_shape, wanted = parse_shape_and_slice(shape_and_slice, variable)
            if full_shape != entry.shape:
                raise CheckpointError(
                    f"checkpoint {self.files.index} stores '{key}' with shape {list(entry.shape)}, "
                    f"but variable '{variable}' restores a slice of shape {list(full_shape)}"
                )
            wanted = _normalized(wanted, entry.shape)
        else:
            wanted = tuple((0, dim) for dim in entry.shape)
        stored = self._stored_parts(variable, entry)
        shape = tuple(length for _, length in wanted)
        for extents, part in stored:  # the usual case: one stored tensor is exactly the value
            if extents == wanted:
                return TensorSource(variable, key, entry.dtype, shape, (self._piece(variable, part, 0, part.size),))
        return TensorSource(variable, key, entry.dtype, shape, self._row_pieces(variable, entry, wanted, stored))

    def _stored_parts(self, variable: str, entry: BundleEntry) -> list[tuple[Extents, BundleEntry]]:
        """The stored tensors that make up `entry` with the region each covers: the entry itself,
        or, for a partitioned tensor, one entry per slice."""
        if not entry.slices:
            return [(tuple((0, dim) for dim in entry.shape), entry)]
        parts = []
        for extents in entry.slices:
            part = self._entries.get(encode_slice_key(entry.key, extents))
            if part is None or len(extents) != len(entry.shape):
                raise CheckpointError(
                    f"checkpoint {self.files.index} lists slice {list(extents)} of '{entry.key}' "
                    f"(variable '{variable}') but holds no entry for it: the index is damaged"
                )
            parts.append((_normalized(extents, entry.shape), part))
        return parts

    def _row_pieces(
        self, variable: str, entry: BundleEntry, wanted: Extents, stored: list[tuple[Extents, BundleEntry]]
    ) -> tuple[Piece, ...]:
        """A region cut along the first dimension only, from stored tensors cut the same way: its
        rows are runs of contiguous bytes of the stored tensors that overlap it."""
        item = dtypes.item_size(entry.dtype)
        if (
            item is None
            or not entry.shape
            or any(_cut_beyond_first(extents, entry.shape) for extents, _ in [(wanted, None), *stored])
        ):
            raise UnsupportedGraphError(
                f"variable '{variable}' restores region {list(wanted)} of '{entry.key}', which "
                f"{self.files.index} stores as {[list(extents) for extents, _ in stored]}: the freeze "
                "engine only re-assembles numeric tensors cut along their first dimension"
            )
        row_bytes = item * math.prod(entry.shape[1:])
        first, count = wanted[0]
        pieces: list[Piece] = []
        covered = first
        for extents, part in sorted(stored, key=lambda pair: pair[0][0][0]):
            start, length = extents[0]
            low, high = max(start, covered), min(start + length, first + count)
            if low >= high or low != covered:
                continue
            pieces.append(self._piece(variable, part, (low - start) * row_bytes, (high - start) * row_bytes))
            covered = high
        if covered != first + count:
            raise CheckpointError(
                f"checkpoint {self.files.index} lacks rows {covered}..{first + count} of '{entry.key}' "
                f"that variable '{variable}' restores"
            )
        return tuple(pieces)

    def _piece(self, variable: str, entry: BundleEntry, keep_start: int, keep_stop: int) -> Piece:
        if not 0 <= entry.shard_id < self.num_shards:
            raise CheckpointError(
                f"checkpoint {self.files.index} places variable '{variable}' in shard {entry.shard_id}, "
                f"but the checkpoint has {self.num_shards} shards: the index is damaged"
            )
        return Piece(
            path=self.files.data_file(entry.shard_id, self.num_shards),
            shard=entry.shard_id,
            num_shards=self.num_shards,
            offset=entry.offset,
            size=entry.size,
            masked_crc32c=entry.masked_crc32c,
            keep_start=keep_start,
            keep_stop=keep_stop,
        )


def parse_shape_and_slice(spec: str, variable: str) -> tuple[tuple[int, ...], Extents]:
    """Parses RestoreV2's `shape_and_slice`, e.g. "10 4 0,5:-" (full shape, then per dimension
    `start,length` or `-` for all of it)."""
    parts = spec.split()
    try:
        shape = tuple(int(part) for part in parts[:-1])
        extents = tuple(
            (0, _FULL_EXTENT) if item == "-" else (int(item.split(",")[0]), int(item.split(",")[1]))
            for item in parts[-1].split(":")
        )
    except (ValueError, IndexError):
        raise UnsupportedGraphError(
            f"variable '{variable}' is restored with shape_and_slice '{spec}', which is not of the form "
            "'dim ... start,length:...'"
        ) from None
    if len(extents) != len(shape):
        raise UnsupportedGraphError(
            f"variable '{variable}' is restored with shape_and_slice '{spec}', whose slice and shape "
            "have different ranks"
        )
    return shape, extents


def _normalized(extents: Extents, shape: tuple[int, ...]) -> Extents:
    return tuple(
        (0, dim) if length == _FULL_EXTENT else (start, length)
        for (start, length), dim in zip(extents, shape, strict=True)
    )


def _cut_beyond_first(normal: Extents, shape: tuple[int, ...]) -> bool:
    return any(extent != (0, dim) for extent, dim in zip(normal[1:], shape[1:], strict=True))


# --- The binary keys of slices: TensorFlow's OrderedCode (tensorflow/core/lib/strings/ordered_code.cc).


def _num_increasing(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(body)]) + body


def _string(value: bytes) -> bytes:
    # 0x00 and 0xff are escaped so that the terminator 0x00 0x01 sorts below any continuation.
    escaped = (b"\x00\xff" if byte == 0x00 else b"\xff\x00" if byte == 0xFF else bytes([byte]) for byte in value)
    return b"".join(escaped) + b"\x00\x01"


# Header bits of a signed number by encoded length (kLengthToHeaderBits).
_SIGNED_HEADER = (
    (0, 0),
    (0x80, 0),
    (0xC0, 0),
    (0xE0, 0),
    (0xF0, 0),
    (0xF8, 0),
    (0xFC, 0),
    (0xFE, 0),
    (0xFF, 0),
    (0xFF, 0x80),
    (0xFF, 0xC0),
)


def _signed_num_increasing(value: int) -> bytes:
    magnitude = ~value if value < 0 else value
    if magnitude < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    length = magnitude.bit_length() // 7 + 1  # kBitsToLength
    sign = 0xFF if value < 0 else 0x00
    encoded = bytearray([sign, sign]) + (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    encoded = encoded[len(encoded) - length :]
    encoded[0] ^= _SIGNED_HEADER[length][0]
    encoded[1] ^= _SIGNED_HEADER[length][1]
    return bytes(encoded)


def encode_slice_key(name: str, extents: Extents) -> bytes:
    """The index key of one stored slice of tensor `name` (EncodeTensorNameSlice)."""
    parts = [_num_increasing(0), _string(name.encode("utf-8")), _num_increasing(len(extents))]
    for start, length in extents:
        parts.append(_signed_num_increasing(start))
        parts.append(_signed_num_increasing(length))
    return b"".join(parts)
