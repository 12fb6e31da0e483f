"""The PostgreSQL store's leases, fenced positions and heartbeats: statements on a cursor inside
the caller's transaction. Every time is the database's `now()`: replicas' clocks may disagree,
the server's is the one they share.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dataflow._core.errors import LeaseLost
from dataflow.state._leases import Lease, Replica

# A lease row is updated in place, never deleted: its term only grows, so a new owner's term is
# always greater than any former owner's.
_ACQUIRE = """
INSERT INTO leases (workflow, trigger, holder, term, expires_at)
VALUES (%(workflow)s, %(trigger)s, %(holder)s, 1, now() + %(ttl)s)
ON CONFLICT (workflow, trigger) DO UPDATE
    SET holder = excluded.holder, term = leases.term + 1, expires_at = excluded.expires_at
    WHERE leases.expires_at <= now() OR leases.holder = excluded.holder
RETURNING term
"""

# The position row keeps the term that wrote it; a write of an older term never replaces it.
_SAVE_FENCED = """
INSERT INTO trigger_state (workflow, trigger, key, value, term)
VALUES (%(workflow)s, %(trigger)s, %(key)s, %(value)s, %(term)s)
ON CONFLICT (workflow, trigger, key) DO UPDATE
    SET value = excluded.value, term = excluded.term, updated_at = now()
    WHERE trigger_state.term IS NULL OR trigger_state.term <= excluded.term
"""


def acquire(cur: Any, workflow: str, trigger: str, holder: str, ttl: timedelta) -> int | None:
    _check_ttl(ttl)
    cur.execute(_ACQUIRE, {"workflow": workflow, "trigger": trigger, "holder": holder, "ttl": ttl})
    row = cur.fetchone()
    return None if row is None else int(row["term"])


def renew(cur: Any, workflow: str, trigger: str, holder: str, term: int, ttl: timedelta) -> bool:
    _check_ttl(ttl)
    cur.execute(
        "UPDATE leases SET expires_at = now() + %s"
        " WHERE workflow = %s AND trigger = %s AND holder = %s AND term = %s",
        (ttl, workflow, trigger, holder, term),
    )
    return bool(cur.rowcount == 1)


def release(cur: Any, workflow: str, trigger: str, holder: str, term: int) -> None:
    cur.execute(
        "UPDATE leases SET expires_at = now()"
        " WHERE workflow = %s AND trigger = %s AND holder = %s AND term = %s",
        (workflow, trigger, holder, term),
    )


def read(cur: Any, workflow: str, trigger: str) -> Lease | None:
    cur.execute(
        "SELECT workflow, trigger, holder, term, expires_at, expires_at > now() AS live"
        " FROM leases WHERE workflow = %s AND trigger = %s",
        (workflow, trigger),
    )
    row = cur.fetchone()
    return None if row is None else Lease(**row)


def save_fenced(cur: Any, workflow: str, trigger: str, key: str, position: str, term: int) -> None:
    """Save only while `term` holds the lease. The lease row is read FOR SHARE: a replica
    acquiring the lease waits for this write to commit, so no write of this term can land
    after a new term began."""
    cur.execute(
        "SELECT term FROM leases WHERE workflow = %s AND trigger = %s FOR SHARE",
        (workflow, trigger),
    )
    row = cur.fetchone()
    holding = None if row is None else int(row["term"])
    if holding != term:
        raise LeaseLost(
            f"position of {workflow}.{trigger} not saved: its lease moved on to term "
            f"{holding} (this owner had term {term}); another replica owns the stream now"
        )
    params = {"workflow": workflow, "trigger": trigger, "key": key, "value": position}
    cur.execute(_SAVE_FENCED, params | {"term": term})


def heartbeat(cur: Any, workflow: str, replica_id: str) -> None:
    cur.execute(
        "INSERT INTO replicas (workflow, replica_id) VALUES (%s, %s)"
        " ON CONFLICT (workflow, replica_id) DO UPDATE SET last_heartbeat = now()",
        (workflow, replica_id),
    )


def replicas(cur: Any, workflow: str) -> list[Replica]:
    cur.execute(
        "SELECT workflow, replica_id, started_at, last_heartbeat,"
        " greatest(now() - last_heartbeat, interval '0') AS silent_for"
        " FROM replicas WHERE workflow = %s ORDER BY last_heartbeat DESC, replica_id",
        (workflow,),
    )
    return [Replica(**row) for row in cur.fetchall()]


def _check_ttl(ttl: timedelta) -> None:
    if ttl < timedelta(0):
        raise ValueError(f"a lease's ttl must not be negative (got {ttl})")
