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


def test_the_workspace_defaults_to_the_home_and_can_live_elsewhere(
        tmp_path: Path, workspace_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert workspace.uri() == str(workspace_home.resolve()) and not workspace.remote()
    shared = tmp_path / "shared"
    monkeypatch.setenv("FREEZEFLOW_WORKSPACE", str(shared))
    assert workspace.uri() == str(shared) and workspace.results_dir() == shared / "results"
    assert workspace.keys_dir() == shared / "cache-keys"
    monkeypatch.setenv("FREEZEFLOW_WORKSPACE", "gs://bucket/team/")
    assert workspace.uri() == "gs://bucket/team" and workspace.remote()
    assert workspace.home() == workspace_home.resolve()  # this machine's scratch space stays local
    with pytest.raises(workspace.ParameterError, match="not a local folder"):
        workspace.results_dir()
    with workspace.using(str(shared)):
        assert workspace.uri() == str(shared) and not workspace.remote()


def test_an_unknown_scheme_is_refused_by_name() -> None:
    with pytest.raises(workspace.ParameterError, match=r"workspace 's3://b/p': only local folders and gs://"):
        workspace.normalise("s3://b/p")


def test_a_stage_output_is_named_by_its_workspace_key_and_resolves_in_any_copy_of_the_workspace(
        tmp_path: Path, workspace_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from tasks.core.records import Artifact

    final = workspace.stage_dir("freeze", "cd" * 32)
    with workspace.building(final) as scratch:
        (scratch / "frozen_graph.pb").write_bytes(b"graph")
    artifact = Artifact.of(final)
    assert artifact.key == "work/freeze/" + "cd" * 12 and artifact.source is None
    assert str(workspace_home) not in artifact.model_dump_json()  # no machine's path in the record
    moved = tmp_path / "elsewhere"
    shutil.copytree(workspace_home, moved)
    monkeypatch.setenv("FREEZEFLOW_WORKSPACE", str(moved))
    assert artifact.path("frozen_graph.pb") == moved / artifact.key / "frozen_graph.pb"
    artifact.verify()
    (moved / artifact.key / "frozen_graph.pb").write_bytes(b"grapH")
    with pytest.raises(workspace.StaleArtifactError, match="digest differs"):
        artifact.verify()
    user_folder = tmp_path / "user"
    user_folder.mkdir()
    (user_folder / "model.index").write_bytes(b"x")
    named = Artifact.of(user_folder)
    assert named.key is None and named.source == str(user_folder.resolve())


def test_a_remote_workspace_keeps_finished_outputs_in_the_scratch_cache_under_their_digest(
        monkeypatch: pytest.MonkeyPatch, workspace_home: Path) -> None:
    from tasks.core.records import Artifact

    monkeypatch.setenv("FREEZEFLOW_WORKSPACE", "gs://bucket/team")
    final = workspace.stage_dir("export", "ef" * 32) / "1"
    with workspace.building(final) as scratch:
        (scratch / "saved_model.pb").write_bytes(b"model")
    artifact = Artifact.of(final)
    assert artifact.key == f"artifacts/{artifact.digest}"
    assert artifact.path() == workspace_home.resolve() / "cache" / artifact.digest and not final.exists()
    assert artifact.root == f"gs://bucket/team/artifacts/{artifact.digest}"
    other = artifact.model_copy(update={"digest": "0" * 64, "key": "artifacts/" + "0" * 64})
    with pytest.raises(workspace.StaleArtifactError, match="has not been fetched to this machine"):
        other.path()


def test_the_scratch_cache_evicts_the_least_recently_used_copies_first(workspace_home: Path) -> None:
    import os
    import time

    now = time.time()
    for age, name in ((3000, "oldest"), (2000, "older"), (1000, "old"), (0, "fresh")):
        folder = workspace.cache_dir() / name
        folder.mkdir()
        (folder / "blob").write_bytes(b"x" * 100)
        os.utime(folder, (now - age, now - age))
    removed = workspace.evict(limit=250, keep=("older",))
    assert [p.name for p, _ in removed] == ["oldest", "old"]
    assert sorted(p.name for p in workspace.cache_dir().iterdir()) == ["fresh", "older"]
