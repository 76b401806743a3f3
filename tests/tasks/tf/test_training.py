"""Training: the default model converges to the guide's values; user entrypoints honour the contract."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tasks.tf.checkpoints import write_checkpoint
from tasks.core.errors import EntrypointError
from tasks.tf.saved_models import export_saved_model
from tasks.tf.freezing import write_frozen_graph
from tasks.tf.training import train_model
from tasks.tf.validation import require_passed, validate_model


def _values(trained) -> dict[str, float]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(trained.artifact.path(trained.prefix)))
    return {name.split("/")[1]: float(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/") and name.endswith("VARIABLE_VALUE")}


def test_default_model_converges_to_the_guides_values_and_logs_each_epochs_loss() -> None:
    seen: list[tuple[int, float]] = []
    trained = train_model("tasks.tf.entrypoints:linear_model", epochs=200, learning_rate=0.05, seed=0,
                          on_epoch=lambda e, loss: seen.append((e, loss)))
    values = _values(trained)
    assert values["m"] == pytest.approx(0.5, abs=1e-4) and values["b"] == pytest.approx(1.0, abs=1e-4)
    assert len(trained.losses) == 200 and [e for e, _ in seen] == list(range(200))
    assert trained.losses[-1] < trained.losses[0] / 1000
    assert sorted(v.name for v in trained.variables) == ["b", "m"]


def test_same_seed_gives_the_same_model_and_another_seed_another() -> None:
    options = {"noise": 0.3}
    first = train_model("tasks.tf.entrypoints:linear_model", epochs=5, learning_rate=0.05, seed=1, options=options)
    second = train_model("tasks.tf.entrypoints:linear_model", epochs=5, learning_rate=0.05, seed=1, options=options)
    third = train_model("tasks.tf.entrypoints:linear_model", epochs=5, learning_rate=0.05, seed=2, options=options)
    assert first.losses == second.losses and _values(first) == _values(second)
    assert third.losses != first.losses


@pytest.mark.parametrize(
    ("entrypoint", "refs"),
    [("examples.keras_regressor:build", [[1.0, 2.0], [0.5, -1.0]]),
     ("examples.module_regressor:build", [[1.0, 2.0, 3.0]])],
)
@pytest.mark.parametrize("fmt", ["tf1", "tf2"])
def test_keras_and_tf_module_entrypoints_go_through_every_stage(entrypoint: str, refs: list, fmt: str) -> None:
    trained = train_model(entrypoint, epochs=10, learning_rate=0.1, seed=0)
    assert len(trained.losses) == 10
    checkpoint = write_checkpoint(trained, fmt)
    report = validate_model(checkpoint, write_frozen_graph(checkpoint), export_saved_model(checkpoint), refs,
                            rtol=0.0, atol=1e-5)
    require_passed(report)
    assert len(report.predictions[0].outputs) == len(refs)


def _write_module(folder: Path, name: str, body: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(body)
    sys.path.insert(0, str(folder))
    return name


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("no_such_module_xyz:build", r"entrypoint 'no_such_module_xyz:build' does not import: ModuleNotFoundError"),
        ("tasks.tf.entrypoints", r"is not of the form package.module:function"),
        ("tasks.tf.entrypoints:no_such_function", r"module 'tasks.tf.entrypoints' has no function 'no_such_function'"),
        ("missing/file.py:build", r"file missing/file.py does not exist"),
    ],
)
def test_entrypoint_that_does_not_import_is_named(entrypoint: str, message: str) -> None:
    with pytest.raises(EntrypointError, match=message):
        train_model(entrypoint, epochs=1, learning_rate=0.1, seed=0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def build(ctx):\n    return 42\n", r"returned int, not a keras.Model or tf.Module"),
        ("import tensorflow as tf\ndef build(ctx):\n    return tf.Module()\n",
         r"tf.Module whose __call__ is not a tf.function with an input_signature"),
        ("def build(ctx):\n    raise RuntimeError('boom')\n", r"raised RuntimeError: boom"),
    ],
)
def test_entrypoint_returning_the_wrong_thing_is_named(tmp_path: Path, body: str, message: str) -> None:
    name = _write_module(tmp_path / "user", f"user_model_{abs(hash(body))}", body)
    with pytest.raises(EntrypointError, match=message):
        train_model(f"{name}:build", epochs=1, learning_rate=0.1, seed=0)


def test_entrypoint_can_be_a_file_path(tmp_path: Path) -> None:
    source = Path("examples/module_regressor.py").read_text()
    path = tmp_path / "my_model.py"
    path.write_text(source)
    trained = train_model(f"{path}:build", epochs=2, learning_rate=0.1, seed=0)
    assert trained.interface.input.name == "features" and len(trained.losses) == 2
