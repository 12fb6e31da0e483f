"""The state file's schema version (`PRAGMA user_version`) and the migrations that move a file
forward, each in one transaction with the version it leads to.

Version 0 is the schema dataflow wrote before files carried a version (`_schema.sql`): such a
file is recognised by its three tables. A file this dataflow cannot read is refused, never
recreated: not SQLite, another program's database, or a newer dataflow's schema.
"""

from __future__ import annotations

import sqlite3
from importlib.resources import files
from pathlib import Path

from dataflow._core.errors import StateFileRefused

APPLICATION_ID = 0x64666C77  # "dflw" in the file header: this SQLite file is a dataflow store

# Index i leads from version i to version i + 1.
MIGRATIONS: tuple[str, ...] = (
    # 1: indexes for what a start reads (runs left 'running'), `history` without a trigger,
    # and the dead letters of a workflow; a table for the file's own facts (its identity).
    """
    CREATE INDEX IF NOT EXISTS runs_running ON runs (workflow) WHERE status = 'running';
    CREATE INDEX IF NOT EXISTS runs_by_start ON runs (workflow, started_at);
    CREATE INDEX IF NOT EXISTS dead_letters_by_workflow ON dead_letters (workflow, id);
    CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: a dead letter keeps its change event's exact BSON, which a retry decodes again (the
    # JSON payload stays, to read, and for letters written before, which have no BSON).
    """
    ALTER TABLE dead_letters ADD COLUMN raw BLOB;
    """,
    # 3: a run that re-ran a past fire (`trigger --from/--to`) says so; runs before were not.
    """
    ALTER TABLE runs ADD COLUMN backfill INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: bounded history. `history --failed` reads failed runs newest first without walking
    # every succeeded one (partial indexes, their WHERE written exactly as the query's); the
    # pruner finds dead letters retried successfully by their retry time.
    """
    CREATE INDEX IF NOT EXISTS runs_failed ON runs (workflow, started_at)
        WHERE status IN ('failed', 'timed_out', 'cancelled', 'interrupted');
    CREATE INDEX IF NOT EXISTS runs_failed_by_trigger ON runs (workflow, trigger, started_at)
        WHERE status IN ('failed', 'timed_out', 'cancelled', 'interrupted');
    CREATE INDEX IF NOT EXISTS dead_letters_retried ON dead_letters (workflow, retried_at)
        WHERE retry_status = 'succeeded';
    """,
    # 5: a run says which replica ran it (DATAFLOW_REPLICA_ID), as on the PostgreSQL store.
    """
    ALTER TABLE runs ADD COLUMN replica TEXT;
    """,
    # 6: the fire ledger: what became of each cron fire time (`_ledger.py`), one row per fire,
    # read by trigger and fire time (`explain`, the status page's strip) and pruned by fire time.
    """
    CREATE TABLE IF NOT EXISTS fires (
        workflow   TEXT NOT NULL,
        trigger    TEXT NOT NULL,
        fire_at    TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        reason     TEXT,
        run_id     TEXT,
        related_at TEXT,
        claimed_at TEXT NOT NULL,
        PRIMARY KEY (workflow, trigger, fire_at)
    );
    CREATE INDEX IF NOT EXISTS fires_by_time ON fires (workflow, fire_at);
    """,
    # 7: a change stream's events handled in a row are one history row (a batch) with their
    # count and first and last positions, not one row each; runs before were runs of their own.
    """
    ALTER TABLE runs ADD COLUMN events INTEGER;
    ALTER TABLE runs ADD COLUMN first_position TEXT;
    ALTER TABLE runs ADD COLUMN last_position TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# The columns each table has at SCHEMA_VERSION; a column beyond these was added by a newer one.
COLUMNS = {
    "trigger_state": {"workflow", "trigger", "key", "value", "updated_at"},
    "runs": {
        "run_id",
        "workflow",
        "trigger",
        "scheduled_at",
        "started_at",
        "ended_at",
        "status",
        "attempt",
        "error",
        "backfill",
        "replica",
        "events",
        "first_position",
        "last_position",
    },
    "dead_letters": {
        "id",
        "workflow",
        "trigger",
        "payload",
        "error",
        "created_at",
        "retried_at",
        "retry_status",
        "raw",
    },
    "store_meta": {"key", "value"},
    "fires": {
        "workflow",
        "trigger",
        "fire_at",
        "outcome",
        "reason",
        "run_id",
        "related_at",
        "claimed_at",
    },
}
_VERSION_0_TABLES = {"trigger_state", "runs", "dead_letters"}


def readable_version(db: sqlite3.Connection, path: Path) -> int:
    """The file's schema version, if this dataflow can read it: refused before anything is
    written (not even the switch to WAL), so a refused file is left exactly as it was."""
    found = _pragma(db, "user_version")
    application = _pragma(db, "application_id")
    tables = _tables(db)
    if application not in (0, APPLICATION_ID) or (
        application == 0 and tables and not tables >= _VERSION_0_TABLES
    ):
        shown = ", ".join(sorted(tables)) or "none"
        raise StateFileRefused(
            f"state file {path} is an SQLite database but not a dataflow state file "
            f"(tables: {shown}): {_FIX}",
            resettable=True,
        )
    if found > SCHEMA_VERSION:
        raise _newer(path, f"schema {found}")
    unknown = _unknown_columns(db)  # before any step: a refused file is left as it was
    if unknown:
        raise _newer(path, f"schema {found} with columns it added: {', '.join(unknown)}")
    return found


_FIX = (
    "point DATAFLOW_STATE_PATH (or --state) at the workflow's state file, or start with "
    "`run --reset-state` to move it aside and start fresh"
)


def _newer(path: Path, what: str) -> StateFileRefused:
    return StateFileRefused(
        f"state file {path} was written by a newer dataflow ({what}, this one reads up to "
        f"schema {SCHEMA_VERSION}): upgrade dataflow"
    )


def bring_forward(db: sqlite3.Connection, found: int) -> None:
    """All steps in one transaction: a crash leaves the file at its old version, intact. A new
    file and a version-0 file both start from the base schema (its statements are idempotent)."""
    if found == SCHEMA_VERSION:
        return
    base = files("dataflow.state").joinpath("_schema.sql").read_text() if found == 0 else ""
    steps = "".join(MIGRATIONS[found:])
    script = (
        f"BEGIN IMMEDIATE;{base}{steps}"
        f"PRAGMA application_id = {APPLICATION_ID};"
        f"PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
    )
    try:
        db.executescript(script)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _pragma(db: sqlite3.Connection, name: str) -> int:
    return int(db.execute(f"SELECT {name} FROM pragma_{name}").fetchone()[name])


def _tables(db: sqlite3.Connection) -> set[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {str(row["name"]) for row in rows}


def _unknown_columns(db: sqlite3.Connection) -> list[str]:
    unknown = []
    for table, known in COLUMNS.items():
        rows = db.execute("SELECT name FROM pragma_table_info(?)", (table,)).fetchall()
        names = [str(row["name"]) for row in rows]
        unknown += [f"{table}.{name}" for name in names if name not in known]
    return unknown
