"""One workspace for several machines: records name artifacts by workspace key, so any machine pointed at the
workspace resumes any run. A "machine" here is a FREEZEFLOW_HOME of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.params import TrainingParams
from flows.publish import publish_model
from tasks.core import workspace
from tests.support.task_runs import final_task_states

pytestmark = pytest.mark.usefixtures("prefect_api")

STAGES = ["train", "checkpoint", "freeze", "export", "validate", "upload"]
FAST = TrainingParams(epochs=150)


def run(**params: Any) -> tuple[Any, dict[str, str]]:
    state = publish_model(return_state=True, **{"training": FAST, **params})
    return state, final_task_states(state.state_details.flow_run_id, len(STAGES) if state.is_completed() else 0)


def test_a_second_machine_on_the_same_local_workspace_finds_every_stage_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared, dest = tmp_path / "shared", tmp_path / "dest"
    monkeypatch.setenv("FREEZEFLOW_HOME", str(tmp_path / "machine-a"))
    state, tasks = run(destination=str(dest), workspace=str(shared))
    assert state.is_completed(), state.message and tasks == {s: "Completed" for s in STAGES}
    records = [p.read_text() for p in (shared / "results").iterdir()]
    assert len(records) == len(STAGES) and len(list((shared / "cache-keys").iterdir())) == len(STAGES)
    assert not any(str(tmp_path / "machine-a") in text or str(shared) in text for text in records)
    assert not (tmp_path / "machine-a" / "work").exists()  # the stages built in the workspace, not the home

    monkeypatch.setenv("FREEZEFLOW_HOME", str(tmp_path / "machine-b"))
    again, tasks = run(destination=str(dest), workspace=str(shared))
    assert again.is_completed() and tasks == {s: "Cached" for s in STAGES}
    assert again.result().publication.version == state.result().publication.version == 1
    frozen = again.result().frozen_graph
    with workspace.using(str(shared)):  # a record resolves against the workspace in use
        assert frozen.graph_path == shared / str(frozen.artifact.key) / "frozen_graph.pb"
        frozen.artifact.verify()


def test_an_unwritable_workspace_fails_before_any_stage_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    state, tasks = run(destination=str(tmp_path / "dest"), workspace=str(blocker / "ws"))
    assert state.is_failed() and tasks == {}
    message = str(state.result(raise_on_failure=False))
    assert message.startswith(f"workspace {blocker / 'ws'} cannot be written") and "\n" not in message
