"""The deployments from ``prefect.yaml`` run by a real worker: runs started through the API and Prefect's
CLI complete and publish, the UI's artifacts are there under stable keys, the concurrency limit holds,
and a failed upload is reported and resumes from the cache when retried."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import PrefectStack

REPO = Path(__file__).resolve().parents[2]

MODEL = "e2e"  # both publish runs publish this model, so its artifact keys get two versions
PUBLISHED_FILES = ("manifest.json", "frozen_graph.pb", "saved_model.pb")
STAGES = ("train", "checkpoint", "freeze", "export", "validate", "upload")


@dataclass
class Runs:
    dest: Path
    smoke_dest: Path
    api_run: Any  # publish_model started with run_deployment
    cli_run: Any  # publish_model started with `prefect deployment run`
    smoke_run: Any


def start_from_cli(stack: PrefectStack, *args: str) -> str:
    """`prefect deployment run ...`; returns the id of the flow run it created."""
    result = stack.prefect("deployment", "run", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    assert match, result.stdout
    return match.group(1)


@pytest.fixture(scope="module")
def runs(prefect_stack: PrefectStack, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Two publish_model runs (API and CLI, each with a changed parameter) and a smoke run, side by side."""
    from prefect.deployments import run_deployment

    dest = tmp_path_factory.mktemp("published")
    smoke_dest = tmp_path_factory.mktemp("published-smoke")
    with prefect_stack.settings():
        api = run_deployment("publish_model/local", timeout=0, parameters={
            "model_name": MODEL, "destination": str(dest), "training": {"epochs": 25, "seed": 1}})
        smoke = run_deployment("smoke/local", timeout=0, parameters={"destination": str(smoke_dest)})
    cli_id = start_from_cli(prefect_stack, "publish_model/local", "--param", f"model_name={MODEL}",
                            "--param", f"destination={dest}", "--param", 'training={"epochs": 25, "seed": 2}')
    return Runs(dest=dest, smoke_dest=smoke_dest, api_run=prefect_stack.wait_final(api.id),
                cli_run=prefect_stack.wait_final(cli_id), smoke_run=prefect_stack.wait_final(smoke.id))


def assert_completed(stack: PrefectStack, run: Any) -> None:
    assert run.state.is_completed(), f"{run.name}: {run.state.name} {run.state.message}\n{stack.diagnostics()}"


def assert_published(version_dir: Path) -> dict[str, Any]:
    """The files a user deploys are there and the manifest names them."""
    missing = [name for name in PUBLISHED_FILES if not (version_dir / name).is_file()]
    assert not missing, f"{version_dir} lacks {missing}: {sorted(p.name for p in version_dir.parent.rglob('*'))}"
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {"frozen_graph.pb", "saved_model.pb"}
    return manifest


def test_deployments_from_prefect_yaml_carry_their_tags_limits_and_an_inactive_nightly_schedule(
    prefect_stack: PrefectStack,
) -> None:
    with prefect_stack.client() as client:
        deployments = {f"{client.read_flow(d.flow_id).name}/{d.name}": d for d in client.read_deployments()}
    assert sorted(deployments) == ["convert_checkpoint/local", "convert_many/local", "publish_model/local", "smoke/local"]
    assert {"freezeflow", "dask"} <= set(deployments["convert_many/local"].tags)
    publish = deployments["publish_model/local"]
    assert publish.work_pool_name == "freezeflow-local"
    assert {"freezeflow", "publish"} <= set(publish.tags)
    assert publish.description and "DEST/MODEL/VERSION" in publish.description
    assert publish.global_concurrency_limit is not None and publish.global_concurrency_limit.limit == 1
    [nightly] = publish.schedules
    assert (nightly.schedule.cron, nightly.active, nightly.slug) == ("0 2 * * *", False, "nightly")
    assert nightly.parameters == {"refresh_cache": True}
    # The pull step sends runs to the folder `prefect deploy` ran in: this repository.
    assert publish.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    assert all(d.enforce_parameter_schema for d in deployments.values())


def test_a_run_whose_parameters_break_the_schema_is_refused_when_it_is_created(
    prefect_stack: PrefectStack,
) -> None:
    from prefect.deployments import run_deployment
    from prefect.exceptions import PrefectHTTPStatusError

    with prefect_stack.settings(), pytest.raises(PrefectHTTPStatusError) as refused:
        run_deployment("publish_model/local", timeout=0, parameters={"training": {"epochs": -1}})
    assert refused.value.response.status_code == 409
    assert "Validation failed for field 'training.epochs'" in str(refused.value)


def test_smoke_deployment_completes_and_publishes_the_guide_model(prefect_stack: PrefectStack, runs: Runs) -> None:
    assert_completed(prefect_stack, runs.smoke_run)
    manifest = assert_published(runs.smoke_dest / "smoke" / "1")
    assert manifest["validation"]["passed"] is True
    assert manifest["validation"]["predictions"]["saved_model"] == pytest.approx([2.0, 3.0, 4.0], abs=1e-3)


def test_publish_runs_from_the_api_and_the_cli_publish_versions_with_their_own_parameters(
    prefect_stack: PrefectStack, runs: Runs,
) -> None:
    assert_completed(prefect_stack, runs.api_run)
    assert_completed(prefect_stack, runs.cli_run)
    manifests = [assert_published(runs.dest / MODEL / version) for version in ("1", "2")]
    seeds = {m["flow_run_id"]: m["parameters"]["training"]["seed"] for m in manifests}
    assert seeds == {str(runs.api_run.id): 1, str(runs.cli_run.id): 2}
    assert all(m["parameters"]["training"]["epochs"] == 25 for m in manifests)


def test_deployment_concurrency_limit_keeps_two_publish_runs_from_overlapping(
    prefect_stack: PrefectStack, runs: Runs,
) -> None:
    first, second = sorted([runs.api_run, runs.cli_run], key=lambda run: run.start_time)
    assert first.end_time <= second.start_time, (first.start_time, first.end_time, second.start_time)
    with prefect_stack.client() as client:
        waited = [state.name for run in (first, second) for state in client.read_flow_run_states(run.id)]
    assert "AwaitingConcurrencySlot" in waited


def published_version(dest: Path, flow_run_id: str) -> str:
    """The version of MODEL that the run ``flow_run_id`` published (its manifest names the run)."""
    for manifest in sorted((dest / MODEL).glob("*/manifest.json")):
        if json.loads(manifest.read_text())["flow_run_id"] == flow_run_id:
            return manifest.parent.name
    raise AssertionError(f"no version under {dest / MODEL} was published by {flow_run_id}")


def read_run_artifacts(stack: PrefectStack, flow_run_id: Any, want: set[str], timeout: float = 30.0) -> dict:
    """The run's artifacts by key, once every key in ``want`` is there (they arrive a moment late)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while True:
            found = {a.key: a for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))}
            if want <= set(found) or time.monotonic() > deadline:
                return found
            time.sleep(1.0)


def test_a_run_shows_its_report_validation_table_published_link_and_training_progress(
    prefect_stack: PrefectStack, runs: Runs,
) -> None:
    # Prefect stores a link artifact as markdown, "[text](link)".
    keys = {f"{MODEL}-report": "markdown", f"{MODEL}-validation": "markdown",
            f"{MODEL}-validation-table": "table", f"{MODEL}-published": "markdown", f"{MODEL}-training": "progress"}
    artifacts = read_run_artifacts(prefect_stack, runs.api_run.id, set(keys))
    found = {key: artifact.type for key, artifact in artifacts.items()}
    assert {key: found.get(key) for key in keys} == keys, f"the run's artifacts: {found}"
    expected_version = published_version(runs.dest, str(runs.api_run.id))
    assert f"# {MODEL} v{expected_version}" in artifacts[f"{MODEL}-report"].data
    assert "| validate | Completed |" in artifacts[f"{MODEL}-report"].data
    table = artifacts[f"{MODEL}-validation-table"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {row["check"] for row in rows} >= {"frozen_graph vs checkpoint", "saved_model vs checkpoint"}
    assert all(row["passed"] for row in rows)
    link = artifacts[f"{MODEL}-published"].data
    assert link == f"[{MODEL} v{expected_version}]({(runs.dest / MODEL / expected_version).as_uri()})"
    assert float(artifacts[f"{MODEL}-training"].data) == 100.0


def test_artifact_keys_are_stable_per_model_and_keep_one_version_per_run(
    prefect_stack: PrefectStack, runs: Runs,
) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with prefect_stack.client() as client:
        for what in ("report", "validation-table", "published"):
            history = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{MODEL}-{what}"])))
            assert sorted(str(a.flow_run_id) for a in history) == sorted([str(runs.api_run.id), str(runs.cli_run.id)]), (
                f"{MODEL}-{what}: {len(history)} versions; keys with history: "
                f"{sorted({a.key for a in client.read_artifacts() if a.key})}")
        [latest] = [a for a in client.read_latest_artifacts() if a.key == f"{MODEL}-report"]
    last_run = max([runs.api_run, runs.cli_run], key=lambda run: run.end_time)
    assert str(latest.flow_run_id) == str(last_run.id)
    assert f"# {MODEL} v2" in latest.data


def read_task_run_states(stack: PrefectStack, flow_run_id: Any, attempt: int, timeout: float = 30.0) -> dict:
    """Stage name -> final state name of the task runs of one attempt of a flow run."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while True:
            states = {}
            for run in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))):
                if run.flow_run_run_count == attempt and run.state and run.state.is_final():
                    states[run.name.rsplit("-", 1)[0]] = run.state.name
            if set(states) >= set(STAGES) or time.monotonic() > deadline:
                return states
            time.sleep(1.0)


def read_log_messages(stack: PrefectStack, flow_run_id: Any, needle: str, timeout: float = 30.0) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with stack.client() as client:
        while True:
            messages = [log.message for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]
            if any(needle in m for m in messages) or time.monotonic() > deadline:
                return messages
            time.sleep(1.0)


def test_failed_upload_names_its_reason_in_the_logs_and_a_retry_resumes_from_the_cache(
    prefect_stack: PrefectStack, tmp_path: Path,
) -> None:
    from prefect.deployments import run_deployment
    from prefect.states import Scheduled

    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the destination's parent folder should be\n")  # root ignores chmod
    dest = blocker / "dest"
    with prefect_stack.settings():
        run = run_deployment("publish_model/local", timeout=0, parameters={
            "model_name": "e2e-retry", "destination": str(dest), "training": {"epochs": 20, "seed": 5}})
    failed = prefect_stack.wait_final(run.id)
    assert failed.state.is_failed(), f"{failed.state.name}: {failed.state.message}"
    reason = f"destination {dest} cannot be written: a part of the path is a file, not a folder"
    assert reason in failed.state.message
    messages = read_log_messages(prefect_stack, run.id, reason)
    assert any(reason in m and "PermanentDestinationError" in m for m in messages), messages[-10:]
    first = read_task_run_states(prefect_stack, run.id, attempt=1)
    assert first == {"train": "Completed", "checkpoint": "Completed", "freeze": "Completed",
                     "export": "Completed", "validate": "Completed", "upload": "Failed"}

    blocker.unlink()  # the same destination, writable again
    with prefect_stack.client() as client:
        client.set_flow_run_state(run.id, Scheduled(), force=True)
    retried = prefect_stack.wait_final(run.id)
    assert_completed(prefect_stack, retried)
    assert retried.run_count == 2
    second = read_task_run_states(prefect_stack, run.id, attempt=2)
    assert second == {"train": "Cached", "checkpoint": "Cached", "freeze": "Cached",
                      "export": "Cached", "validate": "Cached", "upload": "Completed"}
    manifest = assert_published(dest / "e2e-retry" / "1")
    assert manifest["flow_run_id"] == str(run.id)


def test_convert_many_deployment_converts_a_sweep_on_a_local_cluster_and_reports_it(
    prefect_stack: PrefectStack, tmp_path: Path,
) -> None:
    from prefect.deployments import run_deployment

    from tests.guide import write_sweep

    models = write_sweep(tmp_path / "sweep", 3, start=30)
    listing = tmp_path / "more.jsonl"
    listing.write_text(json.dumps({"checkpoint": "missing/model", "model_name": "missing"}) + "\n")
    dest = tmp_path / "published"
    with prefect_stack.settings():
        run = run_deployment("convert_many/local", timeout=0, parameters={
            "sources": [str(tmp_path / "sweep"), str(listing)], "destination": str(dest), "output_nodes": ["y"],
            "workers": 1, "validation": {"reference_inputs": [1.0, 2.0, 3.0]}})
    finished = prefect_stack.wait_final(run.id, timeout=900)
    # One missing checkpoint fails the run by its count; the three good ones are published all the same.
    assert finished.state.is_failed(), f"{finished.state.name}: {finished.state.message}\n{prefect_stack.diagnostics()}"
    assert finished.state.message == "1 of 4 items failed (3 published, 0 cached, 1 failed of 4)"
    for name, (m, b) in models.items():
        manifest = assert_published(dest / name / "1")
        assert manifest["validation"]["reference_inputs"] == [1.0, 2.0, 3.0]
        for source in ("checkpoint", "frozen_graph", "saved_model"):  # each model its own m*x+b
            assert manifest["validation"]["predictions"][source] == pytest.approx([m + b, 2 * m + b, 3 * m + b],
                                                                                 abs=1e-4)
    assert sorted(p.name for p in dest.iterdir()) == sorted(models)
    artifacts = read_run_artifacts(prefect_stack, run.id, {"convert-many-outcomes", "convert-many-progress"})
    table = artifacts["convert-many-outcomes"].data
    rows = {row["model"]: row for row in (json.loads(table) if isinstance(table, str) else table)}
    assert {m: (r["outcome"], r["version"]) for m, r in rows.items()} == {
        **{m: ("published", 1) for m in models}, "missing": ("failed", "")}
    assert rows["missing"]["reason"] == f"checkpoint {tmp_path}/missing/model: folder {tmp_path}/missing does not exist"
    assert float(artifacts["convert-many-progress"].data) == 100.0
