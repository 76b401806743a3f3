"""``freezeflow run`` and ``freezeflow convert``: the pipeline's flows from the command line.

Defaults come from :mod:`flows.defaults` and allowed values from :mod:`tasks.core.names`, the same
places the flows' parameter models read, so the command and the Prefect UI's form cannot disagree.
The models themselves are imported when a command runs: building them would slow ``--help``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from flows import defaults
from freezeflow.cli.checks import (
    DEFAULT_REMOTE_TIMEOUT,
    REMOTE_TIMEOUT_HELP,
    VERBOSE_HELP,
    check_checkpoint,
    check_destination,
    check_entrypoint,
    use_remote_timeout,
)
from freezeflow.cli.common import connect_api, fail, prepare_environment, pydantic_reason, run_flow
from tasks.core import layout, names

if TYPE_CHECKING:
    from tasks.core.records import RunSummary

app = typer.Typer()
_FORMATS = names.choices(names.CheckpointFormat)
_ENGINES = names.choices(names.FreezeEngine)


def print_summary(summary: "RunSummary") -> None:
    """The lines scripts read after ``run`` and ``convert``; their wording is part of the interface."""
    pub = summary.publication
    state = "already published as" if pub.reused else "published"
    typer.echo(f"{state} {summary.model_name} v{pub.version} at {pub.uri}")
    frozen_graph = pub.uri + "/" + layout.FROZEN_GRAPH if "://" in pub.uri else Path(pub.uri) / layout.FROZEN_GRAPH
    typer.echo(f"  frozen graph: {frozen_graph}")
    typer.echo(f"  SavedModel:   {pub.uri} (tag {summary.saved_model.tag}, signature {summary.saved_model.signature_key})")
    report = summary.validation
    inputs = report.reference_inputs
    at = 6.0 if 6.0 in inputs else inputs[-1]
    i = inputs.index(at)
    labels = {"checkpoint": "checkpoint", "frozen_graph": "frozen graph", "saved_model": "SavedModel"}
    cells = ", ".join(f"{labels[p.source]} {p.outputs[i]:.6g}" if isinstance(p.outputs[i], (int, float))
                      else f"{labels[p.source]} {p.outputs[i]}" for p in report.predictions)
    typer.echo(f"  prediction at x={json.dumps(at)}: {cells}")
    typer.echo("  stages: " + ", ".join(f"{s.name} {s.state}" for s in summary.stages))


@app.command()
def run(
    dest: str = typer.Option(defaults.DESTINATION, "--dest", help="Local folder or gs://bucket/prefix to publish to."),
    model_name: str = typer.Option(defaults.TRAINED_MODEL_NAME, "--model-name", help="Name of the model at the destination."),
    entrypoint: str = typer.Option(defaults.ENTRYPOINT,
                                   help="package.module:function that builds and trains the model."),
    checkpoint_format: str = typer.Option(defaults.CHECKPOINT_FORMAT, "--format", help="Checkpoint format: tf1 (the guide's) or tf2."),
    epochs: int = typer.Option(defaults.EPOCHS, min=0, help="Training epochs."),
    learning_rate: float = typer.Option(defaults.LEARNING_RATE, help="Learning rate."),
    seed: int = typer.Option(defaults.SEED, min=0, help="Seed for data and initialisation."),
    engine: str = typer.Option(defaults.FREEZE_ENGINE, help="TF1 freezing: stream (no TF runtime, flat memory) or tf."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every stage even if a cached result exists."),
    timeout: float = typer.Option(DEFAULT_REMOTE_TIMEOUT, "--timeout", help=REMOTE_TIMEOUT_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Run publish_model: train, checkpoint, freeze, export, validate, publish."""
    _one_of(checkpoint_format, _FORMATS, "--format")
    _engine(engine)  # refused before Prefect and TensorFlow are imported
    check_model_name(model_name)
    use_remote_timeout(timeout)
    # What can be checked before Prefect and TensorFlow start is checked here, in a second.
    from flows.params import TrainingParams

    training = _params(TrainingParams, entrypoint=entrypoint, epochs=epochs, learning_rate=learning_rate, seed=seed)
    check_entrypoint(entrypoint)
    check_destination(dest, model_name)
    prepare_environment()
    api = connect_api()  # a new server starts while Prefect and TensorFlow import below
    from flows.publish import publish_model

    summary = run_flow(publish_model, api=api, verbose=verbose, command="run", model_name=model_name,
                       training=training, checkpoint_format=checkpoint_format, destination=dest,
                       refresh_cache=no_cache, freeze_engine=engine)
    print_summary(summary)


def _one_of(value: str, allowed: tuple[str, ...], hint: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"must be {' or '.join(allowed)}", param_hint=hint)
    return value


def _engine(value: str) -> str:
    return _one_of(value, _ENGINES, "--engine")


def check_model_name(name: str) -> None:
    """Refuse a bad model name before anything starts."""
    from tasks.core.errors import ParameterError
    from tasks.core.layout import check_model_name as check

    try:
        check(name)
    except ParameterError as exc:
        fail(exc)


def _params(model: Any, **values: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        fail(pydantic_reason(exc))


@app.command()
def convert(
    checkpoint: Path = typer.Argument(..., help="Checkpoint prefix (dir/model) or a folder with a 'checkpoint' file."),
    output_node: Optional[list[str]] = typer.Option(None, "--output-node", help="Output node to keep (repeatable)."),
    entrypoint: Optional[str] = typer.Option(None, help="For a TF2 checkpoint: package.module:function that builds its model."),
    dest: str = typer.Option(defaults.DESTINATION, "--dest", help="Local folder or gs://bucket/prefix to publish to."),
    model_name: str = typer.Option(defaults.CONVERTED_MODEL_NAME, "--model-name", help="Name of the model at the destination."),
    reference_input: Optional[list[str]] = typer.Option(
        None, "--reference-input", help="JSON instance to validate with (repeatable); default 2.0, 4.0, 6.0."),
    engine: str = typer.Option(defaults.FREEZE_ENGINE, help="TF1 freezing: stream (no TF runtime, flat memory) or tf."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every stage even if a cached result exists."),
    timeout: float = typer.Option(DEFAULT_REMOTE_TIMEOUT, "--timeout", help=REMOTE_TIMEOUT_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Run convert_checkpoint: an existing checkpoint to a frozen graph and SavedModel, validated and published."""
    _engine(engine)
    check_model_name(model_name)
    use_remote_timeout(timeout)
    # What can be checked before Prefect and TensorFlow start is checked here, in a second.
    from flows.params import ValidationParams

    validation = ValidationParams()
    if reference_input:
        try:
            values = [json.loads(v) for v in reference_input]
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--reference-input")
        validation = _params(ValidationParams, reference_inputs=values)
    check_checkpoint(checkpoint)
    if entrypoint is not None:
        check_entrypoint(entrypoint)
    check_destination(dest, model_name)
    prepare_environment()
    api = connect_api()
    from flows.convert import convert_checkpoint

    summary = run_flow(convert_checkpoint, api=api, verbose=verbose, command="convert", checkpoint=str(checkpoint),
                       output_nodes=list(output_node or []) or None, entrypoint=entrypoint, model_name=model_name,
                       validation=validation, destination=dest, refresh_cache=no_cache, freeze_engine=engine)
    print_summary(summary)
