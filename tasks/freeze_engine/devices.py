"""Device pins in a graph, found and cleared in one place: a served or frozen model carries none.

Works on GraphDef messages from either TensorFlow or :mod:`tasks.freeze_engine.protos` (no import of
either is needed): the top-level nodes and the nodes of every function in the graph's library.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tasks.freeze_engine.graph_names import Message


def graph_nodes(graph_def: Message) -> Iterator[Message]:
    """Every NodeDef of ``graph_def``: its own, then those of each function in its library."""
    yield from graph_def.node
    for function in graph_def.library.function:
        yield from function.node_def


def clear_node_devices(nodes: Iterable[Message]) -> None:
    for node in nodes:
        node.device = ""


def clear_devices(graph_def: Message) -> None:
    """Unpin every node of ``graph_def``, function bodies included, in place."""
    clear_node_devices(graph_nodes(graph_def))


def pinned_nodes(graph_def: Message) -> list[str]:
    """Names of the nodes (function bodies included) that still name a device."""
    return [node.name for node in graph_nodes(graph_def) if node.device]
