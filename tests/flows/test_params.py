"""The flows' parameters: one model-name rule, one set of allowed values, one default each, CLI included."""

from __future__ import annotations

import inspect

import pytest
import typer
from pydantic import TypeAdapter, ValidationError

from flows import defaults
from flows.params import (
    CheckpointFormat,
    FreezeEngine,
    ModelName,
    TrainingParams,
    ValidationParams,
    parameters_record,
)
from tasks.core.errors import ParameterError
from tasks.core.layout import check_model_name
from tasks.core.tolerance import DEFAULT_ATOL, DEFAULT_RTOL


@pytest.mark.parametrize("name", ["linear", "a", "m0.v-1_x", "9" * 63])
def test_a_good_model_name_passes_the_flow_parameter_and_the_layout_check(name: str) -> None:
    assert TypeAdapter(ModelName).validate_python(name) == name
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "Linear", "-x", ".", "..", "a/b", "a" * 64, "linear\n", "lin ear"])
def test_a_bad_model_name_fails_both_with_the_same_verdict(name: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(ModelName).validate_python(name)
    with pytest.raises(ParameterError, match=r"model_name .* must be 1-63 lowercase letters"):
        check_model_name(name)


def test_formats_and_engines_allow_exactly_the_core_literals() -> None:
    assert TypeAdapter(CheckpointFormat).validate_python("tf2") == "tf2"
    assert TypeAdapter(FreezeEngine).validate_python("tf") == "tf"
    for kind, bad in ((CheckpointFormat, "tf3"), (FreezeEngine, "fast")):
        with pytest.raises(ValidationError):
            TypeAdapter(kind).validate_python(bad)


def test_training_defaults_are_the_shared_constants_and_bounds_hold() -> None:
    params = TrainingParams()
    assert (params.entrypoint, params.epochs, params.learning_rate, params.seed) == (
        defaults.ENTRYPOINT, defaults.EPOCHS, defaults.LEARNING_RATE, defaults.SEED)
    for bad in ({"epochs": -1}, {"learning_rate": 0}, {"seed": -2}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            TrainingParams(**bad)


def test_validation_needs_a_reference_input_and_a_tolerance_of_zero_or_more() -> None:
    assert ValidationParams().reference_inputs is None  # none given: a batch generated from the signature
    with pytest.raises(ValidationError):
        ValidationParams(reference_inputs=[])
    with pytest.raises(ValidationError), pytest.warns(DeprecationWarning):
        ValidationParams(tolerance=-1e-9)


def test_parameters_record_is_plain_json() -> None:
    record = parameters_record(model_name="m", training=TrainingParams(epochs=3))
    assert record["model_name"] == "m" and record["training"]["epochs"] == 3


def _cli_defaults(command: str) -> dict[str, object]:
    from freezeflow.cli.app import app

    group = typer.main.get_command(app)
    return {p.name: p.default for p in group.commands[command].params}  # type: ignore[attr-defined]


def test_the_cli_defaults_are_the_flows_defaults() -> None:
    from flows.convert import convert_checkpoint
    from flows.publish import publish_model

    publish = inspect.signature(publish_model.fn).parameters
    run = _cli_defaults("run")
    assert run["dest"] == publish["destination"].default
    assert run["model_name"] == publish["model_name"].default
    assert run["checkpoint_format"] == publish["checkpoint_format"].default
    assert run["engine"] == publish["freeze_engine"].default
    training = TrainingParams()
    assert (run["entrypoint"], run["epochs"], run["learning_rate"], run["seed"]) == (
        training.entrypoint, training.epochs, training.learning_rate, training.seed)
    convert = inspect.signature(convert_checkpoint.fn).parameters
    cli_convert = _cli_defaults("convert")
    assert cli_convert["dest"] == convert["destination"].default
    assert cli_convert["model_name"] == convert["model_name"].default
    assert cli_convert["engine"] == convert["freeze_engine"].default


def test_the_smoke_command_defaults_are_the_smoke_flow_s() -> None:
    from flows.smoke import smoke

    flow = inspect.signature(smoke.fn).parameters
    cli = _cli_defaults("smoke")
    assert (cli["dest"], cli["epochs"]) == (flow["destination"].default, flow["epochs"].default)


def test_the_deploy_command_defaults_are_the_vertex_parameters() -> None:
    from tasks.vertex.deploy import VertexParams

    params = VertexParams()
    deploy, undeploy = _cli_defaults("deploy"), _cli_defaults("undeploy")
    assert (deploy["region"], deploy["machine_type"]) == (params.region, params.machine_type)
    assert undeploy["region"] == params.region
def test_defaults_are_the_measured_tolerances_and_generated_inputs() -> None:
    params = ValidationParams()
    assert (params.rtol, params.atol) == (DEFAULT_RTOL, DEFAULT_ATOL) == (1e-4, 1e-5)
    assert params.reference_inputs is None and params.reference_inputs_file is None


def test_the_old_single_tolerance_is_read_as_atol_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="tolerance is deprecated: use atol"):
        params = ValidationParams.model_validate({"tolerance": 1e-3, "reference_inputs": [1.0]})
    assert params.atol == 1e-3 and params.rtol == DEFAULT_RTOL
    with pytest.warns(DeprecationWarning):
        assert ValidationParams(tolerance=1e-3, atol=1e-6).atol == 1e-6  # an explicit atol wins


def test_inline_inputs_and_a_file_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="give reference_inputs or reference_inputs_file, not both"):
        ValidationParams(reference_inputs=[1.0], reference_inputs_file="batch.npy")


def test_negative_tolerances_are_refused() -> None:
    with pytest.raises(ValidationError):
        ValidationParams(rtol=-1e-4)
