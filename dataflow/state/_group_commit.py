"""Group commit for one SQLite connection: many writes, one transaction, one commit.

A write that may wait (a run record, a stream position: see `Store`) runs at once inside an
open transaction and returns; the transaction commits `COMMIT_INTERVAL` after its first write
(a background thread), or at once when it holds `COMMIT_WRITES` writes. A write that must be
durable (a fire's claim, a dead letter, a trigger value) joins the same transaction and commits
it before it returns: everything written before it becomes durable with it, in order. Reads
use the same connection, so they see every write made before them, committed or not.

A failed commit (disk full, I/O error) loses the writes it held: from then on every call, and
`check()` (which the runtime calls about once a second), raises the same StateStoreError, so
the runtime ends instead of going on as if they were kept. Nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataflow._core.errors import StateStoreError
from dataflow._core.heldlock import HeldLock

COMMIT_INTERVAL = 0.005  # seconds a batched write waits at most for its commit
COMMIT_WRITES = 500  # batched writes that make a commit at once (a bounded transaction)


class GroupCommit:
    """Owns a connection's transactions: `reading()`, `writing(durable=...)`, `flush()`."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        *,
        interval: float = COMMIT_INTERVAL,
        max_writes: int = COMMIT_WRITES,
    ) -> None:
        self.db, self.path = db, path
        self.interval, self.max_writes = interval, max_writes
        self.lock = HeldLock()  # one call at a time holds the connection
        self.commits = 0  # transactions committed (for tests and benchmarks)
        self.pending = 0  # writes in the open transaction
        self._wake = threading.Condition(self.lock)  # type: ignore[arg-type]  # acquire+release
        self._opened_at: float | None = None  # monotonic time of the open transaction's start
        self._failure: StateStoreError | None = None
        self._reported = False  # the failure was raised to a caller at least once
        self._closed = False
        self._committer: threading.Thread | None = None

    # -- what the store's methods use ------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[sqlite3.Cursor]:
        with self.lock:
            self._raise_if_failed()
            try:
                yield self.db.cursor()
            except sqlite3.Error as exc:
                raise self._statement_failed(exc) from exc

    @contextmanager
    def writing(self, *, durable: bool) -> Iterator[sqlite3.Cursor]:
        """A write in the open transaction (begun if none is); `durable`: committed, with every
        write before it, when the block ends; else committed within `interval`."""
        with self.lock:
            self._raise_if_failed()
            try:
                if not self.db.in_transaction:
                    self.db.execute("BEGIN IMMEDIATE")
                    self._opened_at = time.monotonic()
                    self._wake.notify()
                yield self.db.cursor()
            except sqlite3.Error as exc:
                raise self._statement_failed(exc) from exc
            self.pending += 1
            if durable or self.pending >= self.max_writes:
                self._commit()
            elif self._committer is None:
                self._start_committer()

    @contextmanager
    def exclusive(self) -> Iterator[sqlite3.Cursor]:
        """The connection with nothing pending, for a caller that runs its own transaction."""
        with self.lock:
            self._raise_if_failed()
            self._commit_pending()
            try:
                yield self.db.cursor()
            except sqlite3.Error as exc:
                raise self._statement_failed(exc) from exc

    def flush(self) -> None:
        """Commit what is pending now: every write made so far is durable when this returns."""
        with self.lock:
            self._raise_if_failed()
            self._commit_pending()

    def check(self) -> None:
        """Raise the failure of a commit no caller waited for (the background commit's)."""
        with self.lock:
            self._raise_if_failed()

    def close(self) -> None:
        """Commit what is pending, stop the committer, close the connection. A failure not yet
        raised to anyone is raised here: the last writes must not vanish unsaid."""
        with self.lock:
            if self._closed:
                return  # closed before (a caller's `finally` and the runtime's both close)
            self._closed = True
            self._wake.notify()
            try:
                if self._failure is None:
                    self._commit_pending()
            finally:
                self.db.close()
        if self._committer is not None and self._committer is not threading.current_thread():
            self._committer.join(timeout=1.0)
        if self._failure is not None and not self._reported:
            self._reported = True
            raise self._failure

    # -- the transaction ------------------------------------------------------------------
    def _commit_pending(self) -> None:
        if self.db.in_transaction:
            self._commit()

    def _commit(self) -> None:
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._lost(exc) from exc
        self.commits += 1
        self.pending = 0
        self._opened_at = None

    def _statement_failed(self, exc: sqlite3.Error) -> StateStoreError:
        """One statement failed. SQLite keeps the open transaction after most errors (a
        constraint); if the error rolled it back, the writes it held are lost."""
        if self.pending and not self.db.in_transaction:
            return self._lost(exc)
        return StateStoreError(f"state store {self.path}: {exc}")

    def _lost(self, exc: sqlite3.Error) -> StateStoreError:
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # past use: the failure below says so
                self.db.execute("ROLLBACK")
        self._failure = StateStoreError(f"state store {self.path}: {exc}")
        self._reported = True  # raised to the caller (the committer says otherwise)
        self.pending, self._opened_at = 0, None
        return self._failure

    def _raise_if_failed(self) -> None:
        if self._closed:  # a thread the runtime abandoned, writing after the end
            raise StateStoreError(f"state store {self.path} is closed")
        if self._failure is not None:
            self._reported = True
            raise self._failure

    # -- the background committer -----------------------------------------------------------
    def _start_committer(self) -> None:
        self._committer = threading.Thread(
            target=self._serve_commits, name="dataflow-state-commit", daemon=True
        )
        self._committer.start()

    def _serve_commits(self) -> None:
        """Commit each open transaction `interval` after it began, until the store closes."""
        with self.lock:
            while not self._closed:
                if self._opened_at is None:
                    self._wake.wait()
                    continue
                due = self._opened_at + self.interval - time.monotonic()
                if due > 0:
                    self._wake.wait(due)
                    continue
                try:
                    self._commit_pending()
                except StateStoreError:
                    self._reported = False  # nobody saw it yet: the next call, check(), close()
