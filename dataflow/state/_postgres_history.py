"""The PostgreSQL store's run history, dead letters and their pruning: statements on a cursor
(rows as dicts) inside the caller's transaction.

Times are `timestamptz`; runs started at the same instant keep their recording order by `seq`.
Text is ordered with `COLLATE "C"` (byte order), as SQLite orders it, whatever the database's
locale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from dataflow.state import _postgres_fires as fires
from dataflow.state._interface import DeadLetter, Retention, RunRecord

RUN_COLUMNS = (
    "run_id, workflow, trigger, scheduled_at, started_at, ended_at, status, attempt, error,"
    " backfill, replica, events, first_position, last_position"
)
LETTER_COLUMNS = "id, workflow, trigger, payload, error, created_at, retried_at, retry_status, raw"
FAILED = "status IN ('failed', 'timed_out', 'cancelled', 'interrupted')"


def select_runs(
    cur: Any,
    workflow: str,
    trigger: str | None,
    failed_only: bool,
    limit: int,
    run_id: str | None,
    status: str | None = None,
    before: datetime | None = None,
) -> list[RunRecord]:
    """`run_id`: the runs whose id starts with it, as the console shows ids."""
    where = {
        "workflow = %s": workflow,
        "trigger = %s": trigger,
        "starts_with(run_id, %s)": run_id,
        "status = %s": status,
        "started_at < %s": before,
    }
    given = {test: value for test, value in where.items() if value is not None}
    sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(given)}"
    if failed_only:
        sql += f" AND {FAILED}"
    cur.execute(sql + " ORDER BY started_at DESC, seq DESC LIMIT %s", [*given.values(), limit])
    return [RunRecord(**row) for row in cur.fetchall()]


def select_runs_by_id(cur: Any, run_ids: Sequence[str]) -> list[RunRecord]:
    cur.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ANY(%s)", (list(run_ids),))
    found = {row["run_id"]: RunRecord(**row) for row in cur.fetchall()}
    return [found[run_id] for run_id in run_ids if run_id in found]


def insert_runs(cur: Any, records: Sequence[RunRecord], replica: str | None) -> None:
    """Runs written whole, ended (a late batch's skipped records, in its claim's transaction):
    unlike a run's start, they leave the fire ledger alone (the caller writes their rows)."""
    if not records:
        return
    cur.executemany(
        "INSERT INTO runs (run_id, workflow, trigger, scheduled_at, started_at, ended_at, status,"
        " attempt, error, backfill, replica) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (
                r.run_id,
                r.workflow,
                r.trigger,
                r.scheduled_at,
                r.started_at,
                r.ended_at,
                r.status,
                r.attempt,
                r.error,
                r.backfill,
                replica,
            )
            for r in records
        ],
    )


class BatchWrites:
    """`Store.flush` and `Store.record_batch_end` for `PostgresStore` (a mixin: its module is
    at its size limit). Each of its writes commits before the call returns: nothing waits."""

    _transaction: Callable[[], AbstractContextManager[Any]]

    def flush(self) -> None:
        """Nothing to do: no write of this store waits for a later commit."""

    def record_batch_end(
        self,
        run_id: str,
        ended_at: datetime,
        events: int,
        first_position: str | None,
        last_position: str | None,
    ) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = 'succeeded', ended_at = %s, events = %s,"
                " first_position = %s, last_position = %s WHERE run_id = %s",
                (ended_at, events, first_position, last_position, run_id),
            )


def dead_letters(cur: Any, workflow: str, include_retried: bool) -> list[DeadLetter]:
    sql = f"SELECT {LETTER_COLUMNS} FROM dead_letters WHERE workflow = %s"
    if not include_retried:
        sql += " AND (retry_status IS NULL OR retry_status != 'succeeded')"
    cur.execute(sql + " ORDER BY id", (workflow,))
    return [DeadLetter(**row) for row in cur.fetchall()]


def prune(cur: Any, workflow: str, retention: Retention, batch: int) -> int:
    """One batch: runs past the age, runs past a trigger's cap, retried dead letters, then
    then the fire ledger's rows (`_postgres_fires.prune`)."""
    horizon = retention.older_than
    gone = _delete_runs(
        cur,
        "SELECT seq FROM runs WHERE workflow = %s AND started_at < %s AND status != 'running'"
        " LIMIT %s",
        (workflow, horizon, batch),
    )
    for trigger in _triggers(cur, workflow):
        if gone >= batch:
            return gone
        oldest_kept = _oldest_kept(cur, workflow, trigger, retention.max_runs_per_trigger)
        if oldest_kept is not None:
            gone += _delete_runs(
                cur,
                "SELECT seq FROM runs WHERE workflow = %s AND trigger = %s AND started_at < %s"
                " AND status != 'running' LIMIT %s",
                (workflow, trigger, oldest_kept, batch - gone),
            )
    if gone < batch:
        cur.execute(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
            " WHERE workflow = %s AND retry_status = 'succeeded' AND retried_at < %s LIMIT %s)",
            (workflow, horizon, batch - gone),
        )
        gone += cur.rowcount
    if gone < batch:
        gone += fires.prune(cur, workflow, horizon, retention.max_runs_per_trigger, batch - gone)
    return int(gone)


def _oldest_kept(cur: Any, workflow: str, trigger: str, cap: int) -> Any:
    """The start time of the trigger's `cap`-th newest run, if it has more (runs sharing that
    start time are all kept)."""
    cur.execute(
        "SELECT started_at FROM runs WHERE workflow = %s AND trigger = %s"
        " ORDER BY started_at DESC LIMIT 1 OFFSET %s",
        (workflow, trigger, cap - 1),
    )
    row = cur.fetchone()
    return None if row is None else row["started_at"]


def _delete_runs(cur: Any, chosen: str, params: tuple[Any, ...]) -> int:
    cur.execute(f"DELETE FROM runs WHERE seq IN ({chosen})", params)
    return int(cur.rowcount)


def _triggers(cur: Any, workflow: str) -> list[str]:
    """The workflow's trigger names in its run history, one index probe per name (a skip scan:
    `SELECT DISTINCT` would read every row's index entry)."""
    cur.execute(
        "WITH RECURSIVE t(name) AS ("
        ' SELECT min(trigger COLLATE "C") FROM runs WHERE workflow = %(w)s'
        ' UNION ALL SELECT (SELECT min(trigger COLLATE "C") FROM runs'
        ' WHERE workflow = %(w)s AND trigger COLLATE "C" > t.name)'
        " FROM t WHERE t.name IS NOT NULL)"
        " SELECT name FROM t WHERE name IS NOT NULL",
        {"w": workflow},
    )
    return [str(row["name"]) for row in cur.fetchall()]
