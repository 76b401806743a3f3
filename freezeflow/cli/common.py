"""What every ``freezeflow`` command shares: the environment it sets up and how it fails.

Prefect and TensorFlow are imported inside the commands that need them, so ``--help`` is instant and
``PREFECT_HOME`` can be pointed at the workspace before Prefect reads its settings.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from freezeflow.cli.local_server import Connection


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


MAX_ERROR_LINE = 300
# A local path (absolute, ~/ or ./) or a gs:// URI, as error messages name files.
_PATH = re.compile(r"(?:gs://|~/|\./|/)[^\s'\",;()]+")


def one_line(message: Any, limit: int = MAX_ERROR_LINE) -> str:
    """``message`` on one line of at most ``limit`` characters (longer paths aside). When it must be
    cut, the files and URIs it names that the cut would lose are kept after an ellipsis: the user
    still learns where to look."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    paths = list(dict.fromkeys(match.group(0).rstrip(".:") for match in _PATH.finditer(text)))
    kept_paths: list[str] = []
    for path in paths:
        suffix = f" … (see {'; '.join([*kept_paths, path])})"
        room = limit - len(suffix)
        if text.find(path) + len(path) > room:  # the cut head would not show it whole
            kept_paths.append(path)
    suffix = f" … (see {'; '.join(kept_paths)})" if kept_paths else " …"
    room = max(limit - len(suffix), 40)
    head = text[:room]
    if " " in head[room // 2:]:
        head = head[: head.rfind(" ")]  # cut between words
    return head.rstrip(" ,;:") + suffix


def fail(message: Any) -> NoReturn:
    """Exit 1 with a one-line reason on stderr, at most MAX_ERROR_LINE characters plus the files it names."""
    typer.echo(one_line(f"error: {message}"), err=True)
    raise typer.Exit(code=1)


def require_api_access() -> None:
    """Exit 1 with one line unless the configured Prefect API (if any) accepts our auth string.

    Without this a wrong or missing PREFECT_API_AUTH_STRING surfaces as Prefect's multi-line 401 from
    whichever call comes first, after the run may have started.
    """
    from freezeflow.prefect_server.access import AccessError, check_configured_api

    try:
        check_configured_api()
    except AccessError as exc:
        fail(exc)


def connect_api() -> Optional["Connection"]:
    """Use the local Prefect server that stays up (starting it if none answers) unless PREFECT_API_URL is set
    or FREEZEFLOW_SERVER=ephemeral; call before Prefect is imported. Does not wait for a new server."""
    from freezeflow.cli.local_server import LocalServerError, use_local_server

    try:
        return use_local_server()
    except LocalServerError as exc:
        fail(exc)


def api_ready(connection: Optional["Connection"]) -> None:
    """Wait (bounded) until the server ``connect_api`` chose answers; a no-op without one."""
    from freezeflow.cli.local_server import LocalServerError

    if connection is None:
        return
    try:
        connection.ready()
    except LocalServerError as exc:
        fail(exc)


def run_flow(flow: Any, *, api: Optional["Connection"] = None, verbose: bool = False, command: str = "run",
             **parameters: Any) -> dict[str, Any]:
    """Run a flow; on failure exit 1 with the reason of the stage that failed, in one line.

    Unless ``verbose``, what Prefect and TensorFlow print while the flow runs (tracebacks included) goes to a
    log file under FREEZEFLOW_HOME/logs, named under the error line; the Prefect UI shows all of it either way.
    Ctrl-C or SIGTERM end the process within seconds with the flow run marked (see
    :mod:`freezeflow.cli.interrupts`), instead of waiting for stage threads.
    """
    from pydantic import ValidationError

    from freezeflow.cli.quiet import keep_logging_to, log_path

    api_ready(api)  # each exits 1 with its own line; nothing has run yet
    require_api_access()
    log = None if verbose else log_path(command)
    reason: Any = None
    try:
        state = call_flow_guarded(flow, parameters, log=log)
    except ValidationError as exc:
        reason = pydantic_reason(exc)
    except Exception as exc:  # Prefect raises parameter errors before any state exists
        reason = exc
    if reason is None and not state.is_completed():
        result = state.result(raise_on_failure=False)
        reason = result if isinstance(result, BaseException) else state.message or state.name
    if log is not None and not log.exists():
        log = None  # the flow never started, so nothing was written there
    if log is not None:
        keep_logging_to(log)
    if reason is not None:
        try:
            fail(reason)
        finally:
            if log is not None:
                typer.echo(f"  full log: {log}", err=True)
    return state.result()


def call_flow_guarded(flow: Any, parameters: dict[str, Any], *, log: Optional[Path] = None,
                      next_run: Optional[str] = None,
                      on_interrupt: Optional[Callable[[str, Optional[str]], None]] = None) -> Any:
    """Call ``flow(**parameters, return_state=True)`` under the interrupt guard and return its final state.

    Ctrl-C or SIGTERM end the process within seconds, the flow run marked Cancelled (see
    :mod:`freezeflow.cli.interrupts`); an exception Prefect raises before any state exists (a parameter
    error) reaches the caller. With ``log``, standard error goes there while the flow runs, and the
    guard's line goes to the terminal all the same. ``next_run``: what that line says about running it
    again (default: it resumes from the cache). ``on_interrupt(line, flow_run_id)`` runs just before an
    interrupted process ends.
    """
    from freezeflow.cli.interrupts import RunGuard
    from freezeflow.cli.quiet import stderr_to, terminal_say

    options: dict[str, Any] = {}
    if next_run is not None:
        options["next_run"] = next_run
    if on_interrupt is not None:
        options["on_interrupt"] = on_interrupt
    if log is not None:
        options["say"] = terminal_say()
    with RunGuard(**options) as guard:
        try:
            hooked = flow.with_options(on_running=[*flow.on_running_hooks, guard.note_flow_run])
            with stderr_to(log):
                state = hooked(**parameters, return_state=True)
        except BaseException:
            if guard.interrupted:  # the engine has reported the crash: mark it Cancelled and stop now
                guard.finish()
            raise
        if guard.interrupted:  # the signal landed as the flow returned: still stop as asked
            guard.finish()
    return state


def pydantic_reason(exc: Any) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"parameter {where}: {first.get('msg')}"
