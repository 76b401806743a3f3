"""A second "machine": a process with a FREEZEFLOW_HOME and PREFECT_HOME of its own, on the same Prefect API
and workspace, running publish_model once and reporting what it saw as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import json, sys
from flows.params import TrainingParams
from flows.publish import publish_model
from tests.support.task_runs import final_task_states

params = json.loads(sys.argv[1])
state = publish_model(return_state=True, training=TrainingParams(**params.pop("training")), **params)
stages = final_task_states(state.state_details.flow_run_id, 6 if state.is_completed() else 0)
version = state.result().publication.version if state.is_completed() else None
print("RESULT " + json.dumps({"completed": state.is_completed(), "message": state.message, "stages": stages,
                               "version": version, "tensorflow": "tensorflow" in sys.modules,
                               "flow_run_id": str(state.state_details.flow_run_id)}))
"""


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "needs the prefect_api fixture"
    return url


def start_on_machine(home: Path, params: dict[str, Any], env: Optional[dict[str, str]] = None
                     ) -> "subprocess.Popen[str]":
    """publish_model starting on a "machine" whose local state lives under ``home`` (see :func:`result_of`)."""
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k != "FREEZEFLOW_WORKSPACE"}
    environment.update({"FREEZEFLOW_HOME": str(home / "freezeflow"), "PREFECT_HOME": str(home / "prefect"),
                        "PREFECT_API_URL": api_url(), "PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, json.dumps(params)], cwd=str(REPO), env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(process: "subprocess.Popen[str]", timeout: float = 600) -> dict[str, Any]:
    """The JSON a machine printed when its run ended."""
    stdout, stderr = process.communicate(timeout=timeout)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the machine printed no result (exit {process.returncode}):\n{stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def run_on_machine(home: Path, params: dict[str, Any], env: Optional[dict[str, str]] = None,
                   timeout: float = 600) -> dict[str, Any]:
    """publish_model on a "machine" whose local state lives under ``home``; returns the JSON it printed."""
    return result_of(start_on_machine(home, params, env), timeout)
