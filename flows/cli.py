"""The ``freezeflow`` command: run the pipeline, convert a checkpoint, inspect a model, list versions.

Prefect and TensorFlow are imported inside the commands that need them, so ``--help`` is instant and
``PREFECT_HOME`` can be pointed at the workspace before Prefect reads its settings.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from tasks.models import DEFAULT_ENTRYPOINT

app = typer.Typer(
    name="freezeflow",
    help="Train, freeze, export, validate and publish TensorFlow models with Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts hold literal brackets ([/versions/N]); never parse them as markup
)


def prepare_environment() -> None:
    """Settings every command shares; a user's own environment variables win."""
    os.environ.setdefault("FREEZEFLOW_HOME", str(Path(".freezeflow").resolve()))
    os.environ.setdefault("PREFECT_HOME", str(Path(os.environ["FREEZEFLOW_HOME"]) / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)  # Prefect makes one level only
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TF1 API deprecation chatter


def fail(message: Any) -> NoReturn:
    """Exit 1 with a one-line reason on stderr."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code=1)


def run_flow(flow: Any, **parameters: Any) -> dict[str, Any]:
    """Run a flow; on failure exit 1 with the reason of the stage that failed."""
    from pydantic import ValidationError

    try:
        state = flow(**parameters, return_state=True)
    except ValidationError as exc:
        fail(_pydantic_reason(exc))
    except Exception as exc:  # Prefect raises parameter errors before any state exists
        fail(exc)
    if not state.is_completed():
        result = state.result(raise_on_failure=False)
        fail(result if isinstance(result, BaseException) else state.message or state.name)
    return state.result()


def _pydantic_reason(exc: Any) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"parameter {where}: {first.get('msg')}"


def print_summary(summary: dict[str, Any]) -> None:
    pub = summary["publication"]
    state = "already published as" if pub["reused"] else "published"
    typer.echo(f"{state} {summary['model_name']} v{pub['version']} at {pub['uri']}")
    typer.echo(f"  frozen graph: {Path(pub['uri']) / 'frozen_graph.pb' if '://' not in pub['uri'] else pub['uri'] + '/frozen_graph.pb'}")
    typer.echo(f"  SavedModel:   {pub['uri']} (tag serve, signature serving_default)")
    report = summary["validation"]
    inputs = report["reference_inputs"]
    at = 6.0 if 6.0 in inputs else inputs[-1]
    i = inputs.index(at)
    names = {"checkpoint": "checkpoint", "frozen_graph": "frozen graph", "saved_model": "SavedModel"}
    cells = ", ".join(f"{names[p['source']]} {p['outputs'][i]:.6g}" if isinstance(p["outputs"][i], (int, float))
                      else f"{names[p['source']]} {p['outputs'][i]}" for p in report["predictions"])
    typer.echo(f"  prediction at x={json.dumps(at)}: {cells}")
    typer.echo("  stages: " + ", ".join(f"{s['name']} {s['state']}" for s in summary["stages"]))


@app.command()
def run(
    dest: str = typer.Option("published", "--dest", help="Local folder or gs://bucket/prefix to publish to."),
    model_name: str = typer.Option("linear", "--model-name", help="Name of the model at the destination."),
    entrypoint: str = typer.Option(DEFAULT_ENTRYPOINT, help="package.module:function that builds and trains the model."),
    checkpoint_format: str = typer.Option("tf1", "--format", help="Checkpoint format: tf1 (the guide's) or tf2."),
    epochs: int = typer.Option(200, min=0, help="Training epochs."),
    learning_rate: float = typer.Option(0.05, help="Learning rate."),
    seed: int = typer.Option(0, min=0, help="Seed for data and initialisation."),
    engine: str = typer.Option("stream", help="TF1 freezing: stream (no TF runtime, flat memory) or tf."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every stage even if a cached result exists."),
) -> None:
    """Run publish_model: train, checkpoint, freeze, export, validate, publish."""
    if checkpoint_format not in ("tf1", "tf2"):
        raise typer.BadParameter("must be tf1 or tf2", param_hint="--format")
    check_model_name(model_name)
    prepare_environment()
    from flows.params import TrainingParams
    from flows.publish import publish_model

    training = _params(TrainingParams, entrypoint=entrypoint, epochs=epochs, learning_rate=learning_rate, seed=seed)
    summary = run_flow(publish_model, model_name=model_name, training=training, checkpoint_format=checkpoint_format,
                       destination=dest, refresh_cache=no_cache, freeze_engine=_engine(engine))
    print_summary(summary)


def _engine(value: str) -> str:
    if value not in ("stream", "tf"):
        raise typer.BadParameter("must be stream or tf", param_hint="--engine")
    return value


def check_model_name(name: str) -> None:
    """Refuse a bad model name before anything starts."""
    from tasks.errors import ParameterError
    from tasks.layout import check_model_name as check

    try:
        check(name)
    except ParameterError as exc:
        fail(exc)


def _params(model: Any, **values: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        fail(_pydantic_reason(exc))


@app.command()
def convert(
    checkpoint: Path = typer.Argument(..., help="Checkpoint prefix (dir/model) or a folder with a 'checkpoint' file."),
    output_node: Optional[list[str]] = typer.Option(None, "--output-node", help="Output node to keep (repeatable)."),
    entrypoint: Optional[str] = typer.Option(None, help="For a TF2 checkpoint: package.module:function that builds its model."),
    dest: str = typer.Option("published", "--dest", help="Local folder or gs://bucket/prefix to publish to."),
    model_name: str = typer.Option("model", "--model-name", help="Name of the model at the destination."),
    reference_input: Optional[list[str]] = typer.Option(
        None, "--reference-input", help="JSON instance to validate with (repeatable); default 2.0, 4.0, 6.0."),
    engine: str = typer.Option("stream", help="TF1 freezing: stream (no TF runtime, flat memory) or tf."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every stage even if a cached result exists."),
) -> None:
    """Run convert_checkpoint: an existing checkpoint to a frozen graph and SavedModel, validated and published."""
    check_model_name(model_name)
    prepare_environment()
    from flows.convert import convert_checkpoint
    from flows.params import ValidationParams

    validation = ValidationParams()
    if reference_input:
        try:
            values = [json.loads(v) for v in reference_input]
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--reference-input")
        validation = _params(ValidationParams, reference_inputs=values)
    summary = run_flow(convert_checkpoint, checkpoint=str(checkpoint), output_nodes=list(output_node or []) or None,
                       entrypoint=entrypoint, model_name=model_name, validation=validation, destination=dest,
                       refresh_cache=no_cache, freeze_engine=_engine(engine))
    print_summary(summary)


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A checkpoint (prefix or folder), a frozen graph .pb, or a SavedModel folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show what a checkpoint, frozen graph or SavedModel holds: variables, inputs, candidate outputs, signatures."""
    prepare_environment()
    from tasks.errors import FreezeflowError
    from tasks.inspect import inspect_path

    try:
        info = inspect_path(path)
    except FreezeflowError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{info['kind'].replace('_', ' ')}: {info['path']}")
    if info["kind"] == "checkpoint":
        typer.echo(f"  format: {info['format']}  ({info['freeze_engine']})")
    for key in ("inputs", "output_candidates", "nodes", "variables_left", "device_pins"):
        if key in info:
            value = info[key]
            typer.echo(f"  {key.replace('_', ' ')}: {', '.join(value) if isinstance(value, list) else value}")
    for graph in info.get("meta_graphs", []):
        typer.echo(f"  tags: {', '.join(graph['tags'])}")
        for key, sig in graph["signatures"].items():
            if key.startswith("__"):
                continue
            io = lambda d: ", ".join(f"{k} {v['dtype']} {v['shape']}" for k, v in d.items())  # noqa: E731
            typer.echo(f"  signature {key}: inputs {io(sig['inputs'])} -> outputs {io(sig['outputs'])}")
    if info.get("variables"):
        typer.echo(f"  variables ({len(info['variables'])}):")
        for var in info["variables"][:50]:
            typer.echo(f"    {var['name']}  {var['dtype']}  {list(var['shape'])}")
        if len(info["variables"]) > 50:
            typer.echo(f"    … and {len(info['variables']) - 50} more")


@app.command("ls")
def list_versions(
    dest: str = typer.Argument("published", help="Local folder or gs://bucket/prefix."),
    model: Optional[str] = typer.Argument(None, help="One model; all models when left out."),
) -> None:
    """List the complete (manifest written) versions at a destination."""
    from tasks.destinations import open_destination
    from tasks.errors import FreezeflowError

    try:
        target = open_destination(dest)
        models = [model] if model else target.models()
        for name in models:
            for version in target.published_versions(name):
                manifest = target.read_manifest(name, version) or {}
                typer.echo(f"{name}\t{version}\t{manifest.get('created_at', '')}\t{target.version_uri(name, version)}")
    except FreezeflowError as exc:
        fail(exc)


def _register_command_groups() -> None:
    """Commands that live in their own modules (each imports what it needs inside its functions)."""
    from flows import cli_freeze, cli_ops, cli_serve

    cli_freeze.register(app)
    cli_serve.register(app)
    cli_ops.register(app)


_register_command_groups()


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
