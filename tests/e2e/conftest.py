"""Real Prefect stacks shared by the end-to-end tests, each started once per session and stopped, process
group by process group, at its end: ``freezeflow server`` on a free port, the process work pool, the
deployments from ``prefect.yaml``, and ``freezeflow worker``.

- ``prefect_stack``: SQLite in a temporary PREFECT_HOME, on loopback, no auth string (one person).
- ``team_stack``: the team setup of docs/operations.md: a real PostgreSQL (Debian's package), the server
  on all interfaces with an auth string from a file, and a worker that finds the API URL and the auth
  string in the active Prefect profile, as ``prefect profile use`` leaves them."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from tests.support.postgres import PostgresServer
from tests.support.processes import stop_process_tree
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
POOL = "freezeflow-local"  # the pool prefect.yaml deploys to

# `freezeflow`, as the console script runs it, from this checkout.
FREEZEFLOW = [sys.executable, "-c", "from freezeflow.cli.app import app; app(prog_name='freezeflow')"]

WORKER_QUERY_SECONDS = "1"  # the worker picks a run up within a second (default 10 s)


@dataclass
class PrefectStack:
    """What the tests need to reach the stack: its URLs, the environment its processes share, its logs."""

    root: Path
    api_url: str
    ui_url: str
    env: dict[str, str]
    freezeflow_home: Path
    database: str = "sqlite"
    auth_string: Optional[str] = None
    secrets: list[str] = field(default_factory=list)  # what must never appear in a log, artifact or message
    logs: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @contextmanager
    def settings(self) -> Iterator[None]:
        """Point Prefect's client in this process at the stack (only inside the block)."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url, PREFECT_API_AUTH_STRING: self.auth_string}):
            yield

    @contextmanager
    def client(self) -> Iterator[Any]:
        from prefect import get_client

        with self.settings(), get_client(sync_client=True) as client:
            yield client

    def prefect(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Prefect's own CLI against the stack, from the repository root, as the README runs it."""
        return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def tail(self, name: str, chars: int = 6000) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else f"(no {name} log)"

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} log ---\n{self.tail(name)}" for name in self.logs)

    def start(self, name: str, command: list[str], env: Optional[dict[str, str]] = None) -> subprocess.Popen:
        """A long-running process in a session of its own, output to ``<root>/<name>.log``."""
        log = self.root / f"{name}.log"
        self.logs[name] = log
        with log.open("ab") as out:
            process = subprocess.Popen(command, cwd=REPO, env=env or self.env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes[name] = process
        return process

    def wait_final(self, flow_run_id: Any, timeout: float = 240.0) -> Any:
        """The flow run once it reaches a final state; fails with the worker's log if it does not."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                run = client.read_flow_run(flow_run_id)
                if run.state is not None and run.state.is_final():
                    return run
                if time.monotonic() > deadline:
                    pytest.fail(f"flow run {run.name} still {run.state.name if run.state else None} after "
                                f"{timeout:.0f} s\n{self.diagnostics()}")
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        pytest.fail(f"{name} exited with code {process.returncode}\n{self.diagnostics()}")
                time.sleep(1.0)


def _wait_for_worker(stack: PrefectStack, timeout: float = 90.0) -> None:
    """Until the worker has polled the pool once (so the first run is not left waiting for it)."""
    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while not client.read_workers_for_work_pool(POOL):
            if stack.processes["worker"].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker never polled {POOL}\n{stack.diagnostics()}")
            time.sleep(0.5)


def stack_environment(root: Path, api_url: str) -> dict[str, str]:
    """This process's environment without any Prefect or freezeflow setting, then the stack's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_", "PG"))}
    env.update({
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": api_url,
        # Both runs of a retried flow, every worker process and the tests read this one cache.
        "FREEZEFLOW_HOME": str(root / "freezeflow-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": WORKER_QUERY_SECONDS,
        # A run queued behind the deployment's concurrency limit retries after this (default 30 s).
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def write_profile(home: Path, name: str, settings: dict[str, str]) -> None:
    """A Prefect home whose active profile is ``name``: what `prefect profile use NAME` leaves behind."""
    home.mkdir(parents=True, exist_ok=True)
    lines = [f'active = "{name}"', "", f"[profiles.{name}]"]
    lines += [f'{key} = "{value}"' for key, value in settings.items()]
    path = home / "profiles.toml"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


@contextmanager
def running_stack(root: Path, *, database_url: Optional[str] = None, auth_string: Optional[str] = None,
                  host: str = "127.0.0.1", hidden: tuple[str, ...] = ()) -> Iterator[PrefectStack]:
    """``freezeflow server`` + pool + ``prefect deploy --all`` + ``freezeflow worker``.

    With an auth string the server reads it from a file (``--auth-string-file``), the tests and Prefect's
    CLI send it as PREFECT_API_AUTH_STRING, and the worker gets neither URL nor auth string in its
    environment: it must find both in the active Prefect profile.
    """
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = stack_environment(root, api_url)
    server_env = dict(env)
    server_args = ["server", "--host", host, "--port", str(port), "--wait", "150"]
    if database_url is not None:
        server_env["FREEZEFLOW_DATABASE_URL"] = database_url  # the environment: no password in `ps`
    if auth_string is not None:
        auth_file = root / "auth-string"
        auth_file.write_text(auth_string + "\n")
        auth_file.chmod(0o600)
        server_args += ["--auth-string-file", str(auth_file)]
        env["PREFECT_API_AUTH_STRING"] = auth_string
    stack = PrefectStack(root=root, api_url=api_url, ui_url="", env=env, freezeflow_home=root / "freezeflow-home",
                         database="postgresql" if database_url else "sqlite", auth_string=auth_string,
                         secrets=[s for s in (auth_string, *hidden) if s])
    try:
        server = stack.start("server", [*FREEZEFLOW, *server_args], env=server_env)
        deadline = time.monotonic() + 180
        while not (match := re.search(r"Prefect UI\s+(\S+)", stack.tail("server", 200_000))):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"freezeflow server did not print its UI URL\n{stack.diagnostics()}")
            time.sleep(0.5)
        stack.ui_url = match.group(1)

        pool = stack.prefect("work-pool", "create", POOL, "--type", "process", "--overwrite")
        assert pool.returncode == 0, pool.stdout + pool.stderr
        deploy = stack.prefect("--no-prompt", "deploy", "--all")
        assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-4000:]

        worker_env = env
        if auth_string is not None:
            user_home = root / "user-prefect-home"
            write_profile(user_home, "team", {"PREFECT_API_URL": api_url, "PREFECT_API_AUTH_STRING": auth_string})
            worker_env = {k: v for k, v in env.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
            worker_env["PREFECT_HOME"] = str(user_home)
        stack.start("worker", [*FREEZEFLOW, "worker", "--pool", POOL], env=worker_env)
        _wait_for_worker(stack)
        yield stack
    finally:
        for name in list(stack.processes)[::-1]:  # workers first: they report to the server as they stop
            stop_process_tree(stack.processes[name])


@pytest.fixture(scope="session")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    """The one-person stack: SQLite, loopback, no auth string."""
    with running_stack(tmp_path_factory.mktemp("prefect-stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[PrefectStack]:
    """The team stack: PostgreSQL, the server on all interfaces behind an auth string, a profile-configured worker."""
    auth_string = "team:" + secrets.token_urlsafe(18)
    with running_stack(tmp_path_factory.mktemp("team-stack"), database_url=postgres.url, auth_string=auth_string,
                       host="0.0.0.0", hidden=(postgres.password,)) as stack:
        yield stack
