"""Skip or fail when a test peer (ODBC driver, PostgreSQL, live server) is missing.

Locally a missing peer skips with a reason; CI sets DATAFLOW_REQUIRE_PEERS=1 so a missing
peer fails instead of silently skipping the driver tests. Each helper works inside a test or
fixture and at a module's top (then the whole module is skipped at collection).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, NoReturn

import pytest

UNIXODBC = "unixODBC for pyodbc (apt-get install unixodbc)"


def peer_unavailable(what: str) -> NoReturn:
    """Skip the test naming the missing peer, or fail when peers are required (CI)."""
    message = f"test peer unavailable: {what}"
    if os.environ.get("DATAFLOW_REQUIRE_PEERS") == "1":
        pytest.fail(message)
    pytest.skip(message, allow_module_level=True)


def require_module(name: str, what: str) -> ModuleType:
    """Import `name`, or skip (fail in CI) naming `what`, the peer to install for it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        peer_unavailable(f"{what}: {' '.join(str(err).split())}")


def require_pyodbc() -> Any:
    """pyodbc, which a machine without unixODBC cannot import (typed loosely, like the driver)."""
    return require_module("pyodbc", UNIXODBC)


def require_odbc_driver(name: str) -> None:
    """Skip (fail in CI) unless unixODBC lists the ODBC driver `name`."""
    if name not in require_pyodbc().drivers():
        peer_unavailable(f"ODBC driver {name!r} in /etc/odbcinst.ini")
