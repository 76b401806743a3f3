"""``freezeflow gc``: old records, stage outputs no record names and scratch-cache overflow go; what a record
names stays; ``--dry-run`` removes nothing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tasks.core import workspace
from tasks.core.records import Artifact
from tests.support.cli import run_freezeflow


def stage_output(stage: str, token: str, content: bytes) -> Artifact:
    final = workspace.stage_dir(stage, token)
    with workspace.building(final) as scratch:
        (scratch / "frozen_graph.pb").write_bytes(content)
    return Artifact.of(final)


def cache(key: str, artifact: Artifact) -> None:
    """A record as Prefect stores it: the value in results/, the key (metadata) in cache-keys/."""
    value = {"__class__": "tasks.core.records.FrozenGraph",
             "data": {"artifact": artifact.model_dump(mode="json"), "filename": "frozen_graph.pb"}}
    (workspace.results_dir() / key).write_text(json.dumps(value))
    (workspace.keys_dir() / key).write_text(json.dumps({"storage_key": str(workspace.results_dir() / key),
                                                        "serializer": {"type": "json"}, "expiration": None}))


def test_gc_removes_what_no_record_names_and_old_records_and_a_dry_run_removes_nothing(
        tmp_path: Path, workspace_home: Path) -> None:
    named = stage_output("freeze", "a" * 64, b"kept graph")
    orphan = stage_output("freeze", "b" * 64, b"orphan graph, twelve bytes more")
    cache("freeze-aaaa", named)
    env = {"FREEZEFLOW_HOME": str(workspace_home)}

    dry = run_freezeflow("gc", "--dry-run", cwd=tmp_path, env=env)
    assert dry.code == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would remove artifact {workspace_home / orphan.key} ({orphan.size} B)",
        f"would remove 1 item(s), {orphan.size} B to free"]
    assert (workspace_home / orphan.key).is_dir()

    done = run_freezeflow("gc", cwd=tmp_path, env=env)
    assert done.code == 0 and done.stdout.splitlines()[-1] == f"removed 1 item(s), {orphan.size} B freed"
    assert not (workspace_home / orphan.key).exists() and (workspace_home / named.key).is_dir()
    named.verify()

    old = time.time() - 40 * 86400
    os.utime(workspace.keys_dir() / "freeze-aaaa", (old, old))
    done = run_freezeflow("gc", "--older-than", "30d", cwd=tmp_path, env=env)
    assert done.code == 0, done.stderr
    assert "removed record freeze-aaaa" in done.stdout and f"removed artifact {workspace_home / named.key}" in done.stdout
    assert list(workspace.keys_dir().iterdir()) == [] and list(workspace.results_dir().iterdir()) == []


@pytest.mark.parametrize("age", ["soon", "-3d"])
def test_a_bad_age_is_named(tmp_path: Path, age: str) -> None:
    outcome = run_freezeflow("gc", "--older-than", age, cwd=tmp_path)
    assert outcome.code != 0 and outcome.error_lines and "--older-than" in outcome.error_lines[0]
