"""The tree is the architecture: pyovms's packages are layers, and imports only go down.

Every import statement counts, those under TYPE_CHECKING and inside functions too. A unit is a top-level module
(`pyovms.core`) or a subpackage (`pyovms.frontends`, with everything below it); `LAYERS` lists them from the entry
points down to the errors. A module may import its own unit and the units of lower layers, never a higher one; no
module imports one that imports it back, and no unit either."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pyovms"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
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


def unit_of(module: str) -> str:
    """`pyovms.frontends.grpc.service` -> `pyovms.frontends`; `pyovms.core` -> `pyovms.core`; `pyovms` -> `pyovms`."""
    return ".".join(module.split(".")[:2])


LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset("pyovms" if name == "pyovms" else f"pyovms.{name}" for name in layer.split())
    for layer in (
        "pyovms __main__",  # the package itself (`pyovms.serve`, `pyovms.Tensor`) and `python -m pyovms`
        "cli in_process",  # the two entry points: the command and the Python API
        "server",  # the process wiring: ServerRuntime, logging, signals, shutdown
        "workers",  # --grpc_workers: the supervisor of several server processes
        "settings",  # what configures one server
        "frontends",  # gRPC and REST: translate, nothing else
        "core",  # the protocol-neutral Server every front end calls
        "control",  # building servables, config.json reloads, the repository extension
        "servables",  # OpenVINO models, pipelines, graphs
        "repository",  # what is configured, stored and served now
        "custom_nodes",  # the libraries pipelines call
        "scheduling",  # infer-request pools, user-code thread pools
        "tensors",  # request types, datatypes, shapes, validation, images, shared memory
        "observability",  # statistics, metrics, logs
        "errors version generated",  # statuses and ServingError, the version, protoc's output
    )
)


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "pyovms.control.model_manager" in graph
    assert "pyovms.repository.registry" in graph["pyovms.control.model_manager"]
    cycles = [cycle for name in sorted(graph) if (cycle := _cycle_through(graph, name)) is not None]
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_every_module_sits_in_a_layer():
    units = {unit_of(name) for name in import_graph()}
    placed = set().union(*LAYERS)
    assert units - placed == set(), "add new packages and top-level modules to LAYERS"
    assert placed - units == set(), "LAYERS names a unit that no longer exists"


def test_imports_only_go_down_the_layers():
    graph = import_graph()
    upward = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if unit_of(target) != unit_of(name) and _layer(unit_of(target)) <= _layer(unit_of(name))
    )
    assert upward == []


def test_the_packages_import_one_another_without_cycles():
    graph = import_graph()
    units: dict[str, set[str]] = {}
    for name, targets in graph.items():
        units.setdefault(unit_of(name), set()).update(unit_of(t) for t in targets if unit_of(t) != unit_of(name))
    cycles = [cycle for unit in sorted(units) if (cycle := _cycle_through(units, unit)) is not None]
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_a_front_end_never_imports_a_servable_or_the_control_layer():
    graph = import_graph()
    front_ends = [name for name in graph if unit_of(name) == "pyovms.frontends"]
    assert "pyovms.frontends.grpc.service" in front_ends and "pyovms.frontends.rest.server" in front_ends
    for name in front_ends:
        assert {unit_of(t) for t in graph[name]}.isdisjoint({"pyovms.servables", "pyovms.control"}), name


def test_the_top_level_holds_about_ten_modules():
    top_level = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top_level) <= 10, top_level


def test_every_package_says_what_it_owns_and_may_import():
    for init in sorted(PACKAGE.rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(docstring) > 40, f"{init.relative_to(PACKAGE.parent)} needs a docstring"
        if init.parent.parent == PACKAGE and init.parent.name != "generated":
            assert "import" in docstring, f"{init.relative_to(PACKAGE.parent)}: say what the package may import"
