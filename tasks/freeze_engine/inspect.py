"""What a checkpoint, frozen graph or SavedModel holds: the question users ask before freezing.

Everything is read through the engine's reader, without TensorFlow's runtime, so ``freezeflow
inspect`` answers in a fraction of a second and suggests the outputs ``freeze`` would.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tasks.core import layout
from tasks.core.errors import CheckpointError
from tasks.freeze_engine import dtypes, reader
from tasks.freeze_engine.devices import pinned_nodes
from tasks.freeze_engine.files import resolve_checkpoint_prefix


def _saved_model_folder(path: Path) -> Path | None:
    """A SavedModel folder, or the newest numeric version inside a model folder."""
    if (path / layout.SAVED_MODEL).is_file():
        return path
    if path.is_dir():
        versions = sorted(v for v in (layout.parse_version(p.name) for p in path.iterdir()) if v is not None)
        for version in reversed(versions):
            if (path / str(version) / layout.SAVED_MODEL).is_file():
                return path / str(version)
    return None


def _variables(prefix: Path) -> list[dict[str, Any]]:
    return [{"name": name, "dtype": dtype, "shape": shape} for name, dtype, shape in reader.checkpoint_variables(prefix)]


def _tensor_info(info: Any) -> dict[str, Any]:
    shape = None if info.tensor_shape.unknown_rank else [None if d.size == -1 else d.size for d in info.tensor_shape.dim]
    dtype = dtypes.name(info.dtype) if info.dtype else None  # 0: DT_INVALID (init-op entries)
    return {"name": info.name, "dtype": dtype, "shape": shape}


def inspect_saved_model(folder: Path) -> dict[str, Any]:
    proto = reader.read_saved_model(folder)
    graphs = []
    for meta in proto.meta_graphs:
        graphs.append({
            "tags": list(meta.meta_info_def.tags),
            "signatures": {
                key: {"method": sig.method_name,
                      "inputs": {k: _tensor_info(v) for k, v in sig.inputs.items()},
                      "outputs": {k: _tensor_info(v) for k, v in sig.outputs.items()}}
                for key, sig in meta.signature_def.items()
            },
        })
    variables = []
    index = folder / layout.VARIABLES_PREFIX
    if index.with_suffix(".index").is_file():
        variables = _variables(index)
    return {"kind": "saved_model", "path": str(folder), "meta_graphs": graphs, "variables": variables}


def inspect_frozen_graph(path: Path) -> dict[str, Any]:
    graph_def = reader.read_graph_def(path)
    if not graph_def.node:
        raise CheckpointError(f"{path} holds no graph nodes; is it a frozen graph?")
    ops = Counter(node.op for node in graph_def.node)
    return {
        "kind": "frozen_graph",
        "path": str(path),
        "nodes": len(graph_def.node),
        "ops": dict(ops.most_common()),
        "inputs": reader.input_candidates(graph_def),
        "output_candidates": reader.output_candidates(graph_def),
        "variables_left": [n.name for n in graph_def.node if n.op in ("VariableV2", "VarHandleOp")],
        "device_pins": pinned_nodes(graph_def),
    }


def inspect_checkpoint(path: Path) -> dict[str, Any]:
    prefix = resolve_checkpoint_prefix(path).resolve()
    reader.checkpoint_files(prefix)
    fmt = reader.checkpoint_format(prefix)
    result: dict[str, Any] = {
        "kind": "checkpoint",
        "path": str(prefix),
        "format": fmt,
        "variables": _variables(prefix),
    }
    meta = prefix.with_name(prefix.name + ".meta")
    if fmt == "tf1" and meta.is_file():
        meta_graph = reader.read_meta_graph(meta)
        result["inputs"] = reader.input_candidates(meta_graph)
        result["output_candidates"] = reader.output_candidates(meta_graph)
        result["freeze_engine"] = (
            "TF1 Saver checkpoint: frozen from its .meta graph by freezeflow's streaming engine "
            "(no TensorFlow runtime; --engine tf selects TensorFlow's convert_variables_to_constants)"
        )
    elif fmt == "tf1":
        result["freeze_engine"] = "TF1 checkpoint without .meta: cannot be frozen (the graph is missing)"
    else:
        result["freeze_engine"] = (
            "TF2 object-based checkpoint: frozen with TensorFlow's convert_variables_to_constants_v2; "
            "needs the entrypoint that builds its model"
        )
    return result


def inspect_path(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    saved_model = _saved_model_folder(path)
    if saved_model is not None:
        return inspect_saved_model(saved_model)
    if path.is_file() and path.suffix == ".pb":
        return inspect_frozen_graph(path)
    return inspect_checkpoint(path)
