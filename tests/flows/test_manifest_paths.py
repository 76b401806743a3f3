"""manifest.json travels with the model (into a bucket, to other people): it records what identifies the input
(digests, URIs as given), never a path of the publishing machine's file system (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.convert import convert_checkpoint
from flows.params import parameters_record

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_convert_records_no_absolute_local_path(guide_checkpoint: Path, tmp_path: Path) -> None:
    destination = tmp_path / "published"
    state = convert_checkpoint(checkpoint=str(guide_checkpoint), output_nodes=["y"], destination=str(destination),
                               return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()

    text = (destination / "model" / "1" / "manifest.json").read_text()
    assert str(tmp_path) not in text
    parameters = json.loads(text)["parameters"]
    assert parameters["checkpoint"] == "model" and parameters["destination"] == "published"
    assert parameters["checkpoint_digest"] == summary.checkpoint.artifact.digest


def test_uris_and_module_entrypoints_are_kept_as_given_and_file_entrypoints_lose_their_folder() -> None:
    record = parameters_record(checkpoint="gs://bucket/ckpt/model", destination="gs://bucket/models",
                               entrypoint="/home/you/models/net.py:build",
                               training={"entrypoint": "examples.keras_mlp:build", "epochs": 1})
    assert record == {"checkpoint": "gs://bucket/ckpt/model", "destination": "gs://bucket/models",
                      "entrypoint": "net.py:build", "training": {"entrypoint": "examples.keras_mlp:build", "epochs": 1}}
