"""Writing a frozen GraphDef to disk one node at a time, constants streamed from the checkpoint.

A serialized message is the concatenation of its fields, so a GraphDef is its `node` records
(field 1, each a length-prefixed NodeDef), then `library` (field 2) and `versions` (field 4). A
constant's NodeDef is written as its small serialized head (name, op, dtype) followed by the map
entry `attr["value"]` whose TensorProto ends with `tensor_content` (field 4) or one `string_val`
(field 8) per element; their bytes come from the checkpoint in bounded chunks. Every length is
known from the index before the first byte is written, so the size of the whole file is too.

Map entries of a node are written in key order, as protobuf's deterministic serialization does, so
the file is byte-identical to `GraphDef.SerializeToString(deterministic=True)` of the same graph.

The file appears only when complete: it is written to a temporary file in the target directory and
renamed into place; on any error the temporary file is removed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tasks.freeze_engine import protos, tensor_data
from tasks.freeze_engine.bundle import TensorSource
from tasks.freeze_engine.graph_names import Message

_LENGTH_DELIMITED = 2
_GRAPH_NODE, _GRAPH_LIBRARY, _GRAPH_VERSIONS = 1, 2, 4
_NODE_ATTR = 5
_MAP_KEY, _MAP_VALUE = 1, 2
_ATTR_TENSOR = 8
_TENSOR_CONTENT, _TENSOR_STRING_VAL = 4, 8


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, length: int) -> bytes:
    """The tag and length that open a length-delimited field."""
    return varint(number << 3 | _LENGTH_DELIMITED) + varint(length)


@dataclass(frozen=True)
class _ConstantRecord:
    """A constant node: `head` bytes, then the tensor's streamed bytes (`body_size` of them)."""

    head: bytes
    body_size: int
    source: TensorSource

    @property
    def size(self) -> int:
        return len(self.head) + self.body_size


def constant_record(node: Message, source: TensorSource) -> _ConstantRecord:
    """Lays out the GraphDef record of a Const node (`node` holds all but its value)."""
    node_head = node.SerializeToString(deterministic=True)
    tensor = protos.tensor_pb2.TensorProto(dtype=source.dtype)
    tensor.tensor_shape.SetInParent()  # a scalar still has a (dimensionless) shape
    for dim in source.shape:
        tensor.tensor_shape.dim.add(size=dim)
    tensor_head = tensor.SerializeToString(deterministic=True)
    if source.is_string:
        (piece,) = source.pieces
        # Each element: a one-byte tag, its length as a varint, its bytes. The checkpoint stores the
        # same varints and the same bytes, plus a 4-byte checksum.
        content_field, body_size = b"", source.element_count + piece.size - 4
    else:
        body_size = sum(piece.keep_stop - piece.keep_start for piece in source.pieces)
        content_field = _field(_TENSOR_CONTENT, body_size) if body_size else b""
    tensor_size = len(tensor_head) + len(content_field) + body_size
    attr_value_head = _field(_ATTR_TENSOR, tensor_size)
    attr_value_size = len(attr_value_head) + tensor_size
    entry_head = _field(_MAP_KEY, 5) + b"value" + _field(_MAP_VALUE, attr_value_size)
    entry_size = len(entry_head) + attr_value_size
    node_size = len(node_head) + len(_field(_NODE_ATTR, entry_size)) + entry_size
    head = b"".join(
        [
            _field(_GRAPH_NODE, node_size),
            node_head,
            _field(_NODE_ATTR, entry_size),
            entry_head,
            attr_value_head,
            tensor_head,
            content_field,
        ]
    )
    return _ConstantRecord(head=head, body_size=body_size, source=source)


@dataclass
class GraphLayout:
    """The records of a frozen GraphDef in file order, and the file's exact size."""

    records: list[Message | _ConstantRecord]
    library: Message | None
    versions: Message | None
    size: int


def layout(
    nodes: list[Message], constants: dict[str, TensorSource], library: Message | None, versions: Message | None
) -> GraphLayout:
    records: list[Message | _ConstantRecord] = []
    size = 0
    for node in nodes:
        source = constants.get(node.name)
        if source is not None:
            record = constant_record(node, source)
            records.append(record)
            size += record.size
        else:
            records.append(node)
            size += _message_field_size(node.ByteSize())
    for message in (library, versions):
        if message is not None:
            size += _message_field_size(message.ByteSize())
    return GraphLayout(records=records, library=library, versions=versions, size=size)


def _message_field_size(length: int) -> int:
    return len(_field(_GRAPH_NODE, length)) + length  # every GraphDef field number here is < 16


def _chunks(layout: GraphLayout) -> Iterator[bytes]:
    for record in layout.records:
        if isinstance(record, _ConstantRecord):
            yield record.head
            if record.source.is_string:
                for item in tensor_data.iter_string_elements(record.source):
                    yield _field(_TENSOR_STRING_VAL, item) if isinstance(item, int) else item
            else:
                yield from tensor_data.iter_numeric_chunks(record.source)
        else:
            data = record.SerializeToString(deterministic=True)
            yield _field(_GRAPH_NODE, len(data))
            yield data
    for number, message in ((_GRAPH_LIBRARY, layout.library), (_GRAPH_VERSIONS, layout.versions)):
        if message is not None:
            data = message.SerializeToString(deterministic=True)
            yield _field(number, len(data))
            yield data


def current_umask() -> int:
    """This process's umask, read without changing it (os.umask can only set it, racing other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): the only other way, set and restore at once
    os.umask(mask)
    return mask


def write_atomically(layout: GraphLayout, path: Path, *, durable: bool) -> int:
    """Writes the graph to `path` via a temporary file in the same directory; returns its size.
    `durable`: also flush file and directory to disk before returning, so that a power loss cannot
    leave a torn file under the final name (it costs about as long as the copy itself)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        # mkstemp creates the file 0600; the frozen graph gets the mode any other tool's output gets (0666 less
        # the umask), which the rename keeps.
        os.fchmod(fd, 0o666 & ~current_umask())
        written = 0
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            for chunk in _chunks(layout):
                out.write(chunk)
                written += len(chunk)
            out.flush()
            if durable:
                os.fsync(out.fileno())  # the rename must not reach the disk before the bytes do
        if written != layout.size:
            raise RuntimeError(f"internal error: wrote {written} bytes of a graph laid out as {layout.size}")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return written
