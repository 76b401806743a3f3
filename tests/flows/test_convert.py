"""convert_checkpoint on a real Prefect API: the guide's own TF1 files, TF2 checkpoints, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.guide import write_guide_checkpoint
from flows.convert import convert_checkpoint
from tests.support.task_runs import final_task_states

pytestmark = pytest.mark.usefixtures("prefect_api")


def run(**params: Any) -> tuple[Any, dict[str, str]]:
    """Run the flow; return its final state and each task run's final state name, read back through the API."""
    state = convert_checkpoint(return_state=True, **params)
    # A completed run has all its task runs; a failed one as many as started before the failure.
    expected = 5 if state.is_completed() else 0  # sanitise, freeze, export, validate, upload
    return state, final_task_states(state.state_details.flow_run_id, expected)


def test_guides_tf1_files_convert_as_they_are(guide_checkpoint: Path, tmp_path: Path) -> None:
    from flows.params import ValidationParams

    state, tasks = run(checkpoint=str(guide_checkpoint.parent), output_nodes=["y"], destination=str(tmp_path / "d"),
                       validation=ValidationParams(reference_inputs=[2.0, 4.0, 6.0]))
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary.checkpoint.format == "tf1"
    assert {p.source: p.outputs for p in summary.validation.predictions} == {
        "checkpoint": [2.0, 3.0, 4.0], "frozen_graph": [2.0, 3.0, 4.0], "saved_model": [2.0, 3.0, 4.0]}
    assert (tmp_path / "d" / "model" / "1" / "frozen_graph.pb").is_file()
    assert set(tasks) == {"sanitise", "freeze", "export", "validate", "upload"}
    assert summary.checkpoint.rewrites == ()  # an inference graph: nothing to rewrite


def test_changed_checkpoint_bytes_rerun_from_freeze_on(guide_checkpoint: Path, tmp_path: Path) -> None:
    from flows.params import ValidationParams

    params = dict(checkpoint=str(guide_checkpoint), output_nodes=["y"], destination=str(tmp_path / "d"),
                  validation=ValidationParams(reference_inputs=[2.0, 4.0, 6.0]))
    run(**params)
    _, tasks = run(**params)
    assert set(tasks.values()) == {"Cached"}
    write_guide_checkpoint(guide_checkpoint.parent, m=2.0, b=0.0)  # same path, new bytes
    state, tasks = run(**params)
    assert tasks == {"sanitise": "Completed", "freeze": "Completed", "export": "Completed", "validate": "Completed",
                     "upload": "Completed"}
    assert state.result().validation.predictions[1].outputs == [4.0, 8.0, 12.0]
    assert state.result().publication.version == 2


def test_tf2_checkpoint_converts_with_its_entrypoint(tmp_path: Path) -> None:
    from tasks.tf.checkpoints import write_checkpoint
    from tasks.tf.training import train_model

    trained = train_model("tasks.tf.entrypoints:linear_model", epochs=150, learning_rate=0.05, seed=0)
    checkpoint = write_checkpoint(trained, "tf2")
    folder = tmp_path / "tf2-ckpt"
    shutil.copytree(checkpoint.artifact.path(), folder)
    from flows.params import ValidationParams

    state, _ = run(checkpoint=str(folder), entrypoint="tasks.tf.entrypoints:linear_model", destination=str(tmp_path / "d"),
                   validation=ValidationParams(reference_inputs=[2.0, 4.0, 6.0]))
    assert state.is_completed(), state.message
    assert state.result().checkpoint.format == "tf2"
    assert state.result().validation.predictions[2].outputs == pytest.approx([2.0, 3.0, 4.0], abs=1e-4)


def _truncate(prefix: Path) -> None:
    data = prefix.parent / "model.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:4])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", r"checkpoint index .*nothing.index is missing"),
        ("unknown-node", r"output node 'z' is not in the graph of .*model.meta \(nearest: y\)"),
        ("truncated", r"checkpoint data file .*model.data-00000-of-00001 is truncated: variable"),
        ("tf2-without-entrypoint", r"TF2 object-based checkpoint: pass the entrypoint"),
        ("bad-reference", r"reference_inputs: each instance has shape \[2\]"),
    ],
)
def test_bad_input_fails_with_a_named_reason_and_publishes_nothing(
    guide_checkpoint: Path, tmp_path: Path, case: str, message: str
) -> None:
    from flows.params import ValidationParams

    params: dict[str, Any] = dict(checkpoint=str(guide_checkpoint), output_nodes=["y"], destination=str(tmp_path / "d"))
    if case == "missing":
        params["checkpoint"] = str(guide_checkpoint.parent / "nothing")
    elif case == "unknown-node":
        params["output_nodes"] = ["z"]
    elif case == "truncated":
        _truncate(guide_checkpoint)
    elif case == "tf2-without-entrypoint":
        import tensorflow as tf

        tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "tf2" / "model"))
        params["checkpoint"] = str(tmp_path / "tf2" / "model")
    elif case == "bad-reference":
        params["validation"] = ValidationParams(reference_inputs=[[1.0, 2.0]])
    state, tasks = run(**params)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert "\n" not in str(error)
    import re

    assert re.search(message, str(error)), str(error)
    assert not (tmp_path / "d").exists()
    assert "upload" not in tasks
