"""Every error dataflow raises on purpose, in one tree; the CLI maps each to an exit code.

    DataflowError
    ├── WorkflowError             a workflow definition is invalid (bad decorator use, signature)
    ├── CronError                 an invalid cron expression (also a ValueError)
    ├── WorkflowNotFound          the CLI's workflow, trigger or dead letter matches nothing
    ├── WorkflowImportError       the workflow's own module raised while being imported
    ├── SettingsError             a setting or command-line value is missing or malformed
    ├── StartupFailed             a @startup handler failed; nothing else was started
    ├── TriggerFailed             a trigger could not start, or stopped on an error
    ├── StateStoreError           the state file cannot be opened or written
    │   ├── StateFileRefused      it is not one this dataflow may use (empty, foreign, newer)
    │   └── LeaseLost             a fenced write by a stream's former owner (another has the lease)
    ├── StateValueError           a trigger-state value cannot be kept or read (also a ValueError)
    ├── DataflowConnectionError   a connection cannot be opened or used (also a ConnectionError)
    │   └── ConnectionLostError   it dropped during a call
    ├── DataflowSQLError          a statement failed; keeps the driver's code
    │   ├── QueryTimeoutError     ran past its timeout (also a TimeoutError)
    │   └── QueryCancelledError   stopped by cancel()
    ├── FrameWriteError           a DataFrame cannot be written as it is (write_frame, SQL or
    │                             MongoDB; also a ValueError)
    ├── BulkUpsertError           some records of an upsert_many were refused
    ├── ChangeStreamUnavailable   the server cannot serve change streams
    └── ChangeStreamStopped       a change-stream trigger stopped on purpose

`Interrupted` is not in the tree: it never leaves the connection that raised it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from dataflow._core.exports import publish
from dataflow._core.redact import redact_text

_SQLSTATE = re.compile(r"[0-9A-Z]{5}")


class DataflowError(Exception):
    """Base of the errors dataflow raises on purpose."""


class WorkflowError(DataflowError):
    """A workflow definition is invalid: raised at import time, naming class, method and reason."""


class CronError(DataflowError, ValueError):
    """An invalid cron expression; the message names the expression, field and reason."""

    def __init__(self, expression: str, reason: str, field: str | None = None) -> None:
        self.expression = expression
        self.reason = reason
        self.field = field
        where = f"{field}: " if field else ""
        super().__init__(f"invalid cron expression {_shorten(expression)}: {where}{reason}")

    def __reduce__(self) -> tuple[type[CronError], tuple[str, str, str | None]]:
        return type(self), (self.expression, self.reason, self.field)


def _shorten(expression: str) -> str:
    """The expression quoted; a hostile 5,000-character one is cut to keep the line short."""
    if len(expression) <= 80:
        return ascii(expression)  # invisible or look-alike characters shown escaped
    return f"{expression[:40]!a}... ({len(expression)} characters)"


class SettingsError(DataflowError):
    """A setting is missing or malformed: the message names the variable and the fix."""


class WorkflowNotFound(DataflowError):
    """The workflow name given to the CLI matches nothing; the message lists what exists."""


class WorkflowImportError(DataflowError):
    """The workflow's own code raised while being imported: one line saying what and where,
    then its traceback (without importlib's and dataflow's frames)."""

    def __init__(self, name: str, summary: str, user_traceback: str) -> None:
        text = f"workflow {name!r} failed to import: {summary}\n{user_traceback}"
        super().__init__(redact_text(text))  # a source line shown may hold a password


class StartupFailed(DataflowError):
    """A `@startup` handler failed, so no other trigger was started."""

    def __init__(self, handler: str, error: BaseException) -> None:
        super().__init__(f"startup handler {handler!r} failed: {type(error).__name__}: {error}")
        self.handler = handler
        self.error = error


class TriggerFailed(DataflowError):
    """A trigger could not start or stopped with an error it could not recover from."""

    def __init__(self, trigger: str, error: BaseException) -> None:
        super().__init__(f"trigger {trigger!r} failed: {type(error).__name__}: {error}")
        self.trigger = trigger
        self.error = error


class StateStoreError(DataflowError):
    """The state file cannot be opened or written (read-only, full disk, corrupt)."""


class StateFileRefused(StateStoreError):
    """The state file is there but is not one this dataflow may use: empty, not a dataflow
    store, written by a newer dataflow, a directory, or beside another file's write-ahead log.
    Bad input (exit 2): a restart cannot help. `resettable`: `run --reset-state` may move it
    aside (it holds no positions this dataflow can read)."""

    def __init__(self, message: str, *, resettable: bool = False) -> None:
        super().__init__(message)
        self.resettable = resettable


class LeaseLost(StateStoreError):
    """A write fenced by a lease's term came from an owner whose term is over: another replica
    acquired the stream's lease since, so this write is refused and the caller must stop
    reading the stream (it no longer owns it)."""


class StateValueError(DataflowError, ValueError):
    """A trigger-state value cannot be kept (naive datetime, not JSON) or a stored one cannot be
    read back; the message names the key. Setting the key again replaces a bad stored value."""


class DataflowConnectionError(DataflowError, ConnectionError):
    """A connection could not be opened or used; the message names the target, never a secret.

    A subclass of the built-in `ConnectionError` too, so either name catches it.
    """


class ConnectionLostError(DataflowConnectionError):
    """The connection dropped during a call; it was closed, and the next call reconnects.

    Work in an open transaction was rolled back by the server. Whether a lone statement ran
    is unknown, so it was retried only if marked idempotent.
    """


class DataflowSQLError(DataflowError):
    """A statement failed. `code` is the driver's code (ODBC SQLSTATE, SQLite error name).

    `transient` says the same work may succeed if run again (a deadlock victim). The driver's
    own exception is the `__cause__`.
    """

    def __init__(self, message: str, *, code: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class QueryTimeoutError(DataflowSQLError, TimeoutError):
    """The statement ran past its timeout and was stopped on the server."""


class QueryCancelledError(DataflowSQLError):
    """The statement was stopped by `cancel()`, usually because its run was cancelled."""


class FrameWriteError(DataflowError, ValueError):
    """`write_frame` refused a DataFrame or its arguments before writing anything: a column
    the target cannot hold, columns the table lacks, an upsert the source cannot do, a bad
    batch size or mode. The message names the columns (and their type) and the fix. Not a
    `DataflowSQLError` (no statement failed; MongoDB raises it too); a `ValueError`: bad input."""


class UpsertFailure(NamedTuple):
    """One record that `upsert_many` could not write, with the server's error."""

    key: Any
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class UpsertManyResult:
    """What `upsert_many` wrote, summed over its batches (also what a `BulkUpsertError` holds)."""

    matched_count: int = 0
    modified_count: int = 0
    upserted_count: int = 0
    batches: int = 0


class BulkUpsertError(DataflowError):
    """Some records of an `upsert_many` failed; the others were written (unordered bulk writes).

    Not a `DataflowConnectionError`: the server answered and refused these records (duplicate
    key, validation), so sending them again fails the same way.
    """

    def __init__(
        self,
        collection: str,
        result: UpsertManyResult,
        failures: list[UpsertFailure],
        write_concern_errors: list[str],
    ) -> None:
        self.result, self.failures = result, failures
        self.failed_keys = [failure.key for failure in failures]
        self.write_concern_errors = write_concern_errors
        self.upserted_count = result.upserted_count
        self.modified_count = result.modified_count
        self.matched_count = result.matched_count
        super().__init__(self._message(collection))

    def _message(self, collection: str) -> str:
        head = f"upsert_many into {collection!r}: "
        if not self.failures:
            return f"{head}write concern not satisfied: {self.write_concern_errors[0]}"
        shown = ", ".join(repr(key) for key in self.failed_keys[:5])
        more = ", ..." if len(self.failed_keys) > 5 else ""
        counts = f"{len(self.failures)} records failed (keys {shown}{more})"
        return f"{head}{counts}; first error: {self.failures[0].message}"


class ChangeStreamUnavailable(DataflowError):
    """The server cannot serve change streams (a standalone mongod)."""


class ChangeStreamStopped(DataflowError):
    """The trigger stopped on purpose: a lost history, or a failed event with on_error="stop"."""


class ChangeEventUndecodable(DataflowError):
    """A dead letter's change event cannot be decoded with the stream's codec options."""


class HttpRequestRefused(DataflowError):
    """A request the status page's HTTP API refuses: answered with `status` (400, 401, 404, ...)
    and the message as a JSON error, never as a 500."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Interrupted(Exception):
    """A statement was not started because its operation had been cancelled or timed out.

    Internal to the SQL connections: they turn it into QueryTimeoutError/QueryCancelledError.
    """


def one_line(err: BaseException, *, with_type: bool = False) -> str:
    """A driver error's own message on one line, without pymongo's topology dump.

    pyodbc puts the message beside the SQLSTATE in `args`; pymongo keeps the server's in
    `details`.
    """
    details = getattr(err, "details", None)
    if isinstance(details, Mapping) and details.get("errmsg"):
        text = str(details["errmsg"])
    elif len(err.args) > 1 and isinstance(err.args[0], str) and isinstance(err.args[1], str):
        # The driver's errors are (SQLSTATE, message); pyodbc's own (a wrong parameter count)
        # are (message, SQLSTATE): the message is whichever is not the code.
        first, second = err.args[0], err.args[1]
        text = first if _SQLSTATE.fullmatch(second) and not _SQLSTATE.fullmatch(first) else second
    else:
        text = str(err).split(", Timeout: ")[0]
    text = " ".join(text.split())
    return f"{type(err).__name__}: {text}" if with_type else text


publish(
    "dataflow",
    DataflowError,
    WorkflowError,
    CronError,
    SettingsError,
    WorkflowNotFound,
    WorkflowImportError,
    StartupFailed,
    TriggerFailed,
    StateStoreError,
    StateFileRefused,
    StateValueError,
    DataflowConnectionError,
    ConnectionLostError,
    DataflowSQLError,
    QueryTimeoutError,
    QueryCancelledError,
    FrameWriteError,
    UpsertFailure,
    UpsertManyResult,
    BulkUpsertError,
    ChangeStreamUnavailable,
    ChangeStreamStopped,
)
