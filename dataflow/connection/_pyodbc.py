"""pyodbc, imported by the first call that needs the driver, never at import of a dataflow module.

pyodbc is a C extension linked to unixODBC's `libodbc.so.2`, which a fresh machine lacks: there
`import pyodbc` raises ImportError. Importing it late keeps `import dataflow`, the CLI, and
workflows that only use SQLite or MongoDB working; the first ODBC call says what to install.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

from dataflow._core.errors import DataflowConnectionError

INSTALL_UNIXODBC = (
    "install it with 'apt-get install unixodbc' (and, for SQL Server, Microsoft's ODBC Driver 18)"
)


@cache  # a failed import is not cached: the next call tries again (after an install, it loads)
def load_pyodbc() -> ModuleType:
    """The pyodbc module; raises `DataflowConnectionError` naming what to install."""
    try:
        return importlib.import_module("pyodbc")
    except ImportError as err:
        raise DataflowConnectionError(missing_pyodbc(err)) from None


def missing_pyodbc(err: ImportError) -> str:
    """One line: why pyodbc did not import, and what to install."""
    reason = " ".join(str(err).split())
    if isinstance(err, ModuleNotFoundError) and err.name == "pyodbc":
        return f"pyodbc is not installed ({reason}): install dataflow's dependencies with pip"
    return f"pyodbc cannot load unixODBC ({reason}): {INSTALL_UNIXODBC}"
