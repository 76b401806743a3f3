"""``freezeflow gc``: remove what a workspace no longer needs (:mod:`tasks.storage.workspace_gc`)."""

from __future__ import annotations

from typing import Optional

import typer

from freezeflow.cli.checks import WORKSPACE_HELP, use_workspace
from freezeflow.cli.common import fail

app = typer.Typer()


def _bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # pragma: no cover


@app.command()
def gc(
    workspace: Optional[str] = typer.Option(None, "--workspace", help=WORKSPACE_HELP),
    older_than: str = typer.Option("30d", "--older-than",
                                   help="Remove cache records older than this (30d, 12h, 90m); then every stage "
                                        "output no remaining record names."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    dest: list[str] = typer.Option([], "--dest",
                                   help="A publish destination (folder or gs://bucket/prefix) to clear of crash "
                                        "leftovers: versions claimed but never given a manifest. Repeatable."),
    grace: str = typer.Option("1d", "--grace",
                              help="Leave a publish's leftovers alone until they are this old (1d, 6h): a "
                                   "publish still running is not a crash."),
) -> None:
    """Remove old cache records, the stage outputs no record names, scratch-cache overflow and, at --dest,
    the leftovers of publishes that crashed."""
    from tasks.core import workspace as workspaces
    from tasks.core.errors import FreezeflowError
    from tasks.storage.workspace_gc import Removal, collect, parse_age

    try:
        seconds = parse_age(older_than)
        grace_seconds = parse_age(grace, option="--grace")
    except FreezeflowError as exc:
        fail(exc)
    use_workspace(workspace)
    try:
        from tasks.storage.destinations import open_destination

        destinations = [open_destination(uri) for uri in dest]  # a bad --dest is named before anything is removed
        removed = collect(workspaces.uri(), seconds, dry_run=dry_run)
        for destination in destinations:
            removed += [Removal("crash leftover", where, size)
                        for where, size in destination.crash_leftovers(grace_seconds, dry_run=dry_run)]
    except (FreezeflowError, OSError) as exc:
        fail(exc)
    verb = "would remove" if dry_run else "removed"
    for item in removed:
        typer.echo(f"{verb} {item.what} {item.where} ({_bytes(item.size)})")
    total = sum(item.size for item in removed)
    typer.echo(f"{verb} {len(removed)} item(s), {_bytes(total)} {'to free' if dry_run else 'freed'}")
