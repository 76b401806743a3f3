"""inspect: what a checkpoint, a frozen graph or a SavedModel holds, found from the path alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.core.errors import CheckpointError
from tasks.freeze_engine.inspect import inspect_path


def test_a_tf1_checkpoint_shows_its_variables_input_and_output_candidates(guide_checkpoint: Path) -> None:
    for path in (guide_checkpoint.parent, guide_checkpoint):  # the folder (via its 'checkpoint' file) or the prefix
        result = inspect_path(path)
        assert (result["kind"], result["format"], result["path"]) == ("checkpoint", "tf1", str(guide_checkpoint))
        assert {v["name"] for v in result["variables"]} == {"m", "b"}
        assert result["inputs"] == ["x"]
        assert "y" in result["output_candidates"]
        assert "streaming engine" in result["freeze_engine"]


def test_a_checkpoint_without_its_meta_graph_says_it_cannot_be_frozen(guide_checkpoint: Path) -> None:
    guide_checkpoint.with_name("model.meta").unlink()
    result = inspect_path(guide_checkpoint)
    assert "inputs" not in result and result["freeze_engine"].startswith("TF1 checkpoint without .meta")


def test_a_frozen_graph_shows_no_variables_and_no_device_pins(guide_records: dict) -> None:
    result = inspect_path(guide_records["frozen"].graph_path)
    assert result["kind"] == "frozen_graph"
    assert result["variables_left"] == [] and result["device_pins"] == []
    assert result["inputs"] == ["x"] and "y" in result["output_candidates"]
    assert result["nodes"] == sum(result["ops"].values())


def test_a_savedmodel_folder_or_its_model_folder_shows_the_serving_signature(guide_records: dict, tmp_path: Path) -> None:
    version = guide_records["exported"].artifact.path()
    model = tmp_path / "linear"
    shutil.copytree(version, model / "3")
    (model / "10").mkdir()  # a newer number without saved_model.pb: not a version inspect can read
    for path, expected in ((version, version), (model, model / "3")):
        result = inspect_path(path)
        assert (result["kind"], result["path"]) == ("saved_model", str(expected))
        graph = result["meta_graphs"][0]
        assert graph["tags"] == ["serve"]
        signature = graph["signatures"]["serving_default"]
        assert signature["inputs"]["inputs"]["dtype"] == "float32"
        assert signature["inputs"]["inputs"]["shape"] == [None]
        assert {v["name"] for v in result["variables"]} == {"m", "b"}


def test_a_pb_that_is_not_a_graph_is_refused_naming_the_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.pb"
    bogus.write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(CheckpointError, match=r"model.pb is not a GraphDef"):
        inspect_path(bogus)


def test_a_path_that_holds_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        inspect_path(tmp_path / "nothing")
