"""`write_frame` for the SQL connections: check the frame against the table, convert, write.

One query reads the table's column names (`SELECT * ... WHERE 1 = 0`), so a frame with
columns the table lacks fails with one message naming them, before anything is written. The columns
convert in `_frames_sql`; the rows go out in `executemany` batches inside one transaction, so a
failure leaves the table as it was. Identifiers are quoted (quote characters doubled), so no
column or table name can break out of the statement; `schema.table` names a table in a schema.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dataflow._core.errors import FrameWriteError
from dataflow.connection._tsql import upsert_sql

if TYPE_CHECKING:
    import pandas as pd

Mode = Literal["insert", "upsert"]
Rows = list[tuple[Any, ...]]
DEFAULT_BATCH = 10_000


@dataclass(frozen=True, kw_only=True)
class SqlSink:
    """What `write_frame` needs of one SQL connection, bound to the call's timeout."""

    target: str  # for messages
    quote: Callable[[str], str]  # one identifier, quoted for this source
    text_times: bool  # store Decimal, datetimes and dates as text (SQLite)
    table_columns: Callable[[str], list[str]]  # quoted table → its column names
    execute: Callable[[str], object]
    executemany: Callable[[str, Rows], None]
    atomic: Callable[[Callable[[], None]], None]  # runs the body in one transaction
    upsert: Upserter | None  # None: this source has no upsert dataflow can use


Upserter = Callable[[SqlSink, str, list[str], list[str], Rows, int], None]


def write_frame(
    sink: SqlSink,
    table: str,
    frame: pd.DataFrame,
    *,
    mode: Mode = "insert",
    keys: str | Sequence[str] = (),
    batch_size: int = DEFAULT_BATCH,
) -> int:
    """Write the rows of `frame` into `table`; returns the number of rows written."""
    key_list = _checked_arguments(sink, mode, keys, batch_size)
    if len(frame) == 0:
        return 0
    names = [str(name) for name in frame.columns]
    _check_columns(sink, table, names, key_list)
    from dataflow.connection._frames_sql import sql_columns  # pandas loads only when used

    columns = sql_columns(frame, text_times=sink.text_times, target=sink.target)
    rows: Rows = list(zip(*columns, strict=True))
    if mode == "upsert":
        assert sink.upsert is not None
        upsert = sink.upsert
        sink.atomic(lambda: upsert(sink, table, names, key_list, rows, batch_size))
    else:
        sql = insert_sql(sink.quote, table, names)
        sink.atomic(lambda: _in_batches(sink, sql, rows, batch_size))
    return len(rows)


def insert_sql(quote: Callable[[str], str], table: str, names: Sequence[str]) -> str:
    columns = ", ".join(map(quote, names))
    marks = ", ".join("?" * len(names))
    return f"INSERT INTO {quoted_table(quote, table)} ({columns}) VALUES ({marks})"


def on_conflict_sql(
    quote: Callable[[str], str], table: str, names: Sequence[str], keys: Sequence[str]
) -> str:
    """SQLite's and PostgreSQL's upsert: the insert, then `ON CONFLICT (keys) DO UPDATE`."""
    updates = [f"{quote(n)} = excluded.{quote(n)}" for n in names if n not in keys]
    action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
    conflict = ", ".join(map(quote, keys))
    return f"{insert_sql(quote, table, names)} ON CONFLICT ({conflict}) {action}"


def on_conflict_upsert(
    sink: SqlSink, table: str, names: list[str], keys: list[str], rows: Rows, batch: int
) -> None:
    _in_batches(sink, on_conflict_sql(sink.quote, table, names, keys), rows, batch)


def merge_upsert(
    sink: SqlSink, table: str, names: list[str], keys: list[str], rows: Rows, batch: int
) -> None:
    """SQL Server: stage the rows in a temp table, then one MERGE (as `upsert()` does).

    MERGE may match a target row once only, so when a key repeats the last row wins.
    """
    where = [names.index(key) for key in keys]
    last = {tuple(row[i] for i in where): row for row in rows}
    sql = upsert_sql(table, names, keys)
    sink.execute(sql.create)
    _in_batches(sink, sql.stage, list(last.values()), batch)
    for statement in sql.apply:
        sink.execute(statement)
    sink.execute(sql.drop)


def quote_ansi(name: str, mark: str = '"') -> str:
    """An identifier in `mark`s (SQL's double quote unless the driver says otherwise)."""
    return mark + name.replace(mark, mark * 2) + mark


def quoted_table(quote: Callable[[str], str], table: str) -> str:
    if not table or any(not part for part in table.split(".")):
        raise FrameWriteError(f"write_frame: not a table name: {table!r}")
    return ".".join(quote(part) for part in table.split("."))


def _in_batches(sink: SqlSink, sql: str, rows: Rows, batch: int) -> None:
    for start in range(0, len(rows), batch):
        sink.executemany(sql, rows[start : start + batch])


def _checked_arguments(
    sink: SqlSink, mode: str, keys: str | Sequence[str], batch_size: int
) -> list[str]:
    key_list = [keys] if isinstance(keys, str) else list(keys)
    if batch_size < 1:
        raise FrameWriteError(f"write_frame: batch_size must be at least 1, got {batch_size}")
    if mode not in ("insert", "upsert"):
        raise FrameWriteError(f"write_frame: mode must be 'insert' or 'upsert', got {mode!r}")
    if mode == "insert" and key_list:
        raise FrameWriteError("write_frame: keys= is for mode='upsert'; an insert takes none")
    if mode == "upsert" and not key_list:
        raise FrameWriteError("write_frame: mode='upsert' needs keys=, the columns rows match on")
    if mode == "upsert" and sink.upsert is None:
        raise FrameWriteError(
            f"write_frame: upsert is not supported on {sink.target} (dataflow upserts on"
            " SQLite, PostgreSQL and SQL Server); use mode='insert'"
        )
    return key_list


def _check_columns(sink: SqlSink, table: str, names: list[str], keys: list[str]) -> None:
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise FrameWriteError(f"write_frame into {table}: duplicate column names {duplicated}")
    known = sink.table_columns(quoted_table(sink.quote, table))
    # A table column the frame leaves out takes its default (an autoincrement id, a
    # `loaded_at`); one with no default fails with the database's own NOT NULL error.
    extra = [name for name in names if name not in known]
    if extra:
        missing = [name for name in known if name not in names]
        hint = f"; the table's columns not in the frame: {missing}" if missing else ""
        raise FrameWriteError(
            f"write_frame into {table}: the frame has columns the table does not: {extra}"
            f"{hint}; rename or drop them"
        )
    if absent := [key for key in keys if key not in names]:
        raise FrameWriteError(f"write_frame into {table}: upsert keys {absent} are not columns")
