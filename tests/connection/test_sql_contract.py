"""The SQL connections' shared contract, on every SQL peer we have.

Each test runs on `OdbcConnection` over psqlODBC (against the local PostgreSQL) and over SQLite
ODBC (a file in tmp_path), and on `SQLiteConnection` (sqlite3, no unixODBC needed): fetch,
fetch_df, iter_batches, executemany, transactions, cancel, timeouts, thread use, and the errors
a caller sees.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from dataflow.connection import (
    DataflowConnectionError,
    DataflowSQLError,
    OdbcConnection,
    QueryCancelledError,
    QueryTimeoutError,
    SQLiteConnection,
)
from tests._peers import require_odbc_driver, require_pyodbc
from tests._pg import PgAdmin, pg_connection_string, unique_app

# Each driver's way to keep the server busy for far longer than any test waits.
_SLOW = {
    "postgresql": "SELECT pg_sleep(30)",
    "sqlite": (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 2000000000)"
        " SELECT count(*) FROM r"
    ),
}
_SLOW["sqlite3"] = _SLOW["sqlite"]


@dataclass
class Peer:
    name: str
    conn: OdbcConnection | SQLiteConnection
    table: str
    slow_sql: str
    driver_error: type[BaseException]  # what the driver raises, kept as the __cause__


@pytest.fixture(params=["postgresql", "sqlite", "sqlite3"])
def peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Peer]:
    """A connected SQL connection on each peer, with an empty table `table (id, name)`."""
    conn, driver_error = _connect(request.param, tmp_path)
    table = f"t_{uuid.uuid4().hex[:10]}"
    conn.connect()
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(50))")
    try:
        yield Peer(request.param, conn, table, _SLOW[request.param], driver_error)
    finally:
        conn.execute(f"DROP TABLE {table}")
        conn.disconnect()


def _connect(
    name: str, tmp_path: Path
) -> tuple[OdbcConnection | SQLiteConnection, type[BaseException]]:
    if name == "sqlite3":
        return SQLiteConnection(tmp_path / "native.db"), sqlite3.Error
    pyodbc = require_pyodbc()  # the ODBC legs drive unixODBC: skipped (failed in CI) without it
    if name == "postgresql":
        require_odbc_driver("PostgreSQL Unicode")
        app = unique_app()
        PgAdmin(app).close()  # skips (or fails in CI) when the server is down
        return OdbcConnection(pg_connection_string(app)), pyodbc.Error
    require_odbc_driver("SQLite3")
    return OdbcConnection(f"DRIVER={{SQLite3}};Database={tmp_path / 'odbc.db'}"), pyodbc.Error


def _fill(peer: Peer, n: int) -> None:
    peer.conn.executemany(
        f"INSERT INTO {peer.table} (id, name) VALUES (?, ?)", [(i, f"n{i}") for i in range(n)]
    )


def _count(peer: Peer) -> int:
    return int(peer.conn.fetch(f"SELECT count(*) AS n FROM {peer.table}")[0]["n"])


def test_fetch_returns_rows_as_dicts_with_bound_parameters(peer: Peer) -> None:
    """fetch binds `?` parameters and names each value by its column."""
    _fill(peer, 5)
    rows = peer.conn.fetch(f"SELECT id, name FROM {peer.table} WHERE id >= ? ORDER BY id", (3,))
    assert rows == [{"id": 3, "name": "n3"}, {"id": 4, "name": "n4"}]


def test_fetch_df_builds_typed_frame(peer: Peer) -> None:
    """fetch_df gives nullable integer and string columns, missing values included."""
    _fill(peer, 3)
    peer.conn.execute(f"INSERT INTO {peer.table} (id, name) VALUES (?, ?)", (9, None))
    frame = peer.conn.fetch_df(f"SELECT id, name FROM {peer.table} ORDER BY id")
    assert list(frame.columns) == ["id", "name"]
    assert str(frame["id"].dtype) == "Int64"
    assert frame["name"].dtype == pd.StringDtype()
    assert frame["name"].isna().tolist() == [False, False, False, True]


def test_iter_batches_streams_in_batches_of_size(peer: Peer) -> None:
    """iter_batches yields lists of at most `size` rows, in order, and nothing more."""
    _fill(peer, 25)
    batches = list(peer.conn.iter_batches(f"SELECT id FROM {peer.table} ORDER BY id", size=10))
    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert [row["id"] for batch in batches for row in batch] == list(range(25))


def test_iter_batches_stopped_early_leaves_connection_usable(peer: Peer) -> None:
    """Breaking out of iter_batches closes its cursor; the next statement runs normally."""
    _fill(peer, 30)
    for batch in peer.conn.iter_batches(f"SELECT id FROM {peer.table} ORDER BY id", size=10):
        assert len(batch) == 10
        break
    assert _count(peer) == 30


def test_executemany_inserts_every_row(peer: Peer) -> None:
    """executemany runs the statement for each parameter row (row by row on these drivers)."""
    _fill(peer, 500)
    assert _count(peer) == 500


def test_executemany_is_all_or_nothing(peer: Peer) -> None:
    """A failing row (duplicate key) rolls back the rows before it: one transaction."""
    rows = [(1, "a"), (2, "b"), (1, "duplicate")]
    with pytest.raises(DataflowSQLError) as caught:
        peer.conn.executemany(f"INSERT INTO {peer.table} (id, name) VALUES (?, ?)", rows)
    assert caught.value.code  # the SQLSTATE, e.g. 23505 / 23000
    assert _count(peer) == 0


def test_transaction_commits_at_end_of_block(peer: Peer) -> None:
    """Statements inside `with transaction()` are visible after the block."""
    with peer.conn.transaction():
        peer.conn.execute(f"INSERT INTO {peer.table} (id, name) VALUES (1, 'a')")
        with peer.conn.transaction():  # nested: joins the outer transaction
            peer.conn.execute(f"INSERT INTO {peer.table} (id, name) VALUES (2, 'b')")
    assert _count(peer) == 2


def test_transaction_rolls_back_when_block_raises(peer: Peer) -> None:
    """An exception in the block undoes its statements and propagates unchanged."""

    def insert_then_fail() -> None:
        with peer.conn.transaction():
            peer.conn.execute(f"INSERT INTO {peer.table} (id, name) VALUES (1, 'a')")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()
    assert _count(peer) == 0
    peer.conn.execute(f"INSERT INTO {peer.table} (id, name) VALUES (1, 'a')")  # autocommit again
    assert _count(peer) == 1


def test_cancel_from_another_thread_stops_running_statement(peer: Peer) -> None:
    """cancel() called from another thread makes the blocked call return at once."""
    threading.Timer(0.3, peer.conn.cancel).start()
    started = time.monotonic()
    with pytest.raises(QueryCancelledError, match="was cancelled"):
        peer.conn.fetch(peer.slow_sql)
    assert time.monotonic() - started < 2.0
    assert peer.conn.fetch("SELECT 1 AS one") == [{"one": 1}]  # the connection survives


def test_call_timeout_stops_statement(peer: Peer) -> None:
    """A per-call timeout stops the statement and raises QueryTimeoutError (a TimeoutError)."""
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match=r"timed out after 0\.5s") as caught:
        peer.conn.fetch(peer.slow_sql, timeout=0.5)
    assert isinstance(caught.value, TimeoutError)
    assert 0.4 < time.monotonic() - started < 2.5
    assert peer.conn.fetch("SELECT 1 AS one") == [{"one": 1}]


def test_connection_timeout_applies_to_every_call(peer: Peer) -> None:
    """The connection's `timeout` attribute bounds calls that pass none of their own."""
    peer.conn.timeout = 0.5
    with pytest.raises(QueryTimeoutError):
        peer.conn.fetch(peer.slow_sql)
    peer.conn.timeout = None
    assert peer.conn.fetch("SELECT 1 AS one") == [{"one": 1}]


def test_worker_threads_each_get_their_own_connection(peer: Peer) -> None:
    """Eight threads using one connection object at once all succeed (neither pyodbc nor sqlite3
    connections may be shared between threads)."""
    _fill(peer, 100)
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                results.append(_count(peer))
        except BaseException as err:  # reported below, on the test's thread
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == [100] * 160


def test_calls_before_connect_name_the_target(peer: Peer) -> None:
    """After disconnect() a call fails with one clear line instead of reopening silently."""
    peer.conn.disconnect()
    with pytest.raises(DataflowConnectionError, match="not connected, call connect"):
        peer.conn.fetch("SELECT 1 AS one")
    peer.conn.connect()


def test_duplicate_column_names_are_refused(peer: Peer) -> None:
    """Two result columns with one name would overwrite each other in a dict: refused."""
    with pytest.raises(DataflowSQLError, match="duplicate column names"):
        peer.conn.fetch("SELECT 1 AS a, 2 AS a")


def test_sql_error_is_one_clear_line(peer: Peer) -> None:
    """A failing statement raises DataflowSQLError naming the call, target and SQLSTATE."""
    with pytest.raises(DataflowSQLError) as caught:
        peer.conn.fetch("SELECT * FROM no_such_table_here")
    message = str(caught.value)
    assert message.startswith("fetch on ")
    assert "\n" not in message
    assert caught.value.code in message
    assert isinstance(caught.value.__cause__, peer.driver_error)


def test_a_sql_error_keeps_the_drivers_own_words(peer: Peer) -> None:
    """A wrong parameter count: the error says what the driver said (pyodbc's own errors put
    the message first and the SQLSTATE second), not just a code."""
    with pytest.raises(DataflowSQLError) as caught:
        peer.conn.fetch("SELECT 1 AS one", (5,))
    message = str(caught.value)
    cause = caught.value.__cause__
    assert isinstance(cause, peer.driver_error)
    driver_words = {"postgresql": "parameter markers", "sqlite": "parameter markers"}
    assert driver_words.get(peer.name, "bindings") in message
    if peer.name != "sqlite3":
        assert caught.value.code == "HY000" and "[HY000]" in message
