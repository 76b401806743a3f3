"""``freezeflow inspect`` and ``freezeflow ls``: what a model file holds, and which versions are published."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from freezeflow.cli.checks import DEFAULT_REMOTE_TIMEOUT, REMOTE_TIMEOUT_HELP, use_remote_timeout
from freezeflow.cli.common import fail, prepare_environment

app = typer.Typer()


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="A checkpoint (prefix or folder), a frozen graph .pb, or a SavedModel folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show what a checkpoint, frozen graph or SavedModel holds: variables, inputs, candidate outputs, signatures."""
    prepare_environment()
    from tasks.core.errors import FreezeflowError
    from tasks.freeze_engine.inspect import inspect_path

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
    timeout: float = typer.Option(DEFAULT_REMOTE_TIMEOUT, "--timeout", help=REMOTE_TIMEOUT_HELP),
) -> None:
    """List the complete (manifest written) versions at a destination.

    A version whose manifest cannot be read is skipped with a note on stderr; the others are listed.
    """
    use_remote_timeout(timeout)
    from tasks.core.errors import BrokenManifestError, FreezeflowError
    from tasks.core.layout import check_model_name
    from tasks.storage.destinations import open_destination

    try:
        if model is not None:
            check_model_name(model)  # a name such as ../x would read outside DEST
        target = open_destination(dest)
        root = getattr(target, "root", None)  # a local folder: an empty listing must not hide a typo
        if root is not None and not root.is_dir():
            fail(f"destination {root} does not exist; publish there first or check the path")
        models = [model] if model else target.models()
        for name in models:
            for version in target.published_versions(name):
                try:
                    manifest = target.read_manifest(name, version) or {}
                except BrokenManifestError as exc:
                    typer.echo(f"note: skipped {name} v{version}: {exc}", err=True)
                    continue
                typer.echo(f"{name}\t{version}\t{manifest.get('created_at', '')}\t{target.version_uri(name, version)}")
    except FreezeflowError as exc:
        fail(exc)
