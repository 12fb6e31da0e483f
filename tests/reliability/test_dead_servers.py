"""Servers that go away under a running `python -m dataflow`, and come back.

PostgreSQL through psqlODBC stands in for SQL Server: a TCP proxy in front of the machine's
server is "stopped" (connections reset, new ones refused) and "started" again; a backend is
killed mid-query with `pg_terminate_backend`. mockupdb hangs up on a change stream's getMore and
then on the resumes. Each time the runs fail or retry by their policy, the process stays up, and
work goes on once the server is back, with no event lost or repeated.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests._change_stream_peer import change_streams, open_oplog, token
from tests._mockupdb_peer import HANGUP
from tests._peers import require_odbc_driver
from tests._pg import PG_PORT, PgAdmin, pg_connection_string, unique_app
from tests.reliability._proc import DataflowProcess, alive, runs, started, write_workflow
from tests.reliability._proxy import TcpProxy
from tests.reliability._streams import handled_ids

pytestmark = pytest.mark.slow

PASSWORD = "Wh4t-ever;S3cret"  # trust auth ignores it; it must still never be shown

WAREHOUSE = """
from dataflow import Workflow, cronjob, startup
from dataflow.connection import OdbcConnection, RetryPolicy


class Warehouse(Workflow):
    db = OdbcConnection(
        {connection!r}, retry=RetryPolicy(attempts=2, base_delay=0.05), connect_timeout=2
    )

    @startup
    def open_warehouse(self):
        self.db.connect()

    @cronjob("* * * * * *", retries=1, retry_delay=0.1)
    def count_orders(self):
        self.db.fetch({sql!r})
"""

FEED = """
from dataflow import Workflow, mongodb_change_stream


class Feed(Workflow):
    @mongodb_change_stream({url!r}, "shop", "orders", max_await_time=0.2, reconnect_delay=0.1)
    def orders(self, change):
        with open("handled.txt", "a") as out:
            out.write(f"{{change['documentKey']['_id']}}\\n")
"""


@pytest.fixture
def app() -> str:
    require_odbc_driver("PostgreSQL Unicode")
    PgAdmin(unique_app()).close()  # skips (or fails in CI) when the server is not there
    return unique_app()


def finished(process: DataflowProcess, status: str, after: int = 0) -> list[dict[str, object]]:
    """`count_orders` runs that finished with `status`, among log lines from `after` on."""
    return [
        line
        for line in process.lines[after:]
        if line.get("event") == "run finished"
        and line.get("status") == status
        and line.get("trigger") == "count_orders"
    ]


def failed_fires(project: Path) -> set[str | None]:
    return {row.scheduled_at for row in runs(project / "state.db") if row.status == "failed"}


def test_postgres_stopped_fails_runs_by_policy_and_the_run_after_its_return_succeeds(
    tmp_path: Path, app: str
) -> None:
    """Server gone: each fire fails after its retry (attempts 1 and 2, one line naming the
    target, no password), and fires keep coming; back: the next run succeeds, exit 0."""
    with TcpProxy(PG_PORT) as proxy:
        connection = pg_connection_string(app, port=proxy.port, PWD=PASSWORD)
        write_workflow(
            tmp_path,
            "warehouse",
            WAREHOUSE.format(connection=connection, sql="SELECT count(*) AS n FROM pg_class"),
        )
        with started(tmp_path, "run", "warehouse", "--backend", "asyncio") as process:
            process.wait_until(lambda: len(finished(process, "succeeded")) >= 2, "2 good runs")
            proxy.down()
            down_at = len(process.lines)
            process.wait_until(
                lambda: len(failed_fires(tmp_path)) >= 2, "2 fires failed while the server is gone"
            )
            assert alive(process.pid) and finished(process, "failed", down_at)
            proxy.up()
            up_at = len(process.lines)
            process.wait_until(lambda: finished(process, "succeeded", up_at), "a good run")
            result = process.stop(signal.SIGTERM)
    assert result.code == 0, result.stderr
    failed = [row for row in runs(tmp_path / "state.db", "count_orders") if row.status == "failed"]
    first_fire = [row.attempt for row in failed if row.scheduled_at == failed[0].scheduled_at]
    assert first_fire == [1, 2]  # retried once, by the cron policy
    target = f"PostgreSQL Unicode at postgres@127.0.0.1:{proxy.port}/test"
    error = (failed[0].error or "").splitlines()[-1]
    assert target in error and ("connection lost" in error or "cannot connect" in error)
    everything = process.stdout + result.stderr + "".join(row.error or "" for row in failed)
    assert PASSWORD not in everything and "Wh4t-ever" not in everything


def test_postgres_backend_killed_mid_query_is_retried_and_the_runtime_goes_on(
    tmp_path: Path, app: str
) -> None:
    """`pg_terminate_backend` on the session while its query runs: the connection is lost, the
    read is retried on a new connection (the connection's retry policy), the run succeeds and
    later runs too; the process never stops."""
    admin = PgAdmin(app)
    try:
        connection = pg_connection_string(app, PWD=PASSWORD)
        write_workflow(
            tmp_path,
            "warehouse",
            WAREHOUSE.format(connection=connection, sql="SELECT pg_sleep(0.6) AS slept"),
        )
        with started(tmp_path, "run", "warehouse", "--backend", "trio") as process:
            process.wait_until(lambda: admin.running("pg_sleep"), "a query running", 10)
            [session] = admin.running("pg_sleep")
            admin.terminate(session["pid"])
            retry = process.wait_for("sql.retry")
            killed_at = len(process.lines)
            process.wait_until(
                lambda: len(finished(process, "succeeded", killed_at)) >= 2,
                "two good runs after the kill",
            )
            assert alive(process.pid)
            result = process.stop(signal.SIGTERM)
    finally:
        admin.close()
    assert result.code == 0, result.stderr
    assert "connection lost [57P01]" in str(retry["error"])  # terminated by administrator
    statuses = {row.status for row in runs(tmp_path / "state.db", "count_orders")}
    assert statuses <= {"succeeded", "skipped", "cancelled"}  # no run lost to the kill
    assert PASSWORD not in process.stdout + result.stderr


def test_mongodb_hanging_up_mid_change_stream_resumes_with_nothing_lost(tmp_path: Path) -> None:
    """The server hangs up on a getMore, then on pymongo's resume and on the trigger's first
    reopen: the trigger backs off and reopens after the last handled event. 100 events, each
    handled once, in order."""
    with open_oplog() as oplog:
        write_workflow(tmp_path, "feed", FEED.format(url=oplog.mongo.url("shop")))
        with started(tmp_path, "run", "feed") as process:
            process.wait_for("workflow running")
            oplog.updates(50)
            process.wait_until(lambda: len(handled_ids(tmp_path)) == 50, "50 events handled")
            oplog.mongo.script("aggregate", HANGUP, HANGUP)
            oplog.mongo.script("getMore", HANGUP)
            process.wait_for("change stream interrupted: reopening from the saved position")
            oplog.updates(50)
            process.wait_for("change stream reopened")
            process.wait_until(lambda: len(handled_ids(tmp_path)) >= 100, "100 events handled")
            result = process.stop(signal.SIGTERM)
        opened = change_streams(oplog.mongo)
    assert result.code == 0, result.stderr
    assert handled_ids(tmp_path) == list(range(1, 101))
    assert opened[-1] == {"startAfter": token(50)}  # reopened after the last handled event
    assert len(opened) >= 4  # the first open, pymongo's resume and the reopens that hung up
