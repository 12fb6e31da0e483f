"""A run's timeout stops the server's work: the statement is cancelled, not just abandoned."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflow import Workflow, cronjob
from dataflow.connection import OdbcConnection, QueryCancelledError
from dataflow.state import StateStore
from tests._peers import require_pyodbc
from tests._pg import PgAdmin, pg_connection_string, unique_app
from tests._runtime import running, until

require_pyodbc()  # the whole module drives unixODBC: skipped (failed in CI) without it

pytestmark = pytest.mark.anyio


async def test_a_timed_out_run_cancels_its_running_query(tmp_path: Path) -> None:
    app = unique_app()
    admin = PgAdmin(app)
    errors: list[BaseException] = []
    conn = OdbcConnection(pg_connection_string(app))
    conn.connect()

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *", timeout=0.3)
        def slow_query(self) -> None:
            try:
                conn.fetch("SELECT pg_sleep(30)")
            except QueryCancelledError as exc:
                errors.append(exc)
                raise

    def statuses() -> list[str]:
        store = StateStore(tmp_path / "state.db")
        try:
            return [r.status for r in store.runs("w", "slow_query")]
        finally:
            store.close()

    try:
        async with running(W(), tmp_path):
            await until(lambda: "timed_out" in statuses(), timeout=5)
        assert errors, "the handler's query was not cancelled"
        assert admin.wait_until(lambda: not admin.running("pg_sleep"), timeout=2)
    finally:
        conn.disconnect()
        admin.close()
