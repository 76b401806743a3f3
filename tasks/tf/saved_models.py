"""SavedModels with TensorFlow: export a checkpoint with tag ``serve`` and one ``serving_default``
predict signature, and read a SavedModel's ``saved_model.pb``.

It is written into a numeric version folder (``…/1/saved_model.pb``), the layout TF Serving and
Vertex AI read; the upload stage gives it its published version number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core import workspace
from tasks.core.cache_keys import stage_token
from tasks.core.errors import CheckpointError, ParameterError
from tasks.core.layout import SAVED_MODEL, SERVING_TAG, SIGNATURE_KEY, VARIABLES_INDEX
from tasks.core.records import Artifact, Checkpoint, ExportedModel
from tasks.freeze_engine.devices import clear_devices
from tasks.freeze_engine.reader import read_saved_model
from tasks.tf.checkpoints import restore_trackable, restored_session


LOCAL_VERSION = "1"


def _check_keys(input_key: str, output_key: str) -> None:
    for name, key in (("input_key", input_key), ("output_key", output_key)):
        if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ParameterError(f"{name} {key!r} must be a Python identifier such as 'inputs'")


def _export_tf1(checkpoint: Checkpoint, input_key: str, output_key: str, target: str) -> None:
    import tensorflow as tf

    assert checkpoint.interface is not None, "describe_checkpoint fills in a TF1 checkpoint's interface"
    with restored_session(checkpoint) as (graph, session):
        signature = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
            inputs={input_key: graph.get_tensor_by_name(_tensor(checkpoint.interface.input.name))},
            outputs={output_key: graph.get_tensor_by_name(_tensor(checkpoint.interface.output.name))},
        )
        builder = tf.compat.v1.saved_model.Builder(target)
        builder.add_meta_graph_and_variables(
            session, [SERVING_TAG], signature_def_map={SIGNATURE_KEY: signature}, strip_default_attrs=True,
            clear_devices=True,
        )
        builder.save()


def _export_tf2(checkpoint: Checkpoint, input_key: str, output_key: str, target: str) -> None:
    import tensorflow as tf

    from tasks.tf.entrypoints import serving_function

    assert checkpoint.entrypoint
    model = restore_trackable(checkpoint.entrypoint, checkpoint.prefix_path)
    fn = serving_function(model, checkpoint.entrypoint)
    spec = fn.input_signature[0]

    @tf.function(input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=input_key)])
    def serve(inputs: Any) -> Any:
        return {output_key: fn(inputs)}

    holder = tf.Module()
    holder.model = model
    holder.serve = serve
    tf.saved_model.save(holder, target, signatures={SIGNATURE_KEY: serve.get_concrete_function()})
    _unpin_saved_model(Path(target))


def _unpin_saved_model(folder: Path) -> None:
    """TF2's saver pins its save/restore ops to the CPU; a served model should carry no device pins."""
    proto = read_saved_model(folder)
    for meta in proto.meta_graphs:
        clear_devices(meta.graph_def)
    (folder / SAVED_MODEL).write_bytes(proto.SerializeToString(deterministic=True))


def _tensor(name: str) -> str:
    return name if ":" in name else name + ":0"


def export_saved_model(checkpoint: Checkpoint, input_key: str = "inputs", output_key: str = "outputs") -> ExportedModel:
    """Export ``checkpoint`` as a SavedModel whose signature maps ``input_key``/``output_key`` to its interface."""
    _check_keys(input_key, output_key)
    checkpoint.artifact.verify()
    token = stage_token(
        "export", __name__,
        {"checkpoint": checkpoint, "input_key": input_key, "output_key": output_key},
    )
    final = workspace.stage_dir("export", token)
    with workspace.building(final) as scratch:
        target = str(scratch / LOCAL_VERSION)
        if checkpoint.format == "tf1":
            _export_tf1(checkpoint, input_key, output_key, target)
        else:
            _export_tf2(checkpoint, input_key, output_key, target)
    exported = ExportedModel(
        artifact=Artifact.of(final / LOCAL_VERSION), tag=SERVING_TAG, signature_key=SIGNATURE_KEY,
        input_key=input_key, output_key=output_key,
    )
    check_exported(exported)
    return exported


def check_exported(exported: ExportedModel) -> None:
    """The stage checks its output: saved_model.pb and variables are there, with the tag and signature."""
    exported.artifact.verify()
    names = {f.path for f in exported.artifact.files}
    if SAVED_MODEL not in names or VARIABLES_INDEX not in names:
        raise CheckpointError(f"SavedModel {exported.artifact.root} is incomplete: {sorted(names)}")
    proto = read_saved_model(exported.artifact.path())
    graphs = [m for m in proto.meta_graphs if SERVING_TAG in m.meta_info_def.tags]
    if not graphs or SIGNATURE_KEY not in graphs[0].signature_def:
        raise CheckpointError(f"SavedModel {exported.artifact.root} lacks tag {SERVING_TAG!r} or signature {SIGNATURE_KEY!r}")
