"""SQLite through the standard library, as a local cache with the SQL connections' API.

A file database gets one sqlite3 connection per thread, in WAL mode so readers and the writer
do not block each other. `:memory:` is private to a connection, so an in-memory database gets
one connection that all threads share, one statement (or transaction) at a time.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

from dataflow._core.errors import (
    DataflowConnectionError,
    DataflowSQLError,
    Interrupted,
    QueryCancelledError,
    QueryTimeoutError,
    one_line,
)
from dataflow._core.exports import publish
from dataflow.connection._sql_core import ErrorKind, Slot, SqlConnection, ThreadSlots, column_names

if TYPE_CHECKING:
    import pandas as pd

    from dataflow.connection._frame_write import Mode

T = TypeVar("T")
Row = dict[str, Any]
Params = Sequence[Any] | Mapping[str, Any]

_MEMORY = ":memory:"
_INTERRUPTED = "SQLITE_INTERRUPT"


class SQLiteConnection(SqlConnection):
    """A SQLite database file (or `:memory:`), safe to use from many worker threads.

    `SQLiteConnection("cache.db")` or `SQLiteConnection("sqlite:///cache.db")`. `timeout`
    (seconds) bounds each call, which `interrupt()` stops; `busy_timeout` is how long a writer
    waits for another's lock. Parameters are `?` sequences or `:name` mappings.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = _MEMORY,
        *,
        timeout: float | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = _path_of(path)
        self.timeout = timeout
        self._busy_timeout = busy_timeout
        shared = self.path == _MEMORY
        self._slots: ThreadSlots[sqlite3.Connection] = ThreadSlots(
            self._open, _close, lambda: self.target, shared=shared
        )

    @property
    def target(self) -> str:
        return f"sqlite:///{self.path}"

    def __repr__(self) -> str:
        return f"SQLiteConnection({self.path!r})"

    def ping(self, *, timeout: float | None = None) -> None:
        try:
            self._run("ping", lambda cnxn: cnxn.execute("SELECT 1").fetchall(), timeout)
        except DataflowSQLError as err:
            raise DataflowConnectionError(f"ping {self.target} failed: {err}") from None

    def fetch(self, sql: str, params: Params = (), *, timeout: float | None = None) -> list[Row]:
        """Run a query and return its rows as dicts."""
        names, rows = self._run("fetch", lambda cnxn: _fetch_all(cnxn, sql, params), timeout)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def fetch_df(
        self, sql: str, params: Params = (), *, timeout: float | None = None
    ) -> pd.DataFrame:
        """Run a query and return a DataFrame with sensible dtypes (see `rows_to_frame`)."""
        from dataflow.connection._frames import rows_to_frame  # pandas loads only when used

        names, rows = self._run("fetch_df", lambda cnxn: _fetch_all(cnxn, sql, params), timeout)
        return rows_to_frame(rows, columns=names)

    def iter_batches(
        self, sql: str, params: Params = (), size: int = 1000, *, timeout: float | None = None
    ) -> Generator[list[Row], None, None]:
        """Stream a query's rows in lists of at most `size` dicts; `timeout` bounds each step."""
        slot = self._slots.current()
        with slot.operation():
            cursor = self._run("iter_batches", lambda cnxn: cnxn.execute(sql, params), timeout)
            try:
                names = column_names(cursor)
                while rows := self._run("iter_batches", lambda _: cursor.fetchmany(size), timeout):
                    yield [dict(zip(names, row, strict=True)) for row in rows]
            finally:
                cursor.close()

    def execute(self, sql: str, params: Params = (), *, timeout: float | None = None) -> int:
        """Run one statement and return its row count (-1 for statements without one)."""
        return self._run("execute", lambda cnxn: cnxn.execute(sql, params).rowcount, timeout)

    def executemany(
        self, sql: str, seq_of_params: Iterable[Params], *, timeout: float | None = None
    ) -> None:
        """Run `sql` once per parameter row, in one transaction: all rows or none."""
        rows = list(seq_of_params)
        with self.transaction():
            self._run("executemany", lambda cnxn: cnxn.executemany(sql, rows), timeout)

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
        """Insert (or upsert on `keys`, by `ON CONFLICT`) every row of `frame`; returns the count.

        One transaction; `batch_size` rows per `executemany`. Decimal, datetimes and dates are
        stored as text (aware datetimes in UTC, ending `+00:00`): see `_frames_sql`.
        """
        from dataflow.connection import _frame_write as fw

        def table_columns(quoted: str) -> list[str]:
            sql = f"SELECT * FROM {quoted} WHERE 1 = 0"
            return self._run("write_frame", lambda cnxn: column_names(cnxn.execute(sql)), timeout)

        def atomic(body: Callable[[], None]) -> None:
            with self.transaction():
                body()

        sink = fw.SqlSink(
            target=self.target,
            quote=fw.quote_ansi,
            text_times=True,
            table_columns=table_columns,
            execute=lambda sql: self.execute(sql, timeout=timeout),
            executemany=lambda sql, rows: self.executemany(sql, rows, timeout=timeout),
            atomic=atomic,
            upsert=fw.on_conflict_upsert,
        )
        return fw.write_frame(sink, table, frame, mode=mode, keys=keys, batch_size=batch_size)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction: commit at the end, roll back when it raises.

        `BEGIN IMMEDIATE` takes the write lock at the start, so two writers queue on the busy
        timeout instead of deadlocking on a lock upgrade. Nested blocks join the outer one.
        """
        slot = self._slots.current()
        with slot.busy:  # a shared (in-memory) connection: other threads wait for the block
            if slot.in_transaction:
                yield
                return
            self._run("begin", lambda cnxn: cnxn.execute("BEGIN IMMEDIATE"), None)
            slot.in_transaction = True
            try:
                yield
            except BaseException:
                self._finish(slot, commit=False)
                raise
            self._finish(slot, commit=True)

    def _open(self) -> sqlite3.Connection:
        try:
            # check_same_thread=False: disconnect() closes and cancel() interrupts from other
            # threads; statements themselves stay on the owning thread (or under `busy`).
            cnxn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            if self.path != _MEMORY:
                cnxn.execute("PRAGMA journal_mode=WAL")
                cnxn.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoints
        except sqlite3.Error as err:
            raise DataflowConnectionError(f"cannot open {self.target}: {one_line(err)}") from None
        return cnxn

    def _run(self, what: str, work: Callable[[sqlite3.Connection], T], timeout: float | None) -> T:
        seconds = self.timeout if timeout is None else timeout
        slot = self._slots.current()
        with slot.operation():
            cnxn = self._slots.handle(slot)
            try:
                with slot.statement(cnxn.interrupt, seconds):
                    return work(cnxn)
            except (sqlite3.Error, Interrupted) as err:
                raise self._error(what, slot, err, seconds) from err

    def _finish(self, slot: Slot[sqlite3.Connection], *, commit: bool) -> None:
        cnxn = self._slots.handle(slot)
        try:
            if cnxn.in_transaction:  # an interrupted statement may have rolled it back already
                cnxn.execute("COMMIT" if commit else "ROLLBACK")
        except sqlite3.Error as err:
            with suppress(sqlite3.Error):
                cnxn.execute("ROLLBACK")
            if commit:
                raise self._error("commit", slot, err, None) from err
        finally:
            slot.in_transaction = False

    def _error(
        self, what: str, slot: Slot[Any], err: BaseException, seconds: float | None
    ) -> DataflowSQLError:
        where, kind = f"{what} on {self.target}", slot.interruption()
        if kind is ErrorKind.TIMEOUT:
            return QueryTimeoutError(
                f"{where} timed out after {seconds or 0:g}s", code=_INTERRUPTED
            )
        if kind is ErrorKind.CANCELLED:
            return QueryCancelledError(f"{where} was cancelled", code=_INTERRUPTED)
        code = str(getattr(err, "sqlite_errorname", ""))
        busy = code.startswith("SQLITE_BUSY")
        return DataflowSQLError(
            f"{where} failed [{code}]: {one_line(err)}", code=code, transient=busy
        )


def _path_of(path: str | os.PathLike[str]) -> str:
    """A filesystem path from a path or a `sqlite:///relative` / `sqlite:////absolute` URL."""
    text = os.fspath(path)
    if text in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        return _MEMORY
    if text.startswith("sqlite:///"):
        return text.removeprefix("sqlite:///")
    if "://" in text:
        raise ValueError(f"not a SQLite path or sqlite:/// URL: {text!r}")
    return text


def _fetch_all(cnxn: sqlite3.Connection, sql: str, params: Params) -> tuple[list[str], list[Any]]:
    cursor = cnxn.execute(sql, params)
    try:
        return column_names(cursor), cursor.fetchall()
    finally:
        cursor.close()


def _close(cnxn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):
        cnxn.close()


publish("dataflow.connection", SQLiteConnection)
