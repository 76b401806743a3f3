"""Freezing a TF1 Saver checkpoint into a GraphDef file: the steps in order, from the user's
arguments to the file on disk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from tasks.core.errors import (
    CheckpointError,
    FreezeflowError,
    GraphTooLargeError,
    OutputWriteError,
    ParameterError,
    UnsupportedGraphError,
)
from tasks.core.names import PROTOBUF_LIMIT
from tasks.core.os_errors import os_error_reason
from tasks.freeze_engine import dtypes, protos, subgraph, tensor_data, writer
from tasks.freeze_engine.bundle import TensorBundle, TensorSource
from tasks.freeze_engine.devices import clear_node_devices
from tasks.freeze_engine.files import CheckpointFiles, locate_checkpoint
from tasks.freeze_engine.reader import check_output_nodes, read_meta_graph
from tasks.freeze_engine.graph_names import Message
from tasks.freeze_engine.restore_map import restore_specs
from tasks.freeze_engine.rewrite import VARIABLE_OPS, Value, rewrite



@dataclass(frozen=True)
class FreezeStats:
    """What a freeze wrote.

    node_count: nodes in the frozen graph; const_count: those that are Const (variables frozen plus
    constants the graph already had); bytes_written: size of the file; variables: names of the
    variable nodes turned into constants, in graph order.
    """

    output_path: Path
    node_count: int
    const_count: int
    bytes_written: int
    variables: tuple[str, ...]


def _variable_defs(meta: Message) -> list[Message]:
    collection = meta.collection_def.get("variables")
    if collection is None:
        return []
    try:
        return [protos.variable_pb2.VariableDef.FromString(raw) for raw in collection.bytes_list.value]
    except DecodeError:  # found by fuzzing: a damaged entry in the 'variables' collection
        raise CheckpointError(
            "the checkpoint graph's 'variables' collection holds an entry that is not a VariableDef: the .meta "
            "file is damaged"
        ) from None


def _check_variable(node: Message, source: TensorSource, files: CheckpointFiles) -> None:
    """The checkpoint value must fit the variable, as Saver.restore would insist."""
    expected = node.attr["dtype"].type
    if source.dtype != expected:
        raise CheckpointError(
            f"checkpoint {files.index} stores '{source.key}' as {dtypes.name(source.dtype)}, but "
            f"variable '{node.name}' is {dtypes.name(expected)}"
        )
    shape = node.attr["shape"].shape if "shape" in node.attr else None
    if shape is not None and not shape.unknown_rank and all(dim.size >= 0 for dim in shape.dim):
        declared = tuple(dim.size for dim in shape.dim)
        if declared != source.shape:
            raise CheckpointError(
                f"checkpoint {files.index} stores '{source.key}' with shape {list(source.shape)}, but "
                f"variable '{node.name}' has shape {list(declared)}"
            )
    item = dtypes.item_size(source.dtype)
    if item is None and not source.is_string:
        raise UnsupportedGraphError(
            f"variable '{node.name}' holds {dtypes.name(source.dtype)} values, which a Const cannot hold"
        )
    if item is not None:
        size = sum(piece.keep_stop - piece.keep_start for piece in source.pieces)
        if size != source.element_count * item:
            raise CheckpointError(
                f"checkpoint {files.index} gives '{source.key}' (variable '{node.name}') {size} bytes, "
                f"not the {source.element_count * item} that shape {list(source.shape)} of "
                f"{dtypes.name(source.dtype)} needs: the index is damaged"
            )


def _plan(
    files: CheckpointFiles, output_nodes: Sequence[str]
) -> tuple[list[Message], dict[str, TensorSource], Message | None, Message | None]:
    """The frozen graph's nodes, the checkpoint bytes of its constants, its library and versions.

    Only copies leave this function: the parsed MetaGraphDef (which a sub-message would keep alive
    whole) is dropped on return."""
    meta = read_meta_graph(files.meta)
    bundle = TensorBundle.read(files)
    graph_def = meta.graph_def
    nodes = {node.name: node for node in graph_def.node}
    saver_def = meta.saver_def if meta.HasField("saver_def") else None
    outputs = check_output_nodes(meta, output_nodes, f"the graph of {files.meta}")
    needed = subgraph.needed_nodes(nodes, outputs)
    ordered = [node for node in graph_def.node if node.name in needed]

    specs = restore_specs(nodes, saver_def, _variable_defs(meta))
    sources: dict[str, TensorSource] = {}
    values: dict[str, Value] = {}
    for node in ordered:
        if node.op not in VARIABLE_OPS:
            continue
        spec = specs.get(node.name)
        if spec is None:
            restore_op = saver_def.restore_op_name if saver_def is not None else "(no saver)"
            raise CheckpointError(
                f"variable '{node.name}' is needed by the outputs, but the checkpoint's restore op "
                f"{restore_op} does not restore it: {files.prefix} holds no value for it"
            )
        source = bundle.source(node.name, spec.key, spec.shape_and_slice)
        _check_variable(node, source, files)
        sources[node.name] = source
        values[node.name] = Value(node.name, source.dtype, source.shape)

    copies = []
    for node in ordered:
        copy = protos.node_def_pb2.NodeDef()
        copy.CopyFrom(node)
        _drop_missing_colocation(copy, needed)
        copies.append(copy)
    clear_node_devices(copies)
    library = {function.signature.name: function for function in graph_def.library.function}
    rewritten = rewrite(copies, library, values)
    functions = protos.function_pb2.FunctionDefLibrary()
    for function in rewritten.functions:
        function_copy = functions.function.add()
        function_copy.CopyFrom(function)
        clear_node_devices(function_copy.node_def)
    versions = None
    if graph_def.HasField("versions"):
        versions = protos.versions_pb2.VersionDef()
        versions.CopyFrom(graph_def.versions)
    return rewritten.nodes, sources, (functions if functions.function else None), versions


def _drop_missing_colocation(node: Message, kept: set[str]) -> None:
    """Colocation with a node that pruning removed would make import_graph_def fail."""
    if "_class" not in node.attr:
        return
    values = node.attr["_class"].list.s
    wanted = [
        value for value in values if not value.startswith(b"loc:@") or value[5:].decode("utf-8", "replace") in kept
    ]
    if len(wanted) == len(values):
        return
    if wanted:
        del values[:]
        values.extend(wanted)
    else:
        del node.attr["_class"]


def freeze_checkpoint(
    prefix: str | Path,
    output_nodes: Sequence[str],
    output_path: str | Path,
    *,
    max_bytes: int = PROTOBUF_LIMIT,
    durable: bool = False,
) -> FreezeStats:
    """Freezes the checkpoint at `prefix` (a Saver prefix, one of its files, or a directory with a
    `checkpoint` state file) into a GraphDef at `output_path` that computes `output_nodes`, every
    variable they read turned into a constant. TensorFlow's runtime is not loaded; memory stays
    flat whatever the model's size.

    Raises CheckpointError (missing, truncated or corrupt files), OutputNodeError,
    GraphTooLargeError (the graph would pass `max_bytes`, by default protobuf's 2 GiB limit),
    UnsupportedGraphError, ParameterError, OutputWriteError (the file cannot be written: a full disk,
    permissions); on any error no output file is left behind. The file gets the mode the umask gives.

    The file is renamed into place only once complete, so no reader sees part of it. It is not
    fsync'ed unless `durable` (TensorFlow's own writers do not either): after a power loss it may
    be torn, which a caller that records its digest detects.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ParameterError(f"max_bytes must be a positive number of bytes, not {max_bytes!r}")
    output = Path(output_path)
    if output.is_dir():
        raise ParameterError(f"output path {output} is a directory: name the .pb file to write")
    if not output.parent.is_dir():
        raise ParameterError(f"output directory {output.parent} does not exist: create it first")
    files = locate_checkpoint(prefix)
    nodes, sources, library, versions = _plan(files, output_nodes)
    graph = writer.layout(nodes, sources, library, versions)
    if graph.size > max_bytes:
        limit = "protobuf's 2 GiB limit" if max_bytes == PROTOBUF_LIMIT else f"the limit of {max_bytes:,} bytes"
        raise GraphTooLargeError(
            f"the frozen graph of {files.prefix} would be {graph.size:,} bytes, over {limit} "
            f"(a GraphDef over protobuf's 2 GiB limit cannot be read back): export a SavedModel "
            "instead, which keeps variables in their own files"
        )
    for source in sources.values():
        tensor_data.check_available(source)
    try:
        written = writer.write_atomically(graph, output, durable=durable)
    except FreezeflowError:
        raise
    except OSError as error:  # a full disk, a read-only or unwritable folder: said as such, not as a traceback
        raise OutputWriteError(f"cannot write {output}: {os_error_reason(error)}") from None
    return FreezeStats(
        output_path=output,
        node_count=len(nodes),
        const_count=sum(1 for node in nodes if node.op == "Const"),
        bytes_written=written,
        variables=tuple(sources),
    )
