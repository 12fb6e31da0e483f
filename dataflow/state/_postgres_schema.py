"""The PostgreSQL store's schema: versioned in `dataflow_schema`, brought forward on open.

The migrations run in one transaction, holding a transaction-scoped advisory lock
(`pg_advisory_xact_lock`, released by the commit: no session lock outlives it), and re-reads the
version under that lock: replicas starting together migrate once, and the others find the work
done. A database written by a newer dataflow is refused, never changed.

Every table is keyed by workflow, so several workflows share one database (or one schema: the
tables go where the connection's `search_path` puts them).
"""

from __future__ import annotations

from typing import Any

from dataflow._core.errors import StateFileRefused

# Index i leads from version i to version i + 1.
MIGRATIONS: tuple[str, ...] = (
    # 1: what the SQLite store keeps (trigger values, runs, dead letters), plus what replicas
    # share: the fire ledger, stream leases and replica heartbeats. `fire_at` on a last-fire row
    # lets a claim advance it only forwards; `term` on a position row is the lease term that
    # wrote it. A lease row is never deleted, so its term only grows.
    """
    CREATE TABLE trigger_state (
        workflow   text NOT NULL,
        trigger    text NOT NULL,
        key        text NOT NULL,
        value      text NOT NULL,
        fire_at    timestamptz,
        term       bigint,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (workflow, trigger, key)
    );
    CREATE TABLE fires (
        workflow   text NOT NULL,
        trigger    text NOT NULL,
        fire_at    timestamptz NOT NULL,
        claimed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (workflow, trigger, fire_at)
    );
    CREATE INDEX fires_by_claim ON fires (workflow, claimed_at);
    CREATE TABLE runs (
        seq          bigserial UNIQUE,
        run_id       text PRIMARY KEY,
        workflow     text NOT NULL,
        trigger      text NOT NULL,
        scheduled_at timestamptz,
        started_at   timestamptz NOT NULL,
        ended_at     timestamptz,
        status       text NOT NULL,
        attempt      integer NOT NULL DEFAULT 1,
        error        text,
        backfill     boolean NOT NULL DEFAULT false
    );
    CREATE INDEX runs_by_trigger ON runs (workflow, trigger, started_at, seq);
    CREATE INDEX runs_by_start ON runs (workflow, started_at, seq);
    CREATE INDEX runs_running ON runs (workflow) WHERE status = 'running';
    CREATE INDEX runs_failed ON runs (workflow, started_at, seq)
        WHERE status IN ('failed', 'timed_out', 'cancelled', 'interrupted');
    CREATE TABLE dead_letters (
        id           bigserial PRIMARY KEY,
        workflow     text NOT NULL,
        trigger      text NOT NULL,
        payload      text NOT NULL,
        error        text NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        retried_at   timestamptz,
        retry_status text,
        raw          bytea
    );
    CREATE INDEX dead_letters_by_workflow ON dead_letters (workflow, id);
    CREATE INDEX dead_letters_retried ON dead_letters (workflow, retried_at)
        WHERE retry_status = 'succeeded';
    CREATE TABLE leases (
        workflow   text NOT NULL,
        trigger    text NOT NULL,
        holder     text NOT NULL,
        term       bigint NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (workflow, trigger)
    );
    CREATE TABLE replicas (
        workflow       text NOT NULL,
        replica_id     text NOT NULL,
        started_at     timestamptz NOT NULL DEFAULT now(),
        last_heartbeat timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (workflow, replica_id)
    );
    """,
    # 2: replicas catch each other's runs up. A run says which replica ran it; a fire whose
    # run a dead replica left `running` is handed to the one live replica that marked the run
    # interrupted (`recover_by`), which alone may claim it again (`attempt` counts the claims).
    """
    ALTER TABLE runs ADD COLUMN replica text;
    ALTER TABLE fires ADD COLUMN recover_by text;
    ALTER TABLE fires ADD COLUMN attempt integer NOT NULL DEFAULT 1;
    CREATE INDEX runs_running_by_trigger ON runs (workflow, trigger) WHERE status = 'running';
    """,
    # 3: the fire ledger keeps each fire's outcome (`_ledger.py`) beside its claim; rows
    # claimed before say only that (`claimed`). Pruned by fire time.
    """
    ALTER TABLE fires ADD COLUMN outcome text NOT NULL DEFAULT 'claimed';
    ALTER TABLE fires ADD COLUMN reason text;
    ALTER TABLE fires ADD COLUMN run_id text;
    ALTER TABLE fires ADD COLUMN related_at timestamptz;
    CREATE INDEX fires_by_time ON fires (workflow, fire_at);
    """,
    # 4: a change stream's events handled in a row are one history row (a batch) with their
    # count and first and last positions (issue 16), as in the SQLite store's schema 7.
    """
    ALTER TABLE runs ADD COLUMN events integer, ADD COLUMN first_position text,
        ADD COLUMN last_position text;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# One lock per schema: two stores in different schemas of one database never wait on each other.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('dataflow_schema:' || current_schema()))"
_HAS_TABLE = "SELECT to_regclass('dataflow_schema') IS NOT NULL"


def bring_forward(conn: Any, where: str) -> int:
    """Migrate the database to SCHEMA_VERSION; returns how many migrations this call applied.
    `conn` is a psycopg connection in autocommit mode (typed loosely: psycopg is imported only
    when used)."""
    applied = 0
    found = current_version(conn)
    _refuse_newer(found, where)
    if found < SCHEMA_VERSION:
        with conn.transaction():  # every step at once: a replica never sees a half-way schema
            conn.execute(_LOCK)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS dataflow_schema ("
                " single boolean PRIMARY KEY DEFAULT true CHECK (single),"
                " version integer NOT NULL)"
            )
            found = current_version(conn)  # under the lock: another replica may have moved it
            _refuse_newer(found, where)
            for step in MIGRATIONS[found:]:
                conn.execute(step)
                applied += 1
            conn.execute(
                "INSERT INTO dataflow_schema (single, version) VALUES (true, %s)"
                " ON CONFLICT (single) DO UPDATE SET version = excluded.version",
                (SCHEMA_VERSION,),
            )
    return applied


def current_version(conn: Any) -> int:
    """The schema's version, 0 for a database dataflow never wrote to."""
    if not conn.execute(_HAS_TABLE).fetchone()[0]:
        return 0
    row = conn.execute("SELECT version FROM dataflow_schema").fetchone()
    return 0 if row is None else int(row[0])


def _refuse_newer(found: int, where: str) -> None:
    if found > SCHEMA_VERSION:
        raise StateFileRefused(
            f"state store {where} was written by a newer dataflow (schema {found}, this one "
            f"reads up to schema {SCHEMA_VERSION}): upgrade dataflow"
        )
