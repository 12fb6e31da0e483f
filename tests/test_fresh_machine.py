"""A fresh machine has Python but no unixODBC: dataflow imports, the CLI reads workflows, and a
workflow that needs ODBC stops with one line saying what to install.

The slow tests run real processes with a `sitecustomize.py` first on PYTHONPATH that makes
`import pyodbc` (and `import psycopg`) fail the way a missing `libodbc.so.2` does; the others
check `load_pyodbc` in this process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflow._core.errors import DataflowConnectionError
from dataflow.connection._pyodbc import load_pyodbc, missing_pyodbc
from tests._peers import require_pyodbc
from tests.reliability._proc import ROOT, cli_env, run_cli, write_workflow

BLOCKER = """
import sys

class _NoDriverLibrary:
    def find_spec(self, name, path=None, target=None):
        if name in ("pyodbc", "psycopg"):
            raise ImportError(f"{name}: simulated fresh machine (no driver library)")

sys.meta_path.insert(0, _NoDriverLibrary())
"""

ODBC_WORKFLOW = """
from dataflow import OdbcConnection, Workflow, startup

class Report(Workflow):
    def __init__(self):
        self.source = OdbcConnection("Driver=SQLite3;Database={database}")

    @startup
    def load(self):
        self.source.connect()
        self.source.fetch("SELECT 1")
"""

INSTALL = "install it with 'apt-get install unixodbc'"


@pytest.fixture
def fresh(tmp_path: Path) -> dict[str, str]:
    """Environment variables for a process on a machine without unixODBC."""
    blocker = tmp_path / "no_unixodbc"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    return {
        "PYTHONPATH": f"{blocker}:{ROOT}",
        "DATAFLOW_STATE_PATH": str(tmp_path / "state.db"),
        "DEMO_DATA_DIR": str(tmp_path / "demo"),
    }


@pytest.fixture
def uncached() -> Iterator[None]:
    """`load_pyodbc` forgets the module before and after the test."""
    load_pyodbc.cache_clear()
    yield
    load_pyodbc.cache_clear()


def test_the_message_names_the_missing_library_and_the_package_to_install() -> None:
    err = ImportError("libodbc.so.2: cannot open shared object file: No such file or directory")
    assert missing_pyodbc(err) == (
        "pyodbc cannot load unixODBC (libodbc.so.2: cannot open shared object file: No such "
        "file or directory): install it with 'apt-get install unixodbc' (and, for SQL Server, "
        "Microsoft's ODBC Driver 18)"
    )


@pytest.mark.usefixtures("uncached")
def test_without_the_pyodbc_package_the_first_use_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyodbc", None)  # makes `import pyodbc` fail
    with pytest.raises(DataflowConnectionError, match=r"^pyodbc is not installed \(.*pip$"):
        load_pyodbc()


@pytest.mark.usefixtures("uncached")
def test_a_failed_load_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the library is there, the next call loads pyodbc, and keeps it."""
    pyodbc = require_pyodbc()
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "pyodbc", None)
        with pytest.raises(DataflowConnectionError):
            load_pyodbc()
    assert load_pyodbc() is pyodbc
    assert load_pyodbc.cache_info().currsize == 1


@pytest.mark.slow
def test_import_dataflow_and_every_connection_class_without_pyodbc(
    fresh: dict[str, str],
) -> None:
    """The public names load; pyodbc is never imported (and really cannot be here)."""
    code = textwrap.dedent(
        """
        import sys
        import dataflow
        from dataflow import Workflow, SQLiteConnection, MongoDB
        from dataflow import MicrosoftSQLServerConnection, OdbcConnection
        MicrosoftSQLServerConnection(server="db", database="sales")
        OdbcConnection("Driver=SQLite3;Database=x.db")
        print("pyodbc" in sys.modules)
        try:
            import pyodbc
        except ImportError as err:
            print("blocked:", err)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env(ROOT, **fresh),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "False",
        "blocked: pyodbc: simulated fresh machine (no driver library)",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "shown"), [("list", "sync_orders"), ("history", "no runs")])
def test_demo_commands_that_read_need_no_odbc(
    fresh: dict[str, str], command: str, shown: str
) -> None:
    """Run from the repository, as the README does, so `workflows/demo.py` is the one found."""
    result = run_cli(ROOT, command, "demo", **fresh)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert shown in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_odbc_workflow_stops_with_one_line_naming_what_to_install(
    tmp_path: Path, fresh: dict[str, str], backend: str
) -> None:
    """The @startup handler's connect finds no unixODBC: exit 1, one line, no traceback."""
    write_workflow(tmp_path, "report", ODBC_WORKFLOW.format(database=tmp_path / "r.db"))
    result = run_cli(tmp_path, "report", DATAFLOW_BACKEND=backend, **fresh)  # type: ignore[arg-type]
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("dataflow: error: startup handler 'load' failed: ")
    assert "pyodbc cannot load unixODBC" in line and INSTALL in line


@pytest.mark.slow
def test_check_of_an_odbc_workflow_names_what_to_install(
    tmp_path: Path, fresh: dict[str, str]
) -> None:
    """`check` creates the workflow (an OdbcConnection needs no driver yet), then its ping
    fails with the install line."""
    write_workflow(tmp_path, "report", ODBC_WORKFLOW.format(database=tmp_path / "r.db"))
    result = run_cli(tmp_path, "check", "report", **fresh)  # type: ignore[arg-type]
    assert result.returncode == 1
    assert result.stderr == ""
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL  connection  source: OdbcConnection(")
    assert "DataflowConnectionError: pyodbc cannot load unixODBC" in failed[0]
    assert INSTALL in failed[0]
