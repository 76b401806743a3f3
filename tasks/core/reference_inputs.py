"""The batch validation runs through every format: given inline, read from a file (.npy, .npz, JSON),
or generated from the model's input signature with a fixed seed.

Generated inputs follow the input's dtype and shape: unknown dimensions get small sizes (the batch
``batch_size``, any other 4), floats are uniform in [-1, 1), integers that index an embedding stay
below the embedding's row count when the graph shows one (else in [0, 10)), booleans are random,
strings short words. The same seed gives the same batch, so a cached validation stays valid.
No TensorFlow here; NumPy is imported where it is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from tasks.core.errors import ParameterError
from tasks.core.records import ReferenceInputs, TensorSpec

UNKNOWN_DIMENSION = 4
DEFAULT_INTEGER_HIGH = 10
FILE_SUFFIXES = (".npy", ".npz", ".json")
# Ops an integer input passes through on its way to an embedding lookup: reshaping, casting, and the
# index arithmetic layers add (Keras 3's Embedding maps negative ids with SelectV2(x < 0, x + rows, x)).
_VALUE_PRESERVING = frozenset({"Identity", "Cast", "Reshape", "ExpandDims", "Squeeze", "Transpose", "StridedSlice",
                               "Snapshot", "StopGradient", "ConcatV2", "Pack", "Slice", "GatherV2", "SelectV2",
                               "Select", "AddV2", "Add", "Maximum", "Minimum", "FloorMod", "ClipByValue"})
_LOOKUPS = frozenset({"GatherV2", "Gather", "ResourceGather", "GatherNd", "ResourceGatherNd", "SparseSegmentMean",
                      "SparseSegmentSum"})


def describe_reference(values: Optional[list], file: Optional[str], seed: int, batch_size: int) -> ReferenceInputs:
    """The record a validation is keyed on: inline values, a file by its content digest, or a seed."""
    from tasks.core.digests import file_sha256

    if values is not None and file is not None:
        raise ParameterError("give reference inputs inline or as a file (--reference-inputs FILE), not both")
    if file is not None:
        path = Path(file).expanduser().resolve()
        if path.suffix.lower() not in FILE_SUFFIXES:
            raise ParameterError(f"reference inputs file {path}: expected .npy, .npz or .json, got {path.suffix or 'no suffix'!r}")
        if not path.is_file():
            raise ParameterError(f"reference inputs file {path} does not exist")
        return ReferenceInputs(source="file", file=str(path), file_sha256=file_sha256(path))
    if values is not None:
        if not isinstance(values, list) or not values:
            raise ParameterError("reference_inputs must be a non-empty list of instances, e.g. [2.0, 4.0, 6.0]")
        return ReferenceInputs(source="inline", values=values)
    return ReferenceInputs(source="generated", seed=seed, batch_size=batch_size)


def load_file(reference: ReferenceInputs, spec: TensorSpec, input_key: str) -> Any:
    """The batch stored in a .npy, .npz (one array per signature input) or JSON file."""
    import numpy as np

    from tasks.core.digests import file_sha256

    assert reference.file is not None
    path = Path(reference.file)
    if not path.is_file():
        raise ParameterError(f"reference inputs file {path} is gone")
    if file_sha256(path) != reference.file_sha256:
        raise ParameterError(f"reference inputs file {path} changed while the run was using it; run again")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return _one_array(path, dict(archive), spec, input_key)
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:  # allow_pickle=False refuses object arrays with ValueError
        raise ParameterError(f"reference inputs file {path} cannot be read as {suffix[1:]} ({_first(exc)})") from exc
    if isinstance(data, dict):
        for key in ("instances", "inputs"):
            if key in data and isinstance(data[key], list):
                data = data[key]
                break
        else:
            data = _one_array(path, data, spec, input_key)
    if not isinstance(data, list) or not data:
        raise ParameterError(f"reference inputs file {path}: expected a non-empty JSON list of instances")
    return data


def _one_array(path: Path, arrays: dict[str, Any], spec: TensorSpec, input_key: str) -> Any:
    names = [input_key, spec.name, spec.name + ":0"]
    for name in names:
        if name in arrays:
            extra = sorted(set(arrays) - {name})
            if extra:
                raise ParameterError(f"reference inputs file {path} holds arrays {extra} the model has no input for; "
                                     f"it takes one input, {input_key!r}")
            return arrays[name]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise ParameterError(f"reference inputs file {path} holds arrays {sorted(arrays)}; the model's one input is "
                         f"{input_key!r} (graph tensor {spec.name!r}): store one array under that name")


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def generated_shape(spec: TensorSpec, batch_size: int) -> tuple[int, ...]:
    if spec.shape is None:
        return (batch_size,)
    return tuple((batch_size if i == 0 else UNKNOWN_DIMENSION) if d is None else d for i, d in enumerate(spec.shape))


def generate(spec: TensorSpec, seed: int, batch_size: int, integer_high: Optional[int] = None) -> Any:
    """A batch for ``spec`` from a fixed seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = generated_shape(spec, batch_size)
    dtype = spec.dtype
    if dtype.startswith(("float", "bfloat", "half")):
        return rng.uniform(-1.0, 1.0, shape).astype("float32" if dtype == "bfloat16" else dtype)
    if dtype.startswith(("int", "uint")):
        high = integer_high if integer_high else DEFAULT_INTEGER_HIGH
        return rng.integers(0, high, shape).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype == "string":
        words = np.array(["alpha", "beta", "gamma", "delta"], dtype=object)
        return words[rng.integers(0, len(words), shape)]
    raise ParameterError(f"cannot generate reference inputs for input {spec.name!r} of dtype {dtype}: "
                         "pass them with --reference-inputs FILE")


def embedding_rows(graph_def: Any, input_name: str) -> Optional[int]:
    """Rows of the smallest embedding table the input indexes (following it through casts and
    reshapes into a gather's indices), when the graph shows one; None otherwise."""
    nodes = {node.name: node for node in graph_def.node}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph_def.node:
        for index, reference in enumerate(node.input):
            consumers.setdefault(reference.lstrip("^").split(":")[0], []).append((node, index))
    rows: list[int] = []
    seen = {input_name}
    stack = [input_name]
    while stack:
        name = stack.pop()
        for node, index in consumers.get(name, ()):
            if node.op in _LOOKUPS and index == 1 and not (node.op == "GatherV2" and name != node.input[1].split(":")[0]):
                size = _first_dimension(nodes, node.input[0])
                if size:
                    rows.append(size)
                continue
            if node.op in _VALUE_PRESERVING and node.name not in seen:
                seen.add(node.name)
                stack.append(node.name)
    return min(rows) if rows else None


def _first_dimension(nodes: dict[str, Any], reference: str) -> Optional[int]:
    node = nodes.get(reference.lstrip("^").split(":")[0])
    while node is not None and node.op in ("Identity", "ReadVariableOp", "Snapshot") and node.input:
        node = nodes.get(node.input[0].split(":")[0])
    if node is None:
        return None
    if node.op == "Const":
        dims = node.attr["value"].tensor.tensor_shape.dim
        return dims[0].size if dims and dims[0].size > 0 else None
    if node.op in ("VarHandleOp", "VariableV2"):
        dims = node.attr["shape"].shape.dim
        return dims[0].size if dims and dims[0].size > 0 else None
    return None
