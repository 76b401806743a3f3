"""Task-run states read back through the Prefect API, once the API has recorded them.

A flow call returns as soon as its own state is final, but the task runs' last state changes reach
the API as events, written a moment later. Reading them at once can give ``Pending`` or no state at all,
and more often the busier the machine; so this waits, with a bound, until every task run's state is final.
"""

from __future__ import annotations

import time
from typing import Any


def final_task_states(flow_run_id: Any, expected: int, timeout: float = 60.0) -> dict[str, str]:
    """Each task run's final state name by task name (``train-3a1`` -> ``train``) for one flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            settled = len(runs) >= expected and all(r.state is not None and r.state.is_final() for r in runs)
            if settled or time.monotonic() > deadline:
                return {r.name.rsplit("-", 1)[0]: r.state.name if r.state else "no state" for r in runs}
            time.sleep(0.2)
