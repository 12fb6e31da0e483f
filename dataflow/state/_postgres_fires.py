"""The PostgreSQL store's fire ledger (`_ledger.py`): the `fires` table replicas claim fires in
(one row per fire, unique), which also keeps each fire's outcome. Statements on a cursor inside
the caller's transaction, and the `PostgresFireLedger` methods the store inherits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from dataflow.state._ledger import MAX_ENTRIES, RUN_OUTCOMES, FireEntry, FireOutcome

LAST_FIRE = "last_fire"  # the trigger_state key of a last fire, as in the SQLite store
_COLUMNS = "fire_at, outcome, reason, run_id, related_at, claimed_at"
# An entry replaces a row only while the fire is merely claimed: an outcome, once written,
# stays. A claim by another replica is left alone (its row is not this process's to fill).
_UPSERT = (
    "INSERT INTO fires (workflow, trigger, fire_at, outcome, reason, run_id, related_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (workflow, trigger, fire_at) DO UPDATE"
    " SET outcome = excluded.outcome, reason = excluded.reason, run_id = excluded.run_id,"
    " related_at = excluded.related_at, claimed_at = now() WHERE fires.outcome = 'claimed'"
)


def write(cur: Any, workflow: str, trigger: str, entries: Sequence[FireEntry]) -> None:
    rows = [
        (workflow, trigger, e.fire_at, e.outcome.value, e.reason, e.run_id, e.related_at)
        for e in sorted(entries, key=lambda e: e.fire_at)[-MAX_ENTRIES:]
    ]
    if rows:
        cur.executemany(_UPSERT, rows)


def run_started(
    cur: Any, workflow: str, trigger: str, fire_at: datetime, run_id: str, backfill: bool
) -> None:
    """A scheduled run began: its fire's row gets the run id (in the run record's call)."""
    if not backfill:
        cur.execute(
            "UPDATE fires SET run_id = %s, claimed_at = now(), outcome = CASE outcome"
            " WHEN 'claimed' THEN 'ran' ELSE outcome END WHERE workflow = %s AND trigger = %s"
            " AND fire_at = %s AND outcome = ANY(%s)",
            (run_id, workflow, trigger, fire_at, [o.value for o in RUN_OUTCOMES]),
        )
        return
    cur.execute(
        "INSERT INTO fires (workflow, trigger, fire_at, outcome, run_id)"
        " VALUES (%s, %s, %s, 'backfilled', %s) ON CONFLICT (workflow, trigger, fire_at)"
        " DO UPDATE SET run_id = excluded.run_id, claimed_at = now(), outcome = 'backfilled',"
        " reason = CASE fires.outcome WHEN 'backfilled' THEN fires.reason"
        " ELSE 'before: ' || fires.outcome || coalesce(': ' || fires.reason, '') END",
        (workflow, trigger, fire_at, run_id),
    )


def prune(cur: Any, workflow: str, older_than: datetime, cap: int, batch: int) -> int:
    """Fires older than the horizon (no replica claims a fire that old again), then fires
    past a trigger's newest `cap`."""
    cur.execute(
        "DELETE FROM fires WHERE ctid = ANY(ARRAY(SELECT ctid FROM fires"
        " WHERE workflow = %s AND fire_at < %s LIMIT %s))",
        (workflow, older_than, batch),
    )
    gone = int(cur.rowcount)
    cur.execute("SELECT DISTINCT trigger FROM fires WHERE workflow = %s", (workflow,))
    for row in cur.fetchall():
        if gone >= batch:
            break
        cur.execute(
            "DELETE FROM fires WHERE ctid = ANY(ARRAY(SELECT ctid FROM fires WHERE workflow = %s"
            " AND trigger = %s ORDER BY fire_at DESC LIMIT %s OFFSET %s))",
            (workflow, row["trigger"], batch - gone, cap),
        )
        gone += int(cur.rowcount)
    return gone


class PostgresFireLedger:
    """The ledger's `Store` methods, for `PostgresStore` (which provides `_transaction`)."""

    _transaction: Callable[[], AbstractContextManager[Any]]  # PostgresStore's

    def record_fires(self, workflow: str, trigger: str, entries: Sequence[FireEntry]) -> None:
        with self._transaction() as cur:
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
        with self._transaction() as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM fires WHERE workflow = %s AND trigger = %s"
                " AND (%s::timestamptz IS NULL OR fire_at >= %s)"
                " AND (%s::timestamptz IS NULL OR fire_at <= %s)"
                " ORDER BY fire_at DESC LIMIT %s",
                (workflow, trigger, since, since, until, until, limit),
            )
            rows = cur.fetchall()
        return [
            FireEntry(
                fire_at=row["fire_at"],
                outcome=FireOutcome(row["outcome"]),
                reason=row["reason"],
                run_id=row["run_id"],
                related_at=row["related_at"],
                recorded_at=row["claimed_at"],
            )
            for row in rows
        ]
