"""The modules of pyovms import one another in one direction only: no module imports one that imports it back,
directly or through others. Every import statement counts, those under TYPE_CHECKING and inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pyovms"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        if "generated" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Each pyovms module -> the pyovms modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    if submodule in modules:
                        imported.add(submodule)
                    elif target in modules:
                        imported.add(target)
        imported.discard(name)
        graph[name] = imported
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start -> ... -> start, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for successor in sorted(graph[node]):
            if successor == start:
                return [*path, start]
            if successor not in seen:
                seen.add(successor)
                stack.append((successor, [*path, successor]))
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "pyovms.model_manager" in graph and "pyovms.repository" in graph["pyovms.model_manager"]
    cycles = [cycle for name in sorted(graph) if (cycle := _cycle_through(graph, name)) is not None]
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_front_ends_and_the_backends_do_not_reach_back_into_the_wiring():
    graph = import_graph()
    for name in ("pyovms.grpc.service", "pyovms.rest.server", "pyovms.pipeline", "pyovms.graphs.graph"):
        assert not graph[name] & {"pyovms.cli", "pyovms.server", "pyovms.model_manager"}, name
    assert "pyovms.cli" not in graph["pyovms.settings"]


CUSTOM_NODES_MAY_IMPORT = {"pyovms.errors", "pyovms.inference", "pyovms.scheduling", "pyovms.shapes", "pyovms.tensors",
                           "pyovms.user_code"}  # fmt: skip


def test_the_custom_nodes_package_imports_only_what_sits_below_it():
    """pyovms/custom_nodes/ reaches its own modules and the layers below (tensors, inference types, the user-code pool,
    errors); the pipelines that run it, the repository, the front ends and the wiring sit above it."""
    graph = import_graph()
    package = {name for name in graph if name.startswith("pyovms.custom_nodes")}
    assert "pyovms.custom_nodes.c_library" in package
    for name in sorted(package):
        assert graph[name] - package <= CUSTOM_NODES_MAY_IMPORT, (name, graph[name] - package)
