"""Running a model in each of its three forms with TensorFlow: the checkpoint, the frozen graph and
the SavedModel, each loaded as its users load it."""

from __future__ import annotations

from typing import Any

from tasks.core.records import Checkpoint, ExportedModel, FrozenGraph
from tasks.tf.checkpoints import restore_trackable, restored_session
from tasks.freeze_engine.reader import read_graph_def


def predict_checkpoint(checkpoint: Checkpoint, batch: Any) -> Any:
    import tensorflow as tf

    assert checkpoint.interface is not None
    if checkpoint.format == "tf2":
        assert checkpoint.entrypoint
        from tasks.tf.entrypoints import serving_function

        model = restore_trackable(checkpoint.entrypoint, checkpoint.prefix_path)
        return serving_function(model, checkpoint.entrypoint)(tf.constant(batch)).numpy()
    with restored_session(checkpoint) as (_, session):
        return session.run(checkpoint.interface.output.name + ":0", {checkpoint.interface.input.name + ":0": batch})


def predict_frozen(frozen: FrozenGraph, batch: Any) -> Any:
    """Load the frozen graph as users do, ``import_graph_def(..., name="")``, and run it."""
    import tensorflow as tf

    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        tf.import_graph_def(read_graph_def(frozen.graph_path), name="")
        return session.run(frozen.output_tensor, {frozen.input_tensor: batch})


def predict_saved_model(exported: ExportedModel, batch: Any) -> Any:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported.artifact.path()), tags=[exported.tag])
    signature = loaded.signatures[exported.signature_key]
    return signature(**{exported.input_key: tf.constant(batch)})[exported.output_key].numpy()
