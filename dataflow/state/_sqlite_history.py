"""The SQLite store's run history and dead letters: the statements, and rows read by column name.

Times are kept as UTC ISO text (`iso(..., utc=True)`), which sorts as the times do, so the
indexes on `started_at` serve ordering and the retention horizon alike.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dataflow._core.clock import iso
from dataflow.state._interface import DeadLetter, Retention, RunRecord

RUN_COLUMNS = (
    "run_id, workflow, trigger, scheduled_at, started_at, ended_at, status, attempt, error,"
    " backfill, replica, events, first_position, last_position"
)
_IDS_PER_QUERY = 500  # well under SQLite's bound on parameters in one statement
LETTER_COLUMNS = "id, workflow, trigger, payload, error, created_at, retried_at, retry_status, raw"
# Written out exactly as in the partial indexes' WHERE (schema 4), which SQLite then uses.
FAILED = "status IN ('failed', 'timed_out', 'cancelled', 'interrupted')"
_INTERRUPTED_WHY = "the process stopped during the run"


def select_runs(
    cur: sqlite3.Cursor,
    workflow: str,
    trigger: str | None,
    failed_only: bool,
    limit: int,
    run_id: str | None = None,
    status: str | None = None,
    before: datetime | None = None,
) -> list[RunRecord]:
    """`run_id`: the runs whose (lowercase hex) id starts with it, as the console shows ids."""
    where = {
        "workflow=?": workflow,
        "trigger=?": trigger,
        "instr(run_id, ?)=1": run_id,
        "status=?": status,
        "started_at<?": None if before is None else iso(before, utc=True),
    }
    given: dict[str, Any] = {test: value for test, value in where.items() if value is not None}
    sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(given)}"
    if failed_only:
        sql += f" AND {FAILED}"
    sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
    return [run_record(row) for row in cur.execute(sql, [*given.values(), limit]).fetchall()]


def select_runs_by_id(cur: sqlite3.Cursor, run_ids: Sequence[str]) -> list[RunRecord]:
    found: dict[str, RunRecord] = {}
    for start in range(0, len(run_ids), _IDS_PER_QUERY):
        chunk = run_ids[start : start + _IDS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        rows = cur.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id IN ({marks})", chunk)
        found |= {record.run_id: record for record in map(run_record, rows.fetchall())}
    return [found[run_id] for run_id in run_ids if run_id in found]


def insert_runs(cur: sqlite3.Cursor, records: Sequence[RunRecord], replica: str | None) -> None:
    """Runs written whole, ended (a late batch's skipped records, in its claim's transaction):
    unlike a run's start, they leave the fire ledger alone (the caller writes their rows)."""
    cur.executemany(
        "INSERT INTO runs (run_id, workflow, trigger, scheduled_at, started_at, ended_at, status,"
        " attempt, error, backfill, replica) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.run_id,
                r.workflow,
                r.trigger,
                iso(r.scheduled_at, utc=True),
                iso(r.started_at, utc=True),
                iso(r.ended_at, utc=True),
                r.status,
                r.attempt,
                r.error,
                int(r.backfill),
                replica,
            )
            for r in records
        ],
    )


def end_batch(
    cur: sqlite3.Cursor,
    run_id: str,
    ended_at: str | None,
    events: int,
    first_position: str | None,
    last_position: str | None,
) -> None:
    cur.execute(
        "UPDATE runs SET status='succeeded', ended_at=?, events=?, first_position=?,"
        " last_position=? WHERE run_id=?",
        (ended_at, events, first_position, last_position, run_id),
    )


def mark_interrupted(cur: sqlite3.Cursor, workflow: str) -> list[RunRecord]:
    rows = cur.execute(
        f"UPDATE runs SET status='interrupted', error=? WHERE workflow=? AND status='running'"
        f" RETURNING {RUN_COLUMNS}",
        (_INTERRUPTED_WHY, workflow),
    ).fetchall()
    return [run_record(row) for row in rows]


def prune(cur: sqlite3.Cursor, workflow: str, retention: Retention, batch: int) -> int:
    """One batch: runs past the age, then runs past a trigger's cap, then retried letters."""
    horizon = iso(retention.older_than, utc=True)
    gone = _delete_runs(
        cur,
        "SELECT rowid FROM runs WHERE workflow=? AND started_at < ? AND status != 'running'"
        " LIMIT ?",
        (workflow, horizon, batch),
    )
    for trigger in _triggers(cur, workflow):
        if gone >= batch:
            return gone
        oldest_kept = _oldest_kept(cur, workflow, trigger, retention.max_runs_per_trigger)
        if oldest_kept is not None:
            gone += _delete_runs(
                cur,
                "SELECT rowid FROM runs WHERE workflow=? AND trigger=? AND started_at < ?"
                " AND status != 'running' LIMIT ?",
                (workflow, trigger, oldest_kept, batch - gone),
            )
    if gone < batch:
        gone += cur.execute(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE workflow=?"
            " AND retry_status='succeeded' AND retried_at < ? LIMIT ?)",
            (workflow, horizon, batch - gone),
        ).rowcount
    return gone


def _oldest_kept(cur: sqlite3.Cursor, workflow: str, trigger: str, cap: int) -> str | None:
    """The start time of the trigger's `cap`-th newest run (running ones count), if it has
    more: read from the index alone. Runs sharing that start time are all kept."""
    row = cur.execute(
        "SELECT started_at FROM runs WHERE workflow=? AND trigger=?"
        " ORDER BY started_at DESC LIMIT 1 OFFSET ?",
        (workflow, trigger, cap - 1),
    ).fetchone()
    return None if row is None else str(row["started_at"])


def _delete_runs(cur: sqlite3.Cursor, chosen: str, params: tuple[Any, ...]) -> int:
    return cur.execute(f"DELETE FROM runs WHERE rowid IN ({chosen})", params).rowcount


def _triggers(cur: sqlite3.Cursor, workflow: str) -> list[str]:
    """The workflow's trigger names in its run history, one index probe per name (a skip scan:
    `SELECT DISTINCT` would read every row's index entry)."""
    rows = cur.execute(
        "WITH RECURSIVE t(name) AS ("
        " SELECT min(trigger) FROM runs WHERE workflow=:w"
        " UNION ALL SELECT (SELECT min(trigger) FROM runs WHERE workflow=:w AND trigger > t.name)"
        " FROM t WHERE t.name IS NOT NULL)"
        " SELECT name FROM t WHERE name IS NOT NULL",
        {"w": workflow},
    ).fetchall()
    return [str(row["name"]) for row in rows]


def dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def run_record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        workflow=row["workflow"],
        trigger=row["trigger"],
        scheduled_at=dt(row["scheduled_at"]),
        started_at=datetime.fromisoformat(row["started_at"]),
        ended_at=dt(row["ended_at"]),
        status=row["status"],
        attempt=row["attempt"],
        error=row["error"],
        backfill=bool(row["backfill"]),
        replica=row["replica"],
        events=row["events"],
        first_position=row["first_position"],
        last_position=row["last_position"],
    )


def dead_letter(row: sqlite3.Row) -> DeadLetter:
    raw = row["raw"]
    return DeadLetter(
        id=row["id"],
        workflow=row["workflow"],
        trigger=row["trigger"],
        payload=row["payload"],
        error=row["error"],
        created_at=datetime.fromisoformat(row["created_at"]),
        retried_at=dt(row["retried_at"]),
        retry_status=row["retry_status"],
        raw=None if raw is None else bytes(raw),
    )
