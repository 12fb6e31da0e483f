"""The PostgreSQL store's fire claims and the catching up of dead replicas' runs: statements on
a cursor inside the caller's transaction, every time by the database's `now()`.

A replica is live while its heartbeat is younger than the TTL. A run left `running` by a
replica that is not live is marked `interrupted` by exactly one live replica (the UPDATE's row
lock: a second replica marking at the same moment finds the run no longer running), and in the
same transaction that replica alone is allowed to claim the run's fire once more
(`fires.recover_by`): its catch-up policy decides whether the fire runs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dataflow.state._interface import RunRecord
from dataflow.state._postgres_history import RUN_COLUMNS

_INTERRUPTED_WHY = "the process stopped during the run"
_DEAD_WHY = "its replica {replica} stopped sending heartbeats during the run"

# A replica's clock may be wrong; the database's is the one they share. A fire time more than
# this ahead of the database's `now()` is refused: a replica whose clock runs fast claims no
# fire early (the others claim it on time).
AHEAD = timedelta(seconds=1)

# Inserted: a new fire. Updated: a fire this replica was handed by `mark_interrupted`.
_CLAIM = """
WITH claimed AS (
    INSERT INTO fires (workflow, trigger, fire_at)
    SELECT %(w)s, %(t)s, %(f)s WHERE %(f)s <= now() + %(ahead)s
    ON CONFLICT (workflow, trigger, fire_at) DO UPDATE
        SET recover_by = NULL, attempt = fires.attempt + 1, claimed_at = now()
        WHERE fires.recover_by = %(me)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM claimed) = 1 AS won, %(f)s > now() + %(ahead)s AS early,
    %(f)s - now() AS ahead_by
"""

# The last fire only moves forward; its text keeps the fire's own zone.
_ADVANCE = """
INSERT INTO trigger_state (workflow, trigger, key, value, fire_at)
VALUES (%(w)s, %(t)s, 'last_fire', %(text)s, %(f)s) ON CONFLICT (workflow, trigger, key) DO UPDATE
    SET value = excluded.value, fire_at = excluded.fire_at, updated_at = now()
    WHERE trigger_state.fire_at IS NULL OR trigger_state.fire_at < excluded.fire_at
"""

_RUNNING_ELSEWHERE = """
SELECT r.replica FROM runs r JOIN replicas p
    ON p.workflow = r.workflow AND p.replica_id = r.replica
WHERE r.workflow = %(w)s AND r.trigger = %(t)s AND r.status = 'running'
    AND r.replica <> %(me)s AND p.last_heartbeat > now() - %(ttl)s
ORDER BY r.started_at LIMIT 1
"""

# `dead`: the condition on a run's replica (see `mark_interrupted`).
_MARK = """
WITH live AS (
    SELECT replica_id FROM replicas
    WHERE workflow = %(w)s AND last_heartbeat > now() - %(ttl)s AND replica_id <> %(me)s
), marked AS (
    UPDATE runs SET status = 'interrupted',
        error = CASE WHEN replica IS NULL OR replica = %(me)s THEN %(why)s
                ELSE replace(%(dead_why)s, '{{replica}}', replica) END
    WHERE workflow = %(w)s AND status = 'running'
        AND (replica IS NULL OR replica NOT IN (SELECT replica_id FROM live))
        AND {mine}
    RETURNING {columns}
), reopened AS (
    UPDATE fires f SET recover_by = %(me)s FROM marked m
    WHERE f.workflow = m.workflow AND f.trigger = m.trigger AND f.fire_at = m.scheduled_at
        AND NOT m.backfill
)
SELECT * FROM marked
"""


_SILENT = """replica IN (
    SELECT replica_id FROM replicas
    WHERE workflow = %(w)s AND last_heartbeat <= now() - %(ttl)s AND replica_id <> %(me)s
)"""


def claim(cur: Any, workflow: str, trigger: str, fire_at: datetime, me: str) -> Outcome:
    """Insert the ledger row (or take back a fire handed to `me`) and advance the last fire;
    a fire time ahead of the database's clock is not claimed."""
    params = {"w": workflow, "t": trigger, "f": fire_at, "me": me, "text": fire_at.isoformat()}
    cur.execute(_CLAIM, params | {"ahead": AHEAD})
    row = cur.fetchone()
    if row["won"]:
        cur.execute(_ADVANCE, params)
    return Outcome(bool(row["won"]), row["ahead_by"] if row["early"] else None)


@dataclass(frozen=True)
class Outcome:
    won: bool
    early_by: timedelta | None  # refused: the fire time is this far ahead of the database


def running_elsewhere(cur: Any, workflow: str, trigger: str, me: str, ttl: timedelta) -> str | None:
    """A live replica other than `me` with a run of `trigger` running, or None."""
    cur.execute(_RUNNING_ELSEWHERE, {"w": workflow, "t": trigger, "me": me, "ttl": ttl})
    row = cur.fetchone()
    return None if row is None else str(row["replica"])


def mark_interrupted(
    cur: Any, workflow: str, me: str, ttl: timedelta, *, starting: bool
) -> list[RunRecord]:
    """Runs left `running` by replicas that are not live (no heartbeat within `ttl`, or none at
    all: a process before replicas) become `interrupted`, their fires handed to `me`.
    `starting`: `me` has just started, so its own earlier runs (a restart under a fixed
    DATAFLOW_REPLICA_ID) are dead too. Otherwise (a sweep while running) only runs of replicas
    whose heartbeat went silent: never its own, nor a run of a process that sends none (a
    `trigger` command run from the CLI)."""
    mine = "true" if starting else _SILENT
    sql = _MARK.format(mine=mine, columns=RUN_COLUMNS)
    why = {"why": _INTERRUPTED_WHY, "dead_why": _DEAD_WHY}
    cur.execute(sql, {"w": workflow, "me": me, "ttl": ttl} | why)
    return [RunRecord(**row) for row in cur.fetchall()]


def leave(cur: Any, workflow: str, replica_id: str) -> None:
    """A clean stop: the replica's heartbeat goes at once (its runs are all recorded)."""
    cur.execute(
        "DELETE FROM replicas WHERE workflow = %s AND replica_id = %s", (workflow, replica_id)
    )
