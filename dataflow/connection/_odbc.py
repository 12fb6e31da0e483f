"""Any ODBC source through pyodbc: fetch, stream, execute, executemany, on any worker thread.

The machinery (a connection per thread, timeouts, cancel, retries, transactions) is in
`_odbc_runner`; this is the API on top of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from dataflow._core.errors import DataflowConnectionError, DataflowSQLError
from dataflow._core.exports import publish
from dataflow.connection._odbc_runner import OdbcRunner, close_quietly
from dataflow.connection._pyodbc import load_pyodbc
from dataflow.connection._sql_core import column_names
from dataflow.connection._tsql import quote_name

if TYPE_CHECKING:
    import pandas as pd

    from dataflow.connection._frame_write import Mode, SqlSink

Row = dict[str, Any]
Params = Sequence[Any]

log = structlog.get_logger("dataflow.connection")

# fast_executemany (parameter arrays) was built for Microsoft's drivers; elsewhere it is opt-in.
# Measured here: psqlODBC silently drops the microseconds of datetime parameters on that path,
# and SQLite ODBC crashes the process (SIGSEGV), so SQLite never gets it, even when asked.
_FAST_BY_DEFAULT = re.compile(r"msodbcsql", re.IGNORECASE)
_FAST_NEVER = re.compile(r"sqlite", re.IGNORECASE)
_FAST_UNSUPPORTED = frozenset({"HYC00", "IM001", "HY092", "HY106"})


class OdbcConnection(OdbcRunner):
    """A blocking connection to any ODBC source, safe to use from many worker threads.

    `timeout` (seconds) bounds each driver call; every method also takes its own `timeout=`.
    A timed-out or `cancel()`-ed statement is stopped on the server (`SQLCancel`). Reads, and
    calls marked `idempotent=True`, are retried with backoff after a lost connection; any single
    statement after a deadlock. Nothing is retried inside a transaction: `atomic()` retries
    whole transactions. `encoding` is for ANSI drivers (pyodbc `setencoding`/`setdecoding`).
    """

    ping_sql = "SELECT 1"

    def ping(self, *, timeout: float | None = None) -> None:
        try:
            self._run("ping", lambda cur: cur.execute(self.ping_sql).fetchall(), timeout, True)
        except DataflowSQLError as err:
            raise DataflowConnectionError(f"ping {self.target} failed: {err}") from None

    def fetch(self, sql: str, params: Params = (), *, timeout: float | None = None) -> list[Row]:
        """Run a query and return its rows as dicts (retried on transient errors)."""
        names, rows = self._run("fetch", lambda cur: _fetch_all(cur, sql, params), timeout, True)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def fetch_df(
        self, sql: str, params: Params = (), *, timeout: float | None = None
    ) -> pd.DataFrame:
        """Run a query and return a DataFrame with sensible dtypes (see `rows_to_frame`)."""
        from dataflow.connection._frames import rows_to_frame  # pandas loads only when used

        names, rows = self._run("fetch_df", lambda cur: _fetch_all(cur, sql, params), timeout, True)
        return rows_to_frame(list(map(tuple, rows)), columns=names)

    def iter_batches(
        self, sql: str, params: Params = (), size: int = 1000, *, timeout: float | None = None
    ) -> Generator[list[Row], None, None]:
        """Stream a query's rows in lists of at most `size` dicts, with `fetchmany`.

        Only the execute is retried: after a batch was handed out a retry would repeat rows.
        `timeout` bounds each driver call (the execute, each fetch), not the whole iteration.
        psqlODBC buffers whole results unless the connection string says `UseDeclareFetch=1`.
        """
        slot = self._slots.current()
        with slot.operation():
            run = self._run
            cursor = run("iter_batches", lambda c: _execute(c, sql, params), timeout, True, True)
            try:
                names = column_names(cursor)
                while rows := self._step(slot, cursor, lambda: cursor.fetchmany(size), timeout):
                    yield [dict(zip(names, row, strict=True)) for row in rows]
            finally:
                close_quietly(cursor)

    def execute(
        self,
        sql: str,
        params: Params = (),
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> int:
        """Run one statement and return its row count (-1 when the driver does not know)."""
        count = self._run(
            "execute", lambda c: _execute(c, sql, params).rowcount, timeout, idempotent
        )
        return int(count)

    def executemany(
        self, sql: str, seq_of_params: Iterable[Params], *, timeout: float | None = None
    ) -> None:
        """Run `sql` once per parameter row, in one transaction: all rows or none.

        Uses pyodbc's `fast_executemany` for Microsoft's drivers, or when `fast_executemany=True`
        was passed; if the driver reports that path unsupported, falls back to row by row (and
        remembers). SQLite ODBC always goes row by row.
        """
        rows = [tuple(params) for params in seq_of_params]
        if rows and self._fast_allowed():
            try:
                return self._executemany(sql, rows, True, timeout)
            except DataflowSQLError as err:
                if err.code not in _FAST_UNSUPPORTED:
                    raise
                self._fast_failed = True
                log.warning("sql.fast_executemany_unsupported", target=self.target, error=str(err))
        if rows:
            self._executemany(sql, rows, False, timeout)

    def write_frame(
        self,
        table: str,
        frame: pd.DataFrame,
        *,
        mode: Mode = "insert",
        keys: str | Sequence[str] = (),
        batch_size: int = 10_000,
        timeout: float | None = None,
    ) -> int:
        """Insert (or upsert on `keys`) every row of `frame`; returns the number written.

        One transaction (retried whole like `atomic()`), `batch_size` rows per `executemany`.
        Upsert: `ON CONFLICT` on PostgreSQL and SQLite, a staged `MERGE` on SQL Server; other
        sources raise `FrameWriteError`. Through a SQLite driver, values are stored as by
        `SQLiteConnection.write_frame` (Decimal and datetimes as text).
        """
        from dataflow.connection import _frame_write as fw

        sink = self._frame_sink(timeout, idempotent=mode == "upsert")
        return fw.write_frame(sink, table, frame, mode=mode, keys=keys, batch_size=batch_size)

    def _frame_sink(self, timeout: float | None, *, idempotent: bool) -> SqlSink:
        from dataflow.connection import _frame_write as fw

        pyodbc = load_pyodbc()
        dbms, mark = self._run(
            "write_frame",
            lambda cur: (
                str(cur.connection.getinfo(pyodbc.SQL_DBMS_NAME)),
                str(cur.connection.getinfo(pyodbc.SQL_IDENTIFIER_QUOTE_CHAR)).strip() or '"',
            ),
            timeout,
            True,
        )
        mssql = dbms == "Microsoft SQL Server"
        upserts = {"PostgreSQL": fw.on_conflict_upsert, "SQLite": fw.on_conflict_upsert}

        def table_columns(quoted: str) -> list[str]:
            sql = f"SELECT * FROM {quoted} WHERE 1 = 0"
            return self._run(
                "write_frame", lambda c: column_names(_execute(c, sql, ())), timeout, True
            )

        def atomic(body: Callable[[], None]) -> None:
            self.atomic(body, idempotent=idempotent)

        return fw.SqlSink(
            target=self.target,
            quote=quote_name if mssql else lambda name: fw.quote_ansi(name, mark),
            text_times=dbms == "SQLite",  # the driver would cut datetimes to milliseconds
            table_columns=table_columns,
            execute=lambda sql: self.execute(sql, timeout=timeout),
            executemany=lambda sql, rows: self.executemany(sql, rows, timeout=timeout),
            atomic=atomic,
            upsert=fw.merge_upsert if mssql else upserts.get(dbms),
        )

    def _fast_allowed(self) -> bool:
        if self._fast is False or self._fast_failed or _FAST_NEVER.search(self._driver):
            return False
        return bool(self._fast) or bool(_FAST_BY_DEFAULT.search(self._driver))

    def _executemany(
        self, sql: str, rows: list[tuple[Any, ...]], fast: bool, timeout: float | None
    ) -> None:
        def work(cursor: Any) -> None:
            cursor.fast_executemany = fast
            cursor.executemany(sql, rows)

        self.atomic(lambda: self._run("executemany", work, timeout, False))


def _execute(cursor: Any, sql: str, params: Params) -> Any:
    # pyodbc reads a single list argument as the whole parameter sequence.
    return cursor.execute(sql, list(params)) if params else cursor.execute(sql)


def _fetch_all(cursor: Any, sql: str, params: Params) -> tuple[list[str], list[Any]]:
    _execute(cursor, sql, params)
    names = column_names(cursor)
    return names, cursor.fetchall() if names else []


publish("dataflow.connection", OdbcConnection)
