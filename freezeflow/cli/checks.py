"""Checks a command runs before Prefect or TensorFlow start, so a bad argument is answered in a second, not after
the stages that come before the one it breaks."""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer

from freezeflow.cli.common import fail

DEFAULT_REMOTE_TIMEOUT = 60.0
REMOTE_TIMEOUT_HELP = ("Seconds a command's remote calls (gs://) may go without an answer, retries included, "
                       "before it gives up.")
VERBOSE_HELP = "Show Prefect's and TensorFlow's output (tracebacks included) as the run goes, not only in its log."


def use_remote_timeout(seconds: float) -> None:
    """Every remote call this command makes (in this process, and in the flow's tasks) waits at most this long."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise typer.BadParameter(f"must be a positive number of seconds, got {seconds}", param_hint="--timeout")
    os.environ["FREEZEFLOW_TIMEOUT"] = repr(seconds)


def check_entrypoint(entrypoint: str) -> None:
    """The entrypoint is well formed and its module or file exists (found, not imported: no TensorFlow yet)."""
    from tasks.core.errors import EntrypointError
    from tasks.tf.entrypoints import locate_entrypoint

    try:
        locate_entrypoint(entrypoint)
    except EntrypointError as exc:
        fail(exc)


def check_destination(dest: str, model_name: str) -> None:
    """The destination can be opened: a local path that is not a file, or a bucket that answers a listing
    (which needs the network, the credentials and the bucket that publishing needs)."""
    from tasks.core.errors import FreezeflowError
    from tasks.storage.destinations import open_destination

    try:
        target = open_destination(dest)
        if dest.startswith("gs://"):
            target.published_versions(model_name)
    except (FreezeflowError, ImportError) as exc:
        fail(exc)


WORKSPACE_HELP = ("Where cache records and stage outputs live, shared by every machine pointed at it: a folder or "
                  "gs://bucket/prefix (default: FREEZEFLOW_WORKSPACE, else ./.freezeflow).")


def use_workspace(uri: "str | None") -> None:
    """Point this command (and the flow it runs) at workspace ``uri`` and check that it can be used: one line,
    naming the workspace, before Prefect or TensorFlow start."""
    from tasks.core import workspace
    from tasks.core.errors import FreezeflowError
    from tasks.stages.workspace import check_locks
    from tasks.storage.workspace_store import open_store

    try:
        if uri:
            os.environ["FREEZEFLOW_WORKSPACE"] = workspace.normalise(uri)
        open_store().check()
        check_locks()
    except (FreezeflowError, ImportError) as exc:
        fail(exc)


def check_checkpoint(checkpoint: Path) -> None:
    """The checkpoint's index is there (its graph and format are read later, by the flow)."""
    from tasks.core.errors import FreezeflowError
    from tasks.freeze_engine.files import locate_checkpoint

    try:
        locate_checkpoint(checkpoint, need_meta=False)
    except FreezeflowError as exc:
        fail(exc)
