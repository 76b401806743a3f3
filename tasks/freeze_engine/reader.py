"""The one reader of TensorFlow checkpoints and graph files, without TensorFlow's runtime.

What a checkpoint holds (its files, and that none is missing; its format; its variables), its
``.meta`` graph, a GraphDef or SavedModel file, and which nodes are likely a graph's inputs and
outputs. The freeze engine, ``freezeflow inspect`` and the pipeline's ``describe_checkpoint`` all
read through here, so they suggest the same outputs and word the same errors the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from google.protobuf.message import DecodeError

from tasks.core.errors import CheckpointError
from tasks.freeze_engine import dtypes, protos, subgraph
from tasks.freeze_engine.bundle import TensorBundle
from tasks.freeze_engine.files import locate_checkpoint, resolve_checkpoint_prefix
from tasks.freeze_engine.graph_names import Message

# The key TF2's object-based checkpoints store their object graph under; TF1 Saver files lack it.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_STATE_FILE = "checkpoint"

Variable = tuple[str, str, tuple[int, ...]]  # (checkpoint key, dtype name, shape)


def _parse(message_class: type, path: Path, what: str, hint: str) -> Message:
    try:
        return message_class.FromString(path.read_bytes())
    except OSError as error:
        raise CheckpointError(f"cannot read {what} {path}: {error.strerror}") from None
    except DecodeError:
        raise CheckpointError(f"{what} {path} is not a {message_class.__name__}: {hint}") from None


def read_meta_graph(path: Path) -> Message:
    """The MetaGraphDef in a checkpoint's ``.meta`` file. An empty file parses as an empty message
    (protobuf's rule), so a graph without nodes is refused as well: no Saver writes one."""
    path = Path(path)
    try:
        meta = protos.meta_graph_pb2.MetaGraphDef.FromString(path.read_bytes())
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint graph {path}: {error.strerror}") from None
    except DecodeError:
        meta = None
    if meta is None or not meta.graph_def.node:
        raise CheckpointError(
            f"checkpoint graph {path} is empty or not a MetaGraphDef: pass the prefix of a checkpoint written "
            "by tf.compat.v1.train.Saver"
        )
    return meta


def read_graph_def(path: Path) -> Message:
    """The GraphDef in a ``.pb`` file such as a frozen graph."""
    return _parse(protos.graph_pb2.GraphDef, Path(path), "graph file", "is it a frozen graph, and complete?")


def read_saved_model(folder: Path) -> Message:
    """The SavedModel message in ``folder/saved_model.pb``."""
    return _parse(protos.saved_model_pb2.SavedModel, Path(folder) / "saved_model.pb", "SavedModel file",
                  "is the file truncated?")


def checkpoint_files(path: str | Path) -> list[Path]:
    """Every file of the checkpoint ``path`` names: index, each data shard its index lists, and the
    ``.meta`` graph and ``checkpoint`` state file when present; raises naming the first one missing."""
    given = resolve_checkpoint_prefix(path)
    if not given.parent.is_dir():
        raise CheckpointError(f"checkpoint {given}: folder {given.parent} does not exist")
    files = locate_checkpoint(given, need_meta=False)
    num_shards = TensorBundle.read(files).num_shards
    shards = [files.data_file(shard, num_shards) for shard in range(num_shards)]
    missing = [shard for shard in shards if not shard.is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint data file {missing[0]} is missing ({len(missing)} of {num_shards} shards): copy every "
            f".data-* file of the checkpoint beside {files.index.name}"
        )
    found = [files.index, *shards]
    found += [p for p in (files.meta, files.prefix.parent / _STATE_FILE) if p.is_file()]
    return found


def checkpoint_variables(path: str | Path) -> list[Variable]:
    """(key, dtype name, shape) of every variable the checkpoint's index holds, sorted by key."""
    bundle = TensorBundle.read(locate_checkpoint(path, need_meta=False))
    return sorted(v for v in bundle.variables() if v[0] != OBJECT_GRAPH_KEY)


def checkpoint_format(path: str | Path) -> Literal["tf1", "tf2"]:
    """TF2 object-based checkpoints store their object graph in the index; TF1 Saver ones do not."""
    bundle = TensorBundle.read(locate_checkpoint(path, need_meta=False))
    return "tf2" if any(key == OBJECT_GRAPH_KEY for key, _, _ in bundle.variables()) else "tf1"


def variable_bytes(path: str | Path) -> dict[str, int]:
    """Bytes each fixed-size variable of the checkpoint takes as a constant, by key."""
    bundle = TensorBundle.read(locate_checkpoint(path, need_meta=False))
    return {entry.key: math.prod(entry.shape) * (dtypes.item_size(entry.dtype) or 1) for entry in bundle.named_entries()}


def output_candidates(graph: Message) -> list[str]:
    """The likely outputs of a MetaGraphDef or GraphDef: nodes nothing else consumes once saving,
    restoring, initialisation and training machinery are set aside."""
    graph_def, saver_def, collections = _parts(graph)
    return subgraph.output_candidates(graph_def, saver_def, collections)


def input_candidates(graph: Message) -> list[str]:
    """The likely inputs of a MetaGraphDef or GraphDef: placeholders the model (not the saver) reads."""
    graph_def, saver_def, collections = _parts(graph)
    return subgraph.input_candidates(graph_def, saver_def, collections)


def list_output_candidates(prefix: str | Path) -> list[str]:
    """The likely values for ``output_nodes`` of the checkpoint at ``prefix``."""
    return output_candidates(read_meta_graph(locate_checkpoint(prefix).meta))


def check_output_nodes(graph: Message, output_nodes: Sequence[str], where: str) -> list[str]:
    """The node names of ``output_nodes`` in ``graph`` (read from ``where``); an unknown one raises
    OutputNodeError naming the nearest names."""
    graph_def = _parts(graph)[0]
    nodes = {node.name: node for node in graph_def.node}
    return subgraph.output_node_names(nodes, output_nodes, lambda: output_candidates(graph), where)


def _parts(graph: Message) -> tuple[Message, Message | None, dict[str, Message]]:
    if graph.DESCRIPTOR.name == "MetaGraphDef":
        return graph.graph_def, graph.saver_def if graph.HasField("saver_def") else None, dict(graph.collection_def)
    return graph, None, {}
