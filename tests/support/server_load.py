"""A load test of a Prefect server as a team uses it: N flow runs of a light deployment created through
the API by C concurrent clients (raw HTTP, no client-side retry, so every 5xx counts) while W
``freezeflow worker`` processes run them. Shared by tests/e2e/test_server_load.py (a CI-sized run) and
benchmarks/server_load.py (the figures in docs/operations.md).

What it reports: every create's status, runs that never reached a final state or never executed
(lost), runs that executed more than once or were created twice (doubled), runs per minute from the
first create to the last run's end, and p50/p95 latency of the creates and of the state reads.
"""

from __future__ import annotations

import base64
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import httpx

from tests.support.processes import stop_process_tree

REPO = Path(__file__).resolve().parents[2]
LOAD_POOL = "freezeflow-load"
ENTRYPOINT = "tests/support/light_flow.py:light"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
FREEZEFLOW = [sys.executable, "-c", "from freezeflow.cli.app import app; app(prog_name='freezeflow')"]


@dataclass
class LoadResult:
    database: str
    runs: int
    clients: int
    workers: int
    created: int
    statuses: dict[str, int]
    server_errors: int  # creates and reads answered 5xx
    transport_errors: int  # requests with no HTTP answer at all
    final_states: dict[str, int]
    lost: int  # created, but not final or never executed
    doubled: int  # executed more than once, or more runs on the server than creates answered 201
    runs_per_minute: float
    create_p50_ms: float
    create_p95_ms: float
    read_p95_ms: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def auth_headers(auth_string: Optional[str]) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()} if auth_string else {}


def deploy_light_flow(api_url: str, auth_string: Optional[str], env: dict[str, str]) -> str:
    """The pool and the light deployment, made by Prefect's own client in a child process; returns its id."""
    code = (
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.actions import WorkPoolCreate\n"
        "from prefect.exceptions import ObjectAlreadyExists\n"
        "from prefect.workers.process import ProcessWorker\n"
        "from prefect import flow\n"
        "with get_client(sync_client=True) as c:\n"
        "    try:\n"
        f"        c.create_work_pool(WorkPoolCreate(name={LOAD_POOL!r}, type='process',"
        " base_job_template=ProcessWorker.get_default_base_job_template()))\n"
        "    except ObjectAlreadyExists:\n"
        "        pass\n"
        f"d = flow.from_source(source={str(REPO)!r}, entrypoint={ENTRYPOINT!r}).deploy("
        f"name='load', work_pool_name={LOAD_POOL!r}, print_next_steps=False)\n"
        "print(d)\n")
    child_env = {**env, "PREFECT_API_URL": api_url}
    if auth_string:
        child_env["PREFECT_API_AUTH_STRING"] = auth_string
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env, capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"deploying the light flow failed: {result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def run_load(*, database: str, api_url: str, auth_string: Optional[str], env: dict[str, str], root: Path,
             runs: int, clients: int, workers: int, worker_limit: int = 4, timeout: float = 1200.0,
             start: Optional[Callable[[str, list[str], dict[str, str]], subprocess.Popen]] = None,
             stop: Optional[Callable[[subprocess.Popen], None]] = None) -> LoadResult:
    """Run the load against a running server; starts and stops its own workers (``start``/``stop`` let a
    test harness own the processes and their logs)."""
    out = root / "load-out"
    out.mkdir(parents=True, exist_ok=True)
    deployment_id = deploy_light_flow(api_url, auth_string, env)
    worker_env = {**env, "PREFECT_API_URL": api_url, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    if auth_string:
        worker_env["PREFECT_API_AUTH_STRING"] = auth_string
    processes: list[subprocess.Popen] = []
    headers = auth_headers(auth_string)
    try:
        for i in range(workers):
            command = [*FREEZEFLOW, "worker", "--pool", LOAD_POOL, "--", "--limit", str(worker_limit)]
            if start is not None:
                processes.append(start(f"load-worker-{i}", command, worker_env))
            else:
                log = (root / f"load-worker-{i}.log").open("ab")
                processes.append(subprocess.Popen(command, cwd=REPO, env=worker_env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
        with httpx.Client(base_url=api_url, headers=headers, timeout=60) as http:
            deadline = time.monotonic() + 120
            while len(http.post(f"/work_pools/{LOAD_POOL}/workers/filter", json={}).json()) < workers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{workers} workers did not poll {LOAD_POOL} within 120 s")
                time.sleep(0.5)

        statuses: list[str] = []
        create_ms: list[float] = []
        read_ms: list[float] = []
        created_ids: list[str] = []
        lock = threading.Lock()
        numbers = iter(range(runs))

        def client() -> None:
            with httpx.Client(base_url=api_url, headers=headers, timeout=120) as http:
                while True:
                    with lock:
                        n = next(numbers, None)
                    if n is None:
                        return
                    started = time.monotonic()
                    try:
                        response = http.post(f"/deployments/{deployment_id}/create_flow_run",
                                             json={"parameters": {"out_dir": str(out), "n": n}})
                    except httpx.HTTPError as exc:
                        with lock:
                            statuses.append(type(exc).__name__)
                        continue
                    with lock:
                        create_ms.append((time.monotonic() - started) * 1000)
                        statuses.append(str(response.status_code))
                        if response.status_code == 201:
                            created_ids.append(response.json()["id"])

        began = time.monotonic()
        began_at = datetime.now(timezone.utc)  # run end times come from the server's clock: the same machine's
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        read_errors: Counter = Counter()
        server_runs: list[dict[str, Any]] = []
        with httpx.Client(base_url=api_url, headers=headers, timeout=60) as http:
            deadline = time.monotonic() + timeout
            while True:
                server_runs, offset = [], 0
                while True:  # the API answers at most 200 runs a page
                    started = time.monotonic()
                    response = http.post("/flow_runs/filter", json={
                        "deployments": {"id": {"any_": [deployment_id]}}, "limit": 200, "offset": offset})
                    read_ms.append((time.monotonic() - started) * 1000)
                    if response.status_code >= 500:
                        read_errors[str(response.status_code)] += 1
                        break
                    page = response.json()
                    server_runs += page
                    offset += len(page)
                    if len(page) < 200:
                        break
                if (len(server_runs) >= len(created_ids)
                        and all(r["state"] and r["state"]["type"] in FINAL for r in server_runs)):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(1.0)
        finished = time.monotonic()
    finally:
        for process in processes:
            (stop or stop_process_tree)(process)

    executions = {path.name: len(path.read_text().splitlines()) for path in out.iterdir()}
    by_id = {r["id"]: r for r in server_runs}
    final = Counter((r["state"] or {}).get("name", "none") for r in server_runs)
    lost = sum(1 for i in created_ids
               if i not in by_id or (by_id[i]["state"] or {}).get("type") not in FINAL or i not in executions)
    doubled = sum(1 for count in executions.values() if count > 1) + max(0, len(server_runs) - len(created_ids))
    doubled += sum(1 for r in server_runs if r.get("run_count", 1) > 1)
    ends = [datetime.fromisoformat(r["end_time"].replace("Z", "+00:00")) for r in server_runs if r.get("end_time")]
    span = (max(ends) - began_at).total_seconds() if ends else finished - began
    completed = final.get("Completed", 0)
    span = max(span, 1e-3)
    all_statuses = Counter(statuses) + read_errors
    return LoadResult(
        database=database, runs=runs, clients=clients, workers=workers, created=len(created_ids),
        statuses=dict(Counter(statuses)),
        server_errors=sum(count for status, count in all_statuses.items() if status.isdigit() and int(status) >= 500),
        transport_errors=sum(count for status, count in all_statuses.items() if not status.isdigit()),
        final_states=dict(final), lost=lost, doubled=doubled, runs_per_minute=round(completed / span * 60, 1),
        create_p50_ms=round(statistics.median(create_ms), 1) if create_ms else float("nan"),
        create_p95_ms=round(percentile(create_ms, 0.95), 1), read_p95_ms=round(percentile(read_ms, 0.95), 1),
        seconds=round(finished - began, 1))
