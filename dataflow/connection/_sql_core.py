"""What the SQL connections (ODBC, SQLite) share: errors, retry policy, per-thread driver handles.

Neither pyodbc nor sqlite3 connections may be used by two threads at once, while the runtime
calls a connection object from many worker threads. `ThreadSlots` gives each thread its own
driver handle, opened on first use, and keeps the bookkeeping that lets another thread cancel
the statement running there (the one cross-thread call both drivers support) or close them all.
"""

from __future__ import annotations

import enum
import random
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import structlog

from dataflow._core.errors import (
    ConnectionLostError,
    DataflowConnectionError,
    DataflowSQLError,
    Interrupted,
)
from dataflow._core.exports import publish
from dataflow._core.run import current_run_or_none
from dataflow._core.watchdog import watchdog
from dataflow.connection._base import Connection

H = TypeVar("H")

log = structlog.get_logger("dataflow.connection")

_CLOSE_WAIT = 5.0  # seconds disconnect() waits for a cancelled statement to return


class ErrorKind(enum.Enum):
    """What a driver error means for the caller."""

    CONNECTION = "connection lost or refused"  # reconnect; retry if the work is idempotent
    CONFLICT = "deadlock or serialization failure"  # the server rolled back; retry the unit
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    OTHER = "other"


def column_names(cursor: Any) -> list[str]:
    """A DB-API cursor's column names; duplicates would overwrite each other in a row dict."""
    names = [str(column[0]) for column in cursor.description or ()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataflowSQLError(f"the result has duplicate column names {duplicates}; alias them")
    return names


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried."""

    attempts: int = 3  # tries in all; 1 turns retries off
    base_delay: float = 0.2  # seconds before the first retry, doubled each time
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so retrying clients do not move in lockstep."""
        ceiling = min(self.max_delay, self.base_delay * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(eq=False)
class Slot(Generic[H]):
    """One thread's driver handle, plus what `cancel()` and the timeout watchdog need."""

    thread: threading.Thread | None  # None: one handle shared by all threads
    handle: H | None = None
    busy: threading.RLock = field(default_factory=threading.RLock)  # held during driver calls
    guard: threading.Lock = field(default_factory=threading.Lock)  # orders cancel vs. statement end
    stopper: Callable[[], object] | None = None  # interrupts the running statement
    runner: int | None = None  # thread running the current operation
    depth: int = 0  # nested operations (iter_batches while the caller runs statements)
    cancelled: bool = False
    timed_out: bool = False
    wake: threading.Event = field(default_factory=threading.Event)  # ends a retry backoff early
    in_transaction: bool = False
    broken: bool = False  # lost inside a transaction: refuse work until the block ends

    @contextmanager
    def operation(self) -> Iterator[None]:
        """One caller-visible call (with its retries): `cancel()` flags stay set throughout."""
        with self.guard:
            if self.depth == 0:
                self.cancelled = self.timed_out = False
                self.runner = threading.get_ident()
                self.wake.clear()
            self.depth += 1
        # Inside a dataflow run, a cancelled run (timeout, shutdown) stops this operation.
        run = current_run_or_none()
        forget = run.on_cancel(self.stop) if run is not None else None
        try:
            yield
        finally:
            if forget is not None:
                forget()
            with self.guard:
                self.depth -= 1

    @contextmanager
    def statement(self, stopper: Callable[[], object], seconds: float | None) -> Iterator[None]:
        """One driver call that `stop()` can interrupt, under a watchdog after `seconds`."""
        with self.busy:
            with self.guard:
                if self.cancelled or self.timed_out:
                    raise Interrupted
                self.stopper = stopper
            try:
                with watchdog(seconds, partial(self.stop, timed_out=True)):
                    yield
            finally:
                with self.guard:
                    self.stopper = None

    def stop(self, *, timed_out: bool = False) -> None:
        """Interrupt the current operation, from any thread; does nothing when idle."""
        with self.guard:
            if self.depth == 0:
                return
            self.timed_out |= timed_out
            self.cancelled |= not timed_out
            self.wake.set()
            if self.stopper is not None:
                try:
                    self.stopper()
                except Exception:  # the statement ended meanwhile; nothing left to stop
                    log.debug("sql.cancel_raced", exc_info=True)

    def interruption(self) -> ErrorKind | None:
        """Why the current operation failed, when it was interrupted on purpose."""
        if self.timed_out:
            return ErrorKind.TIMEOUT
        return ErrorKind.CANCELLED if self.cancelled else None


class ThreadSlots(Generic[H]):
    """Driver handles, one per thread (or one shared by all), opened lazily, closed together."""

    def __init__(
        self,
        opener: Callable[[], H],
        closer: Callable[[H], None],
        describe: Callable[[], str],
        *,
        shared: bool = False,
    ) -> None:
        self._opener, self._closer, self._describe = opener, closer, describe
        self._shared = shared
        self._slots: dict[int, Slot[H]] = {}
        self._lock = threading.Lock()
        self._open = False

    def open(self) -> None:
        with self._lock:
            self._open = True

    def current(self) -> Slot[H]:
        """The calling thread's slot; raises `DataflowConnectionError` before `connect()`."""
        key = 0 if self._shared else threading.get_ident()
        thread = None if self._shared else threading.current_thread()
        with self._lock:
            self._require_open()
            # Worker threads come and go (AnyIO retires idle ones): their connections go too.
            ended = [k for k, s in self._slots.items() if s.thread and not s.thread.is_alive()]
            stale = [self._slots.pop(k) for k in ended]
            slot = self._slots.get(key)
            if slot is None or slot.thread is not thread:
                slot = self._slots[key] = Slot(thread)
        for old in stale:
            self.lose(old)
        return slot

    def handle(self, slot: Slot[H]) -> H:
        """The slot's driver handle, opened (or reopened after a loss) on demand."""
        if slot.broken:
            raise ConnectionLostError(
                f"{self._describe()}: connection lost inside a transaction, which was rolled back"
            )
        if slot.handle is None:
            handle = self._opener()
            with self._lock:
                registered = self._open and slot in self._slots.values()
                if registered:
                    slot.handle = handle
            if not registered:  # disconnect() ran meanwhile
                self._closer(handle)
                self._require_open()
        assert slot.handle is not None
        return slot.handle

    def lose(self, slot: Slot[H]) -> None:
        """Close the slot's handle after a failure; the next call on the slot reconnects."""
        handle, slot.handle = slot.handle, None
        if handle is not None:
            self._closer(handle)
        if slot.in_transaction:
            slot.broken = True

    def cancel(self, thread_id: int | None = None) -> None:
        with self._lock:
            slots = [s for s in self._slots.values() if thread_id in (None, s.runner)]
        for slot in slots:
            slot.stop()

    def close_all(self) -> None:
        """Stop running statements, then close every handle; later calls need `connect()`."""
        with self._lock:
            self._open = False
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            slot.stop()
        for slot in slots:
            if slot.busy.acquire(timeout=_CLOSE_WAIT):
                try:
                    self.lose(slot)
                finally:
                    slot.busy.release()
            else:  # closing a handle in use could crash the driver; leave it to its thread
                log.warning("sql.close_skipped", target=self._describe(), reason="statement busy")

    def _require_open(self) -> None:
        if not self._open:
            raise DataflowConnectionError(f"{self._describe()}: not connected, call connect()")


class SqlConnection(Connection):
    """What both SQL connections share: a handle per thread, connect, disconnect, cancel."""

    _slots: ThreadSlots[Any]

    @property
    @abstractmethod
    def target(self) -> str:
        """What this connects to, for messages and logs; never holds a password."""

    def connect(self) -> None:
        """Open this thread's connection now, so a bad target or login fails here."""
        self._slots.open()
        try:
            self._slots.handle(self._slots.current())
        except BaseException:
            self._slots.close_all()
            raise

    def disconnect(self) -> None:
        """Stop running statements and close every thread's connection."""
        self._slots.close_all()

    def cancel(self, thread_id: int | None = None) -> None:
        """Stop the statement running on any thread (or only on `thread_id`), from any thread.

        For the runtime: a cancelled or timed-out run calls this so the server stops the work,
        and the worker thread blocked in the driver returns with `QueryCancelledError`.
        """
        self._slots.cancel(thread_id)


publish("dataflow.connection", RetryPolicy)
