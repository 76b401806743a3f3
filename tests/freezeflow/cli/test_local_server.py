"""The local Prefect server that ``freezeflow`` commands start once and share: found, started once under a
race, shown by ``server status``, stopped by ``server stop``, and never trusted when its record is stale.

Each test has its own server home in ``tmp_path`` and stops every server it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest
from typer.testing import CliRunner

from freezeflow.cli import local_server

REPO = Path(__file__).resolve().parents[3]


def freezeflow(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``freezeflow ...`` in a fresh process as a user starts it: no PREFECT_API_URL, the default server mode."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO), **env})
    return subprocess.Popen([sys.executable, "-m", "freezeflow", *args], cwd=cwd, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def prefect_servers(home: Path) -> list[psutil.Process]:
    """Live `prefect server start` processes whose database is under ``home``."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or not info["cmdline"] or not info["cwd"]:
            continue
        command = [arg.encode() for arg in info["cmdline"]]
        if local_server.is_server_command(command) and info["cwd"].startswith(str(home)):
            found.append(process)
    return found


@pytest.fixture
def server_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty server home for this test; whatever server it ends up with is stopped afterwards."""
    home = tmp_path / "server-home"
    monkeypatch.setenv("FREEZEFLOW_SERVER_HOME", str(home))
    monkeypatch.setenv("FREEZEFLOW_SERVER", "local")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    yield home
    record = local_server.read_record()
    if record is not None:
        local_server.stop_process(record.pid)
    for process in prefect_servers(home):  # a server whose record was lost must not outlive the test
        process.kill()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def plant_record(pid: int, url: str = "http://127.0.0.1:9/api") -> None:
    local_server.write_record(local_server.ServerRecord(
        pid=pid, url=url, prefect_version=local_server.installed_prefect_version(), started_at=time.time(),
        log=str(local_server.log_path()), prefect_home=str(local_server.database_home("0"))))


def test_a_record_whose_process_is_gone_or_is_not_a_prefect_server_is_not_trusted(server_home: Path) -> None:
    assert not local_server.process_alive(dead_pid())
    assert not local_server.process_alive(os.getpid())  # alive, but pytest is no Prefect server
    plant_record(dead_pid())
    result = CliRunner().invoke(local_server.server_group(lambda: None), ["status"])
    assert result.exit_code == 1
    assert "no local Prefect server running (removed the record of pid" in result.stdout
    assert local_server.read_record() is None


def test_status_and_stop_without_a_server(server_home: Path) -> None:
    from freezeflow.cli.app import app

    status = CliRunner().invoke(app, ["server", "status"])
    assert (status.exit_code, status.stdout.strip()) == (1, "no local Prefect server running")
    stop = CliRunner().invoke(app, ["server", "stop"])
    assert (stop.exit_code, stop.stdout.strip()) == (0, "no local Prefect server running")


def test_an_unknown_server_mode_is_one_line_naming_the_variable(tmp_path: Path, server_home: Path) -> None:
    run = freezeflow("run", cwd=tmp_path, env={"FREEZEFLOW_SERVER": "always", "FREEZEFLOW_SERVER_HOME": str(server_home)})
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1
    assert err.strip().splitlines()[-1] == "error: FREEZEFLOW_SERVER='always' is not one of local, ephemeral; unset it or pick one"


@pytest.mark.slow
def test_two_runs_started_at_once_start_one_server_that_status_shows_and_stop_stops(
    tmp_path: Path, server_home: Path
) -> None:
    from freezeflow.cli.app import app

    server_home.mkdir(parents=True)
    plant_record(dead_pid())  # a stale record from a server that died: replaced, not trusted
    env = {"FREEZEFLOW_SERVER_HOME": str(server_home)}
    workspaces = [tmp_path / "a", tmp_path / "b"]
    for folder in workspaces:
        folder.mkdir()
    runs = [freezeflow("run", "--epochs", "120", cwd=folder, env=env) for folder in workspaces]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err[-3000:]
        assert "prediction at x=6.0: checkpoint 4, frozen graph 4, SavedModel 4" in out
    started = [err for _, err in outputs if "started a local Prefect server at" in err]
    assert len(started) == 1, [err[-1500:] for _, err in outputs]

    record = local_server.read_record()
    assert record is not None and local_server.process_alive(record.pid)
    assert [p.pid for p in prefect_servers(server_home)] == [record.pid]
    assert json.loads((server_home / "server.json").read_text())["url"] == record.url
    assert (server_home / f"prefect-{record.prefect_version}" / "prefect.db").is_file()  # one database, per user

    status = CliRunner().invoke(app, ["server", "status"])
    assert status.exit_code == 0, status.stdout
    assert f"local Prefect server up at {record.url.removesuffix('/api')}" in status.stdout
    assert f"pid {record.pid}, Prefect {record.prefect_version}" in status.stdout

    # The next command uses it: no new server, and a cached run (--record: through Prefect, not the fast path).
    again = freezeflow("run", "--epochs", "120", "--record", cwd=workspaces[0], env=env)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert "started a local Prefect server" not in err
    assert "stages: train Cached" in out
    assert local_server.read_record() == record

    stop = CliRunner().invoke(app, ["server", "stop"])
    assert stop.exit_code == 0, stop.stdout
    assert f"stopped the local Prefect server (pid {record.pid})" in stop.stdout
    assert not psutil.pid_exists(record.pid) or psutil.Process(record.pid).status() == psutil.STATUS_ZOMBIE
    assert prefect_servers(server_home) == []
    assert not (server_home / "server.json").exists()
    assert CliRunner().invoke(app, ["server", "status"]).exit_code == 1


def test_the_team_server_still_runs_in_the_foreground_with_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from freezeflow.cli import team
    from freezeflow.cli.app import app

    port = local_server.free_port()
    monkeypatch.setattr(team, "server_command", lambda host, port: [sys.executable, "-c", "import sys; sys.exit(4)"])
    result = CliRunner().invoke(app, ["server", "--port", str(port), "--wait", "30"])
    assert result.exit_code == 1
    assert f"error: prefect server exited with code 4 before http://127.0.0.1:{port}/api answered" in result.stderr


def test_an_api_the_user_configured_in_a_prefect_profile_is_used_instead(
    tmp_path: Path, server_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefect_home = tmp_path / "prefect-home"
    prefect_home.mkdir()
    (prefect_home / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://prefect.example:4200/api"\n')
    monkeypatch.setenv("PREFECT_HOME", str(prefect_home))
    monkeypatch.chdir(tmp_path)
    assert local_server.configured_api_url() == "http://prefect.example:4200/api"
    assert local_server.use_local_server() is None
    assert not (server_home / "server.json").exists()  # nothing started
    monkeypatch.setenv("PREFECT_PROFILE", "other")
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://toml.example/api"\n')
    assert local_server.configured_api_url() == "http://toml.example/api"


def test_a_server_of_another_prefect_version_is_stopped_and_replaced(server_home: Path) -> None:
    import dataclasses

    first = local_server.connect()
    first.ready()
    old = first.record
    # As if that server had been started before Prefect was upgraded: its database may not suit this version.
    local_server.write_record(dataclasses.replace(old, prefect_version="2.20.0"))

    second = local_server.connect()
    second.ready()
    assert second.started and second.record.pid != old.pid
    assert second.record.prefect_version == local_server.installed_prefect_version()
    assert not local_server.process_alive(old.pid)
    assert [p.pid for p in prefect_servers(server_home)] == [second.record.pid]
    assert local_server.read_record() == second.record
