"""The ``freezeflow`` commands for running the pipeline as a team does: ``server`` and ``worker`` for
Prefect deployments, and ``smoke`` for CI.

``server`` and ``worker`` wrap Prefect's own commands (``prefect server start``, ``prefect work-pool
create``, ``prefect worker start``) and print each one they run, so nothing is hidden that a user may
later want to run by hand. ``server`` runs on SQLite for one person or on PostgreSQL for a team
(``--database``), checks that database before Prefect starts, and refuses to listen beyond loopback
without an auth string; what it configures lives in :mod:`freezeflow.prefect_server`. ``smoke`` runs the ``smoke`` flow in this process, prints one summary line,
exits 0 only if it passed, and can write a JUnit XML report with one testcase per stage.

Prefect and TensorFlow are imported inside the commands, as in :mod:`freezeflow.cli.common`.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import typer

from flows import defaults
from freezeflow.cli import local_server
from freezeflow.cli.server_env import api_url_for, prefect_command, server_command, server_environment
from freezeflow.cli.checks import WORKSPACE_HELP, use_workspace
from freezeflow.cli.common import (
    api_ready,
    call_flow_guarded,
    connect_api,
    fail,
    prepare_environment,
    require_api_access,
)

if TYPE_CHECKING:
    from tasks.core.records import Publication

DEFAULT_POOL = "freezeflow-local"  # the work pool prefect.yaml deploys to
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
DEFAULT_API_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/api"
STAGES = ("train", "checkpoint", "freeze", "export", "validate", "upload")
GUIDE_CHECK = "guide answers"  # the smoke flow's own check, after the six stages
JUNIT_SUITE = "freezeflow.smoke"
SMOKE_NEXT_RUN = "smoke runs every stage afresh, so running it again starts over"


# ---------------------------------------------------------------------------------------------- server


def shown(command: Sequence[str], database: str = "SQLite") -> str:
    """A command as a user would type it: ``prefect ...`` rather than ``/path/python -m prefect ...``."""
    args = list(command)
    if args[:3] == [sys.executable, "-m", "prefect"]:
        args = ["prefect", *args[3:]]
    elif args[:3] == [sys.executable, "-m", "freezeflow.prefect_server"]:
        how = ("with SQLite write transactions that wait for the lock" if database == "SQLite"
               else f"on {database}")
        return "$ " + shlex.join(["prefect", "server", "start", *args[3:]]) + \
            f"   (in-process, {how}: freezeflow.prefect_server)"
    return "$ " + shlex.join(args)


class ApiUnavailable(RuntimeError):
    """No Prefect API answered in time (or the server process ended first)."""


def wait_for_health(api_url: str, timeout: float, process: Optional[subprocess.Popen] = None) -> float:
    """Poll ``{api_url}/health`` until it answers 200; returns the seconds it took.

    A worker started before the API answers exits at once, and a UI opened too early renders empty
    (field notes), so both commands wait here first.
    """
    import httpx

    started = time.monotonic()
    last = "no answer"
    while True:
        if process is not None and process.poll() is not None:
            raise ApiUnavailable(f"prefect server exited with code {process.returncode} before {api_url} answered")
        try:
            response = httpx.get(f"{api_url}/health", timeout=2.0)
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        if time.monotonic() - started > timeout:
            raise ApiUnavailable(f"no Prefect API answered at {api_url}/health within {timeout:g} s ({last})")
        time.sleep(0.5)


def wait_foreground(process: subprocess.Popen, grace: float = 20.0) -> int:
    """Wait for a child that owns the terminal; Ctrl-C or SIGTERM stop it cleanly, then we exit with it."""

    def forward(signum: int, frame: Any) -> None:
        process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        try:
            return process.wait()
        except KeyboardInterrupt:  # the terminal sent SIGINT to the child too; let it shut down
            try:
                return process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_foreground(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``command`` in the foreground and return its exit code (tests replace this)."""
    return wait_foreground(subprocess.Popen(list(command), env=dict(env)))


def server_database(database: Optional[str]) -> Optional[Any]:
    """The checked PostgreSQL URL, or None for SQLite; exits with one line if it is not usable."""
    from freezeflow.prefect_server.database import DatabaseError, check_postgres, parse_postgres_url

    if not database:
        prefect_home = os.environ.get("PREFECT_HOME", "")
        if "PREFECT_API_DATABASE_CONNECTION_URL" not in os.environ:
            typer.echo(f"database: SQLite at {prefect_home}/prefect.db (one person; --database for a team)", err=True)
        return None
    from_command_line = database != os.environ.get("FREEZEFLOW_DATABASE_URL")
    try:
        url = parse_postgres_url(database, "--database" if from_command_line else "FREEZEFLOW_DATABASE_URL")
        if url.password and from_command_line:
            fail("--database: a password on the command line shows in every user's process list; "
                 "put the URL in FREEZEFLOW_DATABASE_URL, or leave the password out and set PGPASSWORD or ~/.pgpass")
        version = check_postgres(url)
    except DatabaseError as exc:
        fail(exc)
    typer.echo(f"database: PostgreSQL {version.split()[0]} at {url.where}, database {url.database}"
               f"{', user ' + url.user if url.user else ''}", err=True)
    return url


def server(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on. Loopback keeps the UI on this "
                             "machine; any other address needs an auth string."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="Port for the API and the UI."),
    database: Optional[str] = typer.Option(
        None, "--database", envvar="FREEZEFLOW_DATABASE_URL", show_envvar=True,
        help="PostgreSQL for a team: postgresql://USER@HOST:5432/DATABASE (password from FREEZEFLOW_DATABASE_URL, "
             "PGPASSWORD or ~/.pgpass, never the command line). Left out: SQLite under FREEZEFLOW_HOME."),
    auth_string_file: Optional[Path] = typer.Option(
        None, "--auth-string-file", help="File holding the API's auth string (else PREFECT_SERVER_API_AUTH_STRING); "
                                         "clients send it as PREFECT_API_AUTH_STRING."),
    wait: float = typer.Option(120.0, "--wait", min=1, help="Seconds to wait for the API to answer /api/health."),
) -> None:
    """Start `prefect server start` (SQLite, or PostgreSQL with --database) with its UI pointed at itself; Ctrl-C stops it."""
    from freezeflow.prefect_server.access import AccessError, require_auth_off_loopback, server_auth_string

    try:
        auth_string = server_auth_string(auth_string_file, os.environ)
        require_auth_off_loopback(host, auth_string)
    except AccessError as exc:
        fail(exc)
    prepare_environment()
    url = server_database(database)
    api_url = api_url_for(host, port)
    command = server_command(host, port)
    typer.echo(shown(command, "PostgreSQL" if url else "SQLite"), err=True)
    env = server_environment(os.environ, host, port, url.render(hide_password=False) if url else None, auth_string)
    process = subprocess.Popen(command, env=env)
    try:
        seconds = wait_for_health(api_url, wait, process)
    except (ApiUnavailable, KeyboardInterrupt) as exc:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        fail(exc if isinstance(exc, ApiUnavailable) else "interrupted before the server answered")
    typer.echo(f"Prefect UI  {api_url.removesuffix('/api')}  (API answered after {seconds:.0f} s)")
    typer.echo(f"Prefect API {api_url}  -- in other shells: export PREFECT_API_URL={api_url}")
    if auth_string is not None:
        source = f'"$(cat {shlex.quote(str(auth_string_file))})"' if auth_string_file else \
            "<the value of PREFECT_SERVER_API_AUTH_STRING>"
        typer.echo(f"Auth string required -- clients: export PREFECT_API_AUTH_STRING={source}")
    raise typer.Exit(wait_foreground(process))


# ---------------------------------------------------------------------------------------------- worker


def ensure_process_pool(api_url: str, pool: str, auth_string: Optional[str] = None) -> tuple[str, bool]:
    """Create ``pool`` as a process work pool unless it exists; returns (its type, whether it was created)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    updates = {PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth_string}
    with temporary_settings(updates=updates), get_client(sync_client=True) as client:
        try:
            return client.read_work_pool(pool).type, False
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(WorkPoolCreate(
                name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template(),
                description="freezeflow: runs flows as local processes (created by `freezeflow worker`)",
            ))
        except ObjectAlreadyExists:  # another worker created it between our read and our create
            return client.read_work_pool(pool).type, False
        return "process", True


def worker_command(pool: str, extra: Sequence[str]) -> list[str]:
    args = ["worker", "start", "--pool", pool]
    if not any(arg.startswith("--install-policy") for arg in extra):
        args += ["--install-policy", "never"]  # a process worker needs no package; never prompt in a service
    return prefect_command(*args, *extra)


def profile_client_settings() -> tuple[Optional[str], Optional[str]]:
    """The API URL and auth string Prefect itself would use here: the environment, else the active profile
    (``prefect profile use``), read from the user's own PREFECT_HOME -- so call this before
    :func:`prepare_environment` points PREFECT_HOME at freezeflow's folder."""
    from prefect.settings import Settings

    api = Settings().api
    return (str(api.url) if api.url else None,
            api.auth_string.get_secret_value() if api.auth_string is not None else None)


def worker(
    ctx: typer.Context,
    pool: str = typer.Option(DEFAULT_POOL, "--pool", "-p", help="Work pool to serve (prefect.yaml deploys to this one)."),
    api_url: Optional[str] = typer.Option(
        None, "--api-url", help="Prefect API to poll. Default: PREFECT_API_URL, else the active Prefect profile's, "
                                f"else {DEFAULT_API_URL}."),
    wait: float = typer.Option(30.0, "--wait", min=0, help="Seconds to wait for the API to answer /health."),
) -> None:
    """Create the process work pool if it is missing, then run `prefect worker start --pool POOL`.

    Like Prefect's own worker it reads PREFECT_API_URL and PREFECT_API_AUTH_STRING from the environment or
    the active Prefect profile, and passes both on to the worker and its flow runs.
    Arguments after the options go to `prefect worker start` unchanged, e.g. `-- --limit 2`.
    """
    from freezeflow.prefect_server.access import AccessError, check_api_access

    profile_url, auth_string = profile_client_settings()
    api_url = api_url or profile_url or DEFAULT_API_URL
    prepare_environment()
    try:
        wait_for_health(api_url, wait)
    except ApiUnavailable as exc:
        fail(f"{exc}; start one with `freezeflow server` or point PREFECT_API_URL at yours")
    try:
        check_api_access(api_url, auth_string)
    except AccessError as exc:
        fail(exc)
    pool_type, created = ensure_process_pool(api_url, pool, auth_string)
    if created:
        typer.echo(f"created work pool {pool} (type process)  "
                   f"[same as: prefect work-pool create {shlex.quote(pool)} --type process]", err=True)
    else:
        typer.echo(f"work pool {pool} exists (type {pool_type})", err=True)
    command = worker_command(pool, ctx.args)
    typer.echo(shown(command), err=True)
    env = {**os.environ, "PREFECT_API_URL": api_url}
    if auth_string is not None:
        env["PREFECT_API_AUTH_STRING"] = auth_string  # the worker and every flow run it starts
    raise typer.Exit(run_foreground(command, env))


# ---------------------------------------------------------------------------------------------- smoke


@dataclass
class StageOutcome:
    """One JUnit testcase: a stage (or the guide check) and how it ended."""

    name: str
    status: str  # "passed", "failed" or "skipped"
    seconds: float = 0.0
    state: str = ""
    error_type: str = ""
    message: str = ""


@dataclass
class SmokeReport:
    passed: bool
    outcomes: list[StageOutcome]
    seconds: float
    flow_run_id: Optional[str] = None
    reason: str = ""
    publication: Optional[Publication] = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _exception_reason(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}")


def _split_state_message(message: str) -> tuple[str, str]:
    """``Task run encountered an exception KeyError: 'x'`` -> (``KeyError``, ``KeyError: 'x'``)."""
    text = _one_line(message or "")
    for prefix in ("Task run encountered an exception ", "Flow run encountered an exception: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    head = text.split(":", 1)[0]
    error_type = head if head.isidentifier() else ""
    return error_type, text


def stage_outcomes(task_runs: Mapping[str, Any], flow_completed: bool, flow_reason: str) -> list[StageOutcome]:
    """One outcome per stage from its task run (None when it never ran), then the guide check.

    A failure that no stage owns is the guide check's when all six stages passed (the smoke flow
    checks the answers after publishing); otherwise a "flow" testcase carries it, so a CI reader
    always finds the reason on a failed testcase.
    """
    outcomes: list[StageOutcome] = []
    for name in STAGES:
        run = task_runs.get(name)
        state = getattr(run, "state", None)
        seconds = run.total_run_time.total_seconds() if run is not None and run.total_run_time else 0.0
        if state is None or not state.is_final():
            outcomes.append(StageOutcome(name, "skipped", message="not reached: an earlier stage failed"))
        elif state.is_completed():
            outcomes.append(StageOutcome(name, "passed", seconds=seconds, state=state.name))
        else:
            error_type, message = _split_state_message(state.message or state.name)
            outcomes.append(StageOutcome(name, "failed", seconds=seconds, state=state.name, error_type=error_type,
                                         message=message))
    stages_passed = all(o.status == "passed" for o in outcomes)
    stage_failed = any(o.status == "failed" for o in outcomes)
    if flow_completed:
        outcomes.append(StageOutcome(GUIDE_CHECK, "passed", state="Completed"))
    elif stages_passed:
        error_type, message = _split_state_message(flow_reason)
        outcomes.append(StageOutcome(GUIDE_CHECK, "failed", state="Failed", error_type=error_type, message=message))
    else:
        outcomes.append(StageOutcome(GUIDE_CHECK, "skipped", message="not reached: an earlier stage failed"))
        if not stage_failed:
            error_type, message = _split_state_message(flow_reason)
            outcomes.append(StageOutcome("flow", "failed", state="Failed", error_type=error_type, message=message))
    return outcomes


def read_stage_task_runs(flow_run_id: str, settle_seconds: float = 20.0, expect_all: bool = True) -> dict[str, Any]:
    """The stage task runs of a flow run and of its subflow runs, read through the Prefect API.

    Task run states reach the API through events, a moment after the flow returns; poll until every
    stage is final (or, for a failed run, until no stage is still moving).
    """
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    root = UUID(flow_run_id)
    deadline = time.monotonic() + settle_seconds
    previous: dict[str, str] = {}
    steady_since = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[root])))
            ids = [root, *(run.id for run in children)]
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
            stages: dict[str, Any] = {}
            for run in sorted(task_runs, key=lambda r: r.created):  # a retried stage: the newest run counts
                name = run.name.rsplit("-", 1)[0]  # "upload-3e9" -> "upload"
                if name in STAGES:
                    stages[name] = run
            seen = {name: (run.state.name if run.state else "") for name, run in stages.items()}
            final = all(run.state is not None and run.state.is_final() for run in stages.values())
            if seen != previous:
                previous, steady_since = seen, time.monotonic()
            if final and len(stages) == len(STAGES):
                return stages
            failed = any(not run.state.is_completed() for run in stages.values() if run.state and run.state.is_final())
            if final and not expect_all and (failed or time.monotonic() - steady_since > 3.0):
                return stages
            if time.monotonic() > deadline:
                return stages
            time.sleep(0.5)


def junit_xml(report: SmokeReport) -> str:
    """JUnit XML as Jenkins, GitLab and GitHub test reporters read it: one testcase per stage."""
    import xml.etree.ElementTree as ET

    failures = sum(o.status == "failed" for o in report.outcomes)
    skipped = sum(o.status == "skipped" for o in report.outcomes)
    counts = {"tests": str(len(report.outcomes)), "failures": str(failures), "errors": "0",
              "time": f"{report.seconds:.3f}"}
    root = ET.Element("testsuites", {"name": "freezeflow smoke", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": JUNIT_SUITE, **counts, "skipped": str(skipped),
                                              "timestamp": report.started_at.isoformat(timespec="seconds")})
    if report.flow_run_id:
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", {"name": "flow_run_id", "value": report.flow_run_id})
    for outcome in report.outcomes:
        case = ET.SubElement(suite, "testcase", {"classname": JUNIT_SUITE, "name": outcome.name,
                                                 "time": f"{outcome.seconds:.3f}"})
        if outcome.status == "failed":
            failure = ET.SubElement(case, "failure", {"message": outcome.message,
                                                      "type": outcome.error_type or outcome.state or "Failed"})
            failure.text = outcome.message
        elif outcome.status == "skipped":
            ET.SubElement(case, "skipped", {"message": outcome.message})
    ET.SubElement(suite, "system-out").text = summary_line(report)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary_line(report: SmokeReport) -> str:
    if report.passed:
        where = ""
        if report.publication:
            where = f"; published {report.publication.model_name} v{report.publication.version} " \
                    f"at {report.publication.uri}"
        return f"smoke passed: {len(report.outcomes)} checks in {report.seconds:.1f} s{where}"
    failed = [o for o in report.outcomes if o.status == "failed"]
    at = failed[0].name if failed else "flow"
    reason = failed[0].message if failed and failed[0].message else report.reason
    return f"smoke FAILED at {at}: {_one_line(reason)}"


def smoke(
    dest: str = typer.Option(defaults.SMOKE_DESTINATION, "--dest", help="Local folder or gs://bucket/prefix to publish to."),
    epochs: int = typer.Option(defaults.SMOKE_EPOCHS, "--epochs", min=1, help="Training epochs (the guide's answers need about 100)."),
    junit: Optional[Path] = typer.Option(None, "--junit", dir_okay=False, help="Also write a JUnit XML report here."),
    workspace: Optional[str] = typer.Option(None, "--workspace", help=WORKSPACE_HELP),
) -> None:
    """Run the smoke flow (whole pipeline, uncached, checked against the guide); exit 0 only if it passed."""
    use_workspace(workspace)

    prepare_environment()
    connection = connect_api()
    from flows.smoke import smoke as smoke_flow

    started = time.monotonic()
    report_started = datetime.now(timezone.utc)
    flow_run_id: Optional[str] = None
    publication: Optional[Publication] = None
    api_ready(connection)
    require_api_access()

    def interrupted(line: str, run_id: Optional[str]) -> None:
        """CI reads the JUnit report: an interrupted smoke is a failed one, with the reason, not a missing file."""
        if junit is not None:
            reason = line.removeprefix("error: ")
            outcomes = stage_outcomes({}, False, "Interrupted: " + reason.removeprefix("interrupted "))
            report = SmokeReport(passed=False, outcomes=outcomes, seconds=time.monotonic() - started,
                                 flow_run_id=run_id, reason=reason, started_at=report_started)
            junit.parent.mkdir(parents=True, exist_ok=True)
            junit.write_text(junit_xml(report))

    try:  # Ctrl-C or SIGTERM end the process within seconds, the flow run Cancelled (freezeflow.cli.interrupts)
        state = call_flow_guarded(smoke_flow, {"destination": dest, "epochs": epochs}, next_run=SMOKE_NEXT_RUN,
                                  on_interrupt=interrupted)
    except Exception as exc:  # Prefect raises parameter errors before any run exists
        completed, reason, task_runs = False, _exception_reason(exc), {}
    else:
        flow_run_id = str(state.state_details.flow_run_id)
        completed = state.is_completed()
        if completed:
            reason = ""
            publication = state.result().publication
        else:
            result = state.result(raise_on_failure=False)
            reason = _exception_reason(result) if isinstance(result, BaseException) else (state.message or state.name)
        task_runs = read_stage_task_runs(flow_run_id, expect_all=completed)
    report = SmokeReport(passed=completed, outcomes=stage_outcomes(task_runs, completed, reason),
                         seconds=time.monotonic() - started, flow_run_id=flow_run_id, reason=reason,
                         publication=publication, started_at=report_started)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(junit_xml(report))
    typer.echo(summary_line(report))
    raise typer.Exit(0 if report.passed else 1)


app = typer.Typer()
app.add_typer(local_server.server_group(server), name="server")  # `server` itself, plus `server status|stop`
app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(worker)
app.command("smoke")(smoke)
