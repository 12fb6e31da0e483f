"""The SQLite store's fire ledger (`_ledger.py`): statements on the store's cursor, and the
`SqliteFireLedger` methods the store inherits. Times are ISO text in UTC, which sorts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from dataflow._core.clock import iso
from dataflow.state._interface import Retention
from dataflow.state._ledger import MAX_ENTRIES, RUN_OUTCOMES, FireEntry, FireOutcome

_COLUMNS = "fire_at, outcome, reason, run_id, related_at, claimed_at"
_RUN_OUTCOMES = ", ".join(f"'{outcome}'" for outcome in RUN_OUTCOMES)
# An entry replaces a row only while the fire is merely claimed: an outcome, once written,
# stays (a backfill says what it replaced: `backfilled`).
_UPSERT = (
    f"INSERT INTO fires (workflow, trigger, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (workflow, trigger, fire_at) DO UPDATE SET outcome = excluded.outcome,"
    " reason = excluded.reason, run_id = excluded.run_id, related_at = excluded.related_at,"
    " claimed_at = excluded.claimed_at WHERE fires.outcome = 'claimed'"
)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def claim(cur: sqlite3.Cursor, workflow: str, trigger: str, fire_at: datetime, key: str) -> None:
    """The last fire (under `key`) and the claimed fire's row. A fire claimed again keeps its
    row (a late wake moving the last fire past a fire that ran; an interrupted fire run again,
    whose new run's start gives the row its id)."""
    cur.execute(
        "INSERT INTO trigger_state (workflow, trigger, key, value, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
        " SET value=excluded.value, updated_at=excluded.updated_at",
        (workflow, trigger, key, fire_at.isoformat(), _now()),
    )
    cur.execute(
        f"INSERT INTO fires (workflow, trigger, {_COLUMNS}) VALUES (?, ?, ?, 'claimed',"
        " NULL, NULL, NULL, ?) ON CONFLICT (workflow, trigger, fire_at) DO NOTHING",
        (workflow, trigger, iso(fire_at, utc=True), _now()),
    )


def write(cur: sqlite3.Cursor, workflow: str, trigger: str, entries: Sequence[FireEntry]) -> None:
    now = _now()
    rows = [
        (
            workflow,
            trigger,
            iso(e.fire_at, utc=True),
            e.outcome.value,
            e.reason,
            e.run_id,
            iso(e.related_at, utc=True),
            now,
        )
        for e in sorted(entries, key=lambda e: e.fire_at)[-MAX_ENTRIES:]
    ]
    cur.executemany(_UPSERT, rows)


def run_started(
    cur: sqlite3.Cursor,
    workflow: str,
    trigger: str,
    fire_at: datetime,
    run_id: str,
    backfill: bool,
) -> None:
    """A scheduled run began: its fire's row gets the run id (in the run record's call)."""
    at, now = iso(fire_at, utc=True), _now()
    if not backfill:
        cur.execute(
            "UPDATE fires SET run_id = ?, claimed_at = ?, outcome = CASE outcome"
            " WHEN 'claimed' THEN 'ran' ELSE outcome END"
            f" WHERE workflow = ? AND trigger = ? AND fire_at = ? AND outcome IN ({_RUN_OUTCOMES})",
            (run_id, now, workflow, trigger, at),
        )
        return
    cur.execute(
        f"INSERT INTO fires (workflow, trigger, {_COLUMNS}) VALUES (?, ?, ?, 'backfilled',"
        " NULL, ?, NULL, ?) ON CONFLICT (workflow, trigger, fire_at) DO UPDATE SET"
        " run_id = excluded.run_id, claimed_at = excluded.claimed_at, outcome = 'backfilled',"
        " reason = CASE fires.outcome WHEN 'backfilled' THEN fires.reason"
        " ELSE 'before: ' || fires.outcome || coalesce(': ' || fires.reason, '') END",
        (workflow, trigger, at, run_id, now),
    )


def select(
    cur: sqlite3.Cursor,
    workflow: str,
    trigger: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[FireEntry]:
    low = iso(since, utc=True) or ""
    high = iso(until, utc=True) or "9"
    rows = cur.execute(
        f"SELECT {_COLUMNS} FROM fires WHERE workflow = ? AND trigger = ? AND fire_at >= ?"
        " AND fire_at <= ? ORDER BY fire_at DESC LIMIT ?",
        (workflow, trigger, low, high, limit),
    ).fetchall()
    return [entry(row) for row in rows]


def entry(row: Any) -> FireEntry:
    def when(value: str | datetime | None) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value)

    fire_at = when(row["fire_at"])
    assert fire_at is not None
    return FireEntry(
        fire_at=fire_at.astimezone(UTC),
        outcome=FireOutcome(row["outcome"]),
        reason=row["reason"],
        run_id=row["run_id"],
        related_at=when(row["related_at"]),
        recorded_at=when(row["claimed_at"]),
    )


def prune(cur: sqlite3.Cursor, workflow: str, retention: Retention, batch: int) -> int:
    """Fires older than the horizon, then fires past a trigger's newest cap (by fire time,
    the runs' clock: a fire that old is never claimed again)."""
    gone = cur.execute(
        "DELETE FROM fires WHERE rowid IN (SELECT rowid FROM fires WHERE workflow = ?"
        " AND fire_at < ? LIMIT ?)",
        (workflow, iso(retention.older_than, utc=True), batch),
    ).rowcount
    triggers = cur.execute("SELECT DISTINCT trigger FROM fires WHERE workflow = ?", (workflow,))
    for (trigger,) in triggers.fetchall():
        if gone >= batch:
            break
        gone += cur.execute(
            "DELETE FROM fires WHERE rowid IN (SELECT rowid FROM fires WHERE workflow = ?"
            " AND trigger = ? ORDER BY fire_at DESC LIMIT ? OFFSET ?)",
            (workflow, trigger, batch - gone, retention.max_runs_per_trigger),
        ).rowcount
    return int(gone)


class SqliteFireLedger:
    """The ledger's `Store` methods, for `SqliteStore` (which provides `_cursor` and
    `_write`: its group commit's read and write)."""

    _cursor: Callable[[], AbstractContextManager[sqlite3.Cursor]]  # SqliteStore's

    _write: Callable[..., AbstractContextManager[sqlite3.Cursor]]  # SqliteStore's group commit

    def record_fires(self, workflow: str, trigger: str, entries: Sequence[FireEntry]) -> None:
        with self._write() as cur:  # durable, with every write before it (in order)
            write(cur, workflow, trigger, entries)

    def fires(
        self,
        workflow: str,
        trigger: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[FireEntry]:
        with self._cursor() as cur:
            return select(cur, workflow, trigger, since, until, limit)
