"""The cached fast path (flows/cached_run.py) against what real Prefect runs stored: the same keys, the same
summary, and no answer at all once a record no longer holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows import stage_plan
from flows.cached_run import CachedStages, cached_convert, cached_publish, read_result_record
from flows.params import SignatureParams, TrainingParams, ValidationParams
from tasks.core import workspace

pytestmark = pytest.mark.usefixtures("prefect_api")

FAST = TrainingParams(epochs=150)
GUIDE_POINTS = ValidationParams(reference_inputs=[2.0, 4.0, 6.0])


def publish_params(dest: Path) -> dict[str, Any]:
    return dict(model_name="linear", training=FAST, checkpoint_format="tf1", signature=SignatureParams(),
                validation=GUIDE_POINTS, destination=str(dest), freeze_engine="stream", fold_batch_norm=False)


def without_times(summary: Any) -> dict[str, Any]:
    dumped = summary.model_dump(mode="json")
    dumped["stages"] = [stage["name"] for stage in dumped["stages"]]
    return dumped


@pytest.fixture
def published(tmp_path: Path, workspace_home: Path) -> dict[str, Any]:
    """One real publish_model run in this test's workspace: its parameters and the summary it returned."""
    from flows.publish import publish_model

    params = publish_params(tmp_path / "dest")
    state = publish_model(return_state=True, **params)
    assert state.is_completed(), state.message
    return {"params": params, "summary": state.result(), "home": workspace_home}


def test_the_fast_path_keys_every_stage_as_prefect_stored_it_and_returns_the_flows_summary(
    published: dict[str, Any],
) -> None:
    walker = CachedStages()
    summary = cached_publish(**published["params"], stages=walker)
    assert summary is not None
    # The keys the fast path computed are exactly the files Prefect's policy wrote, one per stage.
    stored = sorted(p.name for p in workspace.results_dir().iterdir())
    assert sorted(walker.keys.values()) == stored
    assert list(walker.keys) == ["train", "checkpoint", "freeze", "export", "validate", "upload"]
    assert [(s.name, s.state) for s in summary.stages] == [(name, "Cached") for name in walker.keys]
    assert without_times(summary) == without_times(published["summary"])
    assert summary.losses and summary.losses == published["summary"].losses


def test_a_tampered_artifact_or_a_removed_version_or_a_garbled_record_is_not_served(
    published: dict[str, Any], tmp_path: Path
) -> None:
    params, summary = published["params"], published["summary"]
    frozen = summary.frozen_graph.graph_path
    original = frozen.read_bytes()
    frozen.write_bytes(original + b"\0")  # same name, other bytes
    assert cached_publish(**params) is None
    frozen.write_bytes(original)
    assert cached_publish(**params) is not None

    manifest = Path(summary.publication.uri) / "manifest.json"
    kept = manifest.read_bytes()
    manifest.unlink()  # the version is gone from the destination
    assert cached_publish(**params) is None
    manifest.write_bytes(kept)
    assert cached_publish(**params) is not None

    walker = CachedStages()
    cached_publish(**params, stages=walker)
    record = workspace.results_dir() / walker.keys["validate"]
    record.write_text("{not json")
    assert cached_publish(**params) is None

    other = publish_params(tmp_path / "elsewhere")  # another destination: upload is not cached there
    assert cached_publish(**other) is None


def test_prefects_result_records_read_back_as_the_projects_records(published: dict[str, Any]) -> None:
    walker = CachedStages()
    cached_publish(**published["params"], stages=walker)
    upload = workspace.keys_dir() / walker.keys["upload"]
    assert read_result_record(upload) == published["summary"].publication
    (workspace.results_dir() / walker.keys["upload"]).write_text(json.dumps({"__class__": "builtins.dict", "data": {}}))
    with pytest.raises(Exception, match="not a freezeflow record"):
        read_result_record(upload)


def test_convert_s_fast_path_keys_match_prefect_s_for_a_tf1_checkpoint(guide_checkpoint: Path, tmp_path: Path) -> None:
    from flows.convert import convert_checkpoint

    params = dict(checkpoint=str(guide_checkpoint), output_nodes=["y"], entrypoint=None, model_name="model",
                  signature=SignatureParams(), validation=ValidationParams(), destination=str(tmp_path / "d"),
                  freeze_engine="stream", sanitise=True, fold_batch_norm=False)
    assert cached_convert(**params) is None  # nothing described or cached yet
    state = convert_checkpoint(return_state=True, **params)
    assert state.is_completed(), state.message
    walker = CachedStages()
    summary = cached_convert(**params, stages=walker)
    assert summary is not None
    assert sorted(walker.keys.values()) == sorted(p.name for p in workspace.results_dir().iterdir())
    assert list(walker.keys) == ["sanitise", "freeze", "export", "validate", "upload"]
    assert without_times(summary) == without_times(state.result())
    # Other checkpoint bytes under the same path: not described yet, so not served.
    data = guide_checkpoint.with_name("model.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")
    assert cached_convert(**params) is None


def test_the_plan_names_each_stage_s_module_and_labels_as_its_task_declares_them() -> None:
    """The fast path keys a stage on STAGE_MODULES and leaves LABELS out; the tasks' policies must agree."""
    from flows.cached_run import VERIFIERS
    from flows.stage_runner import PrefectStages
    from tasks.core.cache_keys import verify_record

    for name, task in PrefectStages.TASKS.items():
        policy = task.cache_policy
        assert (policy.stage, policy.module) == (name, stage_plan.STAGE_MODULES[name])
        assert policy.ignore == stage_plan.LABELS.get(name, ())
        assert (policy.verifier or verify_record) is VERIFIERS.get(name, verify_record)
