"""Device pins: found and cleared in a graph's own nodes and in its functions' bodies alike."""

from __future__ import annotations

from tasks.freeze_engine import protos
from tasks.freeze_engine.devices import clear_devices, pinned_nodes


def _pinned_graph() -> object:
    graph = protos.graph_pb2.GraphDef()
    graph.node.add(name="x", op="Placeholder", device="/device:GPU:0")
    graph.node.add(name="free", op="Identity")
    function = graph.library.function.add()
    function.signature.name = "body"
    function.node_def.add(name="inner", op="Mul", device="/job:worker/device:CPU:0")
    return graph


def test_pinned_nodes_lists_graph_and_function_nodes_that_name_a_device() -> None:
    assert pinned_nodes(_pinned_graph()) == ["x", "inner"]


def test_clear_devices_unpins_every_node_and_changes_nothing_else() -> None:
    graph = _pinned_graph()
    clear_devices(graph)
    assert pinned_nodes(graph) == []
    assert [n.name for n in graph.node] == ["x", "free"] and graph.library.function[0].node_def[0].op == "Mul"
