"""The project's import graph, read from source: no cycles, and dependencies that point one way.

CLI (freezeflow) → flows → stages (tasks.stages) → subsystems (tasks.tf, tasks.freeze_engine, tasks.fleet,
tasks.storage, tasks.serving, tasks.vertex) → core (tasks.core). Imports inside functions count: a
cycle through a function-local import is still a cycle a reader has to untangle.
"""

from __future__ import annotations

from tasks.core.imports import ImportEdge, imports_of, project_modules

LAYERS = {
    "freezeflow": 4,
    "flows": 3,
    "tasks.stages": 2,
    "tasks.tf": 1, "tasks.freeze_engine": 1, "tasks.storage": 1, "tasks.serving": 1, "tasks.vertex": 1, "tasks.fleet": 1,
    "tasks.core": 0,
}  # fmt: skip
HEAVY = ("prefect", "tensorflow")


def room(module: str) -> str | None:
    """The room (layer package) a module lives in; None for the bare ``tasks`` package."""
    return next((r for r in sorted(LAYERS, key=len, reverse=True) if module == r or module.startswith(r + ".")), None)


def edges() -> dict[str, tuple[ImportEdge, ...]]:
    return {module: imports_of(module) for module in project_modules()}


def project_graph() -> dict[str, set[str]]:
    """Module → project modules it imports. A module's own parent packages are left out: Python runs a
    package's ``__init__`` before its submodules, and an ``__init__`` that re-exports its submodules is
    not a cycle anyone has to untangle."""
    return {
        module: {e.target for e in found if not e.external and not module.startswith(e.target + ".")}
        for module, found in edges().items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each a cycle or a knot of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    assert cycles(project_graph()) == []


def test_the_rooms_depend_on_each_other_without_cycles() -> None:
    rooms: dict[str, set[str]] = {}
    for module, targets in project_graph().items():
        for target in targets:
            if room(module) and room(target) and room(module) != room(target):
                rooms.setdefault(room(module), set()).add(room(target))  # type: ignore[arg-type]
    assert cycles(rooms) == []


def test_dependencies_point_from_the_cli_down_to_core() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in project_graph().items()
        for target in targets
        if room(module) and room(target) and LAYERS[room(module)] < LAYERS[room(target)]  # type: ignore[index]
    ]
    assert upward == []


def test_core_and_the_subsystems_import_neither_prefect_nor_tensorflow_at_module_level() -> None:
    heavy = [
        f"{module}:{edge.line} imports {edge.target}"
        for module, found in edges().items()
        if LAYERS.get(room(module) or "", 9) <= 1
        for edge in found
        if edge.external and edge.module_level and edge.target in HEAVY
    ]
    assert heavy == []


def test_the_checks_see_function_local_imports() -> None:
    """The graph is only as good as its reader: the stage layer reaches TensorFlow code from inside functions."""
    freezing = {e.target: e for e in imports_of("tasks.tf.freezing")}
    assert "tasks.freeze_engine" in freezing and not freezing["tensorflow"].module_level
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
