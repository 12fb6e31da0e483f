"""Public names: re-exports that load on first use, and the module they report as home.

Re-exports load on first use, so `import dataflow` and the CLI's `--help` stay light.

A package lists which module holds each of its public names; `lazy_exports` gives it the
module-level `__getattr__` and `__dir__` (PEP 562). A name is imported on first access and
then kept in the package's namespace, so later lookups are plain attribute reads.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`(__all__, __getattr__, __dir__)` for `package`, whose names live in `where`'s modules."""
    module_of = {name: module for module, names in where.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *module_of})

    return sorted(module_of), __getattr__, __dir__


def publish(package: str, *values: Any) -> None:
    """Name `package` as the home (`__module__`) of classes and functions defined privately.

    Called where they are defined, so reprs, tracebacks, docs and pickles name the path users
    import (`dataflow.DataflowError`, not `dataflow._core.errors.DataflowError`) whichever
    path loaded them first.
    """
    for value in values:
        value.__module__ = package
