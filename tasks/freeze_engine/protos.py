"""TensorFlow's protobuf message classes (GraphDef, MetaGraphDef, BundleEntryProto, ...), loaded
without TensorFlow's runtime.

`import tensorflow.core.framework.graph_pb2` first runs `tensorflow/__init__.py`, which loads the
whole runtime (seconds, and hundreds of MiB). The generated `*_pb2.py` files themselves only need
`google.protobuf`, so this module executes them by file location instead, in private module objects
whose `import tensorflow.…_pb2` statements are answered from here.

Why not placeholder packages in `sys.modules`: a placeholder `tensorflow` entry would be returned to
any later `import tensorflow` in the same process (another task of the same flow run, a test), which
would then see an empty package. Nothing here touches `sys.modules`.

Both copies of a module share one descriptor pool entry: if TensorFlow later loads its own copy, the
protobuf runtime accepts the identical serialized file again and hands back the same message classes
(checked by tests/tasks/test_freeze_engine.py). If TensorFlow is already loaded, its modules are
reused as they are.

Use it as `from tasks.freeze_engine import protos; protos.graph_pb2.GraphDef()`: each module is
loaded on first attribute access, so importing this module does no work.
"""

from __future__ import annotations

import builtins
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

# Attribute name here -> dotted module name inside the tensorflow distribution.
_MODULES = {
    "attr_value_pb2": "tensorflow.core.framework.attr_value_pb2",
    "function_pb2": "tensorflow.core.framework.function_pb2",
    "graph_pb2": "tensorflow.core.framework.graph_pb2",
    "node_def_pb2": "tensorflow.core.framework.node_def_pb2",
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "tensor_slice_pb2": "tensorflow.core.framework.tensor_slice_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "variable_pb2": "tensorflow.core.framework.variable_pb2",
    "versions_pb2": "tensorflow.core.framework.versions_pb2",
    "meta_graph_pb2": "tensorflow.core.protobuf.meta_graph_pb2",
    "saver_pb2": "tensorflow.core.protobuf.saver_pb2",
    "saved_model_pb2": "tensorflow.core.protobuf.saved_model_pb2",
    "tensor_bundle_pb2": "tensorflow.core.protobuf.tensor_bundle_pb2",
}

_loaded: dict[str, types.ModuleType] = {}
# Re-entrant: loading one module loads the modules it imports from inside its own execution.
_lock = threading.RLock()


def __getattr__(attr: str) -> types.ModuleType:
    """Loads `protos.<attr>` (one of the generated modules listed in _MODULES) on first use."""
    name = _MODULES.get(attr)
    if name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
    return _load(name)


def _tensorflow_dir() -> Path:
    """The installed tensorflow package directory, found without importing the package."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the freeze engine reads TensorFlow's protobuf definitions: install tensorflow "
            "(the 'tf' extra of freezeflow)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


class _Package:
    """Stands in for a `tensorflow.…` package inside a generated module: `from P import x_pb2`."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> types.ModuleType:
        return _load(f"{self._name}.{attr}")


def _import(
    name: str,
    globals: dict[str, Any] | None = None,
    locals: dict[str, Any] | None = None,
    fromlist: tuple[str, ...] | None = (),
    level: int = 0,
) -> Any:
    """`__import__` for generated modules: tensorflow.* from here, everything else as usual."""
    if level == 0 and (name == "tensorflow" or name.startswith("tensorflow.")):
        if name.endswith("_pb2"):  # `from tensorflow.….x_pb2 import *`
            return _load(name)
        return _Package(name)
    return builtins.__import__(name, globals, locals, fromlist, level)


_builtins = {**vars(builtins), "__import__": _import}


def _load(name: str) -> types.ModuleType:
    existing = sys.modules.get(name)  # TensorFlow already loaded it: share its classes
    if existing is not None:
        return existing
    with _lock:
        module = _loaded.get(name)
        if module is not None:
            return module
        path = _tensorflow_dir().joinpath(*name.split(".")[1:]).with_suffix(".py")
        if not path.is_file():
            raise ImportError(f"TensorFlow's generated module {name} is missing: {path}")
        module = types.ModuleType(name)
        module.__file__ = str(path)
        module.__dict__["__builtins__"] = _builtins
        code = compile(path.read_bytes(), str(path), "exec")
        exec(code, module.__dict__)  # TensorFlow's own generated file, run as an import would run it
        _loaded[name] = module  # only once complete: a failed load is retried, never half-used
        return module
