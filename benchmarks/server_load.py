"""Benchmark: the Prefect server under a team's load, per database.

For each setup, a fresh server, then N flow runs of a light deployment created through the API by C
concurrent clients (raw HTTP, no client-side retry) while W ``freezeflow worker`` processes run them
(tests/support/server_load.py). Setups:

* `sqlite`: ``freezeflow server`` (SQLite, write transactions BEGIN IMMEDIATE),
* `postgresql`: ``freezeflow server`` on a PostgreSQL started from Debian's package (tests/support/postgres.py),
  with an auth string, as the team setup in docs/operations.md,
* `sqlite-prefect-default`: plain ``prefect server start`` on SQLite: the baseline, measured in the same run,
  that shows what the IMMEDIATE transactions fix.

Reported: creates answered 201/5xx, runs lost or run twice, final states, runs per minute (first create
to last run's end), p50/p95 latency of the creates and p95 of the state reads. Prints a table and
writes benchmarks/results/server_load.json.

    python benchmarks/server_load.py                       # the issue's load: 200 runs, 20 clients, 2 workers
    python benchmarks/server_load.py --runs 40 --setups sqlite,postgresql    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.postgres import start_postgres  # noqa: E402
from tests.support.processes import stop_process_tree  # noqa: E402
from tests.support.server_load import FREEZEFLOW, run_load  # noqa: E402

SETUPS = ("sqlite", "postgresql", "sqlite-prefect-default")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_", "PG"))}
    env.update({"PREFECT_HOME": str(root / "prefect-home"), "FREEZEFLOW_HOME": str(root / "freezeflow-home"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(REPO)})
    return env


def wait_health(api_url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no answer from {api_url}/health within {timeout} s")


def measure(setup: str, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"freezeflow-load-{setup}-"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = base_environment(root)
    server_env = {**env, "PREFECT_UI_API_URL": api_url}
    auth: Optional[str] = None
    postgres = None
    if setup == "sqlite-prefect-default":
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [*FREEZEFLOW, "server", "--port", str(port), "--wait", "300"]
    if setup == "postgresql":
        postgres = start_postgres()
        server_env["FREEZEFLOW_DATABASE_URL"] = postgres.url
        auth = "team:" + secrets.token_urlsafe(18)
        server_env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    with (root / "server.log").open("ab") as log:
        server = subprocess.Popen(command, cwd=REPO, env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_health(api_url, server)
        result = run_load(database=setup, api_url=api_url, auth_string=auth, env=env, root=root, runs=args.runs,
                          clients=args.clients, workers=args.workers, worker_limit=args.worker_limit,
                          timeout=args.timeout)
    finally:
        stop_process_tree(server, grace=60)
        if postgres is not None:
            postgres.stop()
    figures = result.as_dict()
    figures["locked_in_server_log"] = (root / "server.log").read_text(errors="replace").count("database is locked")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-limit", type=int, default=4, help="flow runs one worker runs at once")
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for every run to end once created (default: 20 s per run, at least "
                             "1200 s); a run still not final then counts as lost")
    args = parser.parse_args()
    if args.timeout is None:
        args.timeout = max(1200.0, 20.0 * args.runs)
    rows = [measure(setup, args) for setup in args.setups.split(",")]
    header = f"{'setup':24} {'created':>8} {'5xx':>5} {'lost':>5} {'twice':>6} {'completed':>10} " \
             f"{'runs/min':>9} {'create p50':>11} {'create p95':>11} {'read p95':>9}"
    print(header)
    for r in rows:
        print(f"{r['database']:24} {r['created']:>8} {r['server_errors']:>5} {r['lost']:>5} {r['doubled']:>6} "
              f"{r['final_states'].get('Completed', 0):>10} {r['runs_per_minute']:>9} {r['create_p50_ms']:>9} ms "
              f"{r['create_p95_ms']:>8} ms {r['read_p95_ms']:>6} ms")
    out = REPO / "benchmarks" / "results" / "server_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                               "runs": args.runs, "clients": args.clients, "workers": args.workers,
                               "worker_limit": args.worker_limit, "results": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
