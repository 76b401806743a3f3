"""The `freezeflow freeze` command: a TF1 checkpoint into a frozen GraphDef file.

Neither Prefect nor TensorFlow's runtime is imported here, so `freezeflow --help` stays instant
and the command runs in a fraction of a second; the engine is imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tasks.core.names import PROTOBUF_LIMIT  # typing only: --help stays free of the engine and TensorFlow


def freeze(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="Checkpoint prefix (dir/model, the path before .index) or a directory holding a "
            "'checkpoint' state file (its latest checkpoint is frozen).",
            show_default=False,
        ),
    ],
    output_node: Annotated[
        list[str],
        typer.Option("--output-node", help="Name of an output node to keep; repeat for several.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Frozen GraphDef file to write (written whole or not at all).", show_default=False
        ),
    ],
    max_bytes: Annotated[
        int,
        typer.Option("--max-bytes", min=1, help="Refuse graphs larger than this many bytes (protobuf's 2 GiB limit)."),
    ] = PROTOBUF_LIMIT,
) -> None:
    """Freeze a TF1 Saver checkpoint into a GraphDef whose variables are constants, without
    loading TensorFlow's runtime."""
    from tasks.core.errors import FreezeflowError
    from tasks.freeze_engine import freeze_checkpoint

    try:
        stats = freeze_checkpoint(checkpoint, output_node, output, max_bytes=max_bytes)
    except FreezeflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{stats.output_path}: {stats.node_count} nodes, {stats.const_count} constants, {stats.bytes_written} bytes"
    )


app = typer.Typer()
app.command("freeze")(freeze)
