"""The SQLite store (one file per workflow, WAL): the first `Store`. Thread-safe; one call at a
time holds the connection. Async callers use `call()`.

Durability: writes the `Store` contract lets wait (run records, stream positions) are group-
committed (`_group_commit`: within 5 ms, or at 500 writes); every other write commits before
the method returns, together with everything written before it, so writes reach the file in
the order made. With WAL and `synchronous=NORMAL` a commit survives the process dying (kill -9);
the last commits may be lost only if the machine itself loses power. One process holds a file
(`hold()`), so a fire this process saves is claimed: `claim_fire` is always True here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

from dataflow._core import offload
from dataflow._core.clock import iso
from dataflow.state import _names
from dataflow.state import _sqlite_fires as _ledger
from dataflow.state import _sqlite_history as history
from dataflow.state._file import still_there
from dataflow.state._group_commit import COMMIT_INTERVAL, COMMIT_WRITES, GroupCommit
from dataflow.state._interface import STUCK_AFTER, DeadLetter, Retention, RunRecord
from dataflow.state._ledger import FireEntry
from dataflow.state._lock import exclusive_lock
from dataflow.state._sqlite_open import open_database

P = ParamSpec("P")
T = TypeVar("T")


LAST_FIRE = "last_fire"  # the trigger_state key of a cron trigger's last fire (since schema 0)


class SqliteStore(_ledger.SqliteFireLedger):
    """Opening refuses (StateFileRefused) a file it must not use, and brings an older one's
    schema forward; `check()` says whether the path still names the file opened."""

    def __init__(
        self,
        path: Path | str,
        *,
        commit_interval: float = COMMIT_INTERVAL,
        commit_writes: int = COMMIT_WRITES,
    ) -> None:
        self.path = Path(path)
        self.replica_id: str | None = None  # written on each run record; the runtime sets it
        # `_opened`: the file's identity when opened (device, inode; its WAL's)
        self._db, self._opened = open_database(self.path)
        self._tx = GroupCommit(
            self._db, self.path, interval=commit_interval, max_writes=commit_writes
        )
        self._lock = self._tx.lock  # held by every call (`busy()`), the committer's included

    def hold(self) -> AbstractContextManager[None]:
        """An advisory lock beside the file: a second runtime on it fails at start."""
        return exclusive_lock(self.path)

    def check(self) -> None:
        """Raise StateStoreError if the path was deleted or now names another file, or if a
        group commit failed (its writes are lost: the runtime must not go on)."""
        self._tx.check()
        if self._opened:
            still_there(self.path, self._opened)

    def close(self) -> None:
        """Commit what is batched, then close (a failed last commit raises StateStoreError)."""
        self._tx.close()

    def flush(self) -> None:
        """Commit every batched write now."""
        self._tx.flush()

    def busy(self) -> bool:
        """One call has held the store's lock past `STUCK_AFTER` (a write stuck in the kernel):
        for a watchdog that tells a stop held by a state write from one that is merely slow."""
        return self._lock.held_for() > STUCK_AFTER

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one of this store's methods in a worker thread."""
        return await offload.run_sync(lambda: fn(*args, **kwargs))

    def _cursor(self) -> AbstractContextManager[sqlite3.Cursor]:
        return self._tx.reading()

    def _write(self, *, durable: bool = True) -> AbstractContextManager[sqlite3.Cursor]:
        return self._tx.writing(durable=durable)

    # -- trigger state -------------------------------------------------------------------
    def get_state(self, workflow: str, trigger: str, key: str) -> str | None:
        with self._cursor() as cur:
            row = cur.execute(
                "SELECT value FROM trigger_state WHERE workflow=? AND trigger=? AND key=?",
                (workflow, trigger, key),
            ).fetchone()
        return None if row is None else str(row["value"])

    def set_state(self, workflow: str, trigger: str, key: str, value: str) -> None:
        self._upsert_state(workflow, trigger, key, value, durable=True)

    def _upsert_state(
        self, workflow: str, trigger: str, key: str, value: str, *, durable: bool
    ) -> None:
        with self._write(durable=durable) as cur:
            cur.execute(
                "INSERT INTO trigger_state (workflow, trigger, key, value, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET value=excluded.value, updated_at=excluded.updated_at",
                (workflow, trigger, key, value, iso(datetime.now(UTC), utc=True)),
            )

    def state_items(self, workflow: str) -> list[tuple[str, str, str, datetime]]:
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT trigger, key, value, updated_at FROM trigger_state WHERE workflow=?"
                " ORDER BY trigger, key",
                (workflow,),
            ).fetchall()
        return [
            (r["trigger"], r["key"], r["value"], datetime.fromisoformat(r["updated_at"]))
            for r in rows
        ]

    # -- cron fires and stream positions: kept as trigger_state keys, as since schema 0 ---
    def claim_fire(
        self,
        workflow: str,
        trigger: str,
        fire_at: datetime,
        ledger: Sequence[FireEntry] = (),
        *,
        skipped: Sequence[RunRecord] = (),
    ) -> bool:
        with self._write() as cur:  # durable: one commit with every write before it
            _ledger.claim(cur, workflow, trigger, fire_at, LAST_FIRE)
            _ledger.write(cur, workflow, trigger, ledger)
            history.insert_runs(cur, skipped, self.replica_id)
        return True  # the only process on this file (`hold()`): every fire is its own

    def last_fire(self, workflow: str, trigger: str) -> datetime | None:
        raw = self.get_state(workflow, trigger, LAST_FIRE)
        return None if raw is None else datetime.fromisoformat(raw)

    def save_position(self, workflow: str, trigger: str, key: str, position: str) -> None:
        self._upsert_state(workflow, trigger, key, position, durable=False)

    def load_position(self, workflow: str, trigger: str, key: str) -> str | None:
        return self.get_state(workflow, trigger, key)

    # -- the workflow's name (see _names.py) ---------------------------------------------
    def unclaimed_rows(self, previous: str) -> bool:
        """Rows saved under `previous` that no workflow of that name has claimed."""
        with self._cursor() as cur:
            return _names.has_rows(cur, previous) and not _names.is_claimed(cur, previous)

    def rename_workflow(self, previous: str, name: str) -> int | None:
        with self._tx.exclusive() as cur:
            return _names.rename_rows(cur, previous, name)

    def claim_workflow(self, name: str) -> None:
        with self._tx.exclusive() as cur:  # autocommit: a claimed file sees no write at all
            _names.claim(cur, name)

    # -- runs -----------------------------------------------------------------------------
    def record_run_start(
        self,
        run_id: str,
        workflow: str,
        trigger: str,
        scheduled_at: datetime | None,
        started_at: datetime,
        attempt: int = 1,
        *,
        backfill: bool = False,
    ) -> None:
        with self._write(durable=False) as cur:
            row = (run_id, workflow, trigger, scheduled_at, started_at, attempt, backfill)
            self._insert_start(cur, *row)

    def claim_fire_started(
        self, workflow: str, trigger: str, fire_at: datetime, run_id: str, started_at: datetime
    ) -> None:
        """`claim_fire` and its run's `record_run_start` in one durable commit: a fire claimed
        ahead of its time (`_cron/ahead.py`) that a crash cut off shows `interrupted`."""
        with self._write() as cur:
            _ledger.claim(cur, workflow, trigger, fire_at, LAST_FIRE)
            self._insert_start(cur, run_id, workflow, trigger, fire_at, started_at, 1, False)

    def _insert_start(
        self,
        cur: sqlite3.Cursor,
        run_id: str,
        workflow: str,
        trigger: str,
        scheduled_at: datetime | None,
        started_at: datetime,
        attempt: int,
        backfill: bool,
    ) -> None:
        cur.execute(
            "INSERT INTO runs (run_id, workflow, trigger, scheduled_at, started_at, status,"
            " attempt, backfill, replica) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            (
                *(run_id, workflow, trigger, iso(scheduled_at, utc=True)),
                *(iso(started_at, utc=True), attempt, int(backfill), self.replica_id),
            ),
        )
        if scheduled_at is not None:
            _ledger.run_started(cur, workflow, trigger, scheduled_at, run_id, backfill)

    def record_run_end(
        self, run_id: str, status: str, ended_at: datetime, error: str | None = None
    ) -> None:
        with self._write(durable=False) as cur:
            cur.execute(
                "UPDATE runs SET status=?, ended_at=?, error=? WHERE run_id=?",
                (status, iso(ended_at, utc=True), error, run_id),
            )

    def runs(
        self,
        workflow: str,
        trigger: str | None = None,
        *,
        failed_only: bool = False,
        limit: int = 50,
        run_id: str | None = None,
        status: str | None = None,
        before: datetime | None = None,
    ) -> list[RunRecord]:
        with self._cursor() as cur:
            return history.select_runs(
                cur, workflow, trigger, failed_only, limit, run_id, status, before
            )

    def runs_by_id(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """The runs with these ids, in the order given (an id not recorded is left out)."""
        with self._cursor() as cur:
            return history.select_runs_by_id(cur, run_ids)

    def record_batch_end(
        self,
        run_id: str,
        ended_at: datetime,
        events: int,
        first_position: str | None,
        last_position: str | None,
    ) -> None:
        with self._write(durable=False) as cur:
            history.end_batch(
                cur, run_id, iso(ended_at, utc=True), events, first_position, last_position
            )

    def mark_interrupted(self, workflow: str) -> list[RunRecord]:
        with self._write() as cur:
            return history.mark_interrupted(cur, workflow)

    def prune_history(self, workflow: str, retention: Retention, *, batch: int) -> int:
        with self._write() as cur:  # one transaction with whatever was batched before it
            gone = history.prune(cur, workflow, retention, batch)
            gone += _ledger.prune(cur, workflow, retention, batch - gone) if gone < batch else 0
        return gone

    # -- dead letters ---------------------------------------------------------------------
    def add_dead_letter(
        self, workflow: str, trigger: str, payload: str, error: str, raw: bytes | None = None
    ) -> int:
        with self._write() as cur:
            cur.execute(
                "INSERT INTO dead_letters (workflow, trigger, payload, error, created_at, raw)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (workflow, trigger, payload, error, iso(datetime.now(UTC), utc=True), raw),
            )
            return int(cur.lastrowid or 0)

    def dead_letters(self, workflow: str, *, include_retried: bool = False) -> list[DeadLetter]:
        sql = f"SELECT {history.LETTER_COLUMNS} FROM dead_letters WHERE workflow=?"
        if not include_retried:
            sql += " AND (retry_status IS NULL OR retry_status != 'succeeded')"
        with self._cursor() as cur:
            rows = cur.execute(sql + " ORDER BY id", (workflow,)).fetchall()
        return [history.dead_letter(row) for row in rows]

    def mark_dead_letter_retried(self, letter_id: int, status: str) -> None:
        with self._write() as cur:
            cur.execute(
                "UPDATE dead_letters SET retried_at=?, retry_status=? WHERE id=?",
                (iso(datetime.now(UTC), utc=True), status, letter_id),
            )


StateStore = SqliteStore  # the name before the `Store` interface; existing imports keep working
