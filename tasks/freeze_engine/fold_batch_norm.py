"""Folding inference-mode batch normalisation into the convolution or matmul before it, in a frozen
GraphDef, with NumPy and without TensorFlow's runtime.

An inference batch norm computes ``y = x * scale + shift`` per output channel, with ``scale`` and
``shift`` made of constants only (``gamma * rsqrt(variance + eps)`` and ``beta - mean * scale``).
When ``x`` is a ``Conv2D``, ``DepthwiseConv2dNative`` or ``MatMul`` of a constant filter (with or
without a ``BiasAdd``) that nothing else reads, the filter's output channels are multiplied by
``scale`` and the product becomes ``BiasAdd(conv, bias * scale + shift)``: one op fewer per layer
and no normalisation arithmetic left at serving time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tasks.freeze_engine import graph_names, protos
from tasks.freeze_engine.graph_names import Message

_NUMPY = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}
_FIELDS = {1: "float_val", 2: "double_val", 3: "int_val", 9: "int64_val", 19: "half_val"}
_CONVS = frozenset({"Conv2D", "DepthwiseConv2dNative", "MatMul"})
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "Mul": np.multiply, "AddV2": np.add, "Add": np.add, "Sub": np.subtract, "RealDiv": np.divide,
    "Maximum": np.maximum,
}
_UNARY: dict[str, Callable[[Any], Any]] = {
    "Rsqrt": lambda a: 1.0 / np.sqrt(a), "Sqrt": np.sqrt, "Identity": lambda a: a, "Neg": np.negative,
    "Reciprocal": lambda a: 1.0 / a, "Snapshot": lambda a: a,
}


def tensor_value(tensor: Message) -> np.ndarray | None:
    """A TensorProto's value as an array (numeric types only)."""
    dtype = _NUMPY.get(tensor.dtype)
    if dtype is None:
        return None
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape).copy()
    values = np.asarray(getattr(tensor, _FIELDS[tensor.dtype]), dtype=dtype)
    if tensor.dtype == 19:
        values = values.astype(np.uint16).view(np.float16)
    count = int(np.prod(shape)) if shape else 1
    if values.size == count:
        return values.reshape(shape)
    if values.size == 1 or values.size == 0:
        return np.full(shape, values[0] if values.size else 0, dtype=dtype)
    return np.concatenate([values, np.full(count - values.size, values[-1], dtype=dtype)]).reshape(shape)


def const_node(name: str, value: np.ndarray) -> Message:
    dtype = next(code for code, kind in _NUMPY.items() if kind == value.dtype.type)
    node = protos.node_def_pb2.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = dtype
    tensor = node.attr["value"].tensor
    tensor.dtype = dtype
    for dim in value.shape:
        tensor.tensor_shape.dim.add(size=dim)
    tensor.tensor_content = np.ascontiguousarray(value).tobytes()
    return node


class _Evaluator:
    """Values of tensors computed from constants only (None when a tensor depends on an input)."""

    def __init__(self, nodes: dict[str, Message]) -> None:
        self.nodes = nodes
        self.memo: dict[str, np.ndarray | None] = {}

    def value(self, reference: str, depth: int = 0) -> np.ndarray | None:
        name, port = graph_names.parse_input(reference)
        if port != 0 or depth > 30:
            return None
        if name in self.memo:
            return self.memo[name]
        node = self.nodes.get(name)
        result: np.ndarray | None = None
        if node is None:
            pass
        elif node.op == "Const":
            result = tensor_value(node.attr["value"].tensor)
        elif node.op in _UNARY and node.input:
            operand = self.value(node.input[0], depth + 1)
            result = None if operand is None else _UNARY[node.op](operand)
        elif node.op == "Cast" and node.input:
            operand = self.value(node.input[0], depth + 1)
            target = _NUMPY.get(node.attr["DstT"].type)
            result = None if operand is None or target is None else operand.astype(target)
        elif node.op in _BINARY and len(node.input) == 2:
            left, right = self.value(node.input[0], depth + 1), self.value(node.input[1], depth + 1)
            if left is not None and right is not None:
                result = _BINARY[node.op](left, right).astype(np.result_type(left.dtype, right.dtype))
        self.memo[name] = result
        return result


def _channel_vector(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    if value is None:
        return None
    if value.size == 1:
        return np.full(channels, value.reshape(()), dtype=value.dtype)
    squeezed = value.reshape(-1) if value.ndim and value.shape[-1] == value.size else None
    return squeezed if squeezed is not None and squeezed.size == channels else None


def fold_batch_norms(graph_def: Message, outputs: list[str]) -> list[str]:
    """Fold every foldable ``x * scale + shift`` after a conv/matmul into its weights, in place; one
    line per fold."""
    nodes = {node.name: node for node in graph_def.node}
    evaluator = _Evaluator(nodes)
    consumers: dict[str, int] = {}
    for node in graph_def.node:
        for reference in node.input:
            consumers[graph_names.node_name(reference)] = consumers.get(graph_names.node_name(reference), 0) + 1
    folds: list[str] = []
    added: list[tuple[str, Message]] = []
    for node in list(graph_def.node):
        if node.op not in ("AddV2", "Add") or len(node.input) != 2:
            continue
        for product_ref, shift_ref in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            product = nodes.get(graph_names.node_name(product_ref))
            if product is None or product.op != "Mul" or consumers.get(product.name) != 1 or ":" in product_ref:
                continue
            for x_ref, scale_ref in ((product.input[0], product.input[1]), (product.input[1], product.input[0])):
                fold = _fold(nodes, evaluator, consumers, node, x_ref, scale_ref, shift_ref, added)
                if fold:
                    folds.append(fold)
                    break
            else:
                continue
            break
    if folds:
        for name, new in added:
            nodes[name] = new
        keep = _needed(nodes, outputs)
        ordered = [new for _, new in added if new.name in keep]
        ordered += [nodes[node.name] for node in graph_def.node if node.name in keep]
        del graph_def.node[:]
        graph_def.node.extend(ordered)
    return folds


def _fold(nodes: dict[str, Message], evaluator: _Evaluator, consumers: dict[str, int], add: Message,
          x_ref: str, scale_ref: str, shift_ref: str, added: list) -> str | None:
    x_name, x_port = graph_names.parse_input(x_ref)
    x = nodes.get(x_name)
    if x is None or x_port != 0 or consumers.get(x_name) != 1:
        return None
    bias = None
    conv = x
    if x.op == "BiasAdd":
        conv = nodes.get(graph_names.node_name(x.input[0]))
        bias = evaluator.value(x.input[1])
        if conv is None or consumers.get(conv.name) != 1 or bias is None:
            return None
    if conv.op not in _CONVS:
        return None
    weights = evaluator.value(conv.input[1])
    if weights is None or weights.dtype != np.float32:
        return None
    if conv.op == "MatMul" and conv.attr["transpose_b"].b:
        channels = weights.shape[0]
    else:
        channels = weights.shape[-1] if conv.op != "DepthwiseConv2dNative" else weights.shape[2] * weights.shape[3]
    scale = _channel_vector(evaluator.value(scale_ref), channels)
    shift = _channel_vector(evaluator.value(shift_ref), channels)
    if scale is None or shift is None:
        return None
    if conv.op == "DepthwiseConv2dNative":
        folded = weights * scale.reshape(weights.shape[2], weights.shape[3])
    elif conv.op == "MatMul" and conv.attr["transpose_b"].b:
        folded = weights * scale[:, None]
    else:
        folded = weights * scale
    new_bias = (bias.reshape(-1) * scale + shift) if bias is not None else shift
    kernel = const_node(_unique(nodes, f"{conv.name}/folded_weights"), folded.astype(np.float32))
    bias_node = const_node(_unique(nodes, f"{add.name}/folded_bias"), new_bias.astype(np.float32))
    nodes[kernel.name] = kernel
    nodes[bias_node.name] = bias_node
    added.extend([(kernel.name, kernel), (bias_node.name, bias_node)])
    conv.input[1] = kernel.name
    controls = [i for i in add.input if graph_names.is_control(i)]
    dtype = add.attr["T"].type
    add.op = "BiasAdd"
    add.ClearField("attr")
    add.attr["T"].type = dtype
    add.attr["data_format"].s = conv.attr["data_format"].s if "data_format" in conv.attr and conv.op != "MatMul" else b"NHWC"
    del add.input[:]
    add.input.extend([conv.name, bias_node.name, *controls])
    return f"batch norm '{add.name}' folded into '{conv.name}' ({conv.op}, {channels} channels)"


def _unique(nodes: dict[str, Message], name: str) -> str:
    candidate, suffix = name, 1
    while candidate in nodes:
        candidate = f"{name}_{suffix}"
        suffix += 1
    return candidate


def _needed(nodes: dict[str, Message], outputs: list[str]) -> set[str]:
    """What the outputs still read once folding orphaned the normalisation's constants; placeholders stay."""
    kept: set[str] = set()
    stack = [graph_names.node_name(o) for o in outputs]
    stack += [name for name, node in nodes.items() if node.op in ("Placeholder", "PlaceholderWithDefault")]
    while stack:
        name = stack.pop()
        if name in kept or name not in nodes:
            continue
        kept.add(name)
        stack.extend(graph_names.node_name(i) for i in nodes[name].input)
    return kept
