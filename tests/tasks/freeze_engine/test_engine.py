"""The freeze engine against TensorFlow's own conversion, which is the oracle.

Every model here is built with real TensorFlow (tf.compat.v1 graph mode, saved by
tf.compat.v1.train.Saver) in a temporary directory. The streamed `.pb` must load with
`tf.import_graph_def(name="")`, hold the same node names and ops as
`tf.compat.v1.graph_util.convert_variables_to_constants` gives, carry constants of the same dtype,
shape and bytes, and compute bitwise-identical outputs on fixed inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.core.errors import CheckpointError, GraphTooLargeError, OutputNodeError, ParameterError, UnsupportedGraphError
from tasks.freeze_engine import (
    checkpoint_variables,
    freeze_checkpoint,
    list_output_candidates,
    protos,
    resolve_checkpoint_prefix,
    tensor_data,
)
from tasks.freeze_engine.bundle import TensorBundle
from tasks.freeze_engine.files import locate_checkpoint

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Model:
    """A saved checkpoint and how to exercise it."""

    prefix: str
    outputs: list[str]
    feeds: list[dict[str, Any]] = field(default_factory=lambda: [{}])


# --- building models with TensorFlow ------------------------------------------------------------


@pytest.fixture(scope="module")
def tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def _save(
    tf: Any, prefix: Path, outputs: list[str], feeds: list[dict[str, Any]], saver: Any = None, **session: Any
) -> Model:
    saver = saver or tf.compat.v1.train.Saver()
    with tf.compat.v1.Session(**session) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        saver.save(sess, str(prefix))
    return Model(str(prefix), outputs, feeds)


def build_guide(tf: Any, directory: Path) -> Model:
    """The guide's model: y = m * x + b with m = 0.5, b = 1.0."""
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        m = tf.compat.v1.Variable(0.5, name="m")
        b = tf.compat.v1.Variable(1.0, name="b")
        tf.identity(m * x + b, name="y")
        return _save(tf, directory / "model", ["y"], [{"x": np.array([2.0, 4.0, 6.0], np.float32)}])


def build_multi_layer(tf: Any, directory: Path) -> Model:
    """An embedding lookup (ResourceGather) then three dense layers, ref and resource variables."""
    with tf.Graph().as_default():
        ids = tf.compat.v1.placeholder(tf.int32, [None, 3], name="ids")
        table = tf.compat.v1.get_variable(
            "embedding", [10, 8], initializer=tf.compat.v1.random_normal_initializer(seed=1), use_resource=True
        )
        hidden = tf.reduce_mean(tf.compat.v1.nn.embedding_lookup(table, ids), axis=1)
        for layer, (width, resource) in enumerate([(16, True), (16, False), (4, True)]):
            kernel = tf.compat.v1.get_variable(
                f"layer{layer}/kernel",
                [hidden.shape[1], width],
                initializer=tf.compat.v1.glorot_uniform_initializer(seed=layer),
                use_resource=resource,
            )
            bias = tf.compat.v1.get_variable(
                f"layer{layer}/bias",
                [width],
                initializer=tf.compat.v1.random_normal_initializer(seed=10 + layer),
                use_resource=resource,
            )
            hidden = tf.matmul(hidden, kernel) + bias
            if layer < 2:
                hidden = tf.nn.relu(hidden)
        tf.identity(hidden, name="logits")
        tf.nn.softmax(hidden, name="probs")
        feeds = [{"ids": np.array([[1, 2, 3], [9, 0, 4], [5, 5, 5]], np.int32)}]
        return _save(tf, directory / "model", ["logits", "probs"], feeds)


def _control_flow(tf: Any, directory: Path, v2: bool) -> Model:
    """A resource and a ref variable read inside tf.cond and tf.while_loop."""
    (tf.compat.v1.enable_control_flow_v2 if v2 else tf.compat.v1.disable_control_flow_v2)()
    try:
        with tf.Graph().as_default():
            x = tf.compat.v1.placeholder(tf.float32, [3], name="x")
            w = tf.compat.v1.get_variable("w", initializer=np.array([1.5, -2.0, 3.25], np.float32), use_resource=True)
            r = tf.compat.v1.get_variable("r", initializer=np.array([0.5, 0.25, 2.0], np.float32), use_resource=False)
            chosen = tf.compat.v1.cond(tf.reduce_sum(x) > 0, lambda: x * w.read_value() + r, lambda: x - w.read_value())
            _, total = tf.compat.v1.while_loop(
                lambda i, acc: i < 3, lambda i, acc: (i + 1, acc * r + w.read_value()), [tf.constant(0), x]
            )
            tf.identity(chosen + total, name="y")
            feeds = [{"x": np.array([1.0, 2.0, 3.0], np.float32)}, {"x": np.array([-1.0, -2.0, 0.5], np.float32)}]
            return _save(tf, directory / "model", ["y"], feeds)
    finally:
        tf.compat.v1.enable_control_flow_v2()


def build_control_flow_v1(tf: Any, directory: Path) -> Model:
    return _control_flow(tf, directory, v2=False)


def build_control_flow_v2(tf: Any, directory: Path) -> Model:
    return _control_flow(tf, directory, v2=True)


def build_partitioned(tf: Any, directory: Path) -> Model:
    """Partitioned variables (saved as slices of one tensor), resource and ref."""
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(3)  # op seeds from the graph's: each partition gets its own values
        x = tf.compat.v1.placeholder(tf.float32, [None, 10], name="x")
        initializer = tf.compat.v1.random_uniform_initializer()
        parts = tf.compat.v1.get_variable(
            "pw",
            [10, 4],
            initializer=initializer,
            partitioner=tf.compat.v1.fixed_size_partitioner(3),
            use_resource=True,
        )
        ref_parts = tf.compat.v1.get_variable(
            "pr",
            [10, 4],
            initializer=initializer,
            partitioner=tf.compat.v1.fixed_size_partitioner(2),
            use_resource=False,
        )
        tf.identity(tf.matmul(x, parts) + tf.matmul(x, ref_parts), name="y")
        feeds = [{"x": np.arange(20, dtype=np.float32).reshape(2, 10) / 7}]
        return _save(tf, directory / "model", ["y"], feeds)


def build_repartitioned(tf: Any, directory: Path) -> Model:
    """Variables restored from tensors saved with another partitioning: `a` whole from three
    slices, `b` in two slices from a whole tensor."""
    initializer = tf.compat.v1.random_uniform_initializer()
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(5)  # op seeds from the graph's: each partition gets its own values
        tf.compat.v1.get_variable(
            "a", [10, 4], initializer=initializer, partitioner=tf.compat.v1.fixed_size_partitioner(3)
        )
        tf.compat.v1.get_variable("b", [9, 2], initializer=initializer)
        _save(tf, directory / "model", [], [])
    with tf.Graph().as_default():  # the graph that reads them replaces the saved one
        x = tf.compat.v1.placeholder(tf.float32, [None, 10], name="x")
        a = tf.compat.v1.get_variable("a", [10, 4], initializer=initializer)
        b = tf.compat.v1.get_variable(
            "b", [9, 2], initializer=initializer, partitioner=tf.compat.v1.fixed_size_partitioner(2)
        )
        tf.identity(tf.matmul(x, a), name="y")
        tf.identity(tf.convert_to_tensor(b) * 2.0, name="z")
        tf.compat.v1.train.Saver().export_meta_graph(str(directory / "model.meta"))
    return Model(str(directory / "model"), ["y", "z"], [{"x": np.linspace(-1, 1, 20, dtype=np.float32).reshape(2, 10)}])


def build_dtypes(tf: Any, directory: Path) -> Model:
    """float16, int64, bool and string variables; strings with empty and non-UTF-8 values; 0-d."""
    with tf.Graph().as_default():
        half = tf.compat.v1.Variable(np.array([1.5, -2.25, 65504.0], np.float16), name="half", use_resource=False)
        scalar = tf.compat.v1.Variable(np.float16(3.0), name="scalar")
        wide = tf.compat.v1.Variable(np.array([2**40, -3, 7], np.int64), name="wide")
        flags = tf.compat.v1.Variable(np.array([True, False, True]), name="flags", use_resource=False)
        words = tf.compat.v1.Variable(np.array([b"", b"\xff\xfe\x00bytes", b"plain", b""], dtype=object), name="words")
        tf.identity(half * scalar, name="half_out")
        tf.identity(wide + 1, name="wide_out")
        tf.logical_not(flags, name="flags_out")
        tf.identity(words, name="words_out")
        tf.strings.length(words, name="words_length")
        outputs = ["half_out", "wide_out", "flags_out", "words_out", "words_length"]
        return _save(tf, directory / "model", outputs, [{}])


def build_renamed_keys(tf: Any, directory: Path) -> Model:
    """Saver(var_list={...}) saves variables under keys that are not their names."""
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        w = tf.compat.v1.Variable(2.5, name="w")
        b = tf.compat.v1.Variable(-1.0, name="b", use_resource=False)
        tf.identity(x * w + b, name="y")
        saver = tf.compat.v1.train.Saver(var_list={"renamed/weight": w, "bias_key": b})
        return _save(tf, directory / "model", ["y"], [{"x": np.array([1.0, 3.0], np.float32)}], saver=saver)


def build_import_prefix(tf: Any, directory: Path) -> Model:
    """A graph imported under the scope `import/`, saved by the saver that came with it: its nodes
    are `import/...`, its checkpoint keys are not."""
    original = build_guide(tf, directory / "original")
    with tf.Graph().as_default():
        saver = tf.compat.v1.train.import_meta_graph(original.prefix + ".meta", import_scope="import")
        with tf.compat.v1.Session() as sess:
            saver.restore(sess, original.prefix)
            saver.save(sess, str(directory / "model"))
    return Model(str(directory / "model"), ["import/y"], [{"import/x": np.array([2.0, 4.0, 6.0], np.float32)}])


def build_training(tf: Any, directory: Path) -> Model:
    """Unused variables and training ops beside the model, trained one step before saving."""
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        target = tf.compat.v1.placeholder(tf.float32, [None, 1], name="target")
        kernel = tf.compat.v1.get_variable("kernel", initializer=np.array([[0.5], [-1.0]], np.float32))
        bias = tf.compat.v1.get_variable("bias", initializer=np.array([0.1], np.float32), use_resource=False)
        tf.compat.v1.get_variable("unused", initializer=np.ones([4, 4], np.float32))
        y = tf.identity(tf.matmul(x, kernel) + bias, name="y")
        loss = tf.reduce_mean(tf.square(y - target), name="loss")
        step = tf.compat.v1.train.get_or_create_global_step()
        train = tf.compat.v1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(train, {x: [[1.0, 2.0], [3.0, 4.0]], target: [[1.0], [0.0]]})
            saver.save(sess, str(directory / "model"))
    return Model(str(directory / "model"), ["y"], [{"x": np.array([[1.0, 2.0], [-3.0, 0.5]], np.float32)}])


def build_sharded(tf: Any, directory: Path) -> Model:
    """Variables on two devices saved by Saver(sharded=True): two data files."""
    with tf.Graph().as_default():
        with tf.device("/cpu:0"):
            a = tf.compat.v1.Variable(np.arange(6, dtype=np.float32), name="a")
        with tf.device("/cpu:1"):
            b = tf.compat.v1.Variable(np.arange(4, dtype=np.float32) * 3, name="b")
        tf.identity(a[:4] * b, name="y")
        config = tf.compat.v1.ConfigProto(device_count={"CPU": 2})
        saver = tf.compat.v1.train.Saver(sharded=True)
        return _save(tf, directory / "model", ["y"], [{}], saver=saver, config=config)


def build_assign_on_path(tf: Any, directory: Path) -> Model:
    """The output runs an AssignAddVariableOp through a control dependency."""
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        w = tf.compat.v1.Variable(2.0, name="w")
        counter = tf.compat.v1.Variable(0.0, name="counter")
        with tf.control_dependencies([counter.assign_add(1.0)]):
            tf.identity(x * w, name="y")
        return _save(tf, directory / "model", ["y"], [{"x": np.array([1.0], np.float32)}])


ORACLE_MODELS: dict[str, Callable[[Any, Path], Model]] = {
    "guide": build_guide,
    "multi_layer": build_multi_layer,
    "control_flow_v1": build_control_flow_v1,
    "control_flow_v2": build_control_flow_v2,
    "partitioned": build_partitioned,
    "repartitioned": build_repartitioned,
    "dtypes": build_dtypes,
    "renamed_keys": build_renamed_keys,
    "import_prefix": build_import_prefix,
    "training": build_training,
    "sharded": build_sharded,
}


@pytest.fixture(scope="module")
def models(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Model]:
    """Every model, built once for the module; tests copy one before damaging it."""
    root = tmp_path_factory.mktemp("models")
    built = {}
    for name, build in {**ORACLE_MODELS, "assign_on_path": build_assign_on_path}.items():
        (root / name).mkdir()
        built[name] = build(tf, root / name)
    return built


@pytest.fixture
def guide(models: dict[str, Model], tmp_path: Path) -> Model:
    """A private copy of the guide's checkpoint, free to damage."""
    return _copy_model(models["guide"], tmp_path / "guide")


def _copy_model(model: Model, directory: Path) -> Model:
    directory.mkdir(parents=True)
    source = Path(model.prefix)
    for path in source.parent.glob(source.name + ".*"):
        (directory / path.name).write_bytes(path.read_bytes())
    return Model(str(directory / source.name), model.outputs, model.feeds)


# --- the oracle -------------------------------------------------------------------------------


def tf_freeze(tf: Any, model: Model) -> Any:
    """The guide's method: import_meta_graph, restore, convert_variables_to_constants."""
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        saver = tf.compat.v1.train.import_meta_graph(model.prefix + ".meta", clear_devices=True)
        saver.restore(sess, model.prefix)
        return tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), model.outputs)


def run_graph(tf: Any, graph_def: Any, model: Model, feeds: dict[str, Any]) -> list[Any]:
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            return sess.run([f"{name}:0" for name in model.outputs], {f"{k}:0": v for k, v in feeds.items()})


def assert_same_array(ours: Any, theirs: Any, what: str) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype, what
    assert ours.shape == theirs.shape, what
    if ours.dtype == object:  # strings: compare the bytes of each element
        assert ours.tolist() == theirs.tolist(), what
    else:
        assert ours.tobytes() == theirs.tobytes(), what


@pytest.mark.parametrize("name", list(ORACLE_MODELS))
def test_frozen_graph_matches_tensorflows_conversion(
    tf: Any, models: dict[str, Model], tmp_path: Path, name: str
) -> None:
    model = models[name]
    output = tmp_path / "frozen.pb"
    stats = freeze_checkpoint(model.prefix, model.outputs, output)

    data = output.read_bytes()
    ours = tf.compat.v1.GraphDef.FromString(data)
    theirs = tf_freeze(tf, model)
    assert {node.name: node.op for node in ours.node} == {node.name: node.op for node in theirs.node}
    # The streamed file is exactly what protobuf itself would have serialized.
    assert ours.SerializeToString(deterministic=True) == data
    assert stats.bytes_written == len(data)
    assert stats.node_count == len(ours.node)
    assert stats.const_count == sum(node.op == "Const" for node in ours.node)

    their_nodes = {node.name: node for node in theirs.node}
    assert stats.variables, "every model here reads variables"
    for variable in stats.variables:
        mine, oracle = next(n for n in ours.node if n.name == variable), their_nodes[variable]
        assert mine.op == oracle.op == "Const"
        assert mine.attr["dtype"].type == oracle.attr["dtype"].type
        assert_same_array(
            tf.make_ndarray(mine.attr["value"].tensor), tf.make_ndarray(oracle.attr["value"].tensor), variable
        )

    for feeds in model.feeds:
        for output_name, mine, oracle in zip(
            model.outputs, run_graph(tf, ours, model, feeds), run_graph(tf, theirs, model, feeds), strict=True
        ):
            assert_same_array(mine, oracle, output_name)


def test_guide_model_computes_the_guide_values(tf: Any, models: dict[str, Model], tmp_path: Path) -> None:
    model = models["guide"]
    freeze_checkpoint(model.prefix, ["y"], tmp_path / "frozen.pb")
    graph = tf.compat.v1.GraphDef.FromString((tmp_path / "frozen.pb").read_bytes())
    (y,) = run_graph(tf, graph, model, {"x": np.array([2.0, 4.0, 6.0], np.float32)})
    assert y.tolist() == [2.0, 3.0, 4.0]
    constants = {node.name: node for node in graph.node if node.name in ("m", "b")}
    assert [d.size for d in constants["m"].attr["value"].tensor.tensor_shape.dim] == []  # 0-d stays 0-d
    same = freeze_checkpoint(model.prefix, ["y:0"], tmp_path / "named-by-tensor.pb", durable=True)
    assert (tmp_path / "named-by-tensor.pb").read_bytes() == (tmp_path / "frozen.pb").read_bytes()
    assert same.variables == ("m", "b")


def test_frozen_graph_drops_training_machinery(tf: Any, models: dict[str, Model], tmp_path: Path) -> None:
    stats = freeze_checkpoint(models["training"].prefix, ["y"], tmp_path / "frozen.pb")
    graph = tf.compat.v1.GraphDef.FromString((tmp_path / "frozen.pb").read_bytes())
    assert set(stats.variables) == {"kernel", "bias"}
    assert not [node.name for node in graph.node if node.name.startswith(("save/", "Adam", "gradients/", "unused"))]
    assert all(node.device == "" for node in graph.node)


def test_control_flow_v2_keeps_only_called_functions_as_value_typed_copies(
    tf: Any, models: dict[str, Model], tmp_path: Path
) -> None:
    freeze_checkpoint(models["control_flow_v2"].prefix, ["y"], tmp_path / "frozen.pb")
    graph = tf.compat.v1.GraphDef.FromString((tmp_path / "frozen.pb").read_bytes())
    called = {
        attr.func.name for node in graph.node for attr in node.attr.values() if attr.WhichOneof("value") == "func"
    }
    assert {function.signature.name for function in graph.library.function} == called
    resource = tf.resource.as_datatype_enum
    for function in graph.library.function:
        assert all(arg.type != resource for arg in function.signature.input_arg), function.signature.name
        assert not [node.name for node in function.node_def if node.op == "ReadVariableOp"]


def test_freezing_twice_writes_identical_bytes(models: dict[str, Model], tmp_path: Path) -> None:
    model = models["control_flow_v2"]
    freeze_checkpoint(model.prefix, model.outputs, tmp_path / "one.pb")
    freeze_checkpoint(model.prefix, model.outputs, tmp_path / "two.pb")
    assert (tmp_path / "one.pb").read_bytes() == (tmp_path / "two.pb").read_bytes()


def test_tiny_chunks_stream_the_same_bytes(
    models: dict[str, Model], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk boundaries inside varints, strings and slices change nothing."""
    for name in ("dtypes", "partitioned", "repartitioned", "multi_layer"):
        model = models[name]
        freeze_checkpoint(model.prefix, model.outputs, tmp_path / f"{name}-large.pb")
        with monkeypatch.context() as patch:
            patch.setattr(tensor_data, "CHUNK_SIZE", 3)
            freeze_checkpoint(model.prefix, model.outputs, tmp_path / f"{name}-tiny.pb")
        assert (tmp_path / f"{name}-large.pb").read_bytes() == (tmp_path / f"{name}-tiny.pb").read_bytes()


# --- what the engine reports -------------------------------------------------------------------


def test_list_output_candidates_names_the_model_outputs(models: dict[str, Model]) -> None:
    assert list_output_candidates(models["guide"].prefix) == ["y"]
    assert list_output_candidates(models["multi_layer"].prefix) == ["logits", "probs"]
    training = list_output_candidates(models["training"].prefix)
    assert "loss" in training
    assert not [name for name in training if name.startswith(("save/", "gradients/", "Adam", "init"))]


def test_checkpoint_variables_reads_the_index(models: dict[str, Model]) -> None:
    assert checkpoint_variables(models["guide"].prefix) == [("b", "float32", ()), ("m", "float32", ())]
    assert ("pw", "float32", (10, 4)) in checkpoint_variables(models["partitioned"].prefix)
    assert checkpoint_variables(models["renamed_keys"].prefix) == [
        ("bias_key", "float32", ()),
        ("renamed/weight", "float32", ()),
    ]
    kinds = {key: (dtype, shape) for key, dtype, shape in checkpoint_variables(models["dtypes"].prefix)}
    assert kinds["words"] == ("string", (4,))
    assert kinds["half"] == ("float16", (3,))
    assert kinds["scalar"] == ("float16", ())


def test_directory_with_checkpoint_state_file_resolves_to_latest(guide: Model, tmp_path: Path) -> None:
    directory = Path(guide.prefix).parent
    (directory / "checkpoint").write_text('model_checkpoint_path: "model"\nall_model_checkpoint_paths: "model"\n')
    assert resolve_checkpoint_prefix(directory) == directory / "model"
    assert resolve_checkpoint_prefix(guide.prefix + ".index") == Path(guide.prefix)
    stats = freeze_checkpoint(directory, ["y"], tmp_path / "frozen.pb")
    assert stats.variables == ("m", "b")


def test_protos_are_shared_with_tensorflow(tf: Any) -> None:
    """Loading TF's message modules privately gives the very classes TensorFlow uses."""
    assert protos.graph_pb2.GraphDef is tf.compat.v1.GraphDef
    assert protos.meta_graph_pb2.MetaGraphDef is tf.compat.v1.MetaGraphDef


def test_engine_never_loads_tensorflows_runtime(models: dict[str, Model], tmp_path: Path) -> None:
    """In a fresh process: the engine freezes without `tensorflow.python`, and TensorFlow imported
    later still works beside the message classes the engine loaded."""
    script = textwrap.dedent(
        f"""
        import sys
        from tasks.freeze_engine import freeze_checkpoint, list_output_candidates, checkpoint_variables
        stats = freeze_checkpoint({models["guide"].prefix!r}, ["y"], {str(tmp_path / "frozen.pb")!r})
        list_output_candidates({models["guide"].prefix!r})
        checkpoint_variables({models["guide"].prefix!r})
        loaded = sorted(name for name in sys.modules if name == "tensorflow" or name.startswith("tensorflow.python"))
        assert not loaded, loaded
        # TensorFlow loaded afterwards re-adds the same descriptors and shares the classes.
        from tasks.freeze_engine import protos
        import tensorflow as tf
        assert tf.compat.v1.GraphDef is protos.graph_pb2.GraphDef
        print(stats.node_count)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip().splitlines()[-1]) > 0


# --- refusing what cannot be frozen correctly ---------------------------------------------------


def test_graph_over_the_limit_fails_before_writing(guide: Model, tmp_path: Path) -> None:
    output = tmp_path / "out" / "frozen.pb"
    output.parent.mkdir()
    with pytest.raises(GraphTooLargeError) as raised:
        freeze_checkpoint(guide.prefix, ["y"], output, max_bytes=100)
    message = str(raised.value)
    assert "2 GiB" in message and "SavedModel" in message and "\n" not in message
    assert not list(output.parent.iterdir())


def test_default_limit_is_protobufs(guide: Model, tmp_path: Path) -> None:
    stats = freeze_checkpoint(guide.prefix, ["y"], tmp_path / "frozen.pb")
    assert stats.bytes_written < 2**31 - 1
    with pytest.raises(ParameterError):
        freeze_checkpoint(guide.prefix, ["y"], tmp_path / "frozen.pb", max_bytes=0)


def _fails_cleanly(
    model: Model, tmp_path: Path, error: type[Exception], *fragments: str, outputs: list[str] | None = None
) -> str:
    output_dir = tmp_path / "out"
    output_dir.mkdir(exist_ok=True)
    with pytest.raises(error) as raised:
        freeze_checkpoint(model.prefix, outputs or model.outputs, output_dir / "frozen.pb")
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not list(output_dir.iterdir()), "nothing may be left behind"
    return message


def _data_file(model: Model) -> Path:
    (path,) = Path(model.prefix).parent.glob(Path(model.prefix).name + ".data-*")
    return path


def _offset_of(model: Model, variable: str) -> int:
    return TensorBundle.read(locate_checkpoint(model.prefix)).source(variable, variable, "").pieces[0].offset


def test_truncated_data_file_names_file_and_variable(guide: Model, tmp_path: Path) -> None:
    data = _data_file(guide)
    data.write_bytes(data.read_bytes()[:-2])
    _fails_cleanly(guide, tmp_path, CheckpointError, str(data), "truncated", "variable '")


def test_flipped_byte_fails_the_crc_check(guide: Model, tmp_path: Path) -> None:
    data = _data_file(guide)
    content = bytearray(data.read_bytes())
    content[_offset_of(guide, "m")] ^= 0x10
    data.write_bytes(bytes(content))
    _fails_cleanly(guide, tmp_path, CheckpointError, str(data), "CRC32C", "variable 'm'")


def test_missing_shard_names_file_and_variable(models: dict[str, Model], tmp_path: Path) -> None:
    model = _copy_model(models["sharded"], tmp_path / "sharded")
    missing = Path(model.prefix + ".data-00001-of-00002")
    missing.unlink()
    _fails_cleanly(model, tmp_path, CheckpointError, str(missing), "missing", "variable 'b'")


def test_index_that_is_not_a_bundle(guide: Model, tmp_path: Path) -> None:
    index = Path(guide.prefix + ".index")
    index.write_bytes(b"this is not a sorted table" * 4)
    _fails_cleanly(guide, tmp_path, CheckpointError, str(index), "not a TensorFlow tensor bundle")


def test_missing_meta_graph(guide: Model, tmp_path: Path) -> None:
    meta = Path(guide.prefix + ".meta")
    meta.unlink()
    _fails_cleanly(guide, tmp_path, CheckpointError, str(meta), "missing")


def test_unknown_output_node_names_nearest_candidates(guide: Model, tmp_path: Path) -> None:
    message = _fails_cleanly(guide, tmp_path, OutputNodeError, "'yy'", "nearest: y", outputs=["yy"])
    assert message.startswith("output node")


def test_assign_reachable_from_outputs_is_refused(models: dict[str, Model], tmp_path: Path) -> None:
    _fails_cleanly(models["assign_on_path"], tmp_path, UnsupportedGraphError, "AssignAddVariableOp", "'counter'")


def test_v1_checkpoint_is_refused(tf: Any, tmp_path: Path) -> None:
    with tf.Graph().as_default():
        tf.identity(tf.compat.v1.Variable(1.0, name="v") * 2.0, name="y")
        saver = tf.compat.v1.train.Saver(write_version=tf.compat.v1.train.SaverDef.V1)
        model = _save(tf, tmp_path / "model", ["y"], [{}], saver=saver)
    _fails_cleanly(model, tmp_path, UnsupportedGraphError, "V1-format", str(tmp_path / "model"))


def test_variable_handle_returned_by_a_function_is_refused(guide: Model, tmp_path: Path) -> None:
    """A ReadVariableOp whose handle comes out of a function call cannot be traced to a variable."""
    meta_path = Path(guide.prefix + ".meta")
    meta = protos.meta_graph_pb2.MetaGraphDef.FromString(meta_path.read_bytes())
    resource, float32 = 20, 1
    function = meta.graph_def.library.function.add()
    function.signature.name = "make_handle"
    function.signature.output_arg.add(name="handle", type=resource)
    handle = function.node_def.add(name="var", op="VarHandleOp")
    handle.attr["dtype"].type = float32
    handle.attr["shape"].shape.SetInParent()
    handle.attr["shared_name"].s = b"hidden"
    function.ret["handle"] = "var:resource:0"
    call = meta.graph_def.node.add(name="call", op="StatefulPartitionedCall")
    call.attr["f"].func.name = "make_handle"
    call.attr["Tin"].list.SetInParent()
    call.attr["Tout"].list.type.append(resource)
    read = meta.graph_def.node.add(name="read", op="ReadVariableOp", input=["call"])
    read.attr["dtype"].type = float32
    meta.graph_def.node.add(name="z", op="Identity", input=["read"]).attr["T"].type = float32
    meta_path.write_bytes(meta.SerializeToString())
    _fails_cleanly(guide, tmp_path, UnsupportedGraphError, "'read'", "call", outputs=["z"])


def test_output_directory_must_exist(guide: Model, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="does not exist"):
        freeze_checkpoint(guide.prefix, ["y"], tmp_path / "absent" / "frozen.pb")
