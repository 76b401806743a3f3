"""Reading the LevelDB-style sorted table that a checkpoint's `.index` file is.

Format (TensorFlow keeps LevelDB's, `tensorflow/tsl/lib/io/format.h`): data blocks, a metaindex
block and an index block, then a 48-byte footer holding two block handles and a magic number. Each
block is prefix-compressed entries followed by restart offsets, then a one-byte compression type and
the masked CRC32C of contents and type. TensorFlow writes checkpoint indexes uncompressed.

Every failure raises `TableFormatError` with the reason; the caller turns it into a message naming
the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from tasks.freeze_engine import checksum

_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5
_NO_COMPRESSION = 0


class TableFormatError(ValueError):
    """The bytes are not a well-formed table (internal: callers re-raise as CheckpointError)."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decodes a base-128 varint at `pos`; returns (value, position after it)."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise TableFormatError("a varint runs past the end of its block")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise TableFormatError("a varint is longer than 10 bytes")


def _block_handle(data: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(data, pos)
    size, pos = read_varint(data, pos)
    return (offset, size), pos


def _read_block(table: bytes, handle: tuple[int, int]) -> bytes:
    offset, size = handle
    end = offset + size
    if end + _BLOCK_TRAILER_SIZE > len(table):
        raise TableFormatError(f"a block at offset {offset} runs past the end of the file")
    kind = table[end]
    (stored,) = struct.unpack_from("<I", table, end + 1)
    actual = checksum.extend(0, table[offset : end + 1])  # covers the contents and the type byte
    if checksum.unmask(stored) != actual:
        raise TableFormatError(f"the block at offset {offset} fails its CRC32C check")
    if kind != _NO_COMPRESSION:
        raise TableFormatError(f"the block at offset {offset} is compressed (type {kind})")
    return table[offset:end]


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise TableFormatError("a block is shorter than its restart count")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise TableFormatError("a block's restart array is larger than the block")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_size, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_size > limit:
            raise TableFormatError("a block entry overruns its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_size]
        pos += value_size


def iterate_table(table: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yields every (key, value) of a whole table file's bytes, in key order."""
    if len(table) < _FOOTER_SIZE:
        raise TableFormatError(f"the file holds {len(table)} bytes, less than a table footer")
    footer = table[-_FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)
    if magic != _MAGIC:
        raise TableFormatError("its footer lacks the table magic number")
    _metaindex, pos = _block_handle(footer, 0)
    index_handle, _ = _block_handle(footer, pos)
    for _separator, handle_bytes in _block_entries(_read_block(table, index_handle)):
        handle, _ = _block_handle(handle_bytes, 0)
        yield from _block_entries(_read_block(table, handle))
