"""No password reaches any output: logs, errors, stored tracebacks, CLI tables and JSON.

Passwords holding `/ ? # @ :` are written raw (unescaped, as people do) and percent-encoded,
in a MongoDB URI, an `mssql://` URL and an ODBC connection string. A handler whose own source
line holds the URI fails, so its traceback carries the password into the log and the state
file unless the masker hides it. Every output of every command, and the state file's bytes,
are searched for every form of every password.
"""

from __future__ import annotations

import signal
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.reliability._proc import DataflowProcess, run_cli, write_workflow

pytestmark = pytest.mark.slow

RAW = "Xq7/Kp?w#1@:z"  # unescaped in a URL: urllib would read part of it as path or query
ENCODED = "Pq9/Lm?v#2@:y"  # written percent-encoded, as the URL standard wants
ODBC = "Zr5;Ns}w=3"  # braced in the connection string: `{Zr5;Ns}}w=3}`

LEAKY = f"""
from dataflow import MicrosoftSQLServerConnection, MongoDB, OdbcConnection, Workflow, cronjob


class Leaky(Workflow):
    def __init__(self) -> None:
        self.orders = MongoDB("mongodb://etl:{RAW}@127.0.0.1:1/shop", timeout=0.2)
        self.billing = MongoDB("mongodb://etl:{quote(ENCODED, safe="")}@127.0.0.1:1/b", timeout=0.2)
        self.erp = MicrosoftSQLServerConnection("mssql://sa:{RAW}@127.0.0.1:1/erp")
        self.legacy = OdbcConnection("Driver={{SQLite3}};Database=x.db;UID=u;PWD={{Zr5;Ns}}}}w=3}}")

    @cronjob("* * * * * *")
    def fails(self) -> None:
        raise RuntimeError("cannot reach mongodb://etl:{RAW}@127.0.0.1:1/shop or {ENCODED}")
"""


def forms(password: str) -> set[str]:
    return {password, quote(password, safe=""), quote_plus(password), quote(password)}


def leaks(text: str) -> list[str]:
    return sorted(form for p in (RAW, ENCODED, ODBC) for form in forms(p) if form in text)


def test_no_password_in_any_output_or_the_state_file(tmp_path: Path) -> None:
    write_workflow(tmp_path, "leaky", LEAKY)
    process = DataflowProcess(tmp_path, "run", "leaky", "--grace-period", "0.5")
    try:
        process.wait_for("run finished", timeout=30)
    finally:
        process.proc.send_signal(signal.SIGTERM)
        process.proc.wait(timeout=15)
    outputs = {"run": "".join(process.raw) + process.stderr}
    for command in (
        ["history", "leaky", "--json"],
        ["history", "leaky"],
        ["list", "leaky", "--json"],
        ["check", "leaky", "--timeout", "1"],
        ["check", "leaky", "--timeout", "1", "--json"],
        ["trigger", "leaky", "fails", "--json"],
        ["trigger", "leaky", "fails"],
    ):
        result = run_cli(tmp_path, *command, timeout=60)
        outputs[" ".join(command)] = result.stdout + result.stderr
    outputs["state file"] = (tmp_path / "state.db").read_bytes().decode("utf-8", "replace")
    assert "RuntimeError: cannot reach" in outputs["history leaky --json"]  # the error is there
    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    assert found == {}
