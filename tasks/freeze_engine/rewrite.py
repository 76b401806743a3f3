"""Rewriting the needed subgraph so that every variable the outputs read becomes a constant.

A variable node becomes a `Const` whose value the writer streams from the checkpoint. What reads
it changes with it, as `tf.compat.v1.graph_util.convert_variables_to_constants` does:

* ref variables (`VariableV2`, `Variable`): their reads (`Identity`) already take a value; ref
  forwarding ops (`RefSwitch`, `RefEnter`, ...) lose their `Ref`; ops that assign refuse.
* resource variables (`VarHandleOp`): the handle's type changes to the variable's dtype along
  every forwarding op (`Identity`, `Switch`, `Enter`, `Merge`, ...), each losing the `_output_shapes`
  it had as a scalar handle; `ReadVariableOp` becomes `Identity`, `ResourceGather` becomes
  `GatherV2`, `ResourceGatherNd` becomes `GatherNd`, `VariableShape` becomes `Shape`.
* a handle passed to a function (`If`, `While`, `Case`, `PartitionedCall`, a direct call) makes a
  value-typed copy of that function, named `<function>_frozen`, whose body is rewritten the same
  way; inside a body, an `Identity` made from a `ReadVariableOp` answers to `:output:`, not
  `:value:`, so every reference to it is renamed. A `While` body hands the value on unchanged.

Anything else that touches a variable (an assign, an optimizer update, a handle a function
returns, a read of a handle that no variable of the graph provides) raises UnsupportedGraphError
naming the node: such a graph cannot be frozen into a correct one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from tasks.core.errors import UnsupportedGraphError
from tasks.freeze_engine import dtypes, graph_names, protos
from tasks.freeze_engine.graph_names import Message
from tasks.freeze_engine.subgraph import called_functions, changes_state

REF_VARIABLE_OPS = frozenset({"VariableV2", "Variable"})
VARIABLE_OPS = REF_VARIABLE_OPS | {"VarHandleOp"}

_FORWARDING_OPS = frozenset({"Identity", "Enter", "Switch", "Merge", "Exit", "NextIteration", "_SwitchN"})
_REF_FORWARDING_OPS = {
    "RefIdentity": "Identity",
    "RefEnter": "Enter",
    "RefSwitch": "Switch",
    "RefMerge": "Merge",
    "RefExit": "Exit",
    "RefNextIteration": "NextIteration",
}
# Op -> (index of the first input passed to the functions, attr typing those inputs, func attrs).
_CALLERS: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "If": (1, "Tin", ("then_branch", "else_branch")),
    "StatelessIf": (1, "Tin", ("then_branch", "else_branch")),
    "Case": (1, "Tin", ("branches",)),
    "StatelessCase": (1, "Tin", ("branches",)),
    "While": (0, "T", ("cond", "body")),
    "StatelessWhile": (0, "T", ("cond", "body")),
    "PartitionedCall": (0, "Tin", ("f",)),
    "StatefulPartitionedCall": (0, "Tin", ("f",)),
}
_WHILE_OPS = frozenset({"While", "StatelessWhile"})
# Ops that use a variable's handle; any left after the rewrite reads a variable that is not frozen.
_HANDLE_OPS = frozenset({"ReadVariableOp", "ResourceGather", "ResourceGatherNd", "VariableShape", "VarIsInitializedOp"})


@dataclass(frozen=True)
class Value:
    """The value of a variable, flowing where its handle (or ref) used to."""

    variable: str
    dtype: int
    shape: tuple[int, ...]


class _Scope:
    """The nodes of the main graph or of one function body, and who consumes what."""

    def __init__(self, nodes: list[Message], function: Message | None) -> None:
        self.function = function
        self.nodes: dict[str, Message] = {node.name: node for node in nodes}
        self.position = {node.name: index for index, node in enumerate(nodes)}
        self.consumers: dict[str, list[tuple[Message, int]]] = defaultdict(list)
        for node in nodes:
            for index, name in enumerate(node.input):
                if not graph_names.is_control(name):
                    self.consumers[graph_names.node_name(name)].append((node, index))
        # Node or argument name -> (value its outputs now carry instead of a handle, index of the
        # function argument it came from); (While node, output index) -> the same for loop outputs.
        self.carriers: dict[str, tuple[Value, int]] = {}
        self.loop_carriers: dict[tuple[str, int], tuple[Value, int]] = {}
        # Function-calling node name -> {input index: (value, root)}, handled once the scope is rewritten.
        self.pending_calls: dict[str, dict[int, tuple[Value, int]]] = {}
        self.done_calls: set[str] = set()
        # New nodes, each to be placed before the named node (main graph) or appended (function).
        self.added: list[tuple[str, Message]] = []

    @property
    def where(self) -> str:
        return f" in function '{self.function.signature.name}'" if self.function is not None else ""

    def output_ref(self, node: str, output: int) -> str:
        """How an input names output `output` of `node` in this scope (single-output ops)."""
        return f"{node}:output:{output}" if self.function is not None else (node if output == 0 else f"{node}:{output}")

    def carries(self, source: str, reference: str, only_output: int | None) -> bool:
        """Whether `reference` (an input naming `source`) reads an output that carries the value."""
        if self.function is not None:
            _, output_name, index = graph_names.function_output(reference)
            if only_output is not None:
                return output_name == "output" and index == only_output
            source_node = self.nodes.get(source)
            return not (source_node is not None and source_node.op == "Merge" and output_name == "value_index")
        _, index = graph_names.parse_input(reference)
        if only_output is not None:
            return index == only_output
        source_node = self.nodes.get(source)
        return not (source_node is not None and source_node.op == "Merge" and index == 1)

    def carried(self, reference: str) -> tuple[Value, int] | None:
        """The (value, root) that a function body reference reads, if it reads a frozen variable."""
        source, output_name, index = graph_names.function_output(reference)
        if (source, index) in self.loop_carriers and output_name == "output":
            return self.loop_carriers[(source, index)]
        if source in self.carriers and self.carries(source, reference, None):
            return self.carriers[source]
        return None


@dataclass
class Rewrite:
    """The rewritten graph: nodes in order (variables as Const NodeDefs without their value) and
    the library functions they call, transitively (originals not copied, frozen copies)."""

    nodes: list[Message]
    functions: list[Message]


class _Rewriter:
    """Spreads values from variables to their consumers, and makes the frozen function copies."""

    def __init__(self, library: Mapping[str, Message]) -> None:
        self.library = library
        self.variants: dict[str, Message] = {}
        self._variant_names: dict[tuple[object, ...], str] = {}

    # --- propagation -------------------------------------------------------------------------

    def spread(
        self, scope: _Scope, source: str, value: Value, root: int, ref: bool, only_output: int | None = None
    ) -> None:
        """Rewrites everything that consumes `source`'s handle (or ref) to consume the value."""
        stack = [(source, only_output)]
        while stack:
            current, only = stack.pop()
            for consumer, index in list(scope.consumers.get(current, ())):
                if not scope.carries(current, consumer.input[index], only):
                    continue
                if self._consume(scope, consumer, index, value, root, ref):
                    stack.append((consumer.name, None))

    def _consume(self, scope: _Scope, node: Message, index: int, value: Value, root: int, ref: bool) -> bool:
        """Rewrites one consumer; True if it now forwards the value to its own consumers."""
        op = node.op
        if ref:  # the Const already has the type a read of the ref has: only mutation matters
            if op in _REF_FORWARDING_OPS:
                node.op = _REF_FORWARDING_OPS[op]
                if node.name in scope.carriers:
                    return False
                scope.carriers[node.name] = (value, root)
                return True
            if changes_state(op):
                raise _changes_variable(scope, node, value)
            return False
        if op in _FORWARDING_OPS:
            if node.name in scope.carriers:
                return False
            if "T" in node.attr:
                node.attr["T"].type = value.dtype
            _drop(node, "_output_shapes")  # it described the scalar handle
            scope.carriers[node.name] = (value, root)
            return True
        if op == "ReadVariableOp":
            self._read_to_identity(scope, node, value)
        elif op == "ResourceGather":
            self._gather_to_gather_v2(scope, node, value)
        elif op == "ResourceGatherNd":
            _retype(node, "GatherNd", {"Tparams": _type_attr(value.dtype), "Tindices": node.attr["Tindices"]})
        elif op == "VariableShape":
            _retype(node, "Shape", {"T": _type_attr(value.dtype), "out_type": node.attr["out_type"]})
        elif op in _CALLERS or op in self.library:
            if node.name in scope.done_calls:
                raise UnsupportedGraphError(
                    f"node '{node.name}'{scope.where} receives variable '{value.variable}' through a "
                    "loop output after its other variables were frozen: the freeze engine does not support this"
                )
            scope.pending_calls.setdefault(node.name, {})[index] = (value, root)
        elif changes_state(op):
            raise _changes_variable(scope, node, value)
        else:
            raise UnsupportedGraphError(
                f"node '{node.name}' ({op}){scope.where} takes the handle of variable "
                f"'{value.variable}', which the freeze engine cannot turn into a use of its value"
            )
        return False

    def _read_to_identity(self, scope: _Scope, node: Message, value: Value) -> None:
        _retype(node, "Identity", {"T": _type_attr(value.dtype)})
        if scope.function is None:
            return
        # Identity's output argument is `output`, ReadVariableOp's was `value`.
        old, new = f"{node.name}:value", f"{node.name}:output"
        for consumer, index in scope.consumers.get(node.name, ()):
            reference = consumer.input[index]
            if reference == old or reference.startswith(old + ":"):
                consumer.input[index] = new + reference[len(old) :]
        for key, reference in list(scope.function.ret.items()):
            if reference == old or reference.startswith(old + ":"):
                scope.function.ret[key] = new + reference[len(old) :]

    def _gather_to_gather_v2(self, scope: _Scope, node: Message, value: Value) -> None:
        # ResourceGather(batch_dims=b) gathers along axis b: GatherV2 needs that axis as an input.
        batch_dims = node.attr["batch_dims"].i if "batch_dims" in node.attr else 0
        index_type = node.attr["Tindices"].type
        axis_name = _unique(f"{node.name}/axis", scope.nodes)
        axis = protos.node_def_pb2.NodeDef(name=axis_name, op="Const")
        axis.attr["dtype"].type = index_type
        tensor = axis.attr["value"].tensor
        tensor.dtype = index_type
        tensor.tensor_shape.SetInParent()
        (tensor.int64_val if index_type == 9 else tensor.int_val).append(batch_dims)
        scope.nodes[axis_name] = axis
        scope.added.append((node.name, axis))
        data = list(node.input[:2])
        controls = [name for name in node.input if graph_names.is_control(name)]
        attrs = {"Tparams": _type_attr(value.dtype), "Tindices": node.attr["Tindices"], "Taxis": _type_attr(index_type)}
        if batch_dims:
            attrs["batch_dims"] = node.attr["batch_dims"]
        _retype(node, "GatherV2", attrs)
        del node.input[:]
        node.input.extend([*data, scope.output_ref(axis_name, 0), *controls])

    # --- functions ---------------------------------------------------------------------------

    def finish_calls(self, scope: _Scope) -> None:
        """Gives each function-calling node that received values a value-typed copy of its
        functions; a While's outputs then carry the values on."""
        while scope.pending_calls:
            # In graph order: a While's outputs may add values to calls further down.
            name = min(scope.pending_calls, key=lambda pending: scope.position.get(pending, -1))
            self._call_frozen(scope, scope.nodes[name], scope.pending_calls.pop(name))
            scope.done_calls.add(name)

    def _call_frozen(self, scope: _Scope, node: Message, received: dict[int, tuple[Value, int]]) -> None:
        first, type_attr, func_attrs = _CALLERS.get(node.op, (0, "", ()))
        inputs = {index: value for index, (value, _) in received.items()}
        for index, value in inputs.items():
            if index < first:
                raise UnsupportedGraphError(
                    f"node '{node.name}' ({node.op}){scope.where} branches on the handle of variable '{value.variable}'"
                )
        args = {index - first: value for index, value in inputs.items()}
        is_while = node.op in _WHILE_OPS
        for attr_name in func_attrs:
            attr = node.attr[attr_name]
            funcs = [attr.func] if attr.HasField("func") else list(attr.list.func)
            for func in funcs:
                func.name = self._frozen_function(func.name, args, is_while and attr_name == "body", node, scope)
        if node.op in self.library:  # a direct call: the op is the function's name
            node.op = self._frozen_function(node.op, args, False, node, scope)
        if type_attr:
            types = node.attr[type_attr].list.type
            for arg, value in args.items():
                types[arg] = value.dtype
        if "_read_only_resource_inputs" in node.attr:
            kept = [i for i in node.attr["_read_only_resource_inputs"].list.i if i not in inputs]
            del node.attr["_read_only_resource_inputs"].list.i[:]
            node.attr["_read_only_resource_inputs"].list.i.extend(kept)
        if is_while:  # output k of a While is its loop variable k: now the value
            for arg, value in args.items():
                for shapes_attr in ("output_shapes", "_output_shapes"):
                    if shapes_attr in node.attr and arg < len(node.attr[shapes_attr].list.shape):
                        _set_shape(node.attr[shapes_attr].list.shape[arg], value.shape)
                root = received[arg][1]
                scope.loop_carriers[(node.name, arg)] = (value, root)
                self.spread(scope, node.name, value, root, ref=False, only_output=arg)

    def _frozen_function(
        self, name: str, args: dict[int, Value], passes_through: bool, caller: Message, scope: _Scope
    ) -> str:
        """The name of the copy of function `name` whose arguments `args` are values, not handles;
        `passes_through`: a While body, which returns loop variable k as its output k."""
        original = self.library.get(name)
        if original is None:
            raise UnsupportedGraphError(
                f"node '{caller.name}'{scope.where} calls function '{name}', which the graph's library lacks"
            )
        key = (name, passes_through, tuple((arg, value.dtype, value.shape) for arg, value in sorted(args.items())))
        if key in self._variant_names:
            return self._variant_names[key]
        frozen_name = _unique(f"{name}_frozen", {**self.library, **self.variants})
        self._variant_names[key] = frozen_name
        function = protos.function_pb2.FunctionDef()
        function.CopyFrom(original)
        function.signature.name = frozen_name
        self.variants[frozen_name] = function
        signature = function.signature
        if any(arg.number_attr or arg.type_list_attr for arg in signature.input_arg):
            raise UnsupportedGraphError(
                f"function '{name}' (called by '{caller.name}') takes list arguments: the freeze engine "
                "cannot tell which of them is a variable's handle"
            )
        body = _Scope(list(function.node_def), function)
        for arg, value in args.items():
            if arg >= len(signature.input_arg) or signature.input_arg[arg].type != dtypes.RESOURCE:
                raise UnsupportedGraphError(
                    f"node '{caller.name}'{scope.where} passes variable '{value.variable}' to argument "
                    f"{arg} of function '{name}', which does not take a resource"
                )
            _retype_argument(function, arg, value.dtype)
            arg_name = signature.input_arg[arg].name
            body.carriers[arg_name] = (value, arg)
            self.spread(body, arg_name, value, arg, ref=False)
        self.finish_calls(body)
        for index, output in enumerate(signature.output_arg):
            carried = body.carried(function.ret.get(output.name, ""))
            if carried is None:
                if passes_through and index in args:
                    raise UnsupportedGraphError(
                        f"while loop '{caller.name}'{scope.where} changes which variable its loop "
                        f"variable {index} holds: the freeze engine cannot freeze it"
                    )
                continue
            value, root = carried
            if not passes_through or root != index:
                raise UnsupportedGraphError(
                    f"function '{name}' (called by '{caller.name}'{scope.where}) returns the handle of "
                    f"variable '{value.variable}': a frozen graph cannot hand out a variable"
                )
            output.type = value.dtype
            output.ClearField("handle_data")
        function.node_def.extend(node for _, node in body.added)
        return frozen_name


def rewrite(nodes: list[Message], library: Mapping[str, Message], variables: Mapping[str, Value]) -> Rewrite:
    """Rewrites `nodes` (copies, in graph order, of the needed subgraph; edited in place) so that
    each variable in `variables` becomes a Const and its readers read the value."""
    rewriter = _Rewriter(library)
    scope = _Scope(nodes, None)
    for node in nodes:
        value = variables.get(node.name)
        if value is None:
            continue
        ref = node.op in REF_VARIABLE_OPS
        const = protos.node_def_pb2.NodeDef(name=node.name, op="Const")
        const.attr["dtype"].type = value.dtype
        scope.nodes[node.name] = const
        if not ref:
            scope.carriers[node.name] = (value, 0)
        rewriter.spread(scope, node.name, value, 0, ref=ref)
    rewriter.finish_calls(scope)
    before: dict[str, list[Message]] = defaultdict(list)
    for anchor, added in scope.added:
        before[anchor].append(added)
    ordered = [new for node in nodes for new in (*before[node.name], scope.nodes[node.name])]
    everything = {**library, **rewriter.variants}
    functions = [everything[name] for name in called_functions(ordered, everything)]
    _refuse_unfrozen_handles(ordered, functions, scope)
    return Rewrite(nodes=ordered, functions=functions)


def _refuse_unfrozen_handles(nodes: list[Message], functions: list[Message], scope: _Scope) -> None:
    for node in nodes:
        if node.op in _HANDLE_OPS or changes_state(node.op):
            source = scope.nodes.get(graph_names.node_name(node.input[0])) if node.input else None
            origin = f"'{source.name}' ({source.op})" if source is not None else "nowhere"
            raise UnsupportedGraphError(
                f"node '{node.name}' ({node.op}) uses a variable handle that comes from {origin}, not "
                "from a variable of the graph (a handle returned by a function call?): the freeze "
                "engine cannot tell which checkpoint value it holds"
            )
    for function in functions:
        for node in function.node_def:
            if node.op in VARIABLE_OPS or node.op in _HANDLE_OPS or changes_state(node.op):
                raise UnsupportedGraphError(
                    f"node '{node.name}' ({node.op}) in function '{function.signature.name}' uses a "
                    "variable that is not passed in from the graph: the freeze engine cannot freeze it"
                )


def _changes_variable(scope: _Scope, node: Message, value: Value) -> UnsupportedGraphError:
    return UnsupportedGraphError(
        f"node '{node.name}' ({node.op}){scope.where} changes variable '{value.variable}' and the "
        "outputs depend on it: a frozen graph holds no state; freeze outputs that do not run it"
    )


def _type_attr(dtype: int) -> Message:
    attr = protos.attr_value_pb2.AttrValue()
    attr.type = dtype
    return attr


def _retype(node: Message, op: str, attrs: dict[str, Message]) -> None:
    """Turns `node` into `op` with `attrs`, keeping its name, inputs and private (`_`) attributes
    except `_output_shapes`."""
    kept = {key: value for key, value in node.attr.items() if key.startswith("_") and key != "_output_shapes"}
    fresh = {key: _copy_attr(value) for key, value in {**kept, **attrs}.items()}
    node.op = op
    node.ClearField("attr")
    for key, value in fresh.items():
        node.attr[key].CopyFrom(value)


def _copy_attr(value: Message) -> Message:
    copy = protos.attr_value_pb2.AttrValue()
    copy.CopyFrom(value)
    return copy


def _drop(node: Message, attr: str) -> None:
    if attr in node.attr:
        del node.attr[attr]


def _set_shape(shape: Message, dims: tuple[int, ...]) -> None:
    shape.Clear()
    for dim in dims:
        shape.dim.add(size=dim)


def _retype_argument(function: Message, index: int, dtype: int) -> None:
    """Makes argument `index` of a function copy a value of `dtype`; shape hints recorded for the
    handle are replaced by 'unknown', as TensorFlow's converter does."""
    arg = function.signature.input_arg[index]
    arg.type = dtype
    arg.ClearField("handle_data")
    if "_input_shapes" in function.attr and index < len(function.attr["_input_shapes"].list.shape):
        shape = function.attr["_input_shapes"].list.shape[index]
        shape.Clear()
        shape.unknown_rank = True
    if index in function.arg_attr:
        attrs = function.arg_attr[index].attr
        if "_output_shapes" in attrs:
            for shape in attrs["_output_shapes"].list.shape:
                shape.Clear()
                shape.unknown_rank = True
        for key in ("_handle_dtypes", "_handle_shapes"):
            if key in attrs:
                del attrs[key]
    if index in function.resource_arg_unique_id:
        del function.resource_arg_unique_id[index]


def _unique(name: str, taken: Mapping[str, object]) -> str:
    if name not in taken:
        return name
    suffix = 1
    while f"{name}_{suffix}" in taken:
        suffix += 1
    return f"{name}_{suffix}"
