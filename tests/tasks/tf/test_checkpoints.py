"""Checkpoints: writing both formats from a trained model, and reading what users hand in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.tf.checkpoints import describe_checkpoint, resolve_prefix, write_checkpoint
from tasks.core.errors import CheckpointError, OutputNodeError, ParameterError
from tasks.tf.training import train_model
from tests.support.records import by_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREEZEFLOW_HOME", str(tmp_path_factory.mktemp("home")))
        yield by_folder(train_model("tasks.tf.entrypoints:linear_model", epochs=200, learning_rate=0.05, seed=0))


def test_tf1_checkpoint_has_the_guides_four_files_and_names(trained) -> None:
    import tensorflow as tf

    checkpoint = write_checkpoint(trained, "tf1")
    assert sorted(f.path for f in checkpoint.artifact.files) == [
        "checkpoint", "model.data-00000-of-00001", "model.index", "model.meta"]
    reader = tf.train.load_checkpoint(str(checkpoint.prefix_path))
    assert sorted(reader.get_variable_to_shape_map()) == ["b", "m"]
    assert reader.get_tensor("m") == pytest.approx(0.5, abs=1e-4)
    assert reader.get_tensor("b") == pytest.approx(1.0, abs=1e-4)
    assert checkpoint.interface.input.name == "x" and checkpoint.interface.output.name == "y"
    # The folder can be handed to convert as it is: the format is told apart from the files.
    again = describe_checkpoint(checkpoint.artifact.path(), output_nodes=["y"])
    assert again.format == "tf1" and again.artifact.digest == checkpoint.artifact.digest


def test_tf2_checkpoint_is_object_based_and_needs_its_entrypoint(trained) -> None:
    checkpoint = write_checkpoint(trained, "tf2")
    names = sorted(f.path for f in checkpoint.artifact.files)
    assert "model.meta" not in names and "model.index" in names and "checkpoint" in names
    with pytest.raises(ParameterError, match="entrypoint"):
        describe_checkpoint(checkpoint.artifact.path())
    described = describe_checkpoint(checkpoint.artifact.path(), entrypoint="tasks.tf.entrypoints:linear_model")
    assert described.format == "tf2"
    assert described.interface == trained.interface


def test_guide_files_are_tf1_with_interface_from_the_graph(guide_checkpoint: Path) -> None:
    checkpoint = describe_checkpoint(guide_checkpoint, output_nodes=["y"])
    assert checkpoint.format == "tf1"
    assert checkpoint.interface.input.name == "x"
    assert checkpoint.interface.input.shape == (None,)
    assert [v.name for v in checkpoint.variables] == ["b", "m"]


@pytest.mark.parametrize("given", ["folder", "prefix", "index", "meta", "data"])
def test_any_file_of_a_checkpoint_resolves_to_its_prefix(guide_checkpoint: Path, given: str) -> None:
    folder = guide_checkpoint.parent
    path = {"folder": folder, "prefix": guide_checkpoint, "index": folder / "model.index",
            "meta": folder / "model.meta", "data": folder / "model.data-00000-of-00001"}[given]
    assert resolve_prefix(path) == guide_checkpoint.resolve()


def test_prefix_matching_nothing_is_named(guide_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint index .*nosuch.index is missing"):
        describe_checkpoint(guide_checkpoint.parent / "nosuch", output_nodes=["y"])


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        describe_checkpoint(tmp_path / "absent" / "model", output_nodes=["y"])


def test_missing_data_file_is_named(guide_checkpoint: Path) -> None:
    (guide_checkpoint.parent / "model.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint data file .*model.data-00000-of-00001 is missing"):
        describe_checkpoint(guide_checkpoint, output_nodes=["y"])


def test_missing_shard_is_named(guide_checkpoint: Path) -> None:
    data = guide_checkpoint.parent / "model.data-00000-of-00001"
    data.rename(guide_checkpoint.parent / "model.data-00000-of-00002")
    with pytest.raises(CheckpointError, match=r"data file .*model.data-00000-of-00001 is missing \(1 of 1 shards\)"):
        describe_checkpoint(guide_checkpoint, output_nodes=["y"])


def test_missing_meta_says_the_graph_is_needed(guide_checkpoint: Path) -> None:
    (guide_checkpoint.parent / "model.meta").unlink()
    with pytest.raises(CheckpointError, match=r"model.meta is missing"):
        describe_checkpoint(guide_checkpoint, output_nodes=["y"])


def test_truncated_meta_is_named(guide_checkpoint: Path) -> None:
    meta = guide_checkpoint.parent / "model.meta"
    meta.write_bytes(meta.read_bytes()[:57])
    with pytest.raises(CheckpointError, match=r"model.meta is (empty or )?not a MetaGraphDef"):
        describe_checkpoint(guide_checkpoint, output_nodes=["y"])


def test_index_that_is_not_an_index_is_named(guide_checkpoint: Path) -> None:
    (guide_checkpoint.parent / "model.index").write_bytes(b"not a table")
    with pytest.raises(CheckpointError, match=r"model.index is not a TensorFlow tensor bundle index"):
        describe_checkpoint(guide_checkpoint, output_nodes=["y"])


def test_unknown_output_node_lists_candidates(guide_checkpoint: Path) -> None:
    with pytest.raises(OutputNodeError, match=r"output node 'yy' is not in the graph of .*model.meta \(nearest: y\)"):
        describe_checkpoint(guide_checkpoint, output_nodes=["yy"])


def test_tf1_without_output_node_suggests_one(guide_checkpoint: Path) -> None:
    with pytest.raises(ParameterError, match=r"--output-node.*likely: y"):
        describe_checkpoint(guide_checkpoint)
