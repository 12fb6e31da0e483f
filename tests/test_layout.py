"""The package's shape: layers import downwards only, no cycles, seed import paths stay valid.

Imports are read from the source with `ast`, so function-level and TYPE_CHECKING imports count
as much as top-level ones: a cycle hidden behind a function-level import is still a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dataflow

PACKAGE = Path(dataflow.__file__).parent
# Lower layers first; a module may import its own layer or any layer below it.
LAYERS = ("_core", "state", "connection", "triggers", "runtime", "_cli")
CLI_MODULES = {"dataflow.main", "dataflow.__main__"}
CORE_MODULES = {"dataflow._version"}  # one constant; the build reads it too
# The seed's public modules re-export from every layer; nothing inside may import them.
FACADES = {"dataflow", "dataflow.utils", "dataflow.testing"}
SEED_PATHS = {
    "dataflow.main": ["main"],
    "dataflow.utils": ["Settings", "require_env", "get_logger", "rows_to_frame"],
    "dataflow.connection": [
        "Connection",
        "MicrosoftSQLServerConnection",
        "MongoDB",
        "MongoDBAsync",
        "SQLiteConnection",
    ],
    "dataflow.triggers.cronjob": ["cronjob"],
    "dataflow.triggers.startup": ["startup"],
    "dataflow.triggers.mongo_change_listener": ["mongodb_change_stream"],
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, known: set[str]) -> Iterator[str]:
    """Every dataflow module `path` imports, at any depth of its code."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("dataflow"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dataflow"):
            for alias in node.names:  # `from dataflow.x import y`: y may be a module itself
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in known else str(node.module)


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(path, known)) - {name} for name, path in found.items()}


def layer_of(module: str) -> int:
    """The layer's rank; the CLI sits on top, the facades above everything."""
    if module in FACADES or module.startswith("dataflow.examples"):  # user code: on top
        return len(LAYERS) + 1
    if module in CORE_MODULES:
        return 0
    if module in CLI_MODULES:
        return LAYERS.index("_cli")
    return LAYERS.index(module.split(".")[1])


def test_every_module_belongs_to_a_layer() -> None:
    """A new top-level module must be placed in a layer (or be a seed facade) on purpose."""
    for name in modules():
        assert layer_of(name) >= 0, name


def test_imports_point_down_only() -> None:
    """connection never imports runtime, triggers never the CLI, _core nothing of dataflow."""
    upward = [
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(source)
    ]
    assert upward == []


def test_core_imports_nothing_else_of_dataflow() -> None:
    graph = import_graph()
    outside = {
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.startswith("dataflow._core")
        for target in targets
        if not target.startswith("dataflow._core")
    }
    assert outside == set()


def test_no_import_cycles() -> None:
    """Function-level and TYPE_CHECKING imports count: a cycle behind them is still a cycle."""
    graph = import_graph()
    assert list(_cycles(graph)) == []


def _cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> Iterator[list[str]]:
        if node in path:
            yield [*path[path.index(node) :], node]
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            yield from visit(target, [*path, node])
        done.add(node)

    for start in sorted(graph):
        yield from visit(start, [])


def test_package_top_level_stays_small() -> None:
    """A newcomer finds the layers as folders; the top level holds the seed modules only."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def test_no_module_grows_past_300_lines() -> None:
    long = {
        name: count
        for name, path in modules().items()
        if (count := len(path.read_text().splitlines())) > 300
    }
    assert long == {}


def test_every_error_is_in_the_one_tree() -> None:
    """All exception classes live in _core/errors.py and derive from DataflowError."""
    from dataflow._core import errors

    defined_elsewhere = [
        f"{name}: {node.name}"
        for name, path in modules().items()
        if name != "dataflow._core.errors"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(
            "Error" in ast.unparse(base) or "Exception" in ast.unparse(base) for base in node.bases
        )
    ]
    assert defined_elsewhere == []
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, Exception):
            internal = value is errors.Interrupted  # never leaves the connection that raised it
            assert internal or issubclass(value, errors.DataflowError), value
    assert issubclass(errors.CronError, ValueError)
    assert issubclass(errors.DataflowConnectionError, ConnectionError)


def test_exports_report_their_public_module() -> None:
    for name in dataflow.__all__:
        home = getattr(dataflow, name).__module__
        assert not any(part.startswith("_") for part in home.split(".")), (name, home)


def test_type_checking_imports_match_the_lazy_map() -> None:
    """`dataflow/__init__.py` names each export twice: for type checkers and for the runtime."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    checked = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        for inner in node.body
        if isinstance(inner, ast.ImportFrom)
        for alias in inner.names
    }
    assert checked == set(dataflow.__all__)


@pytest.mark.parametrize(("module", "names"), sorted(SEED_PATHS.items()))
def test_seed_import_paths_work_in_a_fresh_interpreter(module: str, names: list[str]) -> None:
    """Each path the seed documented imports on its own, nothing else loaded first."""
    code = f"from {module} import {', '.join(names)}; import dataflow; dataflow.DataflowSQLError"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
