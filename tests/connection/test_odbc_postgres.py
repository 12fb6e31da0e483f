"""OdbcConnection against the local PostgreSQL through psqlODBC: what a network server adds.

PostgreSQL stands in for SQL Server's network behaviour. The server itself is the witness:
`pg_stat_activity` shows whether a cancelled query really stopped, and `pg_terminate_backend`
kills a session the way a failover or a network cut would.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import pytest
from structlog.testing import capture_logs

from dataflow.connection import (
    ConnectionLostError,
    DataflowConnectionError,
    OdbcConnection,
    QueryCancelledError,
    QueryTimeoutError,
    RetryPolicy,
)
from tests._peers import require_odbc_driver, require_pyodbc
from tests._pg import PgAdmin, pg_connection_string, unique_app

require_pyodbc()  # the whole module drives unixODBC: skipped (failed in CI) without it

T = TypeVar("T")
_SECRET = "S3cret-Passw0rd;with}}odd{chars"
_FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01)


@pytest.fixture
def app() -> str:
    require_odbc_driver("PostgreSQL Unicode")
    return unique_app()


@pytest.fixture
def admin(app: str) -> Iterator[PgAdmin]:
    admin = PgAdmin(app)
    yield admin
    admin.close()


@pytest.fixture
def conn(app: str, admin: PgAdmin) -> Iterator[OdbcConnection]:
    conn = OdbcConnection(pg_connection_string(app), retry=_FAST_RETRY)
    conn.connect()
    yield conn
    conn.disconnect()


@pytest.fixture
def table(conn: OdbcConnection) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name TEXT, at TIMESTAMP)")
    yield name
    conn.execute(f"DROP TABLE {name}")


def _pid(conn: OdbcConnection) -> int:
    return int(conn.fetch("SELECT pg_backend_pid() AS pid")[0]["pid"])


def test_cancel_stops_the_query_on_the_server(conn: OdbcConnection, admin: PgAdmin) -> None:
    """A cancel from another thread returns in well under the sleep and ends the server query."""
    threading.Timer(0.5, conn.cancel).start()
    started = time.monotonic()
    with pytest.raises(QueryCancelledError):
        conn.fetch("SELECT pg_sleep(30)")
    assert time.monotonic() - started < 1.5  # the sleep was 30 s
    assert admin.wait_until(lambda: not admin.running("pg_sleep"), timeout=3)


def test_timeout_stops_the_query_on_the_server(conn: OdbcConnection, admin: PgAdmin) -> None:
    """psqlODBC refuses pyodbc's Connection.timeout; the watchdog's SQLCancel stops it instead."""
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError):
        conn.fetch("SELECT pg_sleep(30)", timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert admin.wait_until(lambda: not admin.running("pg_sleep"), timeout=3)


def test_cancel_targets_one_thread(conn: OdbcConnection, admin: PgAdmin) -> None:
    """cancel(thread_id) stops that thread's statement and leaves the other thread's running."""
    outcome: dict[str, BaseException | None] = {}
    idents: dict[str, int] = {}

    def sleep(name: str, seconds: float) -> None:
        idents[name] = threading.get_ident()
        try:
            conn.fetch(f"SELECT pg_sleep({seconds})")
            outcome[name] = None
        except BaseException as err:  # checked on the test's thread
            outcome[name] = err

    threads = {n: threading.Thread(target=sleep, args=(n, s)) for n, s in (("a", 30), ("b", 1.5))}
    for thread in threads.values():
        thread.start()
    assert admin.wait_until(lambda: len(admin.running("pg_sleep")) == 2, timeout=5)
    conn.cancel(thread_id=idents["a"])
    for thread in threads.values():
        thread.join(timeout=10)
    assert isinstance(outcome["a"], QueryCancelledError)
    assert outcome["b"] is None


async def _run_cancellable(conn: OdbcConnection, call: Callable[[], T]) -> T:
    """What the runtime does with a blocking SQL call: offload it; when cancelled, stop it."""
    try:
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        conn.cancel()  # the abandoned worker's statement ends on the server, the thread returns
        raise


@pytest.mark.anyio
async def test_cancelled_scope_cancels_the_server_query(
    conn: OdbcConnection, admin: PgAdmin
) -> None:
    """A cancelled AnyIO scope (asyncio and trio) stops the query it was waiting on."""
    started = time.monotonic()
    with anyio.move_on_after(0.5) as scope:
        await _run_cancellable(conn, functools.partial(conn.fetch, "SELECT pg_sleep(30)"))
    assert scope.cancelled_caught
    assert time.monotonic() - started < 1.5
    with anyio.fail_after(5):
        while admin.running("pg_sleep"):
            await anyio.sleep(0.02)


def test_killed_connection_is_detected_and_reopened_for_reads(
    conn: OdbcConnection, admin: PgAdmin
) -> None:
    """After pg_terminate_backend a read reconnects and retries, logging the retry."""
    before = _pid(conn)
    admin.terminate(before)
    assert admin.wait_until(lambda: all(s["pid"] != before for s in admin.sessions()))
    with capture_logs() as logs:
        after = _pid(conn)
    assert after != before
    assert [log["event"] for log in logs] == ["sql.retry"]


def test_killed_connection_is_not_retried_for_writes(
    conn: OdbcConnection, admin: PgAdmin, table: str
) -> None:
    """A non-idempotent statement on a dead connection raises; the next call reconnects."""
    admin.terminate(_pid(conn))
    admin.wait_until(lambda: len(admin.sessions()) == 0)
    with pytest.raises(ConnectionLostError, match=r"connection lost \[57P01\]"):
        conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
    assert conn.execute(f"INSERT INTO {table} (id) VALUES (1)", idempotent=True) == 1


def test_connection_killed_inside_transaction_rolls_back(
    conn: OdbcConnection, admin: PgAdmin, table: str
) -> None:
    """A session killed mid-transaction fails the block; nothing commits; then work resumes."""

    def insert_killed_insert() -> None:
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
            admin.terminate(_pid(conn))
            conn.execute(f"INSERT INTO {table} (id) VALUES (2)")

    with pytest.raises(ConnectionLostError, match="connection lost"):
        insert_killed_insert()
    assert conn.fetch(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]


def test_disconnect_closes_every_threads_session(conn: OdbcConnection, admin: PgAdmin) -> None:
    """Connections opened by worker threads are tracked and all closed by disconnect()."""
    threads = [threading.Thread(target=conn.ping) for _ in range(4)]
    for thread in threads:
        thread.start()
        thread.join()
    assert len(admin.sessions()) >= 2  # the test thread's plus the workers' (until reaped)
    conn.disconnect()
    assert admin.wait_until(lambda: admin.sessions() == [])


def test_finished_threads_connections_are_closed(conn: OdbcConnection, admin: PgAdmin) -> None:
    """A worker thread that ended leaves no session behind once another thread comes along."""
    for _ in range(3):
        thread = threading.Thread(target=conn.ping)
        thread.start()
        thread.join()
    conn.ping()  # the test thread's call reaps the slots of threads that ended
    assert admin.wait_until(lambda: len(admin.sessions()) == 1)


@pytest.mark.parametrize(
    "bad", [{"port": 1}, {"user": "nobody_here"}], ids=["bad-host", "bad-credentials"]
)
def test_bad_target_gives_one_line_without_password(app: str, bad: dict[str, Any]) -> None:
    """A bad host or login raises one DataflowConnectionError line naming the target, no secret."""
    escaped = "{" + _SECRET.replace("}", "}}") + "}"
    conn = OdbcConnection(pg_connection_string(app, PWD=escaped, **bad), retry=_FAST_RETRY)
    with pytest.raises(DataflowConnectionError) as caught:
        conn.connect()
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL Unicode at ")
    assert "\n" not in message
    assert _SECRET not in message and _SECRET not in repr(caught.value)
    assert _SECRET not in repr(conn) and "PWD=***" in repr(conn)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_fast_executemany_when_asked_is_faster_but_drops_microseconds(
    app: str, admin: PgAdmin
) -> None:
    """Why psqlODBC does not get fast_executemany by default (a characterization test).

    Opted in, it works and is faster, but datetime parameters lose their microseconds. If
    this ever fails on the microseconds, psqlODBC can join the default list.
    """
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    kept = {}
    for fast in (False, True):
        conn = OdbcConnection(pg_connection_string(app), fast_executemany=fast)
        conn.connect()
        name = f"t_{uuid.uuid4().hex[:10]}"
        conn.execute(f"CREATE TABLE {name} (id INTEGER, at TIMESTAMP)")
        conn.executemany(f"INSERT INTO {name} VALUES (?, ?)", [(i, moment) for i in range(50)])
        kept[fast] = conn.fetch(f"SELECT DISTINCT at FROM {name}")
        conn.execute(f"DROP TABLE {name}")
        conn.disconnect()
    assert kept[False] == [{"at": moment}]
    assert kept[True] == [{"at": moment.replace(microsecond=0)}]


def test_fast_executemany_unsupported_falls_back_row_by_row(app: str, admin: PgAdmin) -> None:
    """psqlODBC's ANSI driver rejects parameter arrays (HYC00): rows go in one by one."""
    require_odbc_driver("PostgreSQL ANSI")
    string = pg_connection_string(app, driver="PostgreSQL ANSI")
    conn = OdbcConnection(string, fast_executemany=True, encoding="utf-8")
    conn.connect()
    name = f"t_{uuid.uuid4().hex[:10]}"
    try:
        conn.execute(f"CREATE TABLE {name} (id INTEGER, name TEXT)")
        with capture_logs() as logs:
            conn.executemany(f"INSERT INTO {name} VALUES (?, ?)", [(1, "é"), (2, "ß")])
            conn.executemany(f"INSERT INTO {name} VALUES (?, ?)", [(3, "c")])
        rows = conn.fetch(f"SELECT id, name FROM {name} ORDER BY id")
        assert rows == [{"id": 1, "name": "é"}, {"id": 2, "name": "ß"}, {"id": 3, "name": "c"}]
        events = [log["event"] for log in logs]
        assert events == ["sql.fast_executemany_unsupported"]  # once: remembered afterwards
    finally:
        conn.execute(f"DROP TABLE {name}")
        conn.disconnect()


def test_iter_batches_streams_a_large_result_with_declare_fetch(app: str, admin: PgAdmin) -> None:
    """With UseDeclareFetch=1 psqlODBC fetches on demand: the first batch of 10^6 comes fast."""
    conn = OdbcConnection(pg_connection_string(app, UseDeclareFetch="1", Fetch="1000"))
    conn.connect()
    try:
        started = time.monotonic()
        batches = conn.iter_batches("SELECT generate_series(1, 1000000) AS n", size=500)
        first = next(batches)
        assert [row["n"] for row in first] == list(range(1, 501))
        assert time.monotonic() - started < 1.0
        batches.close()
    finally:
        conn.disconnect()
