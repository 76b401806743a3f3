"""A gs:// workspace (the fake-gcs-server emulator, behind a proxy that records every request): machines with
homes of their own share its cache; a cached run reads records and object metadata, never artifact bytes."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from flows.params import TrainingParams
from flows.publish import publish_model
from tests.gcs_support import Emulator, FaultProxy
from tests.support.machines import result_of, run_on_machine, start_on_machine
from tests.support.redis import RedisServer
from tests.support.task_runs import final_task_states

pytestmark = pytest.mark.usefixtures("prefect_api")

STAGES = ["train", "checkpoint", "freeze", "export", "validate", "upload"]
FAST = {"epochs": 150}


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultProxy, Emulator]]:
    proxy = FaultProxy()
    server = Emulator(tmp_path_factory.mktemp("gcs-workspace") / "root", external_url=proxy.url).start()
    proxy.forward_to(server.port)
    yield proxy, server
    proxy.close()
    server.stop()


@pytest.fixture
def bucket(proxied: tuple[FaultProxy, Emulator], monkeypatch: pytest.MonkeyPatch) -> storage.Bucket:
    proxy, server = proxied
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    proxy.clear()
    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options=ClientOptions(api_endpoint=server.url))
    return client.create_bucket(f"ff-ws-{uuid.uuid4().hex[:12]}")


def run(**params: Any) -> tuple[Any, dict[str, str]]:
    state = publish_model(return_state=True, **{"training": TrainingParams(**FAST), **params})
    return state, final_task_states(state.state_details.flow_run_id, len(STAGES) if state.is_completed() else 0)


def artifact_reads(proxy: FaultProxy) -> list[str]:
    """Requests that read an artifact's bytes (object media under artifacts/)."""
    return [path for method, path, _ in proxy.state.seen if method == "GET" and "alt=media" in path
            and "%2Fartifacts%2F" in path]


def test_a_machine_that_never_ran_the_flow_finds_every_stage_cached_without_tensorflow_or_artifact_bytes(
        bucket: storage.Bucket, proxied: tuple[FaultProxy, Emulator], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    proxy, _ = proxied
    uri = f"gs://{bucket.name}/team"
    dest = str(tmp_path / "dest")
    monkeypatch.setenv("FREEZEFLOW_HOME", str(tmp_path / "machine-a"))
    state, tasks = run(destination=dest, workspace=uri)
    assert state.is_completed(), state.message
    assert tasks == {stage: "Completed" for stage in STAGES}
    names = [blob.name for blob in bucket.list_blobs()]
    assert sum(n.startswith("team/cache-keys/") for n in names) == len(STAGES)
    assert sum(n.startswith("team/results/") for n in names) == len(STAGES)
    assert any(n.startswith("team/artifacts/") and n.endswith("/frozen_graph.pb") for n in names)
    for blob in bucket.list_blobs(prefix="team/artifacts/"):
        assert blob.metadata["freezeflow-crc32c"] == blob.crc32c and len(blob.metadata["freezeflow-sha256"]) == 64

    proxy.clear()
    machine_b = run_on_machine(tmp_path / "machine-b", {"training": FAST, "destination": dest, "workspace": uri},
                               env={"STORAGE_EMULATOR_HOST": proxy.url})
    assert machine_b["completed"], machine_b["message"]
    assert machine_b["stages"] == {stage: "Cached" for stage in STAGES}
    assert machine_b["tensorflow"] is False
    assert machine_b["version"] == state.result().publication.version
    assert artifact_reads(proxy) == []
    assert not (tmp_path / "machine-b" / "freezeflow" / "cache").exists() or \
        list((tmp_path / "machine-b" / "freezeflow" / "cache").iterdir()) == []


def test_a_cached_run_command_on_another_machine_reads_the_bucket_without_prefect_tensorflow_or_artifact_bytes(
        bucket: storage.Bucket, proxied: tuple[FaultProxy, Emulator], tmp_path: Path) -> None:
    """``freezeflow run``'s fast path with a gs:// workspace: records and object metadata, nothing else."""
    from prefect.settings import PREFECT_API_URL

    from freezeflow.cli.pipeline import NOT_RECORDED
    from tests.support.cli import ALL_CACHED, HEAVY, run_freezeflow, run_importtime

    proxy, _ = proxied
    args = ("run", "--workspace", f"gs://{bucket.name}/team", "--epochs", "150", "--dest", str(tmp_path / "dest"))
    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "STORAGE_EMULATOR_HOST": proxy.url}
    first = run_freezeflow(*args, cwd=tmp_path, env={**env, "FREEZEFLOW_HOME": str(tmp_path / "machine-a")},
                           timeout=600)
    assert first.code == 0, first.stderr[-3000:]
    assert NOT_RECORDED not in first.stdout

    proxy.clear()
    fast, imported = run_importtime(*args, cwd=tmp_path, env={**env, "FREEZEFLOW_HOME": str(tmp_path / "machine-b")})
    assert fast.returncode == 0, fast.stderr[-3000:]
    # The summary machine A printed, every stage Cached, and the line saying no Prefect run was recorded.
    assert fast.stdout == first.stdout.replace("Completed", "Cached") + NOT_RECORDED + "\n"
    assert fast.stdout.splitlines()[-2] == ALL_CACHED
    assert [name for name in HEAVY if name in imported] == []
    assert artifact_reads(proxy) == []


def test_an_artifact_whose_bytes_changed_in_the_bucket_is_never_served_and_its_stage_runs_again(
        bucket: storage.Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"gs://{bucket.name}/team"
    monkeypatch.setenv("FREEZEFLOW_HOME", str(tmp_path / "machine-a"))
    state, _ = run(destination=str(tmp_path / "dest"), workspace=uri)
    assert state.is_completed(), state.message
    frozen = state.result().frozen_graph
    name = f"team/{frozen.artifact.key}/frozen_graph.pb"
    original = bucket.blob(name).download_as_bytes()
    tampered = bucket.blob(name)
    tampered.metadata = bucket.get_blob(name).metadata  # even a copy of the metadata does not hide it
    tampered.upload_from_string(original[:-8] + b"tampered")

    monkeypatch.setenv("FREEZEFLOW_HOME", str(tmp_path / "machine-b"))
    again, tasks = run(destination=str(tmp_path / "dest"), workspace=uri)
    assert again.is_completed(), again.message
    assert tasks["freeze"] == "Completed" and tasks["train"] == "Cached" and tasks["export"] == "Cached"
    assert bucket.blob(name).download_as_bytes() == original  # rebuilt, same content, same place


def test_a_missing_bucket_fails_in_one_line_naming_the_workspace_before_any_stage(
        bucket: storage.Bucket, tmp_path: Path) -> None:
    uri = f"gs://{bucket.name}-missing/team"
    started = time.monotonic()
    state, tasks = run(destination=str(tmp_path / "dest"), workspace=uri)
    assert time.monotonic() - started < 30
    assert state.is_failed() and tasks == {}
    message = str(state.result(raise_on_failure=False))
    assert message == (f"workspace {uri}: bucket {bucket.name}-missing does not exist; create it or point "
                       "FREEZEFLOW_WORKSPACE (--workspace) at an existing bucket")


@pytest.mark.parametrize("refused", [None, "POST"], ids=["no-role", "read-only"])
def test_a_workspace_this_machine_may_not_use_fails_in_one_line_naming_it_before_any_stage(
        bucket: storage.Bucket, proxied: tuple[FaultProxy, Emulator], tmp_path: Path, refused: str | None) -> None:
    from tests.gcs_support import Fault

    proxy, _ = proxied
    uri = f"gs://{bucket.name}/team"
    # As GCS answers an account without a role on the bucket (every request), or with a read-only one (writes).
    proxy.inject(Fault(action="status", status=403, times=1000, method=refused))
    started = time.monotonic()
    state, tasks = run(destination=str(tmp_path / "dest"), workspace=uri)
    assert time.monotonic() - started < 30
    assert state.is_failed() and tasks == {}
    message = str(state.result(raise_on_failure=False))
    assert message.startswith(f"workspace {uri}: permission denied (") and "\n" not in message
    assert message.endswith(f"grant the account Storage Object Admin (roles/storage.objectAdmin) on bucket "
                            f"{bucket.name} or use other credentials")
    assert list(bucket.list_blobs()) == []


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def test_two_machines_starting_the_same_cold_run_at_once_compute_each_stage_once(
        bucket: storage.Bucket, proxied: tuple[FaultProxy, Emulator], redis_server: RedisServer,
        tmp_path: Path) -> None:
    proxy, _ = proxied
    uri = f"gs://{bucket.name}/team"
    params = {"training": FAST, "destination": str(tmp_path / "dest"), "workspace": uri}
    env = {"STORAGE_EMULATOR_HOST": proxy.url, "FREEZEFLOW_LOCKS": redis_server.url}
    machines = [start_on_machine(tmp_path / name, params, env) for name in ("machine-a", "machine-b")]
    results = [result_of(machine) for machine in machines]
    assert all(r["completed"] for r in results), [r["message"] for r in results]
    # Counted from the task runs the API recorded for both flow runs.
    for stage in STAGES:
        states = sorted(r["stages"][stage] for r in results)
        assert states == ["Cached", "Completed"], (stage, states)
    assert results[0]["version"] == results[1]["version"] == 1
    assert sum(blob.name.startswith("team/cache-keys/") for blob in bucket.list_blobs()) == len(STAGES)


def kill_machine_a_at(proxy: FaultProxy, tmp_path: Path, params: dict[str, Any], env: dict[str, str],
                      body: bytes, after: Optional[float] = None) -> None:
    """Start publish_model on machine A and SIGKILL it when an upload whose body holds ``body`` reaches the
    proxy: before that request is forwarded, or, with ``after``, that many seconds after it was."""
    import os
    import signal
    import threading

    from tests.gcs_support import Fault

    machine_a = start_on_machine(tmp_path / "machine-a", params, env)

    def kill() -> None:
        os.kill(machine_a.pid, signal.SIGKILL)

    killed = proxy.inject(Fault(action="call", method="POST", body_contains=body,
                                callback=kill if after is None else lambda: threading.Timer(after, kill).start()))
    machine_a.communicate(timeout=600)
    assert killed.hits == 1 and machine_a.returncode == -signal.SIGKILL


def test_a_machine_killed_mid_upload_leaves_nothing_taken_for_whole_and_the_next_redoes_only_that_stage(
        bucket: storage.Bucket, proxied: tuple[FaultProxy, Emulator], tmp_path: Path) -> None:
    proxy, _ = proxied
    uri = f"gs://{bucket.name}/team"
    params = {"training": FAST, "destination": str(tmp_path / "dest"), "workspace": uri}
    env = {"STORAGE_EMULATOR_HOST": proxy.url}
    kill_machine_a_at(proxy, tmp_path, params, env, b"/frozen_graph.pb")
    keys = [blob.name for blob in bucket.list_blobs(prefix="team/cache-keys/")]
    assert not any(name.startswith("team/cache-keys/freeze-") for name in keys)  # no record of the freeze
    assert any(name.startswith("team/cache-keys/checkpoint-") for name in keys)

    machine_b = run_on_machine(tmp_path / "machine-b", params, env)
    assert machine_b["completed"], machine_b["message"]
    stages = machine_b["stages"]
    assert stages["train"] == stages["checkpoint"] == "Cached" and stages["freeze"] == "Completed"
    assert stages["validate"] == stages["upload"] == "Completed"


def test_a_machine_killed_the_instant_freeze_is_recorded_loses_nothing_and_the_next_resumes_after_it(
        bucket: storage.Bucket, proxied: tuple[FaultProxy, Emulator], tmp_path: Path) -> None:
    """Durable before Completed: SIGKILL a moment after freeze's cache record reached the workspace (the
    request that writes it is forwarded first); another machine finds train, checkpoint and freeze Cached."""
    proxy, _ = proxied
    uri = f"gs://{bucket.name}/team"
    params = {"training": FAST, "destination": str(tmp_path / "dest"), "workspace": uri}
    env = {"STORAGE_EMULATOR_HOST": proxy.url}
    kill_machine_a_at(proxy, tmp_path, params, env, b"cache-keys/freeze-", after=0.2)
    keys = [blob.name for blob in bucket.list_blobs(prefix="team/cache-keys/")]
    assert any(name.startswith("team/cache-keys/freeze-") for name in keys)
    assert not any(name.startswith(("team/cache-keys/validate-", "team/cache-keys/upload-")) for name in keys)

    machine_b = run_on_machine(tmp_path / "machine-b", params, env)
    assert machine_b["completed"], machine_b["message"]
    stages = machine_b["stages"]
    assert stages["train"] == stages["checkpoint"] == stages["freeze"] == "Cached", stages
    assert stages["validate"] == stages["upload"] == "Completed", stages
    assert machine_b["version"] == 1
