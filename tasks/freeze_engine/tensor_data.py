"""Reading a variable's bytes out of a checkpoint's data files in bounded chunks, each stored tensor
checked against the CRC32C in its index entry.

Numeric tensors are stored as their raw little-endian array. String tensors are stored as
(`WriteStringTensor` in `tensorflow/core/util/tensor_bundle/tensor_bundle.cc`):

    varint64 length of each element | masked CRC32C of the lengths (4 bytes) | the bytes, concatenated

and their entry's CRC32C covers each length as a 4-byte little-endian integer (8 bytes above
UINT32_MAX), then the 4 checksum bytes, then the string bytes: not the stored bytes themselves.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

from tasks.core.errors import CheckpointError
from tasks.freeze_engine import checksum
from tasks.freeze_engine.bundle import Piece, TensorSource

# Bytes read per call: large enough that the per-chunk cost of Python vanishes next to the copy,
# small enough that memory stays flat whatever the size of the model.
CHUNK_SIZE = 4 << 20
_UINT32_MAX = 0xFFFFFFFF


def _where(source: TensorSource) -> str:
    if source.key == source.variable:
        return f"variable '{source.variable}'"
    return f"variable '{source.variable}' (checkpoint key '{source.key}')"


def check_available(source: TensorSource) -> None:
    """Raises unless every data file the source reads exists and is long enough: called for every
    variable before anything is written, so that a missing shard or a truncated file fails early."""
    for piece in source.pieces:
        try:
            size = piece.path.stat().st_size
        except FileNotFoundError:
            raise CheckpointError(
                f"checkpoint data file {piece.path} is missing: {_where(source)} is stored in shard "
                f"{piece.shard} of {piece.num_shards}; copy every .data-* file of the checkpoint"
            ) from None
        if piece.offset + piece.size > size:
            raise _truncated(source, piece, size)


def _truncated(source: TensorSource, piece: Piece, size: int) -> CheckpointError:
    return CheckpointError(
        f"checkpoint data file {piece.path} is truncated: {_where(source)} needs bytes "
        f"{piece.offset}..{piece.offset + piece.size} but the file holds {size} bytes; re-copy or "
        "re-save the checkpoint"
    )


def _corrupt(source: TensorSource, piece: Piece, what: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint data file {piece.path} is corrupt: {_where(source)} {what}; re-copy or re-save the checkpoint"
    )


class _Reader:
    """Sequential reads of one stored tensor's bytes, with the position kept here (pread), so two
    readers may walk the same file at once."""

    def __init__(self, source: TensorSource, piece: Piece, fd: int, start: int, stop: int) -> None:
        self._source, self._piece, self._fd = source, piece, fd
        self.position, self._stop = start, stop

    def read(self, size: int) -> bytes:
        size = min(size, self._stop - self.position)
        data = os.pread(self._fd, size, self._piece.offset + self.position)
        if len(data) != size:  # the file shrank since check_available
            raise _truncated(self._source, self._piece, os.fstat(self._fd).st_size)
        self.position += size
        return data


def _open(source: TensorSource, piece: Piece) -> int:
    try:
        return os.open(piece.path, os.O_RDONLY)
    except FileNotFoundError:
        check_available(source)  # raises the missing-shard message
        raise
    except OSError as error:
        raise CheckpointError(
            f"cannot read checkpoint data file {piece.path} for {_where(source)}: {error.strerror}"
        ) from None


def iter_numeric_chunks(source: TensorSource) -> Iterator[bytes]:
    """Yields the bytes of a numeric tensor, as `tensor_content` holds them, in chunks of at most
    CHUNK_SIZE. Each stored piece is read whole and its CRC32C checked once read, so a mismatch
    raises before the generator finishes (the writer then discards its temporary file)."""
    for piece in source.pieces:
        fd = _open(source, piece)
        try:
            reader = _Reader(source, piece, fd, 0, piece.size)
            crc = 0
            while reader.position < piece.size:
                start = reader.position
                chunk = reader.read(CHUNK_SIZE)
                crc = checksum.extend(crc, chunk)
                lo, hi = max(piece.keep_start - start, 0), min(piece.keep_stop - start, len(chunk))
                if lo < hi:
                    yield chunk if (lo, hi) == (0, len(chunk)) else chunk[lo:hi]
            _check_crc(source, piece, crc)
        finally:
            os.close(fd)


def _check_crc(source: TensorSource, piece: Piece, crc: int) -> None:
    if checksum.unmask(piece.masked_crc32c) != crc:
        raise _corrupt(
            source,
            piece,
            f"fails its CRC32C check (stored {checksum.unmask(piece.masked_crc32c):#010x}, computed {crc:#010x})",
        )


def _varints(reader: _Reader, count: int) -> Iterator[int]:
    """The `count` varint64s at the reader's position, read a chunk at a time."""
    buffer, pos = b"", 0
    for _ in range(count):
        value, shift = 0, 0
        while True:
            if pos == len(buffer):
                buffer, pos = reader.read(CHUNK_SIZE), 0
                if not buffer:
                    raise EOFError
            byte = buffer[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise ValueError("varint longer than 10 bytes")
        yield value
    reader.position -= len(buffer) - pos  # give back what was read ahead


def iter_string_elements(source: TensorSource) -> Iterator[int | bytes]:
    """Yields, for each element of a string tensor in order, its length (an int) and then its bytes
    in chunks of at most CHUNK_SIZE; the tensor's CRC32C is checked once all is read.

    Two passes over the lengths (the first checks them and finds where the bytes start) keep memory
    flat however many elements there are."""
    (piece,) = source.pieces  # slicing string tensors is refused when the source is planned
    count = source.element_count
    fd = _open(source, piece)
    try:
        lengths = _Reader(source, piece, fd, 0, piece.size)
        crc, total = 0, 0
        try:
            for length in _varints(lengths, count):
                crc = checksum.extend(crc, struct.pack("<I" if length <= _UINT32_MAX else "<Q", length))
                total += length
        except (EOFError, ValueError):
            raise _corrupt(source, piece, f"holds no valid list of {count} string lengths") from None
        header_size = lengths.position
        stored_checksum = lengths.read(4)
        if len(stored_checksum) != 4 or struct.unpack("<I", stored_checksum)[0] != checksum.mask(crc):
            raise _corrupt(source, piece, "fails the CRC32C check of its string lengths")
        if header_size + 4 + total != piece.size:
            raise _corrupt(
                source, piece, f"has string lengths that add up to {total}, not {piece.size - header_size - 4}"
            )
        crc = checksum.extend(crc, stored_checksum)
        lengths = _Reader(source, piece, fd, 0, header_size)
        data = _Reader(source, piece, fd, header_size + 4, piece.size)
        for length in _varints(lengths, count):
            yield length
            remaining = length
            while remaining:
                chunk = data.read(min(remaining, CHUNK_SIZE))
                crc = checksum.extend(crc, chunk)
                remaining -= len(chunk)
                yield chunk
        _check_crc(source, piece, crc)
    finally:
        os.close(fd)
