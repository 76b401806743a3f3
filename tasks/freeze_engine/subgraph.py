"""The part of a graph that output nodes need: nodes reached through data and control inputs, the
library functions those nodes call (transitively), and which nodes could serve as outputs."""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from tasks.core.errors import OutputNodeError, ParameterError
from tasks.freeze_engine import graph_names
from tasks.freeze_engine.graph_names import Message

_SAVER_OPS = frozenset({"SaveV2", "SaveSlices", "Save", "RestoreV2", "RestoreSlice", "Restore", "MergeV2Checkpoints"})
# Ops that are never a model's output: bookkeeping of variables, saving, feeding.
_MACHINERY_OPS = frozenset(
    {
        "NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "PlaceholderV2",
        "Variable", "VariableV2", "VarHandleOp", "VarIsInitializedOp", "IsVariableInitialized",
        "ShardedFilename", "StringJoin",
    }
) | _SAVER_OPS  # fmt: skip
# Ops that change state: training updates and initialisation.
_STATE_CHANGING_PREFIXES = (
    "Assign", "Apply", "SparseApply", "ResourceApply", "ResourceSparseApply", "Scatter", "ResourceScatter",
)  # fmt: skip
_OPTIMIZER_PREFIXES = ("Apply", "SparseApply", "ResourceApply", "ResourceSparseApply")
_RESOURCE = 20  # DataType DT_RESOURCE
_VARIABLE_OPS = frozenset({"Variable", "VariableV2", "VarHandleOp"})  # rewrite.VARIABLE_OPS (kept import-free)
_PLACEHOLDER_OPS = frozenset({"Placeholder", "PlaceholderWithDefault", "PlaceholderV2"})
_MACHINERY_COLLECTIONS = ("train_op", "init_op", "local_init_op", "ready_op", "ready_for_local_init_op", "summary_op")


def changes_state(op: str) -> bool:
    return op.startswith(_STATE_CHANGING_PREFIXES) or op in {"CountUpTo", "ResourceCountUpTo", "DestroyResourceOp"}


def output_node_names(
    nodes: Mapping[str, Message],
    outputs: Sequence[str],
    candidates: Callable[[], Sequence[str]],
    where: str = "the checkpoint's graph",
) -> list[str]:
    """The node names of the requested outputs (`y` or `y:0`), or OutputNodeError naming the first
    unknown one, the graph it is not in (`where`), and the nearest names the graph holds (or,
    failing any, its output candidates). This is the one wording of that error."""
    if isinstance(outputs, str) or not outputs:
        raise ParameterError("output_nodes must be a non-empty list of node names, e.g. ['y']")
    names = []
    for output in outputs:
        name = graph_names.node_name(output)
        if name not in nodes:
            nearest = difflib.get_close_matches(name, list(nodes), n=3) or list(candidates())[:5]
            hint = f"nearest: {', '.join(nearest)}" if nearest else "the graph holds no candidate outputs"
            raise OutputNodeError(f"output node '{name}' is not in {where} ({hint})")
        if nodes[name].op in _VARIABLE_OPS:
            # Frozen, a variable is a constant: the "model" would answer the same whatever it is fed.
            likely = ", ".join(list(candidates())[:5]) or "none"
            raise OutputNodeError(
                f"output node '{name}' is a variable ({nodes[name].op}), so its value does not depend on the "
                f"inputs; name the node that computes the output (candidates: {likely})")
        if name not in names:
            names.append(name)
    return names


def needed_nodes(nodes: Mapping[str, Message], outputs: Iterable[str]) -> set[str]:
    """Every node the outputs reach through data and control inputs (as extract_sub_graph keeps)."""
    kept = set(outputs)
    queue = deque(kept)
    while queue:
        for name in nodes[queue.popleft()].input:
            source = graph_names.node_name(name)
            if source not in kept and source in nodes:
                kept.add(source)
                queue.append(source)
    return kept


def function_references(node: Message, library: Mapping[str, Message]) -> Iterator[str]:
    """Names of the library functions a node calls: by op name or through func attributes."""
    if node.op in library:
        yield node.op
    yield from _attr_functions(node.attr.values())


def _attr_functions(values: Iterable[Message]) -> Iterator[str]:
    for value in values:
        kind = value.WhichOneof("value")
        if kind == "func":
            yield value.func.name
            yield from _attr_functions(value.func.attr.values())
        elif kind == "list":
            for func in value.list.func:
                yield func.name
                yield from _attr_functions(func.attr.values())


def called_functions(roots: Iterable[Message], library: Mapping[str, Message]) -> list[str]:
    """Library functions the root nodes call, transitively, in first-reached order."""
    order: list[str] = []
    seen: set[str] = set()
    queue = deque(name for node in roots for name in function_references(node, library))
    while queue:
        name = queue.popleft()
        if name in seen or name not in library:
            continue
        seen.add(name)
        order.append(name)
        for node in library[name].node_def:
            queue.extend(function_references(node, library))
    return order


def output_candidates(graph_def: Message, saver_def: Message | None, collections: Mapping[str, Message]) -> list[str]:
    """Nodes that nothing else consumes once saving, restoring, initialisation and training
    updates are set aside, in graph order: the likely model outputs."""
    nodes = graph_def.node
    machinery = _machinery(nodes, saver_def, collections)
    consumed: set[str] = set()
    for node in nodes:
        if node.name not in machinery:
            consumed.update(graph_names.node_name(name) for name in node.input)
    return [node.name for node in nodes if node.name not in machinery and node.name not in consumed]


def input_candidates(graph_def: Message, saver_def: Message | None, collections: Mapping[str, Message]) -> list[str]:
    """Placeholders that the model reads (not only saving or training machinery), in graph order:
    the likely model inputs."""
    nodes = graph_def.node
    machinery = _machinery(nodes, saver_def, collections)
    read = {graph_names.node_name(name) for node in nodes if node.name not in machinery for name in node.input}
    return [node.name for node in nodes if node.op in _PLACEHOLDER_OPS and node.name in read]


def _machinery(nodes: Iterable[Message], saver_def: Message | None, collections: Mapping[str, Message]) -> set[str]:
    scopes = set()
    if saver_def is not None and "/" in saver_def.restore_op_name:
        scopes.add(saver_def.restore_op_name.rsplit("/", 1)[0] + "/")  # e.g. "save/"
    named = {
        graph_names.node_name(name)
        for key in _MACHINERY_COLLECTIONS
        if key in collections
        for name in collections[key].node_list.value
    }
    machinery = set(named)
    for node in nodes:
        if node.op.startswith(_OPTIMIZER_PREFIXES) and "/" in node.name:
            scopes.add(node.name.split("/", 1)[0] + "/")  # an optimizer's scope, e.g. "Adam/"
        if node.op in _SAVER_OPS and "/" in node.name:
            scopes.add(node.name.rsplit("/", 1)[0] + "/")  # any other saver's, e.g. "save_1/"
    by_name = {node.name: node for node in nodes}
    for node in nodes:
        parts = node.name.split("/")
        if (
            node.op in _MACHINERY_OPS
            or changes_state(node.op)
            or node.name.startswith(tuple(scopes))
            or any(part in ("gradients", "Initializer") or part.startswith("gradients_") for part in parts[:-1])
            or node.name in ("init", "init_all_tables", "report_uninitialized_variables")
            or _is_bookkeeping(node, by_name)
        ):
            machinery.add(node.name)
    return machinery


def _is_bookkeeping(node: Message, nodes: Mapping[str, Message]) -> bool:
    """Nodes TensorFlow adds around variables and control flow that nobody need consume: a resource
    variable's `<var>/Read/ReadVariableOp`, a v1 cond's pivots (`Switch(pred, pred)` and its
    `switch_t`/`switch_f`), a v2 while loop's outputs for its counters and for the variable handles
    it carries."""
    if not node.input:
        return False
    source_name, index = graph_names.parse_input(node.input[0])
    source = nodes.get(source_name)
    if node.op == "Switch":
        return len(node.input) == 2 and node.input[0] == node.input[1]
    if source is None or node.op not in ("ReadVariableOp", "Identity"):
        return False
    if node.op == "ReadVariableOp":
        return node.name.endswith("/Read/ReadVariableOp") and source.op == "VarHandleOp"
    if source.op == "Switch":
        return node.name.rsplit("/", 1)[-1] in ("switch_t", "switch_f")
    if source.op in ("While", "StatelessWhile"):
        types = source.attr["T"].list.type
        return index < 2 or (index < len(types) and types[index] == _RESOURCE)
    return False
