"""Publishing: what a version holds, what its manifest says, and that a failed validation is never published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.errors import ValidationFailed
from tasks.storage.publishing import upload_model
from tasks.tf.validation import validate_model


def test_manifest_records_digests_signature_validation_and_parameters(guide_records: dict, tmp_path: Path) -> None:
    checkpoint, frozen, exported = guide_records["checkpoint"], guide_records["frozen"], guide_records["exported"]
    report = validate_model(checkpoint, frozen, exported, [2.0, 4.0, 6.0], rtol=0.0, atol=1e-6)
    publication = upload_model(str(tmp_path / "d"), "guide", checkpoint.interface, frozen, exported, report,
                               {"destination": "d"}, flow_run_id="run-1")
    manifest = json.loads((Path(publication.uri) / "manifest.json").read_text())
    assert manifest["model"] == "guide" and manifest["version"] == 1 and manifest["flow_run_id"] == "run-1"
    assert manifest["parameters"] == {"destination": "d"}
    assert manifest["tensorflow_version"].startswith("2.")
    assert manifest["signature"]["inputs"]["inputs"]["name"] == "x"
    assert manifest["validation"]["predictions"]["saved_model"] == [2.0, 3.0, 4.0]
    sizes = {f["path"]: f["size"] for f in manifest["files"]}
    assert sizes["frozen_graph.pb"] == (Path(publication.uri) / "frozen_graph.pb").stat().st_size
    assert set(sizes) == {"saved_model.pb", "variables/variables.index",
                          "variables/variables.data-00000-of-00001", "frozen_graph.pb"}


def test_a_failed_validation_is_never_published(guide_records: dict, tmp_path: Path) -> None:
    checkpoint, frozen, exported = guide_records["checkpoint"], guide_records["frozen"], guide_records["exported"]
    report = validate_model(checkpoint, frozen, exported, [2.0, 4.0, 6.0], rtol=0.0, atol=1e-6)
    failed = report.model_copy(update={"passed": False, "checks": report.checks[:-1] + (
        report.checks[-1].model_copy(update={"passed": False}),)})
    with pytest.raises(ValidationFailed):
        upload_model(str(tmp_path / "d"), "guide", checkpoint.interface, frozen, exported, failed, {})
    assert not (tmp_path / "d").exists()
