"""Freezing: one self-sufficient GraphDef that gives the checkpoint's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.tf.checkpoints import describe_checkpoint
from tasks.core.errors import CheckpointError, GraphTooLargeError
from tasks.freeze_engine.reader import read_graph_def
from tasks.tf.freezing import write_frozen_graph
from tasks.tf.running import predict_frozen


def test_guide_graph_freezes_to_constants_and_gives_the_guides_numbers(guide_records: dict) -> None:
    frozen = guide_records["frozen"]
    graph_def = read_graph_def(frozen.graph_path)
    ops = {n.name: n.op for n in graph_def.node}
    assert ops["m"] == "Const" and ops["b"] == "Const"
    assert not [n for n in graph_def.node if n.op in ("VariableV2", "VarHandleOp", "SaveV2", "RestoreV2")]
    assert not [n for n in graph_def.node if n.device]
    assert not [n for n in ops if n.startswith("save")]  # pruned to what y needs
    assert predict_frozen(frozen, [2.0, 4.0, 6.0]).tolist() == [2.0, 3.0, 4.0]


def test_frozen_graph_loads_with_import_graph_def_name_empty(guide_records: dict) -> None:
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        tf.import_graph_def(read_graph_def(guide_records["frozen"].graph_path), name="")
        assert graph.get_tensor_by_name("x:0") is not None
        assert graph.get_tensor_by_name("y:0") is not None


def test_device_pins_are_cleared(tmp_path: Path) -> None:
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        with tf.device("/device:GPU:0"):
            x = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
            m = tf.compat.v1.Variable(0.5, name="m")
            tf.identity(m * x, name="y")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(allow_soft_placement=True)) as s:
            s.run(tf.compat.v1.global_variables_initializer())
            saver.save(s, str(tmp_path / "pinned" / "model"))
    frozen = write_frozen_graph(describe_checkpoint(tmp_path / "pinned", output_nodes=["y"]))
    assert [n.device for n in read_graph_def(frozen.graph_path).node] == [""] * frozen.node_count
    assert predict_frozen(frozen, [4.0]).tolist() == [2.0]


def test_graph_past_the_protobuf_limit_fails_before_writing(guide_checkpoint: Path, workspace_home: Path) -> None:
    checkpoint = describe_checkpoint(guide_checkpoint, output_nodes=["y"])
    with pytest.raises(GraphTooLargeError, match=r"protobuf's 2 GiB limit.*SavedModel"):
        write_frozen_graph(checkpoint, max_bytes=64)
    with pytest.raises(GraphTooLargeError, match=r"protobuf's 2 GiB limit.*SavedModel"):
        write_frozen_graph(checkpoint, max_bytes=64, engine="tf")
    assert not list(workspace_home.rglob("*.pb"))


def test_truncated_data_file_is_named(guide_checkpoint: Path, workspace_home: Path) -> None:
    data = guide_checkpoint.parent / "model.data-00000-of-00001"
    checkpoint = describe_checkpoint(guide_checkpoint, output_nodes=["y"])
    data.write_bytes(data.read_bytes()[:3])
    from tasks.core.records import Artifact

    checkpoint = checkpoint.model_copy(update={"artifact": Artifact.of(checkpoint.artifact.root,
                                                                       [f.path for f in checkpoint.artifact.files])})
    with pytest.raises(CheckpointError, match=r"model.data-00000-of-00001"):
        write_frozen_graph(checkpoint)
    with pytest.raises(CheckpointError, match=r"checkpoint .*model: cannot read its variables"):
        write_frozen_graph(checkpoint, engine="tf")
    assert not list(workspace_home.rglob("*.pb"))


def test_changed_checkpoint_after_description_is_refused(guide_checkpoint: Path) -> None:
    from tasks.core.errors import StaleArtifactError

    checkpoint = describe_checkpoint(guide_checkpoint, output_nodes=["y"])
    (guide_checkpoint.parent / "model.data-00000-of-00001").write_bytes(b"\0" * 8)
    with pytest.raises(StaleArtifactError, match="changed since it was recorded"):
        write_frozen_graph(checkpoint)


def test_both_engines_freeze_the_same_graph(guide_checkpoint: Path) -> None:
    checkpoint = describe_checkpoint(guide_checkpoint, output_nodes=["y"])
    stream = write_frozen_graph(checkpoint)
    tf_made = write_frozen_graph(checkpoint, engine="tf")
    assert (stream.engine, tf_made.engine) == ("freezeflow-stream", "tensorflow-v1")
    stream_nodes = {n.name: n.op for n in read_graph_def(stream.graph_path).node}
    assert stream_nodes == {n.name: n.op for n in read_graph_def(tf_made.graph_path).node}
    assert predict_frozen(stream, [2.0, 4.0, 6.0]).tolist() == predict_frozen(tf_made, [2.0, 4.0, 6.0]).tolist()
