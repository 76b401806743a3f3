"""How GraphDef and FunctionDef inputs name what they consume.

In a GraphDef an input is `node`, `node:3` (output 3) or `^node` (control only). In a FunctionDef
body it is `arg` (an argument of the function), `node:out:3` (element 3 of the node's output
argument named `out`) or `^node`.
"""

from __future__ import annotations

from typing import Any

# Protobuf message classes are built at run time from descriptors; there are no static types.
Message = Any


def is_control(name: str) -> bool:
    return name.startswith("^")


def node_name(name: str) -> str:
    """The node an input or output name refers to: `^a`, `a:1` and `a:out:1` all give `a`."""
    return name.lstrip("^").split(":", 1)[0]


def parse_input(name: str) -> tuple[str, int]:
    """A GraphDef data input as (node, output index)."""
    node, _, index = name.partition(":")
    return node, int(index) if index else 0


def function_output(name: str) -> tuple[str, str, int]:
    """A FunctionDef body reference as (node or argument, output argument name, index); an argument
    reference gives ("arg", "", 0)."""
    parts = name.split(":")
    if len(parts) == 1:
        return parts[0], "", 0
    if len(parts) == 2:  # `node:out` means element 0
        return parts[0], parts[1], 0
    return parts[0], parts[1], int(parts[2])
