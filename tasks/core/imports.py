"""The project's import graph, read from source with ``ast``: which project modules a module imports.

Nothing is imported to answer: every ``import`` and ``from … import`` statement in a module's file
(at module level or inside a function, where this project puts its TensorFlow and Prefect imports)
is resolved to a module file under the project root. Imports inside ``if TYPE_CHECKING:`` never run
and are left out. Only the project's own packages are followed; ``prefect``, ``tensorflow`` and the
standard library are reported as external names, never read.

The cache keys (:mod:`tasks.core.cache_keys`) hash the source of a stage's closure, and the tests
check the graph for cycles and for dependencies that point the wrong way.
"""

from __future__ import annotations

import ast
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

PROJECT_PACKAGES = ("tasks", "flows", "freezeflow")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# ast.parse from two threads at once can fail with "SystemError: AST constructor recursion depth
# mismatch" (CPython gh-106905: the converter's depth counter is shared between threads). Freeze and
# export compute their cache keys side by side; Prefect logs such an error and silently persists
# nothing, so the stage reruns next time. One parse at a time.
_PARSE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImportEdge:
    """One imported name: ``target`` is a project module, or the top-level name of an external one."""

    target: str
    external: bool
    module_level: bool  # False: inside a function, so it runs only when the function does
    line: int


def module_file(name: str, root: Path = PROJECT_ROOT) -> Optional[Path]:
    """The file of project module ``name`` (``a/b.py`` or ``a/b/__init__.py``), or None."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_modules(root: Path = PROJECT_ROOT) -> list[str]:
    """Every module of the project's packages, by dotted name."""
    names = []
    for package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


# The fields of a node that hold statements; an import is a statement, so only these can lead to one
# (walking every expression as well made reading a module's imports about ten times slower).
_BODIES = frozenset({"body", "orelse", "finalbody", "handlers", "cases"})


def _statements(tree: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """Import statements that can run, each with whether it sits inside a function."""
    for field in tree._fields:
        if field not in _BODIES:
            continue
        for node in getattr(tree, field, None) or ():
            yield from _statements_of(node, in_function)


def _statements_of(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.stmt, bool]]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, in_function  # type: ignore[misc]
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        yield from (pair for child in node.orelse for pair in _statements_of(child, in_function))
    else:
        yield from _statements(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _with_parents(name: str, root: Path) -> list[str]:
    """``a.b.c`` and the packages importing it runs first (``a``, ``a.b``), those that are project files."""
    parts = name.split(".")
    return [n for n in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if module_file(n, root)]


def _resolve(module: str, is_package: bool, node: ast.stmt, root: Path) -> Iterator[tuple[str, bool]]:
    """(name, external) for what one import statement loads."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] in PROJECT_PACKAGES:
                yield from ((n, False) for n in _with_parents(alias.name, root))
            else:
                yield alias.name.split(".")[0], True
        return
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] not in PROJECT_PACKAGES:
        yield base.split(".")[0], True
        return
    yield from ((n, False) for n in _with_parents(base, root))
    for alias in node.names:  # `from pkg import submodule` loads the submodule
        if alias.name != "*" and module_file(f"{base}.{alias.name}", root):
            yield f"{base}.{alias.name}", False


@lru_cache(maxsize=None)
def imports_of(module: str, root: Path = PROJECT_ROOT) -> tuple[ImportEdge, ...]:
    """What module ``module`` imports, read from its file (cached: a process runs the code it loaded)."""
    path = module_file(module, root)
    if path is None:
        raise ModuleNotFoundError(f"{module} is not a module of this project under {root}")
    source = path.read_bytes()
    with _PARSE_LOCK:
        tree = ast.parse(source, filename=str(path))
    edges: dict[tuple[str, bool], ImportEdge] = {}
    for node, in_function in _statements(tree):
        for target, external in _resolve(module, path.name == "__init__.py", node, root):
            if target == module:
                continue
            key = (target, not in_function)
            edges.setdefault(key, ImportEdge(target, external, not in_function, node.lineno))
    return tuple(edges.values())


def project_imports(module: str, root: Path = PROJECT_ROOT) -> set[str]:
    """The project modules ``module`` imports directly, wherever the statement sits."""
    return {edge.target for edge in imports_of(module, root) if not edge.external}


@lru_cache(maxsize=None)
def closure(module: str, root: Path = PROJECT_ROOT) -> tuple[str, ...]:
    """``module``, its packages, and every project module they import, transitively; sorted."""
    seen: set[str] = set()
    todo = _with_parents(module, root) or [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(project_imports(name, root) - seen)
    return tuple(sorted(seen))
