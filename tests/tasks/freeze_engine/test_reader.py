"""The one reader of checkpoints: inspect, freeze and the pipeline see the same files, outputs and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tasks.core.errors import CheckpointError, OutputNodeError, ParameterError
from tasks.freeze_engine import freeze_checkpoint, list_output_candidates
from tasks.freeze_engine.inspect import inspect_path
from tasks.freeze_engine.reader import checkpoint_files, checkpoint_format, checkpoint_variables
from tasks.tf.checkpoints import describe_checkpoint
from tasks.tf.freezing import write_frozen_graph


def write_training_checkpoint(folder: Path) -> Path:
    """A TF1 model saved with its training machinery: a loss, Adam's slots and update ops, a global step."""
    import tensorflow as tf

    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        target = tf.compat.v1.placeholder(tf.float32, [None, 1], name="target")
        kernel = tf.compat.v1.get_variable("kernel", initializer=np.array([[0.5], [-1.0]], np.float32))
        y = tf.identity(tf.matmul(x, kernel), name="y")
        loss = tf.reduce_mean(tf.square(y - target), name="loss")
        step = tf.compat.v1.train.get_or_create_global_step()
        train = tf.compat.v1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(train, {x: [[1.0, 2.0]], target: [[1.0]]})
            tf.compat.v1.train.Saver().save(session, str(folder / "model"))
    return folder / "model"


def test_inspect_and_the_pipeline_suggest_the_outputs_freeze_would(tmp_path: Path) -> None:
    prefix = write_training_checkpoint(tmp_path)
    suggested = inspect_path(prefix)["output_candidates"]
    assert suggested == list_output_candidates(prefix)
    assert suggested == ["loss"]  # y feeds the loss; Adam, gradients, the saver and the step are machinery
    with pytest.raises(ParameterError) as described:
        describe_checkpoint(prefix)  # no output node named: the pipeline suggests the same ones
    assert str(described.value).endswith("likely: " + ", ".join(suggested))


def test_an_unknown_output_node_is_worded_the_same_by_every_path(guide_checkpoint: Path, tmp_path: Path) -> None:
    from freezeflow.cli.app import app

    prefix = guide_checkpoint.resolve()
    messages = []
    with pytest.raises(OutputNodeError) as engine:
        freeze_checkpoint(prefix, ["yy"], tmp_path / "frozen.pb")
    messages.append(str(engine.value))
    with pytest.raises(OutputNodeError) as described:
        describe_checkpoint(prefix, output_nodes=["yy"])
    messages.append(str(described.value))
    record = describe_checkpoint(prefix, output_nodes=["y"])
    for engine_name in ("stream", "tf"):
        with pytest.raises(OutputNodeError) as frozen:
            write_frozen_graph(record, ["yy"], engine=engine_name)
        messages.append(str(frozen.value))
    result = CliRunner().invoke(app, ["freeze", str(prefix), "--output-node", "yy", "-o", str(tmp_path / "f.pb")])
    assert result.exit_code == 1
    messages.append(result.stderr.strip().removeprefix("error: "))
    assert messages == [f"output node 'yy' is not in the graph of {prefix}.meta (nearest: y)"] * len(messages)


def test_files_format_and_variables_of_a_checkpoint(guide_checkpoint: Path) -> None:
    folder = guide_checkpoint.parent
    assert {p.name for p in checkpoint_files(folder)} == {
        "model.index", "model.data-00000-of-00001", "model.meta", "checkpoint"}
    assert checkpoint_format(guide_checkpoint) == "tf1"
    assert checkpoint_variables(guide_checkpoint) == [("b", "float32", ()), ("m", "float32", ())]


def test_a_missing_data_shard_is_named_before_anything_reads_it(guide_checkpoint: Path) -> None:
    data = guide_checkpoint.parent / "model.data-00000-of-00001"
    data.unlink()
    with pytest.raises(CheckpointError, match=rf"checkpoint data file {data} is missing \(1 of 1 shards\)"):
        checkpoint_files(guide_checkpoint)
    with pytest.raises(CheckpointError, match=rf"checkpoint data file {data} is missing"):
        inspect_path(guide_checkpoint)
