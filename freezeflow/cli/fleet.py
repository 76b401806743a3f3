"""``freezeflow convert-many``: convert every checkpoint one or more SOURCEs name, on a Dask cluster.

Everything that can be refused is refused here first, before Prefect or Dask start (a missing or
empty SOURCE, a malformed JSON Lines line, two items claiming one model name, a scheduler that does
not answer); the flow checks the same again for runs started from a deployment.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from freezeflow.cli.common import api_ready, connect_api, fail, prepare_environment, pydantic_reason, require_api_access

app = typer.Typer()

OUTCOME_STYLE = {"published": "green", "cached": "cyan", "failed": "red"}


@app.command("convert-many")
def convert_many(
    sources: list[str] = typer.Argument(
        ..., metavar="SOURCE",
        help="A folder or gs:// prefix to scan for checkpoints, or a JSON Lines file with one "
             '{"checkpoint", "model_name", "output_nodes", "entrypoint"} object per line.'),
    dest: str = typer.Option("published", "--dest", help="Local folder or gs://bucket/prefix to publish to."),
    dask: Optional[str] = typer.Option(
        None, "--dask", metavar="ADDRESS",
        help="An existing Dask scheduler, tcp://host:8786 (default: $FREEZEFLOW_DASK_ADDRESS, else a local cluster)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Local cluster's worker processes (default: cores)."),
    max_parallel: Optional[int] = typer.Option(
        None, "--max-parallel", min=1, help="Conversions at once (default: the cluster's worker threads)."),
    item_timeout: float = typer.Option(
        3600.0, "--item-timeout", min=1, metavar="SECONDS",
        help="Longest one item may take; past it the item fails (the rest go on) and its worker is restarted."),
    output_node: Optional[list[str]] = typer.Option(
        None, "--output-node", help="Output node of TF1 checkpoints that do not name their own (repeatable)."),
    entrypoint: Optional[str] = typer.Option(
        None, help="package.module:function for TF2 checkpoints that do not name their own."),
    engine: str = typer.Option("stream", help="TF1 freezing: stream (no TF runtime, flat memory) or tf."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every stage even if a cached result exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome table as JSON (for scripts)."),
) -> None:
    """Run convert_many: each checkpoint converted, validated and published as its own task; exit 1 if any failed."""
    from tasks.core.errors import ParameterError
    from tasks.fleet.cluster import check_scheduler, scheduler_address
    from tasks.fleet.sources import check_batch

    if engine not in ("stream", "tf"):
        raise typer.BadParameter("must be stream or tf", param_hint="--engine")
    nodes = list(output_node or []) or None
    try:
        from tasks.storage.destinations import open_destination

        open_destination(dest)
        check_batch(sources, output_nodes=nodes, entrypoint=entrypoint)
        address = scheduler_address(dask)
        if address:
            check_scheduler(address)
    except (ParameterError, ImportError) as exc:
        fail(exc)
    prepare_environment()
    api = connect_api()  # the local server that stays up (started now if none answers), unless PREFECT_API_URL is set
    from pydantic import ValidationError

    from flows.convert_many import convert_many as flow

    api_ready(api)
    require_api_access()
    try:
        state = flow(sources=sources, destination=dest, output_nodes=nodes, entrypoint=entrypoint,
                     dask_address=address, workers=workers, max_parallel=max_parallel, refresh_cache=no_cache,
                     freeze_engine=engine, item_timeout_seconds=item_timeout, return_state=True)
    except ValidationError as exc:
        fail(pydantic_reason(exc))
    except Exception as exc:  # Prefect raises parameter errors before any state exists
        fail(exc)
    result = state.result(raise_on_failure=False)
    if not isinstance(result, dict) or "items" not in result:  # the flow itself failed, before or between items
        fail(result if isinstance(result, BaseException) else state.message or state.name)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_table(result)
    if not state.is_completed():
        typer.echo(f"error: {state.message}", err=True)
        raise typer.Exit(code=1)


def print_table(result: dict[str, Any]) -> None:
    """The outcome table, one row per item, then the counts."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 240))  # a pipe or a file: never wrap a row
    table = Table("item", "model", "version", "outcome", "reason", "seconds", show_lines=False)
    for row in result["items"]:
        outcome = row["outcome"]
        # Text cells: a path or a reason may hold brackets that rich would read as markup.
        table.add_row(Text(row["item"]), Text(row["model"]), "" if row["version"] is None else str(row["version"]),
                      Text(outcome, style=OUTCOME_STYLE[outcome]), Text(row["reason"]), f"{row['seconds']:.1f}")
    console.print(table)
    console.print(f"{result['published']} published, {result['cached']} cached, {result['failed']} failed "
                  f"of {result['total']}", highlight=False)
