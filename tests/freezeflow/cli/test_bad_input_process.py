"""Bad input for the commands that load Prefect or TensorFlow, each run in its own process as a user runs it
(issue 17): one line naming the file, exit 1, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import Outcome, run_freezeflow

# If a check failed to run first, the command would go on to start Prefect: the embedded server, never one that
# outlives the test.
EPHEMERAL = {"FREEZEFLOW_SERVER": "ephemeral"}


# -- inspect --------------------------------------------------------------------------------------------------


def test_inspect_of_an_empty_model_meta_says_so(guide_checkpoint: Path, tmp_path: Path) -> None:
    meta = guide_checkpoint.with_name("model.meta")
    meta.write_bytes(b"")

    outcome = run_freezeflow("inspect", str(guide_checkpoint), cwd=tmp_path)

    assert outcome.code == 1
    assert outcome.error_lines == [
        f"error: checkpoint graph {meta} is empty or not a MetaGraphDef: pass the prefix of a checkpoint written by "
        "tf.compat.v1.train.Saver"]
    assert "Traceback" not in outcome.stderr


def test_inspect_of_a_corrupt_saved_model_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"garbage, not a protobuf \xff\xff\xff")

    outcome = run_freezeflow("inspect", "sm", cwd=tmp_path)

    assert outcome.code == 1
    assert outcome.error_lines == [
        f"error: SavedModel file {Path('sm') / 'saved_model.pb'} is not a SavedModel: is the file truncated?"]
    assert "Traceback" not in outcome.stderr


# -- checked before Prefect or TensorFlow start: no Prefect server (not even the embedded one) is started ------


def prefect_started(outcome: Outcome, cwd: Path) -> bool:
    return "Prefect server" in outcome.stderr or any((cwd / ".freezeflow").rglob("*.db"))


@pytest.mark.parametrize(
    ("entrypoint", "line"),
    [
        ("x", "error: entrypoint 'x' is not of the form package.module:function or path/to/file.py:function"),
        ("nonexistent.module:fn",
         "error: entrypoint 'nonexistent.module:fn' does not import: no module named 'nonexistent'; check the module "
         "path and that its folder is on PYTHONPATH"),
        ("missing_file.py:build", "error: entrypoint 'missing_file.py:build': file missing_file.py does not exist"),
    ],
)
def test_a_bad_entrypoint_is_refused_before_prefect_starts(tmp_path: Path, entrypoint: str, line: str) -> None:
    outcome = run_freezeflow("run", "--entrypoint", entrypoint, cwd=tmp_path, env=EPHEMERAL)

    assert outcome.code == 1
    assert outcome.stderr.splitlines() == [line]
    assert not prefect_started(outcome, tmp_path)


def test_a_dest_that_is_a_file_is_refused_before_prefect_starts(tmp_path: Path, guide_checkpoint: Path) -> None:
    (tmp_path / "models").write_text("not a folder\n")
    outcome = run_freezeflow("convert", str(guide_checkpoint), "--output-node", "y", "--dest", "models",
                             cwd=tmp_path, env=EPHEMERAL)

    assert outcome.code == 1
    assert outcome.stderr.splitlines() == [
        "error: destination 'models' is a file, not a folder; pass a folder to publish into"]
    assert not prefect_started(outcome, tmp_path)
    assert (tmp_path / "models").read_text() == "not a folder\n"


def test_a_missing_checkpoint_is_refused_before_prefect_starts(tmp_path: Path) -> None:
    outcome = run_freezeflow("convert", "nowhere/model", "--output-node", "y", cwd=tmp_path, env=EPHEMERAL)

    assert outcome.code == 1
    [line] = outcome.stderr.splitlines()
    assert line.startswith("error: checkpoint index nowhere/model.index is missing")
    assert not prefect_started(outcome, tmp_path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_learning_rate_is_refused_as_such(tmp_path: Path, value: str) -> None:
    outcome = run_freezeflow("run", "--learning-rate", value, cwd=tmp_path, env=EPHEMERAL)

    assert outcome.code == 1
    assert outcome.stderr.splitlines() == ["error: parameter learning_rate: Input should be a finite number"]
    assert not prefect_started(outcome, tmp_path)
