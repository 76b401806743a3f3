"""A real Dask cluster on loopback for tests: ``dask scheduler`` and ``dask worker`` processes, each in its own
process group and working folder, with nothing in their environment but PATH, HOME and the project on
PYTHONPATH (what ``pip install`` gives a user): no FREEZEFLOW_* or PREFECT_* settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def bare_env(home: Path) -> dict[str, str]:
    """What a freshly installed machine has: the project importable, and no settings of ours or Prefect's."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(home),
            "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the process group (a worker's nanny and its worker process alike)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=30)


@dataclass
class DaskCluster:
    root: Path
    address: str = ""
    scheduler: Process | None = None
    workers: dict[str, Process] = field(default_factory=dict)

    def _spawn(self, name: str, args: list[str]) -> Process:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        popen = subprocess.Popen([str(BIN / "dask"), *args], cwd=folder, env=bare_env(folder / "home"),
                                 stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        return Process(name, popen, log)

    def start_scheduler(self) -> None:
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.scheduler = self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port),
                                                   "--no-dashboard"])

    def start_worker(self, name: str) -> Process:
        worker = self._spawn(name, ["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--name", name,
                                    "--no-dashboard", "--local-directory", str(self.root / name / "dask")])
        self.workers[name] = worker
        return worker

    def client(self):  # noqa: ANN201 - distributed.Client, imported lazily
        from distributed import Client

        return Client(self.address, timeout=60, set_as_default=False)

    def wait_for_workers(self, names: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                seen = {info["name"] for info in client.scheduler_info(n_workers=-1)["workers"].values()}
                if set(names) <= seen:
                    return
                for name in names:
                    if self.workers[name].popen.poll() is not None:
                        raise RuntimeError(f"dask worker {name} exited: {self.workers[name].text()[-2000:]}")
                time.sleep(0.5)
        raise TimeoutError(f"dask workers {names} did not register within {timeout}s")

    def wait_for_scheduler(self, timeout: float = 120) -> None:
        from tasks.fleet.cluster import SchedulerUnreachable, check_scheduler

        deadline = time.monotonic() + timeout
        while True:
            try:
                check_scheduler(self.address, timeout=5)
                return
            except SchedulerUnreachable:
                if time.monotonic() > deadline or self.scheduler.popen.poll() is not None:
                    raise RuntimeError(f"dask scheduler did not start: {self.scheduler.text()[-2000:]}")
                time.sleep(0.5)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.kill()
        if self.scheduler is not None:
            self.scheduler.kill()


def start_cluster(root: Path, worker_names: list[str]) -> DaskCluster:
    cluster = DaskCluster(root)
    try:
        cluster.start_scheduler()
        cluster.wait_for_scheduler()
        for name in worker_names:
            cluster.start_worker(name)
        cluster.wait_for_workers(worker_names)
    except BaseException:
        cluster.stop()
        raise
    return cluster
