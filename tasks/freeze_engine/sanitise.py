"""Training graphs made servable: a MetaGraphDef rewrite, without TensorFlow's runtime, that leaves
only what inference needs.

A checkpoint saved from a training script often carries its training machinery in the graph the
outputs read: a ``keras_learning_phase`` / ``is_training`` placeholder choosing the training branch
of every conditional, batch normalisation computing batch statistics (and assigning the moving
averages), dropout masks drawn from random ops, optimiser slots, summaries. Freezing such a graph
either fails (an assign on the output path) or gives a model whose answers depend on the batch and
on chance. :func:`sanitise_meta_graph` rewrites it, each rewrite named in what it returns:

* learning-phase placeholders become ``False`` constants; a ``Switch``/``Merge`` or ``If`` /
  ``StatelessIf`` deciding on them keeps only its inference branch;
* batch normalisation in training mode reads the moving mean and variance instead of the batch's
  (``tf.nn.moments``-based layers such as Keras 3's, and ``FusedBatchNorm*`` with ``is_training``);
  the moving statistics are the variables the layer's update assigns;
* dropout (a ``SelectV2`` or ``Mul`` whose mask comes from a random op) passes its input on;
* the graph is pruned to what the outputs need, with the Saver: optimiser slots, training ops,
  summaries and variables nothing reads leave the graph, its Saver and its collections.

The data files are not touched: the result restores from the same checkpoint.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tasks.freeze_engine import graph_names, protos
from tasks.freeze_engine.graph_names import Message

# Placeholders that switch a graph between training and inference, by their last name component.
LEARNING_PHASE_NAMES = frozenset({"keras_learning_phase", "is_training", "training", "phase_train", "is_train",
                                  "learning_phase", "train_phase"})
_PLACEHOLDERS = frozenset({"Placeholder", "PlaceholderWithDefault", "PlaceholderV2"})
_ASSIGNS = frozenset({"Assign", "AssignVariableOp", "AssignSub", "AssignSubVariableOp", "AssignAdd",
                      "AssignAddVariableOp", "AssignMovingAvg"})
_VARIABLES = frozenset({"VariableV2", "Variable", "VarHandleOp"})
_READS = frozenset({"ReadVariableOp", "Identity"})
_RANDOM = ("RandomUniform", "StatelessRandomUniform", "RandomStandardNormal", "StatelessRandomNormal",
           "TruncatedNormal", "StatelessTruncatedNormal", "RandomUniformInt")
_FUSED_BN = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
_OPTIMIZER_PREFIXES = ("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply")
_VARIABLE_COLLECTIONS = ("variables", "trainable_variables", "model_variables", "local_variables",
                         "moving_average_variables")
_BOOL = 10


@dataclass
class Sanitised:
    """The rewritten MetaGraphDef and, in order, one line per rewrite it holds."""

    meta: Message
    rewrites: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.rewrites)


class _Graph:
    """Nodes by name with their consumers, kept current as the rewrites go."""

    def __init__(self, nodes: Iterable[Message]) -> None:
        self.nodes: dict[str, Message] = {node.name: node for node in nodes}
        self.order = list(self.nodes)

    def consumers(self) -> dict[str, list[tuple[Message, int]]]:
        found: dict[str, list[tuple[Message, int]]] = defaultdict(list)
        for node in self.nodes.values():
            for index, name in enumerate(node.input):
                found[graph_names.node_name(name)].append((node, index))
        return found

    def source(self, reference: str) -> Message | None:
        return self.nodes.get(graph_names.node_name(reference))

    def through_identity(self, reference: str) -> Message | None:
        node = self.source(reference)
        while node is not None and node.op in ("Identity", "Snapshot", "StopGradient") and node.input:
            node = self.source(node.input[0])
        return node

    def add(self, node: Message, before: str | None = None) -> Message:
        self.nodes[node.name] = node
        self.order.insert(self.order.index(before) if before in self.nodes else len(self.order), node.name)
        return node

    def unique(self, name: str) -> str:
        candidate, suffix = name, 1
        while candidate in self.nodes:
            candidate = f"{name}_{suffix}"
            suffix += 1
        return candidate

    def ancestors(self, start: Iterable[str], limit: int = 200) -> set[str]:
        """Nodes reached backwards from `start` through data inputs, not expanding variables, batch
        moments or batch norms (an update reads its own layer's statistics, not those upstream)."""
        seen: set[str] = set()
        queue = deque(graph_names.node_name(name) for name in start)
        while queue and len(seen) < limit:
            name = queue.popleft()
            if name in seen or name not in self.nodes:
                continue
            seen.add(name)
            node = self.nodes[name]
            if node.op in _VARIABLES or node.op in _FUSED_BN or "/moments/" in name:
                continue
            queue.extend(graph_names.node_name(i) for i in node.input if not graph_names.is_control(i))
        return seen

    def rewire(self, old: str, new: str, only: Iterable[Message] | None = None) -> int:
        """Every data input reading tensor `old` now reads `new`; returns how many changed."""
        changed = 0
        targets = only if only is not None else self.nodes.values()
        for node in targets:
            for index, reference in enumerate(node.input):
                if reference == old or (old.endswith(":0") and reference == old[:-2]):
                    node.input[index] = new
                    changed += 1
        return changed


def _layer(name: str) -> str:
    """The layer scope a node belongs to, for messages: 'model/stem_bn_1/moments/mean' -> 'stem_bn_1'."""
    parts = name.split("/")
    for marker in ("moments", "batchnorm", "FusedBatchNormV3", "FusedBatchNorm", "dropout", "stateless_dropout",
                   "SelectV2", "cond"):
        if marker in parts[1:]:
            return "/".join(parts[: parts.index(marker, 1)])
    return "/".join(parts[:-1]) or name


def _variable_of(graph: _Graph, reference: str) -> Message | None:
    """The variable a tensor reads (through ReadVariableOp/Identity/Cast), if any."""
    node = graph.source(reference)
    while node is not None and node.op not in _VARIABLES:
        if node.op not in (*_READS, "Cast", "Snapshot") or not node.input:
            return None
        node = graph.source(node.input[0])
    return node


def _read_node(graph: _Graph, variable: Message, name: str, before: str) -> str:
    """A read of `variable` as a value (a new ReadVariableOp for resources; the ref itself otherwise)."""
    if variable.op != "VarHandleOp":
        return variable.name
    read = protos.node_def_pb2.NodeDef(name=graph.unique(name), op="ReadVariableOp", input=[variable.name])
    read.attr["dtype"].type = variable.attr["dtype"].type
    graph.add(read, before)
    return read.name


def _const_bool(graph: _Graph, name: str, value: bool) -> Message:
    node = protos.node_def_pb2.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = _BOOL
    tensor = node.attr["value"].tensor
    tensor.dtype = _BOOL
    tensor.tensor_shape.SetInParent()
    tensor.bool_val.append(value)
    return node


# --- learning phase ------------------------------------------------------------------------------


def is_learning_phase(node: Message) -> bool:
    """A boolean placeholder named as Keras and TF1 scripts name their training switch."""
    return (node.op in _PLACEHOLDERS and node.name.rsplit("/", 1)[-1] in LEARNING_PHASE_NAMES
            and node.attr["dtype"].type == _BOOL)


def _fold_learning_phase(graph: _Graph, rewrites: list[str]) -> None:
    for name in list(graph.order):
        node = graph.nodes.get(name)
        if node is None or not is_learning_phase(node):
            continue
        folded = _const_bool(graph, name, False)
        graph.nodes[name] = folded
        resolved = _resolve_conditionals(graph)
        rewrites.append(f"learning-phase placeholder '{name}' folded to False"
                        + (f"; {resolved} conditional(s) keep their inference branch" if resolved else ""))


def _constant_bool(graph: _Graph, reference: str, depth: int = 0) -> bool | None:
    node = graph.source(reference)
    if node is None or depth > 20:
        return None
    if node.op == "Const" and node.attr["dtype"].type == _BOOL and node.attr["value"].tensor.bool_val:
        return bool(node.attr["value"].tensor.bool_val[0])
    if node.op in ("Identity", "Snapshot") and node.input:
        return _constant_bool(graph, node.input[0], depth + 1)
    if node.op == "LogicalNot":
        value = _constant_bool(graph, node.input[0], depth + 1)
        return None if value is None else not value
    return None


def _resolve_conditionals(graph: _Graph) -> int:
    """Switch/Merge (v1 cond) and If/StatelessIf (v2 cond) on a constant predicate keep one branch."""
    resolved = 0
    for name in list(graph.order):
        node = graph.nodes.get(name)
        if node is None:
            continue
        if node.op in ("If", "StatelessIf"):
            value = _constant_bool(graph, node.input[0])
            if value is None:
                continue
            branch = node.attr["then_branch" if value else "else_branch"].func
            call = protos.node_def_pb2.NodeDef(name=node.name, op="StatefulPartitionedCall" if node.op == "If"
                                               else "PartitionedCall", input=list(node.input[1:]))
            call.attr["Tin"].CopyFrom(node.attr["Tin"])
            call.attr["Tout"].CopyFrom(node.attr["Tout"])
            call.attr["f"].func.CopyFrom(branch)
            for key in ("config", "config_proto", "executor_type"):
                call.attr[key].s = b""
            if "_read_only_resource_inputs" in node.attr:
                call.attr["_read_only_resource_inputs"].list.i.extend(
                    i - 1 for i in node.attr["_read_only_resource_inputs"].list.i if i >= 1)
            graph.nodes[name] = call
            resolved += 1
    resolved += _resolve_switches(graph)
    return resolved


def _resolve_switches(graph: _Graph) -> int:
    """A Switch on a constant predicate forwards its data to the live output; Merges then take the live
    input. Nodes of the dead branch are left unconsumed and pruned."""
    live_port: dict[str, int] = {}
    for name in graph.order:
        node = graph.nodes[name]
        if node.op in ("Switch", "RefSwitch") and len(node.input) == 2 and node.input[0] != node.input[1]:
            value = _constant_bool(graph, node.input[1])
            if value is not None:
                live_port[name] = 1 if value else 0
    if not live_port:
        return 0
    # Dead: anything reading a switch's dead port, then anything reading a dead node (a Merge only
    # when all its data inputs are dead).
    dead: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in graph.order:
            node = graph.nodes[name]
            if name in dead:
                continue
            data = [i for i in node.input if not graph_names.is_control(i)]
            def is_dead(reference: str) -> bool:
                source, port = graph_names.parse_input(reference)
                if source in live_port:
                    return port != live_port[source]
                return source in dead
            if not data:
                continue
            if node.op in ("Merge", "RefMerge"):
                if all(is_dead(i) for i in data):
                    dead.add(name)
                    changed = True
            elif any(is_dead(i) for i in data):
                dead.add(name)
                changed = True
    resolved = 0
    for name in graph.order:
        node = graph.nodes[name]
        if node.op in ("Merge", "RefMerge") and name not in dead:
            live = [i for i in node.input if not graph_names.is_control(i)
                    and not (graph_names.parse_input(i)[0] in live_port
                             and graph_names.parse_input(i)[1] != live_port[graph_names.parse_input(i)[0]])
                    and graph_names.parse_input(i)[0] not in dead]
            if len(live) == 1:
                node.op = "Identity"
                dtype = node.attr["T"]
                kept = protos.attr_value_pb2.AttrValue()
                kept.CopyFrom(dtype)
                node.ClearField("attr")
                node.attr["T"].CopyFrom(kept)
                del node.input[:]
                node.input.append(live[0])
                resolved += 1
    for name, port in live_port.items():
        switch = graph.nodes[name]
        data = switch.input[0]
        for node in graph.nodes.values():
            for index, reference in enumerate(node.input):
                source, out = graph_names.parse_input(reference.lstrip("^"))
                if source == name and not graph_names.is_control(reference) and out == port:
                    node.input[index] = data
    return resolved


# --- batch normalisation -------------------------------------------------------------------------


def _assigned_from(graph: _Graph, tensor_node: str) -> list[Message]:
    """Variables assigned a value computed from `tensor_node` (a moving-average update)."""
    found = []
    for node in graph.nodes.values():
        if node.op in _ASSIGNS and len(node.input) >= 2:
            if tensor_node in graph.ancestors([node.input[1]]):
                variable = graph.source(node.input[0])
                if variable is not None and variable.op in _VARIABLES:
                    found.append(variable)
    return found


def _batch_norm_to_moving_statistics(graph: _Graph, rewrites: list[str]) -> None:
    """tf.nn.moments-based batch norm (Keras 3, tf.nn.batch_normalization) and FusedBatchNorm in
    training mode: normalise with the moving statistics the layer's update assigns."""
    for name in list(graph.order):
        node = graph.nodes.get(name)
        if node is None:
            continue
        if node.op == "Mean" and name.endswith("/moments/mean"):
            _moments_batch_norm(graph, name, rewrites)
        elif node.op in _FUSED_BN and node.attr["is_training"].b:
            _fused_batch_norm(graph, node, rewrites)


def _moments_batch_norm(graph: _Graph, mean_name: str, rewrites: list[str]) -> None:
    scope = mean_name[: -len("/mean")]
    mean = f"{scope}/Squeeze" if f"{scope}/Squeeze" in graph.nodes else mean_name
    variance = f"{scope}/Squeeze_1" if f"{scope}/Squeeze_1" in graph.nodes else f"{scope}/variance"
    if variance not in graph.nodes:
        return
    from_variance = {v.name for v in _assigned_from(graph, variance)}
    from_mean = [v for v in _assigned_from(graph, mean) if v.name not in from_variance]
    variance_vars = [graph.nodes[v] for v in sorted(from_variance)]
    if len(from_mean) != 1 or len(variance_vars) != 1:
        return  # no moving-average update: moments of a layer norm or of the user's own, not batch norm
    moving_mean, moving_variance = from_mean[0], variance_vars[0]
    consumers = graph.consumers()
    for batch, moving in ((mean, moving_mean), (variance, moving_variance)):
        readers = [node for node, _ in consumers.get(batch, ()) if node.op not in _ASSIGNS]
        first = min((graph.order.index(n.name) for n in readers), default=len(graph.order) - 1)
        read = _read_node(graph, moving, f"{scope}/{moving.name.rsplit('/', 1)[-1]}_inference",
                          graph.order[first])
        value = read if moving.op == "VarHandleOp" else _ref_read(graph, moving, read, graph.order[first])
        dtype = graph.nodes[batch].attr["T"].type if "T" in graph.nodes[batch].attr else None
        if dtype is not None and dtype != moving.attr["dtype"].type:
            cast = protos.node_def_pb2.NodeDef(name=graph.unique(value + "/Cast"), op="Cast", input=[value])
            cast.attr["SrcT"].type = moving.attr["dtype"].type
            cast.attr["DstT"].type = dtype
            cast.attr["Truncate"].b = False
            graph.add(cast, graph.order[first])
            value = cast.name
        graph.rewire(batch, value, readers)
    rewrites.append(f"batch norm '{_layer(mean_name)}' in training mode now normalises with its moving statistics "
                    f"('{moving_mean.name}', '{moving_variance.name}')")


def _ref_read(graph: _Graph, variable: Message, name: str, before: str) -> str:
    read = protos.node_def_pb2.NodeDef(name=graph.unique(f"{variable.name}/read_inference"), op="Identity",
                                       input=[variable.name])
    read.attr["T"].type = variable.attr["dtype"].type
    graph.add(read, before)
    return read.name


def _fused_batch_norm(graph: _Graph, node: Message, rewrites: list[str]) -> None:
    statistics = []
    for port in (1, 2):
        assigned = [v for v in _assigned_from(graph, node.name) if _reads_port(graph, v, node.name, port)]
        if len(assigned) != 1:
            return
        statistics.append(assigned[0])
    reads = [_read_node(graph, v, f"{node.name}/{v.name.rsplit('/', 1)[-1]}_inference", node.name)
             if v.op == "VarHandleOp" else _ref_read(graph, v, "", node.name) for v in statistics]
    node.input[3], node.input[4] = reads
    node.attr["is_training"].b = False
    if "exponential_avg_factor" in node.attr:
        node.attr["exponential_avg_factor"].f = 1.0
    rewrites.append(f"batch norm '{node.name}' ({node.op}) switched from training to inference mode, with its "
                    f"moving statistics ('{statistics[0].name}', '{statistics[1].name}')")


def _reads_port(graph: _Graph, variable: Message, bn: str, port: int) -> bool:
    for node in graph.nodes.values():
        if node.op in _ASSIGNS and graph.source(node.input[0]) is variable:
            ancestors = graph.ancestors([node.input[1]])
            for name in ancestors:
                if any(graph_names.parse_input(i) == (bn, port) for i in graph.nodes[name].input if i):
                    return True
    return False


# --- dropout -------------------------------------------------------------------------------------


def _is_random_mask(graph: _Graph, reference: str) -> bool:
    return any(graph.nodes[n].op.startswith(_RANDOM) for n in graph.ancestors([reference], limit=30))


def _remove_dropout(graph: _Graph, rewrites: list[str]) -> None:
    """SelectV2(mask, x * 1/(1-rate), 0) and x * scale * Cast(mask), with mask from a random op, become x."""
    for name in list(graph.order):
        node = graph.nodes.get(name)
        if node is None or "dropout" not in name.lower():
            continue
        kept: str | None = None
        if node.op in ("SelectV2", "Select") and len(node.input) == 3 and _is_random_mask(graph, node.input[0]):
            kept = _unscaled(graph, node.input[1])
        elif node.op == "Mul" and len(node.input) == 2:
            for mask, value in ((node.input[1], node.input[0]), (node.input[0], node.input[1])):
                if _is_random_mask(graph, mask) and not _is_random_mask(graph, value):
                    kept = _unscaled(graph, value)
                    break
        if kept is None:
            continue
        count = graph.rewire(name + ":0", kept)
        if count:
            rewrites.append(f"dropout '{_layer(name)}' removed")


def _unscaled(graph: _Graph, reference: str) -> str | None:
    """x for a tensor x * (1 / keep_probability); None when it is not such a product."""
    node = graph.source(reference)
    if node is None or node.op not in ("Mul", "RealDiv") or len(node.input) != 2:
        return None
    for value, scale in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        source = graph.through_identity(scale)
        if source is not None and source.op == "Const":
            return value
    return None


# --- pruning -------------------------------------------------------------------------------------


def _needed(graph: _Graph, roots: Iterable[str]) -> set[str]:
    kept: set[str] = set()
    queue = deque(graph_names.node_name(r) for r in roots)
    while queue:
        name = queue.popleft()
        if name in kept or name not in graph.nodes:
            continue
        kept.add(name)
        queue.extend(graph_names.node_name(i) for i in graph.nodes[name].input)
    return kept


def _string_const(graph: _Graph, reference: str) -> Message | None:
    node = graph.through_identity(reference)
    return node if node is not None and node.op == "Const" else None


def _prune_saver(graph: _Graph, saver_def: Message | None, variables: set[str]) -> None:
    """Make the Saver's RestoreV2/SaveV2 ops name only `variables`; others' assigns are dropped."""
    if saver_def is None:
        return
    consumers = graph.consumers()
    for node in list(graph.nodes.values()):
        if node.op == "RestoreV2":
            _prune_restore(graph, node, consumers, variables)
        elif node.op == "SaveV2":
            _prune_save(graph, node, variables)


def _set_strings(const: Message, values: list[bytes]) -> None:
    if "_output_shapes" in const.attr:
        del const.attr["_output_shapes"]
    tensor = const.attr["value"].tensor
    del tensor.string_val[:]
    tensor.string_val.extend(values)
    tensor.tensor_shape.Clear()
    tensor.tensor_shape.dim.add(size=len(values))


def _prune_restore(graph: _Graph, restore: Message, consumers: Mapping[str, list], variables: set[str]) -> None:
    names, slices = _string_const(graph, restore.input[1]), _string_const(graph, restore.input[2])
    if names is None or slices is None:
        return
    # Output index -> the assigns (and pass-through nodes) restoring a variable from it.
    by_port: dict[int, list[Message]] = defaultdict(list)
    for consumer, index in consumers.get(restore.name, ()):
        _, port = graph_names.parse_input(consumer.input[index])
        by_port[port].append(consumer)
    keep = []
    for port in range(len(names.attr["value"].tensor.string_val)):
        chain = list(by_port.get(port, ()))
        assigned = set()
        frontier = list(chain)
        while frontier:
            node = frontier.pop()
            if node.op in _ASSIGNS or node.op == "Assign":
                assigned.add(graph_names.node_name(node.input[0]))
            for c, _ in consumers.get(node.name, ()):
                if c.op in ("Identity", "Snapshot", *_ASSIGNS) and c not in chain:
                    chain.append(c)
                    frontier.append(c)
        if assigned & variables:
            keep.append(port)
        else:
            for node in chain:
                graph.nodes.pop(node.name, None)
    _keep_entries(restore, names, slices, keep)
    if "_output_shapes" in restore.attr:
        del restore.attr["_output_shapes"]
    renumber = {old: new for new, old in enumerate(keep)}
    for node in graph.nodes.values():
        for index, reference in enumerate(node.input):
            if graph_names.is_control(reference):
                continue
            source, port = graph_names.parse_input(reference)
            if source == restore.name and port in renumber:
                node.input[index] = restore.name if renumber[port] == 0 else f"{restore.name}:{renumber[port]}"
    _drop_dangling_controls(graph)


def _keep_entries(op: Message, names: Message, slices: Message, keep: list[int]) -> None:
    """Keep only the ``keep`` positions of a SaveV2/RestoreV2's tensor names, slice specs and dtypes."""
    old_names = list(names.attr["value"].tensor.string_val)
    old_slices = list(slices.attr["value"].tensor.string_val)
    _set_strings(names, [old_names[j] for j in keep])
    _set_strings(slices, [old_slices[j] for j in keep])
    dtypes = list(op.attr["dtypes"].list.type)
    del op.attr["dtypes"].list.type[:]
    op.attr["dtypes"].list.type.extend(dtypes[j] for j in keep)


def _prune_save(graph: _Graph, save: Message, variables: set[str]) -> None:
    names, slices = _string_const(graph, save.input[1]), _string_const(graph, save.input[2])
    if names is None or slices is None:
        return
    tensors = list(save.input[3:])
    keep = [j for j, reference in enumerate(tensors)
            if (v := _variable_of(graph, reference)) is not None and v.name in variables]
    _keep_entries(save, names, slices, keep)
    head = list(save.input[:3])
    controls = [i for i in save.input[3:] if graph_names.is_control(i)]
    del save.input[:]
    save.input.extend([*head, *(tensors[j] for j in keep), *controls])


def _drop_dangling_controls(graph: _Graph) -> None:
    for node in graph.nodes.values():
        kept = [i for i in node.input if graph_names.node_name(i) in graph.nodes]
        if len(kept) != len(node.input):
            del node.input[:]
            node.input.extend(kept)


def _variable_defs(meta: Message, key: str) -> list[Message]:
    collection = meta.collection_def.get(key)
    if collection is None:
        return []
    return [protos.variable_pb2.VariableDef.FromString(raw) for raw in collection.bytes_list.value]


def _prune(meta: Message, graph: _Graph, outputs: Sequence[str], rewrites: list[str]) -> None:
    saver_def = meta.saver_def if meta.HasField("saver_def") else None
    before_variables = {n.name for n in graph.nodes.values() if n.op in _VARIABLES}
    needed = _needed(graph, outputs)
    variables = {name for name in needed if graph.nodes[name].op in _VARIABLES}
    _prune_saver(graph, saver_def, variables)
    roots = list(outputs)
    if saver_def is not None:
        roots += [saver_def.restore_op_name, saver_def.save_tensor_name, saver_def.filename_tensor_name]
    defs = [d for d in _variable_defs(meta, "variables") if graph_names.node_name(d.variable_name) in variables]
    for variable_def in defs:  # import_meta_graph rebuilds each Variable from these nodes
        roots += [variable_def.initializer_name, variable_def.snapshot_name, variable_def.initial_value_name]
    # The placeholders a graph is fed through stay, even those the outputs no longer read.
    keep = _needed(graph, [r for r in roots if r])
    dropped_variables = before_variables - variables
    slots = sorted(v for v in dropped_variables if _is_optimiser_state(graph, v))
    training_ops = sorted(n for n in graph.nodes if n not in keep and graph.nodes[n].op.startswith(_OPTIMIZER_PREFIXES))
    summaries = sorted(n for n in graph.nodes if n not in keep and "Summary" in graph.nodes[n].op)
    if slots or training_ops:
        rewrites.append(f"optimiser pruned: {len(slots)} slot/state variable(s) (e.g. {', '.join(slots[:3]) or '-'}) "
                        f"and {len(training_ops)} update op(s)")
    if summaries:
        rewrites.append(f"{len(summaries)} summary op(s) pruned ({', '.join(summaries[:3])})")
    others = sorted(dropped_variables - set(slots))
    if others and rewrites:
        rewrites.append(f"{len(others)} variable(s) the outputs do not read pruned (e.g. {', '.join(others[:3])})")
    kept_nodes = [graph.nodes[name] for name in graph.order if name in keep]
    graph_def = meta.graph_def
    del graph_def.node[:]
    graph_def.node.extend(kept_nodes)
    names = {n.name for n in kept_nodes}
    for key in list(meta.collection_def):
        collection = meta.collection_def[key]
        if key in _VARIABLE_COLLECTIONS:
            kept_defs = [d for d in _variable_defs(meta, key) if graph_names.node_name(d.variable_name) in names]
            del collection.bytes_list.value[:]
            collection.bytes_list.value.extend(d.SerializeToString() for d in kept_defs)
            if not kept_defs:
                del meta.collection_def[key]
        elif collection.WhichOneof("kind") == "node_list":
            kept_names = [n for n in collection.node_list.value if graph_names.node_name(n) in names]
            del collection.node_list.value[:]
            collection.node_list.value.extend(kept_names)
            if not kept_names:
                del meta.collection_def[key]
        elif collection.WhichOneof("kind") == "bytes_list":
            del meta.collection_def[key]  # control-flow contexts, summaries' protos: training-side records


def _is_optimiser_state(graph: _Graph, variable: str) -> bool:
    for node in graph.nodes.values():
        if node.op.startswith(_OPTIMIZER_PREFIXES) and any(graph_names.node_name(i) == variable for i in node.input):
            return True
    last = variable.rsplit("/", 1)[-1]
    return last in ("beta1_power", "beta2_power", "global_step", "iterations") or last.startswith(("Adam", "Momentum",
                                                                                                   "RMSProp", "Adagrad"))


def sanitise_meta_graph(meta: Message, outputs: Sequence[str]) -> Sanitised:
    """The inference graph of `meta` for `outputs`, and the rewrites that made it (empty: nothing to do)."""
    copy = protos.meta_graph_pb2.MetaGraphDef()
    copy.CopyFrom(meta)
    graph = _Graph(copy.graph_def.node)
    rewrites: list[str] = []
    _fold_learning_phase(graph, rewrites)
    _batch_norm_to_moving_statistics(graph, rewrites)
    _remove_dropout(graph, rewrites)
    needs_prune = bool(rewrites) or _has_training_machinery(graph)
    if needs_prune:
        _prune(copy, graph, [graph_names.node_name(o) for o in outputs], rewrites)
    return Sanitised(meta=copy, rewrites=rewrites)


def _has_training_machinery(graph: _Graph) -> bool:
    return any(node.op.startswith(_OPTIMIZER_PREFIXES) or "Summary" in node.op for node in graph.nodes.values())
