"""Real architectures convert: Keras's own layers and application models saved as TF1 Saver checkpoints
go through sanitise, freeze, export and validate with default settings and agree with TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.core.errors import ValidationFailed
from tasks.core.reference_inputs import describe_reference
from tasks.core.tolerance import DEFAULT_ATOL, DEFAULT_RTOL, compare
from tests.support import real_models

GENERATED = describe_reference(None, None, seed=0, batch_size=2)


@pytest.fixture(scope="session")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, real_models.RealModel]:
    """Each architecture saved once for the session; tests copy nothing and change nothing in them."""
    root = tmp_path_factory.mktemp("real-models")
    return {kind: real_models.save_real_model(kind, root / kind) for kind in ("resnet", "text_lstm")}


@pytest.fixture(scope="session")
def saved_mobilenet(tmp_path_factory: pytest.TempPathFactory) -> real_models.RealModel:
    return real_models.save_real_model("mobilenet", tmp_path_factory.mktemp("real-models") / "mobilenet")


def convert(prefix: Path, **freeze_options: object) -> tuple:
    """describe → sanitise → freeze → export, as the pipeline runs them."""
    from tasks.tf.checkpoints import describe_checkpoint
    from tasks.tf.freezing import write_frozen_graph
    from tasks.tf.sanitising import sanitise_checkpoint
    from tasks.tf.saved_models import export_saved_model

    checkpoint = sanitise_checkpoint(describe_checkpoint(prefix, output_nodes=[real_models.OUTPUT]))
    return checkpoint, write_frozen_graph(checkpoint, **freeze_options), export_saved_model(checkpoint)


def run_frozen(path: Path, batch: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        tf.import_graph_def(graph_def, name="")
        return session.run(real_models.OUTPUT + ":0", {real_models.INPUT + ":0": batch})


def check_converts_and_agrees_with_tensorflow(model: real_models.RealModel) -> dict:
    from tasks.tf.validation import validate_model

    checkpoint, frozen, exported = convert(model.prefix)
    assert checkpoint.rewrites == ()  # an inference graph is left as it is
    report = validate_model(checkpoint, frozen, exported, GENERATED)  # the default rtol and atol
    assert report.passed, [c.detail for c in report.comparisons] + [c.detail for c in report.checks if not c.passed]
    arrays = np.load(report.artifact.path("arrays.npz"))
    batch = arrays["inputs"]
    _, tf_frozen = real_models.tf_frozen_reference(model, batch)
    ours = run_frozen(frozen.graph_path, batch)
    assert compare(ours, tf_frozen, DEFAULT_RTOL, DEFAULT_ATOL).passed
    # Outputs that barely move would hide a broken conversion: batch norms carry real statistics.
    assert float(np.std(tf_frozen)) > 1e-3
    return {"report": report, "batch": batch}


@pytest.mark.parametrize("kind", ["resnet", "text_lstm"])
def test_real_architecture_converts_with_defaults_and_agrees_with_tensorflows_frozen_graph(
    saved: dict, kind: str
) -> None:
    result = check_converts_and_agrees_with_tensorflow(saved[kind])
    if kind == "text_lstm":  # token ids generated inside the embedding's 200 rows, not only the default 0..9
        assert result["batch"].dtype == np.int32 and result["batch"].max() < 200 and result["batch"].max() >= 10


@pytest.mark.slow
def test_depthwise_separable_mobilenet_converts_with_defaults(saved_mobilenet: real_models.RealModel) -> None:
    check_converts_and_agrees_with_tensorflow(saved_mobilenet)


def test_training_graph_converts_through_the_sanitiser_and_agrees_with_inference_mode(tmp_path: Path) -> None:
    from tasks.tf.validation import validate_model

    training = real_models.save_real_model("resnet", tmp_path / "train", training=True, optimizer=True,
                                           summaries=True)
    inference = real_models.save_real_model("resnet", tmp_path / "infer")
    checkpoint, frozen, exported = convert(training.prefix)
    rewrites = "\n".join(checkpoint.rewrites)
    assert rewrites.count("in training mode now normalises with its moving statistics") == 6
    assert "dropout 'resnet_small_1/dropout_1' removed" in rewrites or "dropout '" in rewrites
    assert "optimiser pruned: 42 slot/state variable(s)" in rewrites and "summary op(s) pruned" in rewrites
    report = validate_model(checkpoint, frozen, exported, GENERATED)
    assert report.passed and report.rewrites == checkpoint.rewrites
    assert "Rewrites (the graph was changed before freezing and export)" in report.artifact.path("report.md").read_text()
    batch = training.sample
    reference = real_models.tf_unfrozen(inference, batch)  # the same weights, built in inference mode
    assert compare(run_frozen(frozen.graph_path, batch), reference, DEFAULT_RTOL, DEFAULT_ATOL).passed
    # Without the sanitiser the same checkpoint freezes into a graph that normalises with batch statistics.
    from tasks.freeze_engine import freeze_checkpoint as stream_freeze

    stream_freeze(training.prefix, [real_models.OUTPUT], tmp_path / "raw.pb")
    assert not compare(run_frozen(tmp_path / "raw.pb", batch), reference, DEFAULT_RTOL, DEFAULT_ATOL).passed
    # The SavedModel carries no optimiser slots: only the 32 variables inference reads.
    index = exported.artifact.path("variables/variables.index")
    from tasks.freeze_engine import checkpoint_variables

    names = [name for name, _, _ in checkpoint_variables(index.with_suffix(""))]
    assert not [n for n in names if "Adam" in n] and len(names) == 32


def test_learning_phase_placeholder_is_folded_to_inference(tmp_path: Path) -> None:
    from tasks.tf.validation import validate_model

    model = real_models.save_learning_phase_model(tmp_path / "phase")
    checkpoint, frozen, exported = convert(model.prefix)
    assert checkpoint.interface is not None and checkpoint.interface.input.name == "x"  # not the phase switch
    assert checkpoint.rewrites[0] == ("learning-phase placeholder 'keras_learning_phase' folded to False; "
                                      "2 conditional(s) keep their inference branch")
    assert validate_model(checkpoint, frozen, exported, GENERATED).passed
    reference = real_models.tf_unfrozen(model, model.sample)  # TF runs the original with the phase at False
    assert compare(run_frozen(frozen.graph_path, model.sample), reference, DEFAULT_RTOL, DEFAULT_ATOL).passed


def test_fold_batch_norm_folds_every_batch_norm_into_its_convolution(saved: dict) -> None:
    from tasks.tf.validation import validate_model

    model = saved["resnet"]
    checkpoint, plain, exported = convert(model.prefix)
    _, folded, _ = convert(model.prefix, fold_batch_norm=True)
    assert len(folded.rewrites) == 6 and all(" folded into " in r and "(Conv2D, " in r for r in folded.rewrites)
    assert folded.node_count < plain.node_count
    report = validate_model(checkpoint, folded, exported, GENERATED)
    assert report.passed and list(report.rewrites) == list(folded.rewrites)
    _, tf_frozen = real_models.tf_frozen_reference(model, model.sample)
    assert compare(run_frozen(folded.graph_path, model.sample), tf_frozen, DEFAULT_RTOL, DEFAULT_ATOL).passed


def test_a_wrong_constant_is_caught_at_the_default_tolerance(saved: dict, tmp_path: Path) -> None:
    from tasks.core.records import Artifact
    from tasks.freeze_engine import protos
    from tasks.freeze_engine.fold_batch_norm import const_node, tensor_value
    from tasks.core.report import require_passed, worst_table
    from tasks.tf.validation import validate_model

    checkpoint, frozen, exported = convert(saved["resnet"].prefix)
    graph_def = protos.graph_pb2.GraphDef.FromString(frozen.graph_path.read_bytes())
    gamma = next(n for n in graph_def.node if n.op == "Const" and n.name == "stem_bn/gamma")
    gamma.CopyFrom(const_node(gamma.name, tensor_value(gamma.attr["value"].tensor) * np.float32(1.01)))  # 1 % off
    folder = tmp_path / "wrong"
    folder.mkdir()
    (folder / frozen.filename).write_bytes(graph_def.SerializeToString())
    wrong = frozen.model_copy(update={"artifact": Artifact.of(folder, [frozen.filename])})
    report = validate_model(checkpoint, wrong, exported, GENERATED)
    assert not report.passed
    with pytest.raises(ValidationFailed) as failure:
        require_passed(report)
    message = str(failure.value)
    assert message.startswith("validation failed: frozen graph differs from checkpoint by ")
    assert "past rtol 0.0001, atol 1e-05" in message and message.endswith(str(report.artifact.path("report.md")))
    assert len(message) - len(str(report.artifact.path("report.md"))) < 300
    data = json.loads(report.artifact.path("report.json").read_text())
    pairs = {(c["format"], c["reference"]): c for c in data["comparisons"]}
    assert pairs[("saved_model", "checkpoint")]["passed"] and not pairs[("frozen_graph", "checkpoint")]["passed"]
    rows = worst_table(report)
    assert rows and rows[0]["format"] == "frozen graph" and not rows[0]["within"]
