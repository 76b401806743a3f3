"""The model entrypoint contract, the built-in linear model, and turning a model into a serving function.

An entrypoint is ``package.module:function`` (or ``path/to/file.py:function``). freezeflow calls it
with one :class:`TrainContext` and expects back the model, built, with its variables created:

* a ``keras.Model`` whose input shape is known (built from ``keras.Input``), or
* a ``tf.Module`` whose ``__call__`` (or ``serve``) is a ``tf.function`` with an ``input_signature``
  of exactly one ``tf.TensorSpec``.

The model takes one tensor and returns one tensor. The function trains the model for
``ctx.epochs`` epochs (reporting each epoch's loss with ``ctx.log_loss``); called with
``epochs == 0`` it only builds it. freezeflow calls it that way to rebuild the model's structure
before restoring a TF2 checkpoint into it, so building must not depend on training.

Optional attributes on the returned model name its graph tensors for TF1 checkpoints and frozen
graphs: ``input_name`` (default: the TensorSpec's name, else ``x``) and ``output_name`` (default ``y``).

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from tasks.core.digests import file_sha256, text_sha256
from tasks.core.errors import EntrypointError

if TYPE_CHECKING:
    from tasks.core.records import ModelInterface

DEFAULT_ENTRYPOINT = "tasks.tf.entrypoints:linear_model"


@dataclass
class TrainContext:
    """What an entrypoint receives."""

    epochs: int
    learning_rate: float
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    on_epoch: Optional[Callable[[int, float], None]] = None

    def log_loss(self, epoch: int, loss: float) -> None:
        """Record the loss after ``epoch`` (0-based); it goes to the log and into the run's report."""
        self.losses.append(float(loss))
        if self.on_epoch is not None:
            self.on_epoch(epoch, float(loss))

    def keras_callback(self) -> Any:
        """A Keras callback that reports each epoch's ``loss`` through :meth:`log_loss`."""
        import keras

        ctx = self

        class _LossCallback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
                ctx.log_loss(epoch, (logs or {}).get("loss", float("nan")))

        return _LossCallback()


def linear_model(ctx: TrainContext) -> Any:
    """The guide's model ``y = m*x + b``, fit by gradient descent to synthetic data drawn from ``ctx.seed``.

    Options: ``true_m`` (0.5), ``true_b`` (1.0), ``noise`` (0.0), ``samples`` (64). With the defaults
    the fit converges to the guide's ``m=0.5, b=1.0``.
    """
    import numpy as np
    import tensorflow as tf

    class Linear(tf.Module):
        input_name = "x"
        output_name = "y"

        def __init__(self) -> None:
            super().__init__(name="linear")
            self.m = tf.Variable(0.0, dtype=tf.float32, name="m")
            self.b = tf.Variable(0.0, dtype=tf.float32, name="b")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def __call__(self, x: Any) -> Any:
            return self.m * x + self.b

    model = Linear()
    if ctx.epochs == 0:
        return model
    options = {"true_m": 0.5, "true_b": 1.0, "noise": 0.0, "samples": 64, **ctx.options}
    rng = np.random.default_rng(ctx.seed)
    xs = rng.uniform(-5.0, 5.0, size=int(options["samples"])).astype("float32")
    ys = (options["true_m"] * xs + options["true_b"] + rng.normal(0.0, options["noise"], xs.shape)).astype("float32")
    optimizer = tf.keras.optimizers.SGD(learning_rate=ctx.learning_rate)

    @tf.function
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, [model.m, model.b]), [model.m, model.b]))
        return loss

    for epoch in range(ctx.epochs):
        ctx.log_loss(epoch, float(step(tf.constant(xs), tf.constant(ys))))
    return model


# --- resolving entrypoints -------------------------------------------------------------------


def _split(entrypoint: str) -> tuple[str, str]:
    module, sep, function = entrypoint.rpartition(":")
    if not sep or not module or not function.isidentifier():
        raise EntrypointError(
            f"entrypoint {entrypoint!r} is not of the form package.module:function or path/to/file.py:function"
        )
    return module, function


def locate_entrypoint(entrypoint: str) -> None:
    """Check that an entrypoint is well formed and that its file or module exists, without running it.

    Cheap enough to run before Prefect or TensorFlow start: a module is found (its parent packages are
    imported, the module itself is not), a file is looked for.
    """
    module_name, _ = _split(entrypoint)
    if module_name.endswith(".py"):
        if not Path(module_name).is_file():
            raise EntrypointError(f"entrypoint {entrypoint!r}: file {module_name} does not exist")
        return
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as load_entrypoint does
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # not a package, or not a module path at all
            found = False
        if not found:
            raise EntrypointError(
                f"entrypoint {entrypoint!r} does not import: no module named {name!r}; check the module path and "
                "that its folder is on PYTHONPATH"
            )


def load_entrypoint(entrypoint: str) -> Callable[[TrainContext], Any]:
    """Import the function an entrypoint names; the current folder is importable, as with ``python -m``."""
    module_name, function = _split(entrypoint)
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise EntrypointError(f"entrypoint {entrypoint!r}: file {path} does not exist")
            spec = importlib.util.spec_from_file_location(f"freezeflow_user_{path.stem}", path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except EntrypointError:
        raise
    except Exception as exc:
        raise EntrypointError(
            f"entrypoint {entrypoint!r} does not import: {type(exc).__name__}: {exc}; "
            "check the module path and that its folder is on PYTHONPATH"
        ) from exc
    fn = getattr(module, function, None)
    if not callable(fn):
        raise EntrypointError(f"entrypoint {entrypoint!r}: module {module_name!r} has no function {function!r}")
    return fn


def entrypoint_digest(entrypoint: str) -> str:
    """Digest of the source file that defines the entrypoint, so editing the user's code misses the cache."""
    module_name, _ = _split(entrypoint)
    if module_name.endswith(".py"):
        path: Optional[str] = module_name
    else:
        fn = load_entrypoint(entrypoint)
        path = getattr(sys.modules.get(fn.__module__), "__file__", None)
    if path and Path(path).is_file():
        return file_sha256(path)
    return text_sha256(entrypoint)


def entrypoint_source_digest(entrypoint: str) -> Optional[str]:
    """What :func:`entrypoint_digest` returns, found without importing the entrypoint's module (which may
    import TensorFlow); None when that cannot be told without importing it.

    A ``file.py:function`` entrypoint is its file's digest. A ``package.module:function`` one is its
    module file's digest only when that file itself defines ``function`` at top level, undecorated and
    bound once, no ``import *`` (else ``function.__module__``, whose file :func:`entrypoint_digest` reads, may be another).
    """
    module_name, function = _split(entrypoint)
    if module_name.endswith(".py"):
        return file_sha256(module_name) if Path(module_name).is_file() else None
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as load_entrypoint does
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if not origin or not origin.endswith(".py") or not Path(origin).is_file():
        return None
    import ast

    try:
        tree = ast.parse(Path(origin).read_bytes())
    except (SyntaxError, ValueError):
        return None
    bindings = [node for node in tree.body if function in _bound_names(node) or "*" in _bound_names(node)]
    if len(bindings) != 1 or not isinstance(bindings[0], ast.FunctionDef) or bindings[0].decorator_list:
        return None
    return file_sha256(origin)


def _bound_names(node: Any) -> set[str]:
    """Names a top-level statement binds (definitions, imports, assignments, anything nested in if/try)."""
    import ast

    names: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(child.name)
        elif isinstance(child, ast.alias):
            names.add((child.asname or child.name).split(".")[0])
        elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            names.add(child.id)
    return names


def build_model(entrypoint: str, ctx: TrainContext) -> Any:
    """Call an entrypoint and check that what it returns honours the contract."""
    fn = load_entrypoint(entrypoint)
    try:
        model = fn(ctx)
    except Exception as exc:
        raise EntrypointError(f"entrypoint {entrypoint!r} raised {type(exc).__name__}: {exc}") from exc
    serving_function(model, entrypoint)  # raises EntrypointError when the contract is broken
    return model


# --- the serving function ---------------------------------------------------------------------


def _is_keras(model: Any) -> bool:
    try:
        import keras
    except ImportError:  # pragma: no cover - keras ships with tensorflow
        return False
    return isinstance(model, keras.Model)


def serving_function(model: Any, entrypoint: str = "model") -> Any:
    """A ``tf.function`` with one input TensorSpec that calls ``model``: the model's serving signature."""
    import tensorflow as tf

    if _is_keras(model):
        inputs = getattr(model, "inputs", None)
        if not inputs or len(inputs) != 1:
            raise EntrypointError(
                f"entrypoint {entrypoint!r} returned a Keras model without exactly one known input; "
                "build it from one keras.Input(shape=...)"
            )
        spec = tf.TensorSpec(tuple(inputs[0].shape), inputs[0].dtype, name=_input_name(model, "x"))
        return tf.function(lambda x: model(x), input_signature=[spec])
    if isinstance(model, tf.Module):
        for attr in ("serve", "__call__"):
            fn = getattr(model, attr, None)
            signature = getattr(fn, "input_signature", None)
            if signature is not None:
                if len(signature) != 1 or not isinstance(signature[0], tf.TensorSpec):
                    raise EntrypointError(
                        f"entrypoint {entrypoint!r}: {attr} must take exactly one tf.TensorSpec, got {signature}"
                    )
                return fn
        raise EntrypointError(
            f"entrypoint {entrypoint!r} returned a tf.Module whose __call__ is not a tf.function with an "
            "input_signature; decorate it with @tf.function(input_signature=[tf.TensorSpec(...)])"
        )
    raise EntrypointError(
        f"entrypoint {entrypoint!r} returned {type(model).__name__}, not a keras.Model or tf.Module"
    )


def _input_name(model: Any, default: str) -> str:
    return str(getattr(model, "input_name", None) or default)


def model_interface(model: Any, entrypoint: str = "model") -> "ModelInterface":
    """The graph names, dtypes and shapes of the model's input and output."""
    import tensorflow as tf

    from tasks.core.records import ModelInterface, TensorSpec

    fn = serving_function(model, entrypoint)
    concrete = fn.get_concrete_function()
    spec = concrete.structured_input_signature[0][0]
    outputs = tf.nest.flatten(concrete.structured_outputs)
    if len(outputs) != 1:
        raise EntrypointError(f"entrypoint {entrypoint!r}: the model must return one tensor, it returns {len(outputs)}")
    out = outputs[0]
    return ModelInterface(
        input=TensorSpec(
            name=_input_name(model, spec.name or "x"), dtype=spec.dtype.name, shape=_shape(spec.shape)
        ),
        output=TensorSpec(
            name=str(getattr(model, "output_name", None) or "y"), dtype=out.dtype.name, shape=_shape(out.shape)
        ),
    )


def _shape(shape: Any) -> Optional[tuple[Optional[int], ...]]:
    if shape.rank is None:
        return None
    return tuple(None if d is None else int(d) for d in shape.as_list())


def model_variables(model: Any) -> list[Any]:
    """The model's variables in a stable order, each once."""
    seen: dict[int, Any] = {}
    for var in model.variables:
        seen.setdefault(id(var), var)
    return list(seen.values())


def variable_name(var: Any) -> str:
    """A variable's name without the ``:0`` suffix; Keras 3 variables use their full path."""
    name = getattr(var, "path", None) or var.name
    return name.split(":")[0]
