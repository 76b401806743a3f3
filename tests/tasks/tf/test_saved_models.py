"""Export: a SavedModel with tag serve, a serving_default predict signature and a dynamic batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.tf.checkpoints import describe_checkpoint
from tasks.core.errors import ParameterError
from tasks.freeze_engine.reader import read_saved_model
from tasks.tf.saved_models import export_saved_model
from tasks.tf.running import predict_saved_model


def test_saved_model_has_tag_signature_and_dynamic_batch(guide_records: dict) -> None:
    exported = guide_records["exported"]
    folder = exported.artifact.path()
    assert folder.name == "1"  # a numeric version folder, as TF Serving reads
    proto = read_saved_model(folder)
    (meta,) = proto.meta_graphs
    assert list(meta.meta_info_def.tags) == ["serve"]
    signature = meta.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert list(signature.inputs) == ["inputs"] and list(signature.outputs) == ["outputs"]
    assert signature.inputs["inputs"].tensor_shape.dim[0].size == -1
    assert predict_saved_model(exported, [2.0, 4.0, 6.0]).tolist() == [2.0, 3.0, 4.0]


def test_signature_keys_are_configurable(guide_checkpoint: Path) -> None:
    import tensorflow as tf

    exported = export_saved_model(describe_checkpoint(guide_checkpoint, output_nodes=["y"]),
                                  input_key="x_in", output_key="y_out")
    loaded = tf.saved_model.load(str(exported.artifact.path()))
    out = loaded.signatures["serving_default"](x_in=tf.constant([6.0]))
    assert list(out) == ["y_out"] and out["y_out"].numpy().tolist() == [4.0]


def test_bad_signature_key_is_refused(guide_checkpoint: Path) -> None:
    with pytest.raises(ParameterError, match="input_key '1x' must be a Python identifier"):
        export_saved_model(describe_checkpoint(guide_checkpoint, output_nodes=["y"]), input_key="1x")
