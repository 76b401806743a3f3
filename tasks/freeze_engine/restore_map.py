"""Which checkpoint tensor each variable is restored from, read off the graph's own restore ops.

A Saver does not have to save a variable under its name (`Saver(var_list={"key": var})`, a graph
imported under a scope, partitioned variables saved as slices of one tensor). What the checkpoint
holds for a variable is decided by the restore op named in the SaverDef: it runs assign ops whose
value is output i of a RestoreV2 op, and RestoreV2 reads `tensor_names[i]` with
`shape_and_slices[i]`. Following those edges gives the answer TensorFlow itself would use.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from tasks.core.errors import UnsupportedGraphError
from tasks.freeze_engine import graph_names
from tasks.freeze_engine.graph_names import Message

_ASSIGN_OPS = frozenset({"Assign", "AssignVariableOp"})
# Ops that pass the restored tensor on unchanged between RestoreV2 and the assign.
_PASS_THROUGH_OPS = frozenset({"Identity", "Snapshot"})


@dataclass(frozen=True)
class RestoreSpec:
    """The checkpoint tensor a variable is restored from: RestoreV2's tensor name and slice spec
    ("" for the whole tensor)."""

    key: str
    shape_and_slice: str


def restore_specs(
    nodes: Mapping[str, Message], saver_def: Message | None, variable_defs: list[Message]
) -> dict[str, RestoreSpec]:
    """Variable node name -> RestoreSpec, from the SaverDef's restore op; without a SaverDef, from
    the variables collection (each variable under its own name, partitions under their full name),
    which is what a default Saver would have written."""
    restore_op = graph_names.node_name(saver_def.restore_op_name) if saver_def is not None else ""
    if restore_op and restore_op in nodes:
        return _from_restore_op(nodes, restore_op)
    return _from_variable_defs(variable_defs)


def _from_restore_op(nodes: Mapping[str, Message], restore_op: str) -> dict[str, RestoreSpec]:
    specs: dict[str, RestoreSpec] = {}
    seen = {restore_op}
    queue = deque([restore_op])
    while queue:
        node = nodes[queue.popleft()]
        if node.op in _ASSIGN_OPS:
            variable, spec = _assigned(nodes, node)
            specs[variable] = spec
            continue  # the variable's own inputs (initializers) are no part of restoring it
        for name in node.input:
            source = graph_names.node_name(name)
            if source not in seen and source in nodes:
                seen.add(source)
                queue.append(source)
    return specs


def _assigned(nodes: Mapping[str, Message], assign: Message) -> tuple[str, RestoreSpec]:
    variable = graph_names.node_name(assign.input[0])
    source, index = graph_names.parse_input(assign.input[1])
    while source in nodes and nodes[source].op in _PASS_THROUGH_OPS:
        source, index = graph_names.parse_input(nodes[source].input[0])
    restore = nodes.get(source)
    if restore is None or restore.op != "RestoreV2":
        found = "nothing" if restore is None else f"'{source}' ({restore.op})"
        raise UnsupportedGraphError(
            f"restore op '{assign.name}' assigns variable '{variable}' from {found}, not from a "
            "RestoreV2 output: the freeze engine cannot tell which checkpoint tensor it holds"
        )
    names = _string_constant(nodes, restore, 1)
    slices = _string_constant(nodes, restore, 2)
    if index >= len(names) or index >= len(slices):
        raise UnsupportedGraphError(
            f"restore op '{assign.name}' reads output {index} of '{source}', which restores only {len(names)} tensors"
        )
    return variable, RestoreSpec(key=names[index], shape_and_slice=slices[index])


def _string_constant(nodes: Mapping[str, Message], restore: Message, input_index: int) -> list[str]:
    name = graph_names.node_name(restore.input[input_index])
    node = nodes.get(name)
    while node is not None and node.op in _PASS_THROUGH_OPS:
        node = nodes.get(graph_names.node_name(node.input[0]))
    if node is None or node.op != "Const":
        raise UnsupportedGraphError(
            f"restore op '{restore.name}' takes its tensor names from '{name}', which is not a constant"
        )
    return [value.decode("utf-8") for value in node.attr["value"].tensor.string_val]


def _from_variable_defs(variable_defs: list[Message]) -> dict[str, RestoreSpec]:
    specs: dict[str, RestoreSpec] = {}
    for variable_def in variable_defs:
        name = graph_names.node_name(variable_def.variable_name)
        info = variable_def.save_slice_info_def
        if info.full_name:
            full_shape = " ".join(str(dim) for dim in info.full_shape)
            extents = ":".join(
                f"{offset},{length}" for offset, length in zip(info.var_offset, info.var_shape, strict=True)
            )
            specs[name] = RestoreSpec(key=info.full_name, shape_and_slice=f"{full_shape} {extents}")
        else:
            specs[name] = RestoreSpec(key=name, shape_and_slice="")
    return specs
