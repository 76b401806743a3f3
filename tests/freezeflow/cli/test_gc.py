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


def publish_one(destination, tmp_path: Path, content: bytes) -> None:
    from tasks.core.digests import file_sha256
    from tasks.storage.base import PublishFile

    source = tmp_path / "frozen_graph.pb"
    source.write_bytes(content)
    destination.publish("guide", [PublishFile(source, "frozen_graph.pb", file_sha256(source), len(content))],
                        {"stage": "test"})


def test_gc_at_a_local_destination_removes_only_staging_folders_of_publishes_that_died(tmp_path: Path) -> None:
    from tasks.storage.local import LocalDestination

    dest = tmp_path / "models"
    publish_one(LocalDestination(dest), tmp_path, b"version one")
    dead = dest / "guide" / ".staging-dead"
    (dead / "saved_model").mkdir(parents=True)
    (dead / "saved_model" / "saved_model.pb").write_bytes(b"x" * 100)
    old = time.time() - 2 * 86400
    os.utime(dead, (old, old))
    live = dest / "guide" / ".staging-live"  # a publish still running: younger than the grace
    live.mkdir()
    (live / "frozen_graph.pb").write_bytes(b"y" * 10)

    dry = run_freezeflow("gc", "--dest", str(dest), "--dry-run", cwd=tmp_path)
    assert dry.code == 0, dry.stderr
    assert f"would remove crash leftover {dead} (100 B)" in dry.stdout.splitlines() and dead.is_dir()

    done = run_freezeflow("gc", "--dest", str(dest), cwd=tmp_path)
    assert done.code == 0, done.stderr
    assert f"removed crash leftover {dead} (100 B)" in done.stdout.splitlines()
    assert not dead.exists() and live.is_dir() and (dest / "guide" / "1" / "manifest.json").is_file()

    missing = run_freezeflow("gc", "--dest", str(tmp_path / "typo"), cwd=tmp_path)
    assert missing.code != 0 and missing.error_lines == [
        f"error: destination {tmp_path / 'typo'} is not a folder; pass the folder models are published to"]
    bad = run_freezeflow("gc", "--dest", str(dest), "--grace", "later", cwd=tmp_path)
    assert bad.code != 0 and bad.error_lines[0].startswith("error: --grace 'later': expected")


def test_gc_at_a_gs_destination_removes_the_files_of_claimed_versions_that_never_got_a_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from tasks.storage.gcs import CLAIMS, GCSDestination
    from tests.gcs_support import Emulator

    emulator = Emulator(tmp_path / "gcs").start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        client = storage.Client(project="test", credentials=AnonymousCredentials(),
                                client_options=ClientOptions(api_endpoint=emulator.url))
        bucket = client.create_bucket("ff-gc-dest")
        uri = "gs://ff-gc-dest/models"
        publish_one(GCSDestination.from_uri(uri), tmp_path, b"version one")
        # A publish killed after claiming version 2 and uploading one of its files, before its manifest.
        bucket.blob(f"models/guide/{CLAIMS}/2").upload_from_string(b'{"claim_id": "dead"}')
        bucket.blob("models/guide/2/frozen_graph.pb").upload_from_string(b"z" * 42)
        env = {"STORAGE_EMULATOR_HOST": emulator.url}

        young = run_freezeflow("gc", "--dest", uri, cwd=tmp_path, env=env)  # within the default grace (1d)
        assert young.code == 0, young.stderr
        assert "crash leftover" not in young.stdout and bucket.get_blob("models/guide/2/frozen_graph.pb")

        time.sleep(1.1)
        done = run_freezeflow("gc", "--dest", uri, "--grace", "1s", cwd=tmp_path, env=env)
        assert done.code == 0, done.stderr
        assert f"removed crash leftover {uri}/guide/2 (42 B)" in done.stdout.splitlines()
        names = sorted(blob.name for blob in bucket.list_blobs())
        assert "models/guide/2/frozen_graph.pb" not in names
        assert f"models/guide/{CLAIMS}/2" in names  # the claim stays: version 2 is never handed out again
        assert "models/guide/1/manifest.json" in names and "models/guide/1/frozen_graph.pb" in names
    finally:
        emulator.stop()
