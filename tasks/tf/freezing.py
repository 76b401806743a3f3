"""Freezing a checkpoint into one self-sufficient GraphDef ``.pb`` in the workspace.

Variables become constants, devices are cleared and only what the output nodes need is kept. TF1
Saver checkpoints are frozen from their ``.meta`` graph by the streaming engine
(:mod:`tasks.freeze_engine`: no TensorFlow runtime, flat memory) or, with ``engine="tf"``, by
TensorFlow's own ``convert_variables_to_constants``. TF2 object-based checkpoints are restored into
the model their entrypoint builds and frozen with ``convert_variables_to_constants_v2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from tasks.core import workspace
from tasks.core.cache_keys import stage_token
from tasks.core.errors import CheckpointError, GraphTooLargeError, ParameterError
from tasks.core.layout import FROZEN_GRAPH
from tasks.core.names import PROTOBUF_LIMIT, FreezeEngine
from tasks.core.records import Artifact, Checkpoint, FrozenGraph
from tasks.freeze_engine import reader, subgraph
from tasks.freeze_engine.devices import clear_devices, pinned_nodes
from tasks.freeze_engine.rewrite import VARIABLE_OPS
from tasks.tf.checkpoints import name_the_output, read_meta_graph, restore_trackable, restored_session


ENGINE_NAMES = {"stream": "freezeflow-stream", "tf": "tensorflow-v1"}


def default_output_nodes(checkpoint: Checkpoint, meta: Any) -> list[str]:
    if checkpoint.interface is not None:
        return [checkpoint.interface.output.name]
    raise name_the_output(f"{checkpoint.prefix_path}.meta", meta)


def estimated_frozen_size(meta: Any, prefix: Path, output_nodes: Sequence[str]) -> int:
    """Bytes of the frozen graph: the nodes the outputs need plus every variable they read, as constants."""
    nodes = {node.name: node for node in meta.graph_def.node}
    kept = subgraph.needed_nodes(nodes, reader.check_output_nodes(meta, output_nodes, f"the graph of {prefix}.meta"))
    sizes = reader.variable_bytes(prefix)
    total = sum(nodes[name].ByteSize() for name in kept)
    return total + sum(sizes.get(name, 0) for name in kept if nodes[name].op in VARIABLE_OPS)


def _single_input(graph_def: Any, checkpoint: Checkpoint) -> str:
    if checkpoint.interface is not None:
        return checkpoint.interface.input.name
    placeholders = reader.input_candidates(graph_def)
    if len(placeholders) != 1:
        raise ParameterError(
            f"the frozen graph of {checkpoint.prefix_path} has {len(placeholders)} inputs "
            f"({', '.join(placeholders)}); freezeflow serves models with exactly one input"
        )
    return placeholders[0]


def _freeze_tf1(checkpoint: Checkpoint, output_nodes: Sequence[str], max_bytes: int) -> tuple[Any, str]:
    import tensorflow as tf

    meta = read_meta_graph(checkpoint)
    size = estimated_frozen_size(meta, checkpoint.prefix_path, output_nodes)  # also checks the output nodes
    if size > max_bytes:
        raise GraphTooLargeError(
            f"the frozen graph of {checkpoint.prefix_path} would be {size / 2**30:.2f} GiB, past protobuf's "
            f"2 GiB limit ({max_bytes} bytes); a GraphDef that large cannot be read back. Publish the SavedModel "
            "instead (it keeps variables in separate files)"
        )
    with restored_session(checkpoint) as (graph, session):
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), [n.split(":")[0] for n in output_nodes]
        )
    clear_devices(frozen)
    return frozen, _single_input(frozen, checkpoint)


def _freeze_tf2(checkpoint: Checkpoint, output_nodes: Sequence[str], max_bytes: int) -> tuple[Any, str, str]:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from tasks.tf.entrypoints import serving_function

    assert checkpoint.entrypoint
    data_bytes = sum(f.size for f in checkpoint.artifact.files if ".data-" in f.path)
    if data_bytes > max_bytes:
        raise GraphTooLargeError(
            f"the frozen graph of {checkpoint.prefix_path} would hold {data_bytes / 2**30:.2f} GiB of constants, "
            "past protobuf's 2 GiB limit; publish the SavedModel instead (it keeps variables in separate files)"
        )
    model = restore_trackable(checkpoint.entrypoint, checkpoint.prefix_path)
    frozen_fn = convert_variables_to_constants_v2(serving_function(model, checkpoint.entrypoint).get_concrete_function())
    graph_def = frozen_fn.graph.as_graph_def()
    output = frozen_fn.outputs[0].name
    if output_nodes:
        reader.check_output_nodes(graph_def, output_nodes, f"the graph of the model {checkpoint.entrypoint!r} builds")
        graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [n.split(":")[0] for n in output_nodes])
        output = output_nodes[0] if ":" in output_nodes[0] else output_nodes[0] + ":0"
    clear_devices(graph_def)
    return graph_def, frozen_fn.inputs[0].name.split(":")[0], output


def write_frozen_graph(
    checkpoint: Checkpoint,
    output_nodes: Optional[Sequence[str]] = None,
    *,
    max_bytes: int = PROTOBUF_LIMIT,
    engine: FreezeEngine = "stream",
    fold_batch_norm: bool = False,
) -> FrozenGraph:
    """Freeze ``checkpoint`` into ``frozen_graph.pb`` in the workspace and return its record; with
    ``fold_batch_norm``, inference batch norms are then folded into the weights before them."""
    if engine not in ENGINE_NAMES:
        raise ParameterError(f"freeze engine {engine!r} is not one of {', '.join(ENGINE_NAMES)}")
    checkpoint.artifact.verify()
    nodes = list(output_nodes or [])
    params = {"checkpoint": checkpoint, "outputs": nodes, "max": max_bytes, "engine": engine}
    if fold_batch_norm:  # only then, so that the keys of existing outputs stay as they were
        params["fold_batch_norm"] = True
    token = stage_token("freeze", __name__, params)
    folds: list[str] = []
    final = workspace.stage_dir("freeze", token)
    if checkpoint.format == "tf1":
        if not nodes:
            nodes = default_output_nodes(checkpoint, read_meta_graph(checkpoint))
        output_tensor = nodes[0] if ":" in nodes[0] else nodes[0] + ":0"
        if engine == "stream":
            from tasks.freeze_engine import freeze_checkpoint as stream_freeze

            assert checkpoint.interface is not None, "describe_checkpoint fills in a TF1 checkpoint's interface"
            with workspace.building(final) as scratch:
                stats = stream_freeze(checkpoint.prefix_path, nodes, scratch / FROZEN_GRAPH, max_bytes=max_bytes)
                node_count = stats.node_count
                if fold_batch_norm:
                    folds, node_count = fold_file(scratch / FROZEN_GRAPH, nodes)
            input_node, input_dtype = checkpoint.interface.input.name, checkpoint.interface.input.dtype
        else:
            graph_def, input_node = _freeze_tf1(checkpoint, nodes, max_bytes)
            input_dtype, node_count, folds = _write(graph_def, input_node, final, nodes if fold_batch_norm else None)
        engine_name = ENGINE_NAMES[engine]
    else:
        graph_def, input_node, output_tensor = _freeze_tf2(checkpoint, nodes, max_bytes)
        nodes = nodes or [output_tensor.split(":")[0]]
        input_dtype, node_count, folds = _write(graph_def, input_node, final, nodes if fold_batch_norm else None)
        engine_name = "tensorflow-v2"
    frozen = FrozenGraph(
        artifact=Artifact.of(final, [FROZEN_GRAPH]),
        input_tensor=input_node + ":0",
        output_tensor=output_tensor,
        input_dtype=input_dtype,
        output_nodes=tuple(n.split(":")[0] for n in nodes),
        engine=engine_name,
        node_count=node_count,
        rewrites=tuple(folds),
    )
    check_frozen(frozen)
    return frozen


def fold_file(path: Path, outputs: Sequence[str]) -> tuple[list[str], int]:
    """Fold batch norms into the weights before them in the GraphDef at ``path`` (rewritten in place;
    the graph is held in memory for this); returns one line per fold and the node count."""
    from tasks.freeze_engine import protos
    from tasks.freeze_engine.fold_batch_norm import fold_batch_norms

    graph_def = protos.graph_pb2.GraphDef.FromString(path.read_bytes())
    folds = fold_batch_norms(graph_def, [n.split(":")[0] for n in outputs])
    if folds:
        path.write_bytes(graph_def.SerializeToString(deterministic=True))
    return folds, len(graph_def.node)


def _write(graph_def: Any, input_node: str, final: Path,
           fold_outputs: Optional[Sequence[str]] = None) -> tuple[str, int, list[str]]:
    """Write a GraphDef built in memory (TensorFlow's conversions), folding batch norms when
    ``fold_outputs`` are given; returns the input's dtype, the node count and the folds."""
    input_dtype = next(
        (_dtype_name(n.attr["dtype"].type) for n in graph_def.node if n.name == input_node), "float32"
    )
    folds: list[str] = []
    count = len(graph_def.node)
    with workspace.building(final) as scratch:
        (scratch / FROZEN_GRAPH).write_bytes(graph_def.SerializeToString())
        if fold_outputs is not None:
            folds, count = fold_file(scratch / FROZEN_GRAPH, fold_outputs)
    return input_dtype, count, folds


def _dtype_name(enum_value: int) -> str:
    import tensorflow as tf

    return tf.dtypes.as_dtype(enum_value).name


def check_frozen(frozen: FrozenGraph) -> None:
    """The stage checks its output: it parses, holds no variables and no device pins, keeps its outputs."""
    frozen.artifact.verify()
    graph_def = reader.read_graph_def(frozen.graph_path)
    names = {n.name for n in graph_def.node}
    problems = [f"output node {n!r} missing" for n in frozen.output_nodes if n not in names]
    problems += [f"variable {n.name!r} left" for n in graph_def.node if n.op in ("VariableV2", "VarHandleOp")]
    problems += [f"device pin on {name!r}" for name in pinned_nodes(graph_def)]
    if problems:
        raise CheckpointError(f"frozen graph {frozen.graph_path} is not self-sufficient: {'; '.join(problems)}")
