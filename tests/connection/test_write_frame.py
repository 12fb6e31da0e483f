"""`write_frame` on the SQL connections: every column type written and read back, upsert, batches.

Three real targets: SQLite through the standard library, the same file format through the SQLite
ODBC driver, and PostgreSQL through psqlODBC (each test on its own table, dropped afterwards).
What comes back is what was written, by the documented conversions: SQLite keeps Decimal,
datetimes and dates as text (aware ones in UTC with `+00:00`); ODBC sources get the values
themselves (aware datetimes as UTC-naive).
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dataflow.connection import (
    DataflowSQLError,
    FrameWriteError,
    OdbcConnection,
    SQLiteConnection,
)
from tests._peers import require_odbc_driver, require_pyodbc
from tests._pg import pg_connection_string, unique_app

D = decimal.Decimal
SQLITE_DDL = (
    "id INTEGER PRIMARY KEY, qty INTEGER, price REAL, flag INTEGER, maybe INTEGER, name TEXT,"
    " note TEXT, amount TEXT, naive TEXT, aware TEXT, day TEXT, blob BLOB, cat TEXT"
)
PG_DDL = (
    "id INTEGER PRIMARY KEY, qty INTEGER, price DOUBLE PRECISION, flag BOOLEAN, maybe BOOLEAN,"
    " name TEXT, note TEXT, amount NUMERIC(12, 2), naive TIMESTAMP, aware TIMESTAMP, day DATE,"
    " blob BYTEA, cat TEXT"
)


def times(values: list[str | None], *, utc: bool = False) -> pd.Series[Any]:
    return pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601", utc=utc)


def every_type() -> pd.DataFrame:
    """One column per kind the issue names; row 2 holds every kind of missing value."""
    return pd.DataFrame(
        {
            "id": np.array([1, 2, 3], dtype="int64"),
            "qty": pd.array([5, None, 7], dtype="Int64"),
            "price": [1.5, np.nan, -2.25],
            "flag": np.array([True, False, True]),
            "maybe": pd.array([True, None, False], dtype="boolean"),
            "name": pd.array(["a", None, "ü'\""], dtype="string"),
            "note": ["x", None, "z"],
            "amount": [D("1.10"), D("NaN"), D("-3.25")],
            "naive": times(["2024-01-02 03:04:05.123456789", None, "1999-12-31"]),
            "aware": times(
                ["2024-06-01T12:00:00.5+02:00", None, "2024-01-01T00:00Z"], utc=True
            ).dt.tz_convert("Europe/Berlin"),
            "day": [dt.date(2024, 1, 2), None, dt.date(1970, 1, 1)],
            "blob": [b"\x00\x01", None, b"z"],
            "cat": pd.Categorical(["red", None, "red"]),
        }
    )


MISSING_ROW = {"id": 2, "flag": False, **dict.fromkeys(["qty", "price", "maybe", "name"])}
MISSING_ROW |= dict.fromkeys(["note", "amount", "naive", "aware", "day", "blob", "cat"])
COMMON = {"qty": 5, "price": 1.5, "name": "a", "note": "x", "blob": b"\x00\x01", "cat": "red"}
THIRD = {"qty": 7, "price": -2.25, "name": "ü'\"", "note": "z", "blob": b"z", "cat": "red"}
AS_TEXT = [  # SQLite: what the documented conversion stores
    {"id": 1, **COMMON, "flag": 1, "maybe": 1, "amount": "1.10"}
    | {"naive": "2024-01-02T03:04:05.123456", "aware": "2024-06-01T10:00:00.500000+00:00"}
    | {"day": "2024-01-02"},
    {**MISSING_ROW, "flag": 0},
    {"id": 3, **THIRD, "flag": 1, "maybe": 0, "amount": "-3.25"}
    | {"naive": "1999-12-31T00:00:00.000000", "aware": "2024-01-01T00:00:00.000000+00:00"}
    | {"day": "1970-01-01"},
]
AS_VALUES = [  # PostgreSQL: the values themselves, aware datetimes as UTC-naive
    {"id": 1, **COMMON, "flag": True, "maybe": True, "amount": D("1.10")}
    | {
        "naive": dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        "aware": dt.datetime(2024, 6, 1, 10, 0, 0, 500000),
    }
    | {"day": dt.date(2024, 1, 2)},
    MISSING_ROW,
    {"id": 3, **THIRD, "flag": True, "maybe": False, "amount": D("-3.25")}
    | {"naive": dt.datetime(1999, 12, 31), "aware": dt.datetime(2024, 1, 1)}
    | {"day": dt.date(1970, 1, 1)},
]


@dataclass
class Target:
    conn: SQLiteConnection | OdbcConnection
    ddl: str
    expected: list[dict[str, Any]]
    cleanup: list[str]

    def table(self, ddl: str | None = None, name: str = "") -> str:
        """A fresh table (dropped after the test), by default with the all-types columns."""
        name = name or f"wf_{uuid.uuid4().hex[:10]}"
        self.conn.execute(f"CREATE TABLE {quote(name)} ({ddl or self.ddl})")
        self.cleanup.append(name)
        return name

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.conn.fetch(f"SELECT * FROM {quote(table)} ORDER BY id")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite(tmp_path: Path) -> SQLiteConnection:
    return SQLiteConnection(tmp_path / "frames.db")


def _sqlite_odbc(tmp_path: Path) -> OdbcConnection:
    require_pyodbc()
    require_odbc_driver("SQLite3")
    return OdbcConnection(f"DRIVER={{SQLite3}};Database={tmp_path / 'frames.db'}")


def _postgres(tmp_path: Path) -> OdbcConnection:
    require_pyodbc()
    require_odbc_driver("PostgreSQL Unicode")
    return OdbcConnection(pg_connection_string(unique_app()))


TARGETS: dict[str, tuple[Callable[[Path], Any], str, list[dict[str, Any]]]] = {
    "sqlite": (_sqlite, SQLITE_DDL, AS_TEXT),
    "sqlite-odbc": (_sqlite_odbc, SQLITE_DDL, AS_TEXT),
    "postgres-odbc": (_postgres, PG_DDL, AS_VALUES),
}


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    opener, ddl, expected = TARGETS[request.param]
    conn = opener(tmp_path)
    conn.connect()
    made = Target(conn, ddl, expected, [])
    try:
        yield made
    finally:
        for name in made.cleanup:
            conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")
        conn.disconnect()


def test_every_column_type_round_trips(target: Target) -> None:
    """Decimal, naive and aware datetimes, dates, numpy and nullable columns, strings, bytes and
    every kind of missing value come back as the documented conversion says."""
    table = target.table()
    assert target.conn.write_frame(table, every_type()) == 3
    assert target.rows(table) == target.expected


def test_upsert_updates_existing_rows_and_inserts_new_ones(target: Target) -> None:
    table = target.table("id INTEGER PRIMARY KEY, name TEXT, price REAL")
    first = pd.DataFrame({"id": [1, 2], "name": ["one", "two"], "price": [1.0, 2.0]})
    target.conn.write_frame(table, first)
    second = pd.DataFrame({"id": [2, 3], "name": ["TWO", "three"], "price": [2.5, np.nan]})
    assert target.conn.write_frame(table, second, mode="upsert", keys="id") == 2
    assert target.rows(table) == [
        {"id": 1, "name": "one", "price": 1.0},
        {"id": 2, "name": "TWO", "price": 2.5},
        {"id": 3, "name": "three", "price": None},
    ]


def test_an_empty_frame_writes_nothing_and_raises_nothing(target: Target) -> None:
    table = target.table()
    assert target.conn.write_frame(table, every_type().iloc[:0]) == 0
    assert target.conn.write_frame(table, pd.DataFrame(), mode="upsert", keys="id") == 0
    assert target.rows(table) == []


def test_columns_that_do_not_match_the_table_are_named(target: Target) -> None:
    """One error naming the frame's columns the table lacks, and the table's the frame lacks
    as a hint (a typo); nothing is written."""
    table = target.table("id INTEGER PRIMARY KEY, name TEXT, price REAL")
    frame = pd.DataFrame({"id": [1], "nme": ["typo"], "cost": [2.0]})
    with pytest.raises(FrameWriteError) as caught:
        target.conn.write_frame(table, frame)
    assert str(caught.value) == (
        f"write_frame into {table}: the frame has columns the table does not: ['nme', 'cost'];"
        " the table's columns not in the frame: ['name', 'price']; rename or drop them"
    )
    assert target.rows(table) == []


def test_table_columns_the_frame_leaves_out_take_their_defaults(target: Target) -> None:
    """A frame without the table's defaulted columns (its key, a `source` with a default)
    writes: the database fills them in."""
    table = target.table("id INTEGER PRIMARY KEY, name TEXT, source TEXT DEFAULT 'etl'")
    frame = pd.DataFrame({"id": [1, 2], "name": ["a", "b"]})
    assert target.conn.write_frame(table, frame) == 2
    assert target.rows(table) == [
        {"id": 1, "name": "a", "source": "etl"},
        {"id": 2, "name": "b", "source": "etl"},
    ]


@pytest.mark.parametrize(
    ("values", "kind"), [([{"a": 1}, None], "dict"), ([1 + 2j, 3j], "complex")]
)
def test_a_column_the_target_cannot_hold_is_named_with_its_type(
    target: Target, values: list[Any], kind: str
) -> None:
    """Refused before any statement: a FrameWriteError (a ValueError, not a failed statement's
    DataflowSQLError), naming the column, its type and the fix."""
    table = target.table("id INTEGER PRIMARY KEY, payload TEXT")
    frame = pd.DataFrame({"id": [1, 2], "payload": values})
    with pytest.raises(FrameWriteError, match=f"column 'payload' holds {kind}") as caught:
        target.conn.write_frame(table, frame)
    assert isinstance(caught.value, ValueError) and "json.dumps" in str(caught.value)
    assert target.rows(table) == []


def test_batches_split_the_rows_in_one_transaction(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batch_size rows per executemany; a failing batch rolls back the ones before it."""
    table = target.table("id INTEGER PRIMARY KEY, name TEXT")
    sizes: list[int] = []
    executemany = target.conn.executemany

    def counted(sql: str, rows: Any, **options: Any) -> None:
        sizes.append(len(rows))
        executemany(sql, rows, **options)

    monkeypatch.setattr(target.conn, "executemany", counted)
    frame = pd.DataFrame({"id": range(7), "name": [f"n{i}" for i in range(7)]})
    assert target.conn.write_frame(table, frame, batch_size=3) == 7
    assert sizes == [3, 3, 1]
    assert [row["id"] for row in target.rows(table)] == list(range(7))

    clash = pd.DataFrame({"id": [10, 11, 12, 0], "name": ["a", "b", "c", "dup"]})
    with pytest.raises(DataflowSQLError):
        target.conn.write_frame(table, clash, batch_size=2)  # the second batch repeats id 0
    assert len(target.rows(table)) == 7  # the first batch (10, 11) was rolled back too


def test_names_are_quoted_not_spliced(target: Target) -> None:
    """A table or column name holding quotes and SQL is only a name."""
    evil = 'we"ird; DROP TABLE x --'
    table = target.table(
        f"id INTEGER PRIMARY KEY, {quote(evil)} TEXT", name='t"' + uuid.uuid4().hex[:6]
    )
    target.conn.write_frame(table, pd.DataFrame({"id": [1], evil: ["safe"]}))
    target.conn.write_frame(
        table, pd.DataFrame({"id": [1], evil: ["again"]}), mode="upsert", keys=["id"]
    )
    assert target.rows(table) == [{"id": 1, evil: "again"}]


def test_bad_arguments_are_refused_before_any_query(tmp_path: Path) -> None:
    with SQLiteConnection(tmp_path / "x.db") as conn:
        frame = pd.DataFrame({"id": [1]})
        with pytest.raises(ValueError, match="needs keys="):
            conn.write_frame("t", frame, mode="upsert")
        with pytest.raises(ValueError, match="keys= is for mode='upsert'"):
            conn.write_frame("t", frame, keys="id")
        with pytest.raises(ValueError, match="batch_size must be at least 1"):
            conn.write_frame("t", frame, batch_size=0)
        with pytest.raises(ValueError, match="not a table name"):
            conn.write_frame("a..b", frame)


# --- SQL Server: the staged MERGE (statements recorded here; run live when a server is set) ----


def _recording_sink(upsert: Any, log: list[tuple[str, Any]]) -> Any:
    from dataflow.connection import _frame_write as fw
    from dataflow.connection._tsql import quote_name

    return fw.SqlSink(
        target="mssql://sa@db/shop",
        quote=quote_name,
        text_times=False,
        table_columns=lambda quoted: log.append(("columns", quoted)) or ["id", "name"],  # type: ignore[func-returns-value]
        execute=lambda sql: log.append(("execute", sql)),
        executemany=lambda sql, rows: log.append(("executemany", (sql, rows))),
        atomic=lambda body: body(),
        upsert=upsert,
    )


def test_sql_server_upsert_stages_the_last_row_per_key_then_merges() -> None:
    from dataflow.connection import _frame_write as fw
    from dataflow.connection._tsql import upsert_sql

    log: list[tuple[str, Any]] = []
    frame = pd.DataFrame({"id": np.array([1, 2, 1]), "name": ["a", "b", "a2"]})
    sink = _recording_sink(fw.merge_upsert, log)
    assert fw.write_frame(sink, "dbo.items", frame, mode="upsert", keys="id", batch_size=1) == 3
    sql = upsert_sql("dbo.items", ["id", "name"], ["id"])
    assert log == [
        ("columns", "[dbo].[items]"),
        ("execute", sql.create),
        ("executemany", (sql.stage, [(1, "a2")])),
        ("executemany", (sql.stage, [(2, "b")])),
        ("execute", sql.apply[0]),
        ("execute", sql.drop),
    ]
    assert sql.apply[0].startswith("MERGE INTO [dbo].[items] WITH (HOLDLOCK)")


def test_a_source_without_upsert_says_so_and_sends_nothing() -> None:
    from dataflow.connection import _frame_write as fw

    log: list[tuple[str, Any]] = []
    with pytest.raises(FrameWriteError, match="upsert is not supported on mssql://sa@db/shop"):
        fw.write_frame(
            _recording_sink(None, log), "t", pd.DataFrame({"id": [1]}), mode="upsert", keys="id"
        )
    assert log == []


_LIVE_MSSQL = os.environ.get("DATAFLOW_TEST_MSSQL_URL", "")


@pytest.mark.skipif(not _LIVE_MSSQL, reason="DATAFLOW_TEST_MSSQL_URL is not set: no SQL Server")
def test_sql_server_live_round_trip_and_upsert() -> None:
    from dataflow.connection import MicrosoftSQLServerConnection

    name = f"wf_{uuid.uuid4().hex[:10]}"
    with MicrosoftSQLServerConnection(_LIVE_MSSQL) as conn:
        conn.execute(
            f"CREATE TABLE {name} (id INT PRIMARY KEY, amount DECIMAL(12, 2), at DATETIME2,"
            " day DATE, name NVARCHAR(20), flag BIT)"
        )
        try:
            frame = pd.DataFrame(
                {
                    "id": [1, 2],
                    "amount": [D("1.10"), None],
                    "at": times(["2024-06-01T12:00:00.5+02:00", None], utc=True),
                    "day": [dt.date(2024, 1, 2), None],
                    "name": pd.array(["ü", None], dtype="string"),
                    "flag": pd.array([True, None], dtype="boolean"),
                }
            )
            assert conn.write_frame(name, frame) == 2
            update = frame.iloc[[1]].assign(name="two")
            assert conn.write_frame(name, update, mode="upsert", keys="id") == 1
            assert conn.fetch(f"SELECT * FROM {name} ORDER BY id") == [
                {"id": 1, "amount": D("1.10"), "at": dt.datetime(2024, 6, 1, 10, 0, 0, 500000)}
                | {"day": dt.date(2024, 1, 2), "name": "ü", "flag": True},
                {"id": 2, "amount": None, "at": None, "day": None, "name": "two", "flag": None},
            ]
        finally:
            conn.execute(f"DROP TABLE {name}")


def test_mixed_object_columns_convert_cell_by_cell() -> None:
    """numpy scalars, NaT of either kind, aware and naive datetimes in one object column."""
    from dataflow.connection._frames_sql import sql_columns

    berlin = dt.timezone(dt.timedelta(hours=2))
    cells: list[Any] = [
        np.int64(3),
        np.float64("nan"),
        np.datetime64("NaT"),
        np.timedelta64(3, "s"),
    ]
    cells += [dt.datetime(2024, 6, 1, 12, tzinfo=berlin), pd.Timestamp("2024-01-01 00:00:00.5")]
    cells += [D("2.50"), dt.date(2024, 1, 2), True, "x"]
    frame = pd.DataFrame({"mixed": pd.Series(cells, dtype=object)})
    text = ["2024-06-01T10:00:00.000000+00:00", "2024-01-01T00:00:00.500000", "2.50", "2024-01-02"]
    assert sql_columns(frame, text_times=True, target="t") == [
        [3, None, None, 3.0, *text, True, "x"]
    ]
    native: list[Any] = [dt.datetime(2024, 6, 1, 10), dt.datetime(2024, 1, 1, 0, 0, 0, 500000)]
    native += [D("2.50"), dt.date(2024, 1, 2)]
    assert sql_columns(frame, text_times=False, target="t") == [
        [3, None, None, 3.0, *native, True, "x"]
    ]


@pytest.mark.parametrize(
    "arguments",
    [{"batch_size": 0}, {"mode": "merge"}, {"mode": "upsert"}, {"keys": "id"}],
    ids=["batch", "mode", "no-keys", "keys-on-insert"],
)
def test_bad_arguments_are_one_frame_write_error(target: Target, arguments: Any) -> None:
    """Every refusal is a DataflowError (FrameWriteError), never a bare ValueError."""
    from dataflow import DataflowError

    table = target.table("id INTEGER PRIMARY KEY, name TEXT")
    with pytest.raises(FrameWriteError) as caught:
        target.conn.write_frame(table, pd.DataFrame({"id": [1], "name": ["a"]}), **arguments)
    assert isinstance(caught.value, DataflowError)
    assert str(caught.value).startswith("write_frame")
