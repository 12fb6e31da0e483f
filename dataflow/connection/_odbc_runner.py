"""How a statement runs on an ODBC connection: per-thread connections, timeout, cancel, retry.

pyodbc's threadsafety is 1: threads may share the module, never a connection. Each thread that
uses a connection object gets its own pyodbc connection, opened on first use and tracked, so
`disconnect()` closes them all and `cancel()` reaches the statement running on any of them
(ODBC's `SQLCancel` is the one call meant to come from another thread). `OdbcConnection` (in
`_odbc`) puts the fetch/execute API on top.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import structlog

from dataflow._core.errors import (
    ConnectionLostError,
    DataflowConnectionError,
    DataflowSQLError,
    Interrupted,
    QueryCancelledError,
    QueryTimeoutError,
    one_line,
)
from dataflow._core.redact import redact_connection_string, register_secret, secrets_in
from dataflow.connection._odbc_text import classify, describe_odbc, sqlstate_of
from dataflow.connection._pyodbc import load_pyodbc
from dataflow.connection._sql_core import ErrorKind, RetryPolicy, Slot, SqlConnection, ThreadSlots

T = TypeVar("T")

log = structlog.get_logger("dataflow.connection")


class OdbcRunner(SqlConnection):
    """Runs driver calls for `OdbcConnection`: timeouts, cancel, retries, transactions.

    `timeout` (seconds) bounds each driver call. A timed-out or `cancel()`-ed statement is
    stopped on the server (`SQLCancel`). A lost connection is reopened on the next call.
    """

    def __init__(
        self,
        connection_string: str,
        *,
        timeout: float | None = None,
        connect_timeout: int = 15,
        retry: RetryPolicy | None = None,
        fast_executemany: bool | None = None,
        encoding: str | None = None,
    ) -> None:
        self._connection_string = connection_string
        for secret in secrets_in(connection_string):
            register_secret(secret)
        self.timeout = timeout
        self._connect_timeout = connect_timeout
        self._retry = retry or RetryPolicy()
        self._fast, self._fast_failed = fast_executemany, False
        self._encoding = encoding
        self._driver = ""  # the driver's file name, known once a connection is open
        self._native_timeout = True  # until the driver refuses SQL_ATTR_CONNECTION_TIMEOUT
        self._slots = ThreadSlots(self._open, close_quietly, lambda: self.target)

    @property
    def target(self) -> str:
        return describe_odbc(self._connection_string)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_connection_string(self._connection_string)!r})"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction on this thread's connection.

        Commits when the block ends, rolls back when it raises. A nested block joins the outer
        transaction. The transaction belongs to the thread that opened it.
        """
        slot = self._slots.current()
        if slot.in_transaction:
            yield
            return
        self._run("begin", lambda cur: setattr(cur.connection, "autocommit", False), None, True)
        slot.in_transaction = True
        try:
            yield
        except BaseException:
            self._finish(slot, commit=False)
            raise
        self._finish(slot, commit=True)

    def atomic(self, body: Callable[[], T], *, idempotent: bool = False) -> T:
        """Run `body()` in a transaction, retried whole after a lost connection or a deadlock.

        A transaction that failed before its commit was rolled back whole, so it is retried even
        when not idempotent; one whose commit failed (outcome unknown) only when `idempotent`.
        Inside an outer transaction `body` just joins it, and the outer owner decides.
        """
        slot = self._slots.current()
        if slot.in_transaction:
            return body()
        with slot.operation():
            for attempt in range(self._retry.attempts):
                committing = False
                try:
                    with self.transaction():
                        result = body()
                        committing = True
                    return result
                except (ConnectionLostError, DataflowSQLError) as err:
                    transient = isinstance(err, ConnectionLostError) or err.transient
                    if not transient or (committing and not idempotent):
                        raise
                    self._backoff(slot, "transaction", attempt, err)
        raise AssertionError("unreachable: _backoff raises on the last attempt")

    def _odbc_string(self) -> str:
        return self._connection_string

    def _secrets(self) -> list[str]:
        return secrets_in(self._connection_string)

    def _clean(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _open(self) -> Any:
        pyodbc = load_pyodbc()
        for attempt in range(self._retry.attempts):
            try:
                cnxn = pyodbc.connect(
                    self._odbc_string(), autocommit=True, timeout=self._connect_timeout
                )
                break
            except pyodbc.Error as err:
                retry = classify(err) in (ErrorKind.CONNECTION, ErrorKind.TIMEOUT)
                if not retry or attempt + 1 >= self._retry.attempts:
                    text = f"[{sqlstate_of(err)}]: {self._clean(one_line(err))}"
                    raise DataflowConnectionError(
                        f"cannot connect to {self.target} {text}"
                    ) from None
            time.sleep(self._retry.delay(attempt))
        if self._encoding:
            cnxn.setencoding(encoding=self._encoding)
            cnxn.setdecoding(pyodbc.SQL_CHAR, encoding=self._encoding)
        self._driver = str(cnxn.getinfo(pyodbc.SQL_DRIVER_NAME))
        return cnxn

    def _run(
        self,
        what: str,
        work: Callable[[Any], T],
        timeout: float | None,
        idempotent: bool,
        keep_cursor: bool = False,
    ) -> T:
        """Run `work(cursor)` on this thread's connection: timeout, cancel, retry, clear errors."""
        seconds = self.timeout if timeout is None else timeout
        pyodbc = load_pyodbc()  # before the `except pyodbc.Error` below can be evaluated
        slot = self._slots.current()
        with slot.operation():
            for attempt in range(self._retry.attempts):
                try:
                    return self._attempt(slot, work, seconds, keep_cursor)
                except (pyodbc.Error, Interrupted) as err:
                    kind = slot.interruption() or classify(err)
                    error = self._failed(slot, what, kind, err, seconds)
                    retry = kind is ErrorKind.CONFLICT or (
                        kind is ErrorKind.CONNECTION and idempotent
                    )
                    if not retry or slot.in_transaction:
                        raise error from err
                    self._backoff(slot, what, attempt, error)
        raise AssertionError("unreachable: _backoff raises on the last attempt")

    def _attempt(
        self, slot: Slot[Any], work: Callable[[Any], T], seconds: float | None, keep: bool
    ) -> T:
        cnxn = self._slots.handle(slot)
        self._set_native_timeout(cnxn, seconds)
        cursor = cnxn.cursor()
        try:
            with slot.statement(cursor.cancel, seconds):
                result = work(cursor)
        except BaseException:
            close_quietly(cursor)
            raise
        if not keep:
            close_quietly(cursor)
        return result

    def _step(
        self, slot: Slot[Any], cursor: Any, fetch: Callable[[], T], timeout: float | None
    ) -> T:
        """One more driver call on a cursor `_run` kept open (a fetch); never retried."""
        seconds = self.timeout if timeout is None else timeout
        pyodbc = load_pyodbc()
        try:
            with slot.statement(cursor.cancel, seconds):
                return fetch()
        except (pyodbc.Error, Interrupted) as err:
            kind = slot.interruption() or classify(err)
            raise self._failed(slot, "iter_batches", kind, err, seconds) from err

    def _set_native_timeout(self, cnxn: Any, seconds: float | None) -> None:
        # pyodbc applies `Connection.timeout` to each new cursor (SQL_ATTR_QUERY_TIMEOUT), so the
        # driver stops a slow query itself (HYT00). The watchdog in `Slot.statement` backs it up
        # for drivers that refuse it (psqlODBC) or accept it and ignore it (SQLite ODBC).
        wanted = math.ceil(seconds) if seconds else 0
        if self._native_timeout and cnxn.timeout != wanted:
            try:
                cnxn.timeout = wanted
            except load_pyodbc().Error:
                self._native_timeout = False

    def _backoff(self, slot: Slot[Any], what: str, attempt: int, error: Exception) -> None:
        if attempt + 1 >= self._retry.attempts:
            raise error
        log.warning("sql.retry", target=self.target, op=what, attempt=attempt + 1, error=str(error))
        if slot.wake.wait(self._retry.delay(attempt)):
            raise QueryCancelledError(f"{what} on {self.target} was cancelled before a retry")

    def _failed(
        self, slot: Slot[Any], what: str, kind: ErrorKind, err: BaseException, seconds: float | None
    ) -> Exception:
        """The error to raise for a failed driver call; drops a connection that was lost."""
        if kind is ErrorKind.CONNECTION:
            self._slots.lose(slot)
        where, code, text = f"{what} on {self.target}", sqlstate_of(err), self._clean(one_line(err))
        if kind is ErrorKind.CONNECTION:
            return ConnectionLostError(f"{where}: connection lost [{code}]: {text}")
        if kind is ErrorKind.TIMEOUT:
            return QueryTimeoutError(f"{where} timed out after {seconds or 0:g}s", code=code)
        if kind is ErrorKind.CANCELLED:
            return QueryCancelledError(f"{where} was cancelled", code=code)
        transient = kind is ErrorKind.CONFLICT
        return DataflowSQLError(f"{where} failed [{code}]: {text}", code=code, transient=transient)

    def _finish(self, slot: Slot[Any], *, commit: bool) -> None:
        """Commit or roll back, even after a cancel (so not through `_run`), never retried."""
        pyodbc = load_pyodbc()
        try:
            cnxn = self._slots.handle(slot)  # raises when the connection died inside the block
            with slot.busy:
                _end_transaction(cnxn, commit)
        except (DataflowConnectionError, pyodbc.Error) as err:
            self._slots.lose(slot)  # state unknown: the next call starts on a fresh connection
            if commit and isinstance(err, pyodbc.Error):
                raise self._failed(slot, "commit", classify(err), err, None) from err
            if commit:
                raise
        finally:
            slot.in_transaction = slot.broken = False


def _end_transaction(cnxn: Any, commit: bool) -> None:
    if commit:
        cnxn.commit()
    else:
        cnxn.rollback()
    cnxn.autocommit = True


def close_quietly(handle: Any) -> None:
    with suppress(load_pyodbc().Error):
        handle.close()
