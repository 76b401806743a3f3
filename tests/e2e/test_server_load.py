"""The server under a team's load, on SQLite and on PostgreSQL: flow runs of a light deployment created
through the API by 20 concurrent clients (no client-side retry) while two ``freezeflow worker``
processes run them. Every run reaches Completed, none is lost or run twice, and no request gets a 5xx.

CI runs 30 runs per database; ``benchmarks/server_load.py`` runs the issue's 200 and records the figures
in docs/operations.md."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.support.processes import stop_process_tree
from tests.support.server_load import run_load

if TYPE_CHECKING:
    from tests.e2e.conftest import PrefectStack

pytestmark = pytest.mark.slow

RUNS, CLIENTS, WORKERS = 30, 20, 2


@pytest.fixture(params=["sqlite", "postgresql"])
def load_stack(request: pytest.FixtureRequest) -> PrefectStack:
    return request.getfixturevalue("prefect_stack" if request.param == "sqlite" else "team_stack")


@pytest.mark.timeout(1800)  # each run is a new Python process: minutes on a shared 2-core machine
def test_concurrent_clients_and_two_workers_lose_no_run_and_get_no_5xx(load_stack: PrefectStack) -> None:
    stack = load_stack
    started: list[str] = []

    def start(name, command, env):  # the stack's logs name the load workers too
        started.append(name)
        return stack.start(name, command, env=env)

    def stop(process):
        stop_process_tree(process)
        for name in [n for n, p in stack.processes.items() if p is process]:
            del stack.processes[name]  # so wait_final elsewhere does not take it for a crash

    result = run_load(database=stack.database, api_url=stack.api_url, auth_string=stack.auth_string,
                      env={k: v for k, v in stack.env.items() if k != "PREFECT_API_AUTH_STRING"},
                      root=stack.root / "load", runs=RUNS, clients=CLIENTS, workers=WORKERS,
                      start=start, stop=stop, timeout=900)
    print(json.dumps(result.as_dict()))
    summary = json.dumps(result.as_dict()) + "\n" + stack.diagnostics()
    assert len(started) == WORKERS
    assert result.statuses == {"201": RUNS}, summary
    assert result.server_errors == 0 and result.transport_errors == 0, summary
    assert result.final_states == {"Completed": RUNS}, summary
    assert result.lost == 0 and result.doubled == 0, summary
    assert result.runs_per_minute > 0
