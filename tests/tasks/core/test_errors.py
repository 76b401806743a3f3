"""The error family: one base, each member also a built-in, every message one line."""

from __future__ import annotations

import pytest

from tasks.core import errors

BUILTIN = {
    errors.ParameterError: ValueError,
    errors.EntrypointError: ImportError,
    errors.CheckpointError: ValueError,
    errors.OutputNodeError: KeyError,
    errors.GraphTooLargeError: ValueError,
    errors.UnsupportedGraphError: ValueError,
    errors.ValidationFailed: AssertionError,
    errors.StaleArtifactError: FileNotFoundError,
    errors.PredictionError: RuntimeError,
    errors.DeploymentError: RuntimeError,
    errors.DestinationError: OSError,
    errors.PermanentDestinationError: errors.DestinationError,
    errors.TransientDestinationError: errors.DestinationError,
}


@pytest.mark.parametrize("kind, builtin", BUILTIN.items(), ids=lambda k: getattr(k, "__name__", ""))
def test_every_error_is_a_freezeflow_error_and_its_builtin(kind: type, builtin: type) -> None:
    error = kind("model.meta is missing")
    assert isinstance(error, errors.FreezeflowError) and isinstance(error, builtin)


def test_every_error_class_in_the_module_is_in_the_tree_above() -> None:
    found = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.FreezeflowError)}
    assert found == set(BUILTIN) | {errors.FreezeflowError}


def test_a_message_is_one_line_whatever_it_was_given() -> None:
    error = errors.CheckpointError("model.index\n   is truncated;", "copy it again")
    assert str(error) == "model.index is truncated; copy it again"


def test_an_unknown_output_node_reads_without_keyerror_s_quotes() -> None:
    assert str(errors.OutputNodeError("output node 'z' is not in the graph")) == "output node 'z' is not in the graph"


def test_a_prediction_error_keeps_the_http_status() -> None:
    assert errors.PredictionError("refused", status=429).status == 429
    assert errors.PredictionError("no answer").status is None
