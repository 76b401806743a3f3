"""Bad input for the commands that load Prefect or TensorFlow, each run in its own process as a user runs it
(issue 17): one line naming the file, exit 1, no traceback."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import run_freezeflow


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
