"""Numbers that are not finite (issue 17): a diverged training fails the train stage, and validation fails
on any nan or inf output with a reason that says so (not "expected [nan, ...]")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.errors import TrainingDiverged, ValidationFailed
from tasks.tf.checkpoints import describe_checkpoint
from tasks.tf.freezing import write_frozen_graph
from tasks.tf.saved_models import export_saved_model
from tasks.tf.training import train_model
from tasks.tf.validation import require_passed, validate_model
from tests.guide import write_guide_checkpoint


def test_training_that_diverges_fails_the_train_stage() -> None:
    with pytest.raises(TrainingDiverged) as failure:
        train_model("tasks.tf.entrypoints:linear_model", epochs=40, learning_rate=10.0, seed=0)

    assert str(failure.value).startswith("training with 'tasks.tf.entrypoints:linear_model' diverged: the loss is ")
    assert str(failure.value).endswith(
        "of 40; lower the learning rate (now 10) or check the training data")


def test_training_that_converges_passes(workspace_home: Path) -> None:
    trained = train_model("tasks.tf.entrypoints:linear_model", epochs=5, learning_rate=0.05, seed=0)
    assert len(trained.losses) == 5


def test_validation_fails_on_nan_outputs_and_says_so(tmp_path: Path) -> None:
    prefix = write_guide_checkpoint(tmp_path / "ckpt", m=float("nan"))
    checkpoint = describe_checkpoint(prefix, output_nodes=["y"])

    report = validate_model(checkpoint, write_frozen_graph(checkpoint), export_saved_model(checkpoint),
                            [2.0, 4.0, 6.0], rtol=0.0, atol=1e-5)

    assert not report.passed
    assert [c.name for c in report.checks if not c.passed] == [
        "checkpoint outputs are finite", "frozen_graph outputs are finite", "saved_model outputs are finite"]
    with pytest.raises(ValidationFailed) as failure:
        require_passed(report)
    message = str(failure.value)
    assert message.startswith("validation failed: checkpoint outputs are finite: the checkpoint gives nan for 3 of 3 "
                              "reference inputs (first: 2.0); the model itself is broken (did training diverge?); "
                              "and 2 more failed check(s); report ")
    assert "expected" not in message
