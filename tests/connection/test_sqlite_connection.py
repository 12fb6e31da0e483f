"""SQLiteConnection: the SQL connections' API on the standard library's sqlite3, across threads."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pandas as pd
import pytest

from dataflow.connection import (
    DataflowConnectionError,
    DataflowSQLError,
    QueryCancelledError,
    QueryTimeoutError,
    SQLiteConnection,
)

_SLOW = (
    "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 5000000000)"
    " SELECT count(*) FROM r"
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SQLiteConnection]:
    conn = SQLiteConnection(tmp_path / "cache.db")
    conn.connect()
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    yield conn
    conn.disconnect()


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("cache.db", "cache.db"),
        ("sqlite:///cache.db", "cache.db"),
        ("sqlite:////var/tmp/cache.db", "/var/tmp/cache.db"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        (Path("/tmp/x.db"), "/tmp/x.db"),
    ],
)
def test_path_or_url(given: str | Path, path: str) -> None:
    conn = SQLiteConnection(given)
    assert conn.path == path
    assert repr(conn) == f"SQLiteConnection({path!r})"


def test_other_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="not a SQLite path"):
        SQLiteConnection("postgres://h/db")


def test_file_database_runs_in_wal_mode(db: SQLiteConnection) -> None:
    """WAL lets readers and the writer work at once."""
    assert db.fetch("PRAGMA journal_mode") == [{"journal_mode": "wal"}]


def test_unusable_path_fails_at_connect_with_one_line(tmp_path: Path) -> None:
    conn = SQLiteConnection(tmp_path / "missing-dir" / "x.db")
    with pytest.raises(DataflowConnectionError, match=r"^cannot open sqlite:///.*x\.db: "):
        conn.connect()


def test_fetch_execute_and_parameters(db: SQLiteConnection) -> None:
    """`?` sequences and `:name` mappings both bind; execute returns the row count."""
    assert db.execute("INSERT INTO items VALUES (?, ?, ?)", (1, "a", 1.5)) == 1
    db.execute(
        "INSERT INTO items VALUES (:id, :name, :price)", {"id": 2, "name": "b", "price": None}
    )
    assert db.execute("UPDATE items SET price = 0 WHERE price IS NULL") == 1
    rows = db.fetch("SELECT * FROM items WHERE id >= ? ORDER BY id", (1,))
    assert rows == [{"id": 1, "name": "a", "price": 1.5}, {"id": 2, "name": "b", "price": 0.0}]
    db.ping()


def test_fetch_df_types_columns(db: SQLiteConnection) -> None:
    db.executemany("INSERT INTO items VALUES (?, ?, ?)", [(1, "a", 1.5), (2, None, None)])
    frame = db.fetch_df("SELECT * FROM items ORDER BY id")
    assert [str(t) for t in frame.dtypes] == ["Int64", "string", "float64"]
    assert frame["name"].isna().tolist() == [False, True]


def test_fetch_df_of_an_empty_result_keeps_the_columns(db: SQLiteConnection) -> None:
    frame = db.fetch_df("SELECT * FROM items")
    assert list(frame.columns) == ["id", "name", "price"]
    assert frame.empty


def test_iter_batches(db: SQLiteConnection) -> None:
    db.executemany("INSERT INTO items (id) VALUES (?)", [(i,) for i in range(23)])
    sizes = [len(batch) for batch in db.iter_batches("SELECT id FROM items", size=10)]
    assert sizes == [10, 10, 3]


def test_executemany_is_all_or_nothing(db: SQLiteConnection) -> None:
    with pytest.raises(DataflowSQLError, match="SQLITE_CONSTRAINT") as caught:
        db.executemany("INSERT INTO items (id) VALUES (?)", [(1,), (2,), (1,)])
    assert caught.value.code == "SQLITE_CONSTRAINT_PRIMARYKEY"
    assert db.fetch("SELECT count(*) AS n FROM items") == [{"n": 0}]


def test_transaction_commits_or_rolls_back(db: SQLiteConnection) -> None:
    with db.transaction():
        db.execute("INSERT INTO items (id) VALUES (1)")
        with db.transaction():  # nested: joins
            db.execute("INSERT INTO items (id) VALUES (2)")

    def insert_then_fail() -> None:
        with db.transaction():
            db.execute("INSERT INTO items (id) VALUES (3)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()
    assert db.fetch("SELECT id FROM items ORDER BY id") == [{"id": 1}, {"id": 2}]


def test_cancel_from_another_thread_interrupts(db: SQLiteConnection) -> None:
    threading.Timer(0.3, db.cancel).start()
    started = time.monotonic()
    with pytest.raises(QueryCancelledError, match="was cancelled"):
        db.fetch(_SLOW)
    assert time.monotonic() - started < 2
    assert db.fetch("SELECT 1 AS one") == [{"one": 1}]


def test_timeout_interrupts(db: SQLiteConnection) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match=r"timed out after 0\.3s"):
        db.fetch(_SLOW, timeout=0.3)
    assert time.monotonic() - started < 2


def test_timeout_inside_transaction_rolls_it_back(db: SQLiteConnection) -> None:
    """An interrupted statement ends the block with the timeout; nothing commits."""

    def write_then_slow_read() -> None:
        with db.transaction():
            db.execute("INSERT INTO items (id) VALUES (1)")
            db.fetch(_SLOW, timeout=0.3)

    with pytest.raises(QueryTimeoutError):
        write_then_slow_read()
    assert db.fetch("SELECT count(*) AS n FROM items") == [{"n": 0}]


def test_concurrent_writers_from_many_threads(db: SQLiteConnection) -> None:
    """Eight threads writing in transactions at once: every row lands (WAL + busy timeout)."""
    errors: list[BaseException] = []

    def write(base: int) -> None:
        try:
            for i in range(25):
                with db.transaction():
                    db.execute("INSERT INTO items (id, name) VALUES (?, ?)", (base + i, "x"))
        except BaseException as err:  # reported on the test's thread
            errors.append(err)

    threads = [threading.Thread(target=write, args=(n * 1000,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert db.fetch("SELECT count(*) AS n FROM items") == [{"n": 200}]


def test_in_memory_database_is_shared_by_threads() -> None:
    """`:memory:` is one connection for all threads, so they see the same tables."""
    conn = SQLiteConnection()
    conn.connect()
    conn.execute("CREATE TABLE t (x)")
    worker = threading.Thread(target=conn.execute, args=("INSERT INTO t VALUES (1)",))
    worker.start()
    worker.join()
    assert conn.fetch("SELECT x FROM t") == [{"x": 1}]
    conn.disconnect()


def test_disconnect_then_calls_fail_until_connect(db: SQLiteConnection) -> None:
    db.disconnect()
    with pytest.raises(DataflowConnectionError, match="not connected, call connect"):
        db.fetch("SELECT 1")
    db.connect()
    assert db.fetch("SELECT 1 AS one") == [{"one": 1}]


@pytest.mark.anyio
async def test_offloaded_calls_run_concurrently(db: SQLiteConnection) -> None:
    """Calls offloaded to AnyIO worker threads (asyncio and trio) each use their thread's handle."""
    db.executemany("INSERT INTO items (id, price) VALUES (?, ?)", [(i, i) for i in range(100)])
    totals: list[float] = []

    async def total() -> None:
        rows = await anyio.to_thread.run_sync(
            functools.partial(db.fetch, "SELECT sum(price) AS s FROM items")
        )
        totals.append(rows[0]["s"])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(total)
    assert totals == [4950.0] * 20


def test_frame_round_trip_through_sqlite(db: SQLiteConnection) -> None:
    """A DataFrame written row by row comes back with the same values and sensible dtypes."""
    frame = pd.DataFrame({"id": [1, 2], "name": ["a", None], "price": [1.5, float("nan")]})
    rows = [tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False)]
    db.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)
    back = db.fetch_df("SELECT * FROM items ORDER BY id")
    assert back["id"].tolist() == [1, 2]
    assert back["name"].tolist()[0] == "a" and pd.isna(back["name"].tolist()[1])
    assert back["price"].tolist()[0] == 1.5 and pd.isna(back["price"].tolist()[1])
