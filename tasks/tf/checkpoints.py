"""Checkpoints with TensorFlow: write a trained model as a TF1 Saver or TF2 object-based checkpoint,
restore one into a session or a model, and describe a checkpoint a user hands in."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from tasks.core import workspace
from tasks.core.cache_keys import stage_token
from tasks.core.errors import CheckpointError, EntrypointError, ParameterError
from tasks.core.names import CheckpointFormat
from tasks.core.records import Artifact, Checkpoint, ModelInterface, TensorSpec, TrainedModel, VariableInfo
from tasks.freeze_engine import reader
from tasks.tf.entrypoints import (
    TrainContext,
    build_model,
    entrypoint_digest,
    model_interface,
    _shape,
    model_variables,
    serving_function,
    variable_name,
)

PREFIX = "model"


def restore_trackable(entrypoint: str, prefix: Path) -> Any:
    """Rebuild a model from its entrypoint (``epochs=0``) and restore a TF2 checkpoint into it."""
    import tensorflow as tf

    model = build_model(entrypoint, TrainContext(epochs=0, learning_rate=0.0, seed=0))
    try:
        status = tf.train.Checkpoint(model=model).read(str(prefix))
        status.assert_existing_objects_matched()
        status.expect_partial()
    except (tf.errors.OpError, AssertionError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {prefix}: cannot restore it into the model entrypoint {entrypoint!r} builds "
            f"({type(exc).__name__}: {_first_line(exc)}); pass the entrypoint that wrote it"
        ) from exc
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_tf1_checkpoint(model: Any, interface: ModelInterface, prefix: Path) -> None:
    """Write the guide's four TF1 Saver files for a model: a graph with named variables, input and output.

    The model's serving function is traced once; its graph is imported into a TF1 graph with each
    captured variable handle mapped to a named resource variable and its input to a placeholder, and
    its output is given the output name. The Saver then stores those variables under their names.
    """
    import tensorflow as tf

    concrete = serving_function(model).get_concrete_function()
    graph = concrete.graph
    handles = {id(v.handle): v for v in model_variables(model)}
    captured = []
    for external, internal in zip(concrete.captured_inputs, graph.internal_captures):
        var = handles.get(id(external))
        if var is None:
            raise EntrypointError(
                "the model's serving function captures a tensor that is not one of its variables; "
                "make constants tf.constant inside the function"
            )
        captured.append((var, internal.name, var.numpy()))
    graph_def = graph.as_graph_def()
    input_placeholder = graph.inputs[0].name
    output_tensor = tf.nest.flatten(concrete.structured_outputs)[0].name
    with tf.Graph().as_default() as tf1_graph:
        x = tf.compat.v1.placeholder(
            tf.as_dtype(interface.input.dtype),
            shape=None if interface.input.shape is None else list(interface.input.shape),
            name=interface.input.name,
        )
        input_map = {input_placeholder: x}
        var_list = {}
        for var, internal_name, value in captured:
            name = _unique(variable_name(var), var_list)
            new_var = tf.compat.v1.get_variable(name, initializer=value, use_resource=True)
            var_list[name] = new_var
            input_map[internal_name] = new_var.handle
        (out,) = tf.import_graph_def(graph_def, input_map=input_map, return_elements=[output_tensor], name="model")
        tf.identity(out, name=interface.output.name)
        saver = tf.compat.v1.train.Saver(var_list=var_list)
        with tf.compat.v1.Session(graph=tf1_graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(prefix), write_meta_graph=True)


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate = f"{name}_{n}"
        n += 1
    return candidate


def write_checkpoint(trained: TrainedModel, fmt: CheckpointFormat) -> Checkpoint:
    """Turn the train stage's hand-off into a checkpoint of format ``fmt`` in the workspace."""
    import tensorflow as tf

    trained.artifact.verify()
    token = stage_token("checkpoint", __name__, {"trained": trained, "format": fmt})
    model = restore_trackable(trained.entrypoint, trained.artifact.path(trained.prefix))
    final = workspace.stage_dir("checkpoint", token)
    with workspace.building(final) as scratch:
        if fmt == "tf1":
            write_tf1_checkpoint(model, trained.interface, scratch / PREFIX)
        else:
            path = tf.train.Checkpoint(model=model).write(str(scratch / PREFIX))
            tf.compat.v1.train.update_checkpoint_state(str(scratch), path, all_model_checkpoint_paths=[path])
        _relativise_state_file(scratch)
    checkpoint = Checkpoint(
        artifact=Artifact.of(final),
        prefix=PREFIX,
        format=fmt,
        entrypoint=trained.entrypoint,
        entrypoint_digest=trained.entrypoint_digest,
        interface=trained.interface,
        variables=trained.variables,
    )
    check_complete(checkpoint)
    return checkpoint


def _relativise_state_file(folder: Path) -> None:
    """The ``checkpoint`` state file should name the prefix relatively, so the folder can move."""
    state = folder / "checkpoint"
    text = state.read_text().replace(str(folder) + "/", "")
    state.write_text(text)


# --- reading what users hand in: the files through the freeze engine's reader, TensorFlow only for shapes


def resolve_prefix(path: str | Path) -> Path:
    """A checkpoint prefix from a prefix (``dir/model``), a folder, or one of the checkpoint's files."""
    return reader.resolve_checkpoint_prefix(path).resolve()


def read_variables(prefix: Path) -> tuple[VariableInfo, ...]:
    return tuple(
        VariableInfo(name=name, dtype=dtype, shape=shape) for name, dtype, shape in reader.checkpoint_variables(prefix)
    )


def read_meta_graph(checkpoint: Checkpoint) -> Any:
    return reader.read_meta_graph(checkpoint.artifact.path(checkpoint.prefix + ".meta"))


def name_the_output(where: Path | str, graph: Any) -> ParameterError:
    """The error for a TF1 graph frozen without naming its output: it lists the likely ones."""
    likely = ", ".join(reader.output_candidates(graph)) or "none"
    return ParameterError(f"name the output node of {where} (--output-node); likely: {likely}")


@contextmanager
def restored_session(checkpoint: Checkpoint) -> Iterator[tuple[Any, Any]]:
    """A TF1 graph imported from the checkpoint's .meta (devices cleared) and a session with its variables."""
    import tensorflow as tf

    meta = read_meta_graph(checkpoint)
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        try:
            saver.restore(session, str(checkpoint.prefix_path))
        except (tf.errors.OpError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {checkpoint.prefix_path}: cannot read its variables "
                f"({type(exc).__name__}: {_first_line(exc)}); is a data file truncated or from another model?"
            ) from exc
        yield graph, session


def tf1_interface(meta_path: Path, output_nodes: list[str]) -> ModelInterface:
    """The input (the graph's one placeholder) and output (the first output node) of a TF1 graph."""
    import tensorflow as tf

    meta = reader.read_meta_graph(meta_path)
    if not output_nodes:
        raise name_the_output(meta_path, meta)
    reader.check_output_nodes(meta, output_nodes, f"the graph of {meta_path}")
    placeholders = serving_inputs(meta, reader.input_candidates(meta), output_nodes)
    if len(placeholders) != 1:
        raise CheckpointError(
            f"the graph of {meta_path} has {len(placeholders)} inputs ({', '.join(placeholders) or 'none'}); "
            "freezeflow serves models with exactly one input placeholder"
        )
    with tf.Graph().as_default() as graph:
        tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        x = graph.get_tensor_by_name(placeholders[0] + ":0")
        out_name = output_nodes[0] if ":" in output_nodes[0] else output_nodes[0] + ":0"
        y = graph.get_tensor_by_name(out_name)
    return ModelInterface(
        input=TensorSpec(name=placeholders[0], dtype=x.dtype.name, shape=_shape(x.shape)),
        output=TensorSpec(name=output_nodes[0].split(":")[0], dtype=y.dtype.name, shape=_shape(y.shape)),
    )


def describe_checkpoint(
    path: str | Path, entrypoint: Optional[str] = None, output_nodes: Optional[list[str]] = None
) -> Checkpoint:
    """A record for a checkpoint a user hands in, TF1 (needs its .meta) or TF2 (needs the entrypoint).

    The interface TensorFlow derives is remembered in the workspace (:func:`known_checkpoint` reads it).
    """
    prefix = resolve_prefix(path)
    files = reader.checkpoint_files(prefix)
    fmt = reader.checkpoint_format(prefix)
    interface = None
    digest = None
    if fmt == "tf1":
        meta = reader.locate_checkpoint(prefix).meta  # raises if the graph is missing: freezing needs it
        interface = tf1_interface(meta, list(output_nodes or []))
    else:
        if not entrypoint:
            raise ParameterError(
                f"checkpoint {prefix} is a TF2 object-based checkpoint: pass the entrypoint that builds its model "
                "(--entrypoint package.module:function)"
            )
        digest = entrypoint_digest(entrypoint)
        model = build_model(entrypoint, TrainContext(epochs=0, learning_rate=0.0, seed=0))
        interface = model_interface(model, entrypoint)
    checkpoint = _checkpoint_record(prefix, files, fmt, entrypoint, digest, interface)
    _remember_interface(checkpoint, output_nodes)
    return checkpoint


def known_checkpoint(
    path: str | Path, entrypoint: Optional[str] = None, output_nodes: Optional[list[str]] = None
) -> Optional[Checkpoint]:
    """What :func:`describe_checkpoint` returns for these files, without TensorFlow: None unless it has
    described the same content (same files, output nodes, entrypoint source) in this workspace before.

    A TF2 checkpoint's entrypoint is known by the digest of its own file, as the train stage's key knows it.
    """
    from tasks.tf.entrypoints import entrypoint_source_digest

    try:
        prefix = resolve_prefix(path)
        files = reader.checkpoint_files(prefix)
        fmt = reader.checkpoint_format(prefix)
    except (CheckpointError, OSError, ValueError):
        return None
    digest = None
    if fmt == "tf2":
        digest = entrypoint_source_digest(entrypoint) if entrypoint else None
        if digest is None:
            return None
    unknown = _checkpoint_record(prefix, files, fmt, entrypoint, digest, None)
    memo = _interface_memo(unknown, output_nodes)
    try:
        interface = ModelInterface.model_validate_json(memo.read_bytes())
    except (OSError, ValueError):
        return None
    return unknown.model_copy(update={"interface": interface})


def _checkpoint_record(prefix: Path, files: list[Path], fmt: CheckpointFormat, entrypoint: Optional[str],
                       digest: Optional[str], interface: Optional[ModelInterface]) -> Checkpoint:
    root = prefix.parent
    return Checkpoint(
        artifact=Artifact.of(root, [f.relative_to(root).as_posix() for f in files]),
        prefix=prefix.name,
        format=fmt,
        entrypoint=entrypoint if fmt == "tf2" else None,
        entrypoint_digest=digest,
        interface=interface,
        variables=read_variables(prefix),
    )


def _interface_memo(checkpoint: Checkpoint, output_nodes: Optional[list[str]]) -> Path:
    """Where the interface of ``checkpoint`` (its ``interface`` left out) is remembered: keyed on the files'
    content, the output nodes, the entrypoint and this module's code, as a stage's output is."""
    token = stage_token("describe", __name__, {"checkpoint": checkpoint.model_copy(update={"interface": None}),
                                               "output_nodes": list(output_nodes or [])})
    return workspace.home() / "described" / f"{token[:40]}.json"


def _remember_interface(checkpoint: Checkpoint, output_nodes: Optional[list[str]]) -> None:
    import os
    import uuid

    memo = _interface_memo(checkpoint, output_nodes)
    assert checkpoint.interface is not None
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        scratch = memo.with_name(f".{memo.name}.{uuid.uuid4().hex[:8]}")
        scratch.write_text(checkpoint.interface.model_dump_json())
        os.replace(scratch, memo)  # whole or not at all, for a reader in another process
    except OSError:
        pass  # a memo that cannot be written only costs the next command its fast path


def check_complete(checkpoint: Checkpoint) -> None:
    """A stage checks its own output: every file named and present, and the format as claimed."""
    checkpoint.artifact.verify()
    files = {f.path for f in checkpoint.artifact.files}
    needed = {f"{checkpoint.prefix}.index", f"{checkpoint.prefix}.data-00000-of-00001", "checkpoint"}
    if checkpoint.format == "tf1":
        needed.add(f"{checkpoint.prefix}.meta")
    missing = needed - files
    if missing:
        raise CheckpointError(f"checkpoint {checkpoint.prefix_path} was written without {sorted(missing)}")


def serving_inputs(meta: Any, candidates: list[str], output_nodes: list[str]) -> list[str]:
    """Of the graph's likely inputs, those the outputs read, leaving out a training graph's
    learning-phase switch (the sanitiser folds it) and placeholders only the training side reads
    (labels, for instance)."""
    from tasks.freeze_engine.sanitise import is_learning_phase

    nodes = {node.name: node for node in meta.graph_def.node}
    reached: set[str] = set()
    stack = [name.split(":")[0] for name in output_nodes]
    while stack:
        name = stack.pop()
        if name in reached or name not in nodes:
            continue
        reached.add(name)
        stack.extend(inp.split(":")[0].lstrip("^") for inp in nodes[name].input)
    return [name for name in candidates if name in reached and not is_learning_phase(nodes[name])]
