"""publish_model end to end on a real Prefect API: caching, recovery, and the guide's numbers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from flows.params import TrainingParams
from flows.publish import publish_model
from tests.support.task_runs import final_task_states

pytestmark = pytest.mark.usefixtures("prefect_api")

STAGES = ["train", "checkpoint", "freeze", "export", "validate", "upload"]
FAST = TrainingParams(epochs=150)


def run(**params: Any) -> tuple[Any, dict[str, str]]:
    """Run the flow; return its final state and each task run's final state name, read back through the API."""
    state = publish_model(return_state=True, **{"training": FAST, **params})
    # A completed run has all its task runs; a failed one as many as started before the failure.
    expected = len(STAGES) if state.is_completed() else 0
    return state, final_task_states(state.state_details.flow_run_id, expected)


def test_guide_numbers_through_every_format_and_second_run_is_fully_cached(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    state, tasks = run(destination=str(dest))
    assert state.is_completed(), state.message
    assert tasks == {stage: "Completed" for stage in STAGES}
    summary = state.result()
    for prediction in summary.validation.predictions:
        assert prediction.outputs == pytest.approx([2.0, 3.0, 4.0], abs=1e-4)
    assert (dest / "linear" / "1" / "manifest.json").is_file()

    again, tasks = run(destination=str(dest))
    assert again.is_completed()
    assert tasks == {stage: "Cached" for stage in STAGES}
    assert [s.state for s in again.result().stages] == ["Cached"] * 6
    assert sorted(p.name for p in (dest / "linear").iterdir()) == ["1"]


def test_changing_only_the_destination_reruns_only_upload(tmp_path: Path) -> None:
    run(destination=str(tmp_path / "one"))
    state, tasks = run(destination=str(tmp_path / "two"))
    assert tasks == {**{stage: "Cached" for stage in STAGES[:-1]}, "upload": "Completed"}
    assert (tmp_path / "two" / "linear" / "1" / "frozen_graph.pb").read_bytes() == (
        tmp_path / "one" / "linear" / "1" / "frozen_graph.pb").read_bytes()


def test_deleted_stage_output_is_noticed_and_rebuilt(tmp_path: Path, workspace_home: Path) -> None:
    run(destination=str(tmp_path / "dest"))
    shutil.rmtree(workspace_home / "work" / "freeze")
    state, tasks = run(destination=str(tmp_path / "dest"))
    assert state.is_completed()
    assert tasks["freeze"] == "Completed" and tasks["train"] == "Cached" and tasks["export"] == "Cached"
    frozen = state.result().frozen_graph.graph_path
    assert frozen.is_file()


def test_deleted_published_version_is_published_again(tmp_path: Path) -> None:
    run(destination=str(tmp_path / "dest"))
    shutil.rmtree(tmp_path / "dest" / "linear" / "1")
    state, tasks = run(destination=str(tmp_path / "dest"))
    assert tasks["upload"] == "Completed" and tasks["validate"] == "Cached"
    assert (tmp_path / "dest" / "linear" / "1" / "manifest.json").is_file()


def test_failed_upload_publishes_nothing_and_a_rerun_resumes_there(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the destination folder should be")
    state, tasks = run(destination=str(blocker / "dest"))
    assert state.is_failed()
    assert "cannot be written" in str(state.result(raise_on_failure=False))
    assert tasks["upload"] == "Failed" and tasks["validate"] == "Completed"
    blocker.unlink()
    state, tasks = run(destination=str(blocker / "dest"))
    assert state.is_completed()
    assert tasks == {**{stage: "Cached" for stage in STAGES[:-1]}, "upload": "Completed"}


def test_tf2_checkpoints_go_through_the_same_pipeline(tmp_path: Path) -> None:
    state, _ = run(destination=str(tmp_path / "dest"), checkpoint_format="tf2", model_name="linear-tf2")
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.checkpoint.format == "tf2"
    assert summary.frozen_graph.engine == "tensorflow-v2"
    for prediction in summary.validation.predictions:
        assert prediction.outputs == pytest.approx([2.0, 3.0, 4.0], abs=1e-4)


def test_entrypoint_that_does_not_import_fails_before_any_stage(tmp_path: Path) -> None:
    state, tasks = run(destination=str(tmp_path / "dest"),
                       training=TrainingParams(entrypoint="nowhere_module:build", epochs=1))
    assert state.is_failed()
    assert "entrypoint 'nowhere_module:build' does not import" in str(state.result(raise_on_failure=False))
    assert tasks == {} and not (tmp_path / "dest").exists()


def test_vertex_deploy_without_a_gs_destination_fails_before_any_stage(tmp_path: Path) -> None:
    from tasks.vertex.deploy import VertexParams

    state, tasks = run(destination=str(tmp_path / "dest"),
                       vertex=VertexParams(enabled=True, project="my-project", region="us-central1"))
    assert state.is_failed()
    assert "vertex.enabled needs a gs:// destination" in str(state.result(raise_on_failure=False))
    assert tasks == {}
