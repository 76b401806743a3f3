"""Every bad input a one-line answer, in seconds (issue 17): what the user reads for each, and what is left behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freezeflow.cli.app import app
from tests.support.filesystems import fill, mounted_tmpfs


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


# -- ls -------------------------------------------------------------------------------------------------------


def _published(root: Path, model: str, version: int, manifest: object) -> None:
    folder = root / model / str(version)
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_ls_lists_the_other_models_when_one_manifest_is_not_an_object(tmp_path: Path) -> None:
    _published(tmp_path / "pub", "alpha", 1, {"created_at": "2026-12-01T00:00:00+00:00"})
    _published(tmp_path / "pub", "broken", 1, [1, 2])
    _published(tmp_path / "pub", "gamma", 1, {"created_at": "2026-12-02T00:00:00+00:00"})

    result = CliRunner().invoke(app, ["ls", str(tmp_path / "pub")])

    assert result.exit_code == 0, result.output
    assert [line.split("\t")[:2] for line in result.stdout.splitlines()] == [["alpha", "1"], ["gamma", "1"]]
    manifest = tmp_path / "pub" / "broken" / "1" / "manifest.json"
    assert result.stderr.splitlines() == [
        f"note: skipped broken v1: manifest {manifest} holds a JSON list, not an object; remove that version"]


def test_ls_refuses_a_model_name_that_leaves_the_destination(tmp_path: Path) -> None:
    _published(tmp_path / "outside", "x", 1, {"created_at": "2026-12-01T00:00:00+00:00"})
    (tmp_path / "pub").mkdir()

    result = CliRunner().invoke(app, ["ls", str(tmp_path / "pub"), "../outside"])

    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: model_name '../outside' must be")


def test_ls_of_a_destination_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ls", str(tmp_path / "nowhere")])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: destination {tmp_path / 'nowhere'} does not exist; publish there first or check the path"]


def test_freeze_onto_a_full_disk_says_the_disk_is_full(guide_checkpoint: Path, tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk") as disk:
        fill(disk)
        result = CliRunner().invoke(app, ["freeze", str(guide_checkpoint), "--output-node", "y", "-o",
                                          str(disk / "frozen.pb")])

        assert result.exit_code == 1
        assert result.stderr.splitlines() == [
            f"error: cannot write {disk / 'frozen.pb'}: the disk is full; free space on it or choose another location"]
        assert [p.name for p in disk.iterdir()] == ["filler"]  # no partial file left


def test_describing_a_checkpoint_refuses_an_output_node_that_is_a_variable(guide_checkpoint: Path) -> None:
    """convert describes the checkpoint before any stage runs: a variable as output stops it there."""
    from tasks.core.errors import OutputNodeError
    from tasks.tf.checkpoints import describe_checkpoint

    with pytest.raises(OutputNodeError) as failure:
        describe_checkpoint(guide_checkpoint, output_nodes=["m"])
    assert str(failure.value) == ("output node 'm' is a variable (VarHandleOp), so its value does not depend on the "
                                  "inputs; name the node that computes the output (candidates: y)")
