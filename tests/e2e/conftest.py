"""One real Prefect stack shared by the end-to-end tests: ``freezeflow server`` (SQLite in a temporary
PREFECT_HOME) on a free loopback port, the process work pool, the deployments from ``prefect.yaml``,
and ``freezeflow worker``, started once per session and stopped, process group by process group, at
its end."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
POOL = "freezeflow-local"  # the pool prefect.yaml deploys to

# `freezeflow`, as the console script runs it, from this checkout.
FREEZEFLOW = [sys.executable, "-c", "from freezeflow.cli.app import app; app(prog_name='freezeflow')"]

WORKER_QUERY_SECONDS = "1"  # the worker picks a run up within a second (default 10 s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: the worker starts flow runs in process groups of their own."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def stop_process_tree(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process's group and the groups of its descendants; SIGKILL what is left after ``grace``."""
    if process.poll() is not None:
        return
    groups = {process.pid}
    if Path("/proc").is_dir():
        for pid in _descendants(process.pid):
            try:
                groups.add(os.getpgid(pid))
            except ProcessLookupError:
                pass
    groups.discard(os.getpgid(0))  # never our own group
    for group in groups:
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)


@dataclass
class PrefectStack:
    """What the tests need to reach the stack: its URLs, the environment its processes share, its logs."""

    root: Path
    api_url: str
    ui_url: str
    env: dict[str, str]
    freezeflow_home: Path
    logs: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @contextmanager
    def settings(self) -> Iterator[None]:
        """Point Prefect's client in this process at the stack (only inside the block)."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
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

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        """A long-running process in a session of its own, output to ``<root>/<name>.log``."""
        log = self.root / f"{name}.log"
        self.logs[name] = log
        with log.open("ab") as out:
            process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
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


@pytest.fixture(scope="session")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    """``freezeflow server`` + pool + ``prefect deploy --all`` + ``freezeflow worker``, for the whole session."""
    root = tmp_path_factory.mktemp("prefect-stack")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
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
    stack = PrefectStack(root=root, api_url=api_url, ui_url="", env=env, freezeflow_home=root / "freezeflow-home")
    try:
        server = stack.start("server", [*FREEZEFLOW, "server", "--port", str(port), "--wait", "150"])
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

        stack.start("worker", [*FREEZEFLOW, "worker", "--pool", POOL])
        _wait_for_worker(stack)
        yield stack
    finally:
        for name in ("worker", "server"):  # the worker first: it reports to the server as it stops
            if name in stack.processes:
                stop_process_tree(stack.processes[name])
