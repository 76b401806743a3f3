"""The workspace: one home for results and stage outputs, and outputs that appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core import workspace


def test_everything_lives_under_freezeflow_home(workspace_home: Path) -> None:
    assert workspace.home() == workspace_home.resolve() and workspace_home.is_dir()
    assert workspace.results_dir() == workspace_home / "results" and workspace.results_dir().is_dir()
    assert workspace.stage_dir("freeze", "ab" * 32) == workspace_home / "work" / "freeze" / ("ab" * 12)


def test_without_freezeflow_home_the_workspace_is_dot_freezeflow_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FREEZEFLOW_HOME")
    monkeypatch.chdir(tmp_path)
    assert workspace.home() == tmp_path.resolve() / ".freezeflow"


def test_a_finished_build_moves_into_place_replacing_the_old_one(tmp_path: Path) -> None:
    final = tmp_path / "work" / "export" / "token"
    final.mkdir(parents=True)
    (final / "stale.pb").write_text("old")
    with workspace.building(final) as scratch:
        assert scratch.parent == final.parent and scratch != final
        (scratch / "saved_model.pb").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["saved_model.pb"]
    assert [p.name for p in final.parent.iterdir()] == ["token"]  # no scratch folder left behind


def test_a_failed_build_leaves_the_old_output_and_no_half_written_one(tmp_path: Path) -> None:
    final = tmp_path / "work" / "freeze" / "token"
    with pytest.raises(RuntimeError, match="crashed"):
        with workspace.building(final) as scratch:
            (scratch / "frozen_graph.pb").write_text("half")
            raise RuntimeError("crashed mid-write")
    assert not final.exists()
    assert list(final.parent.iterdir()) == []
