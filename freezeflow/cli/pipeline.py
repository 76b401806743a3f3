"""``freezeflow run`` and ``freezeflow convert``: the pipeline's flows from the command line.

Defaults come from :mod:`flows.defaults` and allowed values from :mod:`tasks.core.names`, the same
places the flows' parameter models read, so the command and the Prefect UI's form cannot disagree.
The models themselves are imported when a command runs: building them would slow ``--help``.

Before starting Prefect, each command asks :mod:`flows.cached_run` whether every stage is cached and
still holds; if so it prints the summary from the cache and says no Prefect run was recorded
(``--record`` and ``--no-cache`` always go through Prefect).
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
    WORKSPACE_HELP,
    use_remote_timeout,
    use_workspace,
)
from freezeflow.cli.common import connect_api, fail, prepare_environment, pydantic_reason, run_flow
from tasks.core import layout, names

if TYPE_CHECKING:
    from tasks.core.records import RunSummary

app = typer.Typer()
_FORMATS = names.choices(names.CheckpointFormat)
_ENGINES = names.choices(names.FreezeEngine)
REFERENCE_FILE_HELP = ("Reference batch to validate with: .npy, .npz (one array per signature input) or JSON; "
                       "default: generated from the input signature with a fixed seed.")
RTOL_HELP = "Relative tolerance between formats: |a - b| <= atol + rtol * |b| (default 1e-4)."
ATOL_HELP = "Absolute tolerance between formats (default 1e-5)."
FOLD_HELP = "Fold batch norms into the preceding convolution or matmul weights of the frozen graph."
RECORD_HELP = ("Go through Prefect even when every stage is cached, so the run is recorded (and shown in the UI); "
               "without it a fully cached run is read from the cache without starting Prefect.")
NOT_RECORDED = "  no Prefect run was recorded: every stage was cached (--record runs it through Prefect)"


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
    labels = {"checkpoint": "checkpoint", "frozen_graph": "frozen graph", "saved_model": "SavedModel"}
    if inputs and all(not isinstance(p.outputs[0], list) for p in report.predictions):
        # The guide's kind of model, scalars in and out: one prediction per format.
        at = 6.0 if 6.0 in inputs else inputs[-1]
        i = inputs.index(at)
        cells = ", ".join(f"{labels[p.source]} {p.outputs[i]:.6g}" if isinstance(p.outputs[i], (int, float))
                          else f"{labels[p.source]} {p.outputs[i]}" for p in report.predictions)
        typer.echo(f"  prediction at x={json.dumps(at)}: {cells}")
    else:
        reference = report.reference
        where = {"file": f"the batch in {reference.file}", "generated": f"a generated batch (seed {reference.seed})"}
        typer.echo(f"  validated on {where.get(reference.source, 'the reference inputs')}: largest difference "
                   f"{report.max_abs_difference:.3g} (rtol {report.rtol:g}, atol {report.atol:g})")
    for rewrite in report.rewrites:
        typer.echo(f"  rewrite: {rewrite}")
    typer.echo("  stages: " + ", ".join(f"{s.name} {s.state}" for s in summary.stages))


def print_cached(summary: Optional["RunSummary"]) -> bool:
    """Print a summary the cached fast path read (:mod:`flows.cached_run`); False when there is none."""
    if summary is None:
        return False
    print_summary(summary)
    typer.echo(NOT_RECORDED)
    return True


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
    reference_inputs: Optional[Path] = typer.Option(None, "--reference-inputs", help=REFERENCE_FILE_HELP),
    rtol: Optional[float] = typer.Option(None, "--rtol", min=0, help=RTOL_HELP),
    atol: Optional[float] = typer.Option(None, "--atol", min=0, help=ATOL_HELP),
    fold_batch_norm: bool = typer.Option(False, "--fold-batch-norm", help=FOLD_HELP),
    record: bool = typer.Option(False, "--record", help=RECORD_HELP),
    workspace: Optional[str] = typer.Option(None, "--workspace", help=WORKSPACE_HELP),
) -> None:
    """Run publish_model: train, checkpoint, freeze, export, validate, publish."""
    _one_of(checkpoint_format, _FORMATS, "--format")
    _engine(engine)  # refused before Prefect and TensorFlow are imported
    check_model_name(model_name)
    use_remote_timeout(timeout)
    # What can be checked before Prefect and TensorFlow start is checked here, in a second.
    from flows.params import TrainingParams

    training = _params(TrainingParams, entrypoint=entrypoint, epochs=epochs, learning_rate=learning_rate, seed=seed)
    # The guide's model is checked at the guide's points; any other model on a batch generated from its signature.
    guide_points = ([json.dumps(x) for x in defaults.GUIDE_REFERENCE_INPUTS]
                    if entrypoint == defaults.ENTRYPOINT and reference_inputs is None else None)
    validation = _validation(guide_points, reference_inputs, rtol, atol)
    check_entrypoint(entrypoint)
    check_destination(dest, model_name)
    use_workspace(workspace)
    prepare_environment()
    if not (no_cache or record):
        from flows.cached_run import cached_publish
        from flows.params import SignatureParams

        if print_cached(cached_publish(model_name=model_name, training=training, checkpoint_format=checkpoint_format,
                                       signature=SignatureParams(), validation=validation, destination=dest,
                                       freeze_engine=engine, fold_batch_norm=fold_batch_norm)):
            return
    api = connect_api()  # a new server starts while Prefect and TensorFlow import below
    from flows.publish import publish_model

    summary = run_flow(publish_model, api=api, verbose=verbose, command="run", model_name=model_name,
                       training=training, checkpoint_format=checkpoint_format, validation=validation,
                       destination=dest, refresh_cache=no_cache, freeze_engine=engine,
                       fold_batch_norm=fold_batch_norm)
    print_summary(summary)


def _validation(instances: Optional[list[str]], file: Optional[Path], rtol: Optional[float],
                atol: Optional[float]) -> Any:
    """ValidationParams from the command line; a bad value fails with the option's name."""
    from flows.params import ValidationParams

    values: dict[str, Any] = {}
    if instances:
        try:
            values["reference_inputs"] = [json.loads(v) for v in instances]
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--reference-input")
    if file is not None:
        if instances:
            fail("give --reference-input values or a --reference-inputs file, not both")
        if file.suffix.lower() not in (".npy", ".npz", ".json"):
            fail(f"--reference-inputs {file}: expected a .npy, .npz or .json file")
        if not file.is_file():
            fail(f"--reference-inputs {file.resolve()} does not exist")
        values["reference_inputs_file"] = str(file.resolve())
    if rtol is not None:
        values["rtol"] = rtol
    if atol is not None:
        values["atol"] = atol
    return _params(ValidationParams, **values)


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
        None, "--reference-input", help="JSON instance to validate with (repeatable); see also --reference-inputs."),
    reference_inputs: Optional[Path] = typer.Option(None, "--reference-inputs", help=REFERENCE_FILE_HELP),
    rtol: Optional[float] = typer.Option(None, "--rtol", min=0, help=RTOL_HELP),
    atol: Optional[float] = typer.Option(None, "--atol", min=0, help=ATOL_HELP),
    engine: str = typer.Option(defaults.FREEZE_ENGINE, help="TF1 freezing: stream (no TF runtime, flat memory) or tf."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every stage even if a cached result exists."),
    timeout: float = typer.Option(DEFAULT_REMOTE_TIMEOUT, "--timeout", help=REMOTE_TIMEOUT_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
    no_sanitise: bool = typer.Option(False, "--no-sanitise",
                                     help="Keep a TF1 training graph as it is (no learning-phase, batch-norm, dropout "
                                          "or optimiser rewrites)."),
    fold_batch_norm: bool = typer.Option(False, "--fold-batch-norm", help=FOLD_HELP),
    record: bool = typer.Option(False, "--record", help=RECORD_HELP),
    workspace: Optional[str] = typer.Option(None, "--workspace", help=WORKSPACE_HELP),
) -> None:
    """Run convert_checkpoint: an existing checkpoint to a frozen graph and SavedModel, validated and published."""
    _engine(engine)
    check_model_name(model_name)
    use_remote_timeout(timeout)
    # What can be checked before Prefect and TensorFlow start is checked here, in a second.
    validation = _validation(reference_input, reference_inputs, rtol, atol)
    check_checkpoint(checkpoint)
    if entrypoint is not None:
        check_entrypoint(entrypoint)
    check_destination(dest, model_name)
    use_workspace(workspace)
    prepare_environment()
    if not (no_cache or record):
        from flows.cached_run import cached_convert
        from flows.params import SignatureParams

        if print_cached(cached_convert(checkpoint=str(checkpoint), output_nodes=list(output_node or []) or None,
                                       entrypoint=entrypoint, model_name=model_name, signature=SignatureParams(),
                                       validation=validation, destination=dest, freeze_engine=engine,
                                       sanitise=not no_sanitise, fold_batch_norm=fold_batch_norm)):
            return
    api = connect_api()
    from flows.convert import convert_checkpoint

    summary = run_flow(convert_checkpoint, api=api, verbose=verbose, command="convert", checkpoint=str(checkpoint),
                       output_nodes=list(output_node or []) or None, entrypoint=entrypoint, model_name=model_name,
                       validation=validation, destination=dest, refresh_cache=no_cache, freeze_engine=engine,
                       sanitise=not no_sanitise, fold_batch_norm=fold_batch_norm)
    print_summary(summary)
