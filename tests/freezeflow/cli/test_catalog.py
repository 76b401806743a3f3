"""``freezeflow inspect`` and ``freezeflow ls`` as users meet them: what they print and how they fail."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import freezeflow


def test_inspect_shows_variables_inputs_and_candidate_outputs(guide_checkpoint: Path, tmp_path: Path) -> None:
    result = freezeflow("inspect", str(guide_checkpoint.parent), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "format: tf1" in result.stdout
    assert "inputs: x" in result.stdout and "output candidates: y" in result.stdout
    assert "m  float32  []" in result.stdout and "b  float32  []" in result.stdout


def test_inspect_frozen_graph_and_saved_model(guide_records: dict, tmp_path: Path) -> None:
    frozen = freezeflow("inspect", str(guide_records["frozen"].graph_path), cwd=tmp_path)
    assert frozen.returncode == 0 and "frozen graph:" in frozen.stdout and "output candidates: y" in frozen.stdout
    saved = freezeflow("inspect", str(guide_records["exported"].artifact.path()), cwd=tmp_path)
    assert saved.returncode == 0
    assert "signature serving_default: inputs inputs float32 [None] -> outputs outputs float32 [None]" in saved.stdout


def test_inspect_of_nothing_fails_with_one_line(tmp_path: Path) -> None:
    result = freezeflow("inspect", str(tmp_path / "nothing"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: checkpoint index") and "\n" not in result.stderr.strip()


def test_ls_lists_only_complete_versions(tmp_path: Path) -> None:
    from tasks.storage.local import LocalDestination
    from tests.support.files import publish_files

    LocalDestination(tmp_path / "d").publish("linear", publish_files(tmp_path / "src"), {})
    (tmp_path / "d" / "linear" / "2").mkdir()
    result = freezeflow("ls", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 0
    assert [line.split("\t")[:2] for line in result.stdout.splitlines()] == [["linear", "1"]]
