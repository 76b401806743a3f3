"""The team setup end to end: ``freezeflow server`` on a real PostgreSQL, on all interfaces behind an auth
string, with a worker configured only by the active Prefect profile. The deployments from ``prefect.yaml``
run to Completed (``convert_checkpoint`` on a checkpoint this test writes), the API answers 401 to a
missing or wrong auth string, every command that talks to the API says so in one line, and no secret
shows up in a log, an artifact, the process list or a message."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import PrefectStack

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FREEZEFLOW = [sys.executable, "-m", "freezeflow"]


@dataclass
class Seen:
    """Everything a user or another process could read, collected for the secret check at the end."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        self.texts[where] = self.texts.get(where, "") + text + "\n"


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


def process_list() -> str:
    return subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True, check=True).stdout


@dataclass
class TeamRuns:
    dest: Path
    publish: Any
    smoke: Any
    convert: Any


@pytest.fixture(scope="module")
def team_runs(team_stack: PrefectStack, guide_checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory,
              seen: Seen) -> TeamRuns:
    """One run of each deployment in prefect.yaml, side by side, through the profile-configured worker."""
    from prefect.deployments import run_deployment

    dest = tmp_path_factory.mktemp("team-published")
    with team_stack.settings():
        publish = run_deployment("publish_model/local", timeout=0, parameters={
            "model_name": "team", "destination": str(dest), "training": {"epochs": 25, "seed": 4}})
        smoke = run_deployment("smoke/local", timeout=0, parameters={"destination": str(dest)})
        convert = run_deployment("convert_checkpoint/local", timeout=0, parameters={
            "checkpoint": str(guide_checkpoint_dir / "model"), "output_nodes": ["y"], "model_name": "guide",
            "destination": str(dest), "validation": {"reference_inputs": [2.0, 4.0, 6.0]}})
    seen.add("process list while the runs run", process_list())
    return TeamRuns(dest=dest, publish=team_stack.wait_final(publish.id), smoke=team_stack.wait_final(smoke.id),
                    convert=team_stack.wait_final(convert.id))


def test_the_team_server_runs_on_postgresql(team_stack: PrefectStack) -> None:
    assert team_stack.database == "postgresql"
    log = team_stack.tail("server", 200_000)
    assert "database: PostgreSQL " in log and ", database prefect, user freezeflow" in log
    assert "Auth string required -- clients: export PREFECT_API_AUTH_STRING=\"$(cat " in log


@pytest.mark.parametrize("name", ["publish", "smoke", "convert"])
def test_each_deployment_from_prefect_yaml_completes_and_publishes_on_postgresql(
    team_stack: PrefectStack, team_runs: TeamRuns, name: str,
) -> None:
    run = getattr(team_runs, name)
    assert run.state.is_completed(), f"{run.name}: {run.state.name} {run.state.message}\n{team_stack.diagnostics()}"
    model = {"publish": "team", "smoke": "smoke", "convert": "guide"}[name]
    manifest = json.loads((team_runs.dest / model / "1" / "manifest.json").read_text())
    if name != "smoke":  # smoke publishes from its publish_model subflow, whose run id the manifest names
        assert manifest["flow_run_id"] == str(run.id)
    assert manifest["validation"]["passed"] is True
    if name == "convert":  # the guide's y = 0.5 x + 1, frozen from the checkpoint the test wrote
        assert manifest["validation"]["predictions"]["frozen_graph"] == pytest.approx([2.0, 3.0, 4.0], abs=1e-6)


def test_the_worker_found_the_api_and_auth_string_in_the_active_profile(
    team_stack: PrefectStack, team_runs: TeamRuns,
) -> None:
    worker = team_stack.processes["worker"]
    environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert "PREFECT_API_URL" not in names and "PREFECT_API_AUTH_STRING" not in names
    assert (Path(team_stack.root) / "user-prefect-home" / "profiles.toml").is_file()
    with team_stack.client() as client:
        assert client.read_workers_for_work_pool("freezeflow-local")
    assert team_runs.publish.state.is_completed()  # its flow-run process reported states: the string was passed on


def test_the_api_answers_401_without_the_auth_string_or_with_a_wrong_one(team_stack: PrefectStack) -> None:
    url = f"{team_stack.api_url}/flows/filter"
    wrong = {"Authorization": "Basic " + base64.b64encode(b"team:wrong").decode()}
    right = {"Authorization": "Basic " + base64.b64encode(team_stack.auth_string.encode()).decode()}
    assert httpx.post(url, json={}).status_code == 401
    assert httpx.post(url, json={}, headers=wrong).status_code == 401
    assert httpx.post(url, json={}, headers=right).status_code == 200
    assert httpx.get(f"{team_stack.api_url}/health").status_code == 200  # probes stay open, as Prefect designed


CLIENT_COMMANDS = {
    "worker": ["worker", "--wait", "10"],
    "run": ["run", "--epochs", "1", "--model-name", "denied"],
    # A real checkpoint: convert checks its input before it talks to the API.
    "convert": ["convert", "ckpt/model", "--output-node", "y", "--model-name", "denied"],
    "smoke": ["smoke", "--epochs", "1"],
}


@pytest.mark.parametrize("auth", ["missing", "wrong"])
@pytest.mark.parametrize("command", list(CLIENT_COMMANDS))
def test_every_command_that_talks_to_the_api_names_a_missing_or_wrong_auth_string_in_one_line(
    team_stack: PrefectStack, tmp_path: Path, seen: Seen, command: str, auth: str, guide_checkpoint_dir: Path,
) -> None:
    env = {k: v for k, v in team_stack.env.items() if k != "PREFECT_API_AUTH_STRING"}
    env.update({"PREFECT_HOME": str(tmp_path / "empty-prefect-home"), "FREEZEFLOW_HOME": str(tmp_path / "ff")})
    if auth == "wrong":
        env["PREFECT_API_AUTH_STRING"] = "team:wrong"
    if command == "convert":
        shutil.copytree(guide_checkpoint_dir, tmp_path / "ckpt")
    result = subprocess.run([*FREEZEFLOW, *CLIENT_COMMANDS[command]], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    seen.add(f"freezeflow {command} ({auth} auth string)", result.stdout + result.stderr)
    assert result.returncode == 1, result.stdout + result.stderr
    expected = (f"error: the Prefect API at {team_stack.api_url} needs an auth string (401 Unauthorized): set "
                "PREFECT_API_AUTH_STRING" if auth == "missing" else
                f"error: the Prefect API at {team_stack.api_url} refused the auth string in PREFECT_API_AUTH_STRING "
                "(401 Unauthorized)")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "denied").exists()


def test_no_secret_in_logs_artifacts_the_process_list_or_messages(
    team_stack: PrefectStack, team_runs: TeamRuns, seen: Seen,
) -> None:
    """Last in this module: it reads what the tests above left behind."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    seen.add("process list", process_list())
    for name in team_stack.logs:
        seen.add(f"{name} log", team_stack.tail(name, 10_000_000))
    with team_stack.client() as client:
        run_ids = [run.id for run in client.read_flow_runs()]
        for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids))):
            seen.add("flow run logs", log.message)
        for artifact in client.read_artifacts():
            seen.add("artifacts", f"{artifact.key} {artifact.description} {artifact.data}")
        for run in client.read_flow_runs():
            seen.add("flow runs", run.model_dump_json())
        for deployment in client.read_deployments():
            seen.add("deployments", deployment.model_dump_json())
    for folder in (team_stack.root / "prefect-home", team_stack.freezeflow_home, team_runs.dest):
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size < 5_000_000 and path.suffix not in (".db",):
                seen.add(f"files under {folder.name}", path.read_text(errors="replace"))
    assert len(team_stack.secrets) == 2  # the auth string and PostgreSQL's password
    forms = {secret: (secret, base64.b64encode(secret.encode()).decode()) for secret in team_stack.secrets}
    leaks = [(where, "secret #%d" % i) for i, secret in enumerate(team_stack.secrets)
             for where, text in seen.texts.items() if any(form in text for form in forms[secret])]
    assert not leaks, leaks
    assert {"worker log", "server log", "artifacts", "flow run logs", "process list"} <= set(seen.texts)
    assert any("freezeflow smoke" in where for where in seen.texts)
