"""Every bad input a one-line answer, in seconds (issue 17): what the user reads for each, and what is left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freezeflow.cli.app import app


# -- freeze ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_freeze_output_gets_the_mode_the_umask_gives(guide_checkpoint: Path, tmp_path: Path, umask: int,
                                                    mode: int) -> None:
    previous = os.umask(umask)
    try:
        result = CliRunner().invoke(app, ["freeze", str(guide_checkpoint), "--output-node", "y", "-o",
                                          str(tmp_path / "frozen.pb")])
    finally:
        os.umask(previous)

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "frozen.pb").stat().st_mode) == mode


def test_freeze_refuses_an_output_node_that_is_a_variable(guide_checkpoint: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["freeze", str(guide_checkpoint), "--output-node", "m", "-o",
                                      str(tmp_path / "frozen.pb")])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: output node 'm' is a variable (VarHandleOp), so its value does not depend on the inputs; name the "
        "node that computes the output (candidates: y)"]
    assert not (tmp_path / "frozen.pb").exists()


def test_freeze_of_an_empty_model_meta_says_so(guide_checkpoint: Path, tmp_path: Path) -> None:
    meta = guide_checkpoint.with_name("model.meta")
    meta.write_bytes(b"")

    result = CliRunner().invoke(app, ["freeze", str(guide_checkpoint), "--output-node", "y", "-o",
                                      str(tmp_path / "frozen.pb")])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: checkpoint graph {meta} is empty or not a MetaGraphDef: pass the prefix of a checkpoint written by "
        "tf.compat.v1.train.Saver"]
