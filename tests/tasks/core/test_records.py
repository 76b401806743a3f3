"""The records stages hand each other: content digests that notice change, frozen values, JSON round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.core.errors import StaleArtifactError
from tasks.core.records import Artifact, RunSummary, StageRun
from tests.support.records import run_summary


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "artifact"
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"graph")
    (root / "variables" / "variables.index").write_bytes(b"index")
    return root


def test_an_artifact_digests_every_file_under_its_root_with_posix_paths(tmp_path: Path) -> None:
    artifact = Artifact.of(_folder(tmp_path))
    assert [f.path for f in artifact.files] == ["saved_model.pb", "variables/variables.index"]
    assert artifact.size == len(b"graph") + len(b"index")
    artifact.verify()


def test_the_digest_follows_content_not_the_folder_it_lives_in(tmp_path: Path) -> None:
    one = Artifact.of(_folder(tmp_path / "a"))
    two = Artifact.of(_folder(tmp_path / "b"))
    assert one.root != two.root and one.digest == two.digest
    (tmp_path / "b" / "artifact" / "saved_model.pb").write_bytes(b"graph2")
    assert Artifact.of(tmp_path / "b" / "artifact").digest != one.digest


def test_verify_names_a_file_that_is_gone_or_changed(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    artifact = Artifact.of(root)
    (root / "saved_model.pb").write_bytes(b"grapH")  # same size, other bytes
    with pytest.raises(StaleArtifactError, match=r"saved_model.pb changed since it was recorded"):
        artifact.verify()
    (root / "saved_model.pb").write_bytes(b"graph")
    (root / "variables" / "variables.index").unlink()
    with pytest.raises(StaleArtifactError, match=r"variables.index is gone"):
        artifact.verify()


def test_records_are_frozen_and_refuse_unknown_fields() -> None:
    stage = StageRun(name="train", state="Completed", seconds=1.0)
    with pytest.raises(ValidationError):
        stage.state = "Failed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        StageRun(name="train", state="Completed", seconds=1.0, note="x")  # type: ignore[call-arg]


def test_a_run_summary_round_trips_through_json_as_itself() -> None:
    summary = run_summary(losses=(0.5, 0.1))
    text = summary.model_dump_json()
    assert json.loads(text)["stages"][0] == {"name": "train", "state": "Completed", "seconds": 0.25}
    assert RunSummary.model_validate_json(text) == summary


def test_a_run_summary_survives_prefect_s_json_result_serializer() -> None:
    """What Prefect stores when a flow's result is persisted as JSON reads back as a RunSummary."""
    from prefect.serializers import JSONSerializer

    summary = run_summary(uri="gs://bucket/m/linear/2", reused=True)
    serializer = JSONSerializer()
    data = serializer.dumps(summary)
    assert json.loads(data)["__class__"] == "tasks.core.records.RunSummary"
    assert serializer.loads(data) == summary
