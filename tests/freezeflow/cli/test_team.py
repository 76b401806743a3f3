"""``freezeflow server``, ``worker`` and ``smoke`` as users and CI meet them: exit codes, the lines they
print, the pool they create and the JUnit report CI reads."""

from __future__ import annotations

import socket
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Optional

import pytest
import typer
from typer.testing import CliRunner

from freezeflow.cli import team
from tests.support.postgres import PostgresServer


@pytest.fixture
def app() -> typer.Typer:
    """The real ``freezeflow`` app."""
    from freezeflow.cli.app import app

    return app


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_team_commands_are_registered_once(app: typer.Typer) -> None:
    names = [command.name for command in team.app.registered_commands]
    assert sorted(names) == ["smoke", "worker"]
    assert [group.name for group in team.app.registered_groups] == ["server"]  # plus `server status|stop`
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Start `prefect server start`" in result.stdout
    assert "Run the smoke flow" in result.stdout


def test_server_points_its_ui_at_its_own_api_port_unless_the_user_chose_one() -> None:
    env = team.server_environment({}, "127.0.0.1", 4391)
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4391/api"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4391/api"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    proxied = team.server_environment({"PREFECT_UI_API_URL": "https://prefect.example/api"}, "0.0.0.0", 4391)
    assert proxied["PREFECT_UI_API_URL"] == "https://prefect.example/api"
    assert proxied["PREFECT_API_URL"] == "http://127.0.0.1:4391/api"  # all interfaces: reach it on loopback


def test_server_fails_with_the_exit_code_when_prefect_server_stops_before_answering(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    # Stands in for `prefect server start` failing at once, e.g. on a port already taken.
    monkeypatch.setattr(team, "server_command",
                        lambda host, port: [sys.executable, "-c", "import sys; sys.exit(3)"])
    result = CliRunner().invoke(app, ["server", "--port", str(port), "--wait", "30"])
    assert result.exit_code == 1
    assert f"error: prefect server exited with code 3 before http://127.0.0.1:{port}/api answered" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "prefect.example.com"])
def test_server_beyond_loopback_refuses_to_start_without_an_auth_string(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["server", "--host", host, "--port", str(closed_port())])
    assert result.exit_code == 1
    assert result.stderr == (f"error: --host {host} lets other machines reach the Prefect API, so it needs an auth "
                             "string: --auth-string-file FILE or PREFECT_SERVER_API_AUTH_STRING (clients then set "
                             "PREFECT_API_AUTH_STRING to the same value)\n")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("content, reason", [
    (None, "no such file"),
    ("", "the file is empty; write the auth string into it"),
    ("one\ntwo\n", "holds more than one line; write only the auth string"),
])
def test_server_names_an_unusable_auth_string_file(
    app: typer.Typer, tmp_path: Path, content: Optional[str], reason: str
) -> None:
    path = tmp_path / "auth-string"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(app, ["server", "--host", "0.0.0.0", "--auth-string-file", str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"error: --auth-string-file {path}: {reason}\n"


def test_server_refuses_a_database_password_on_the_command_line_without_echoing_it(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["server", "--database", "postgresql://team:hunter2-xyz@127.0.0.1:1/prefect"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --database: a password on the command line shows in every user's "
                                    "process list; put the URL in FREEZEFLOW_DATABASE_URL")
    assert "hunter2-xyz" not in result.output + result.stderr


def test_server_on_a_database_that_is_not_postgresql_fails_in_one_line(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["server", "--database", "mysql://team@127.0.0.1/prefect"])
    assert result.exit_code == 1
    assert result.stderr == ("error: --database: mysql:// is not PostgreSQL; expected postgresql://USER@HOST:5432/"
                             "DATABASE (leave --database out to use SQLite)\n")


def test_server_on_an_unreachable_database_fails_in_one_line_within_seconds(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("FREEZEFLOW_DATABASE_URL", f"postgresql://team:pw-xyz@127.0.0.1:{port}/prefect")
    started = time.monotonic()
    result = CliRunner().invoke(app, ["server", "--port", str(closed_port())])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach PostgreSQL at 127.0.0.1:{port}: Connection refused")
    assert result.stderr.count("\n") == 1 and "pw-xyz" not in result.stderr
    assert time.monotonic() - started < 30


def test_server_on_postgresql_with_a_wrong_password_fails_in_one_line_within_seconds(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer
) -> None:
    monkeypatch.setenv("FREEZEFLOW_DATABASE_URL", postgres.url_with_password("wrong-password-xyz"))
    started = time.monotonic()
    result = CliRunner().invoke(app, ["server", "--port", str(closed_port())])
    assert result.exit_code == 1
    assert result.stderr == (f"error: PostgreSQL at 127.0.0.1:{postgres.port} refused the password for user "
                             "'freezeflow' (database 'prefect'); check the password in FREEZEFLOW_DATABASE_URL, "
                             "PGPASSWORD or ~/.pgpass\n")
    assert time.monotonic() - started < 30


def test_worker_without_an_api_exits_with_a_hint_to_start_one(app: typer.Typer) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api"
    result = CliRunner().invoke(app, ["worker", "--api-url", url, "--wait", "1"])
    assert result.exit_code == 1
    assert f"error: no Prefect API answered at {url}/health within 1 s" in result.stderr
    assert "start one with `freezeflow server`" in result.stderr


def test_worker_creates_a_missing_process_pool_then_runs_prefect_worker_start(
    app: typer.Typer, prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    started: list[list[str]] = []
    monkeypatch.setattr(team, "run_foreground", lambda command, env: started.append(list(command)) or 0)
    api_url = str(PREFECT_API_URL.value())
    pool = f"test-pool-{uuid.uuid4().hex[:8]}"

    first = CliRunner().invoke(app, ["worker", "--pool", pool, "--api-url", api_url, "--", "--limit", "2"])
    assert first.exit_code == 0, first.stderr
    assert f"created work pool {pool} (type process)" in first.stderr
    assert f"$ prefect worker start --pool {pool} --install-policy never --limit 2" in first.stderr
    assert started[0][-8:] == ["worker", "start", "--pool", pool, "--install-policy", "never", "--limit", "2"]
    with get_client(sync_client=True) as client:
        assert client.read_work_pool(pool).type == "process"

    second = CliRunner().invoke(app, ["worker", "--pool", pool, "--api-url", api_url])
    assert second.exit_code == 0, second.stderr
    assert f"work pool {pool} exists (type process)" in second.stderr


def _task_run(state: Any, seconds: float = 1.0) -> Any:
    from datetime import timedelta
    from types import SimpleNamespace

    return SimpleNamespace(state=state, total_run_time=timedelta(seconds=seconds))


def _parse(xml: str) -> tuple[ET.Element, dict[str, ET.Element]]:
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    return suite, {case.get("name"): case for case in suite.iter("testcase")}


def test_junit_report_has_a_testcase_per_stage_and_puts_the_reason_on_the_failed_one() -> None:
    from prefect.states import Completed, Failed

    reason = ("PermanentDestinationError: destination /x/blocker/dest cannot be written: Not a directory; "
              "choose another destination (--dest) or fix its permissions")
    runs = {name: _task_run(Completed()) for name in team.STAGES[:-1]}
    runs["upload"] = _task_run(Failed(message="Task run encountered an exception " + reason))
    outcomes = team.stage_outcomes(runs, flow_completed=False, flow_reason=reason)
    report = team.SmokeReport(passed=False, outcomes=outcomes, seconds=12.5, flow_run_id="abc", reason=reason)

    suite, cases = _parse(team.junit_xml(report))
    assert list(cases) == [*team.STAGES, "guide answers"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "1", "1")
    failure = cases["upload"].find("failure")
    assert failure is not None
    assert failure.get("type") == "PermanentDestinationError"
    assert failure.get("message") == reason
    assert cases["train"].find("failure") is None and cases["train"].get("time") == "1.000"
    assert cases["guide answers"].find("skipped") is not None
    assert team.summary_line(report) == f"smoke FAILED at upload: {reason}"


def test_a_wrong_answer_after_all_stages_passed_fails_the_guide_testcase() -> None:
    from prefect.states import Completed

    runs = {name: _task_run(Completed()) for name in team.STAGES}
    reason = "ValidationFailed: smoke: saved_model gives 1.5 at x=2.0, the guide says 2.0"
    outcomes = team.stage_outcomes(runs, flow_completed=False, flow_reason=reason)
    report = team.SmokeReport(passed=False, outcomes=outcomes, seconds=3.0)
    _, cases = _parse(team.junit_xml(report))
    failure = cases["guide answers"].find("failure")
    assert failure is not None and failure.get("type") == "ValidationFailed"
    assert [name for name, case in cases.items() if case.find("failure") is not None] == ["guide answers"]
    assert team.summary_line(report) == f"smoke FAILED at guide answers: {reason}"


def test_smoke_passes_prints_one_line_and_writes_a_clean_junit_report(
    app: typer.Typer, prefect_api: None, tmp_path: Path
) -> None:
    junit = tmp_path / "reports" / "smoke.xml"
    dest = tmp_path / "published"
    result = CliRunner().invoke(app, ["smoke", "--dest", str(dest), "--junit", str(junit)])
    assert result.exit_code == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("smoke passed: 7 checks in ")
    assert lines[0].endswith(f"; published smoke v1 at {dest / 'smoke' / '1'}")
    suite, cases = _parse(junit.read_text())
    assert list(cases) == [*team.STAGES, "guide answers"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "0", "0")
    assert float(cases["train"].get("time") or 0) > 0


def test_smoke_with_an_unwritable_destination_exits_1_and_reports_the_upload_failure(
    app: typer.Typer, prefect_api: None, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the destination folder should be\n")
    junit = tmp_path / "smoke.xml"
    result = CliRunner().invoke(app, ["smoke", "--dest", str(blocker / "dest"), "--epochs", "120",
                                      "--junit", str(junit)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"smoke FAILED at upload: PermanentDestinationError: destination {blocker / 'dest'} cannot be written: "
        f"a part of the path is a file, not a folder ({blocker / 'dest' / 'smoke'}); choose a path made of folders "
        "(--dest)"
    ]
    suite, cases = _parse(junit.read_text())
    assert [name for name, case in cases.items() if case.find("failure") is not None] == ["upload"]
    assert all(cases[name].find("failure") is None and cases[name].find("skipped") is None
               for name in ("train", "checkpoint", "freeze", "export", "validate"))
    assert cases["guide answers"].find("skipped") is not None
