"""The SQLite store's schema 7: files of earlier releases open and keep everything, and every
query a start (and the pruner, and `history --failed`) makes is served by an index."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import pytest

from dataflow.state import Retention, SqliteStore
from dataflow.state._migrate import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RELEASED = 2  # the schema the release before bounded history wrote
BASE_SQL = files("dataflow.state").joinpath("_schema.sql").read_text()


def released_file(path: Path, version: int) -> None:
    """A state file as an earlier release left it: its schema SQL, a cron trigger's last
    fire, a stream's position, a handler's value, a run it died in, a dead letter."""
    db = sqlite3.connect(path, isolation_level=None)
    steps = "".join(MIGRATIONS[:version])
    header = f"PRAGMA application_id={APPLICATION_ID};" if version else ""
    db.executescript(f"{BASE_SQL}{steps}{header}PRAGMA user_version={version};")
    db.execute("PRAGMA journal_mode=WAL")
    saved = [
        ("cron", "last_fire", T0.isoformat()),
        ("stream", "resume_token:db.c", '{"_data": "8265"}'),
        ("cron", "user:watermark", '{"$datetime": "2026-03-01T00:00:00+00:00"}'),
    ]
    db.executemany(
        "INSERT INTO trigger_state (workflow, trigger, key, value, updated_at)"
        " VALUES ('w', ?, ?, ?, '2026-03-02T09:00:00+00:00')",
        saved,
    )
    db.execute(
        "INSERT INTO runs (run_id, workflow, trigger, scheduled_at, started_at, status)"
        " VALUES ('r1', 'w', 'cron', ?, ?, 'running')",
        (T0.isoformat(), T0.isoformat()),
    )
    db.execute(
        "INSERT INTO dead_letters (workflow, trigger, payload, error, created_at)"
        " VALUES ('w', 'stream', '{}', 'boom', ?)",
        (T0.isoformat(),),
    )
    db.close()


def kept_everything(store: SqliteStore) -> None:
    assert store.last_fire("w", "cron") == T0
    assert store.load_position("w", "stream", "resume_token:db.c") == '{"_data": "8265"}'
    assert store.get_state("w", "cron", "user:watermark") is not None
    assert [r.run_id for r in store.mark_interrupted("w")] == ["r1"]
    assert [d.error for d in store.dead_letters("w")] == ["boom"]


def test_a_file_of_the_last_release_opens_at_the_current_schema_and_keeps_its_positions(
    tmp_path: Path,
) -> None:
    """Schema 2 (the last release): brought forward in place (to 7), with the new indexes,
    the fire ledger and the batch columns of the runs table, every saved position, value, run
    and dead letter intact."""
    path = tmp_path / "state.db"
    released_file(path, RELEASED)
    store = SqliteStore(path)
    try:
        kept_everything(store)
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert {"replica", "events", "first_position", "last_position"} <= columns
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_schema WHERE type='index'")}
    assert {"runs_failed", "runs_failed_by_trigger", "dead_letters_retried"} <= indexes
    assert "fires_by_time" in indexes
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_a_file_from_before_schema_versions_keeps_its_positions(tmp_path: Path) -> None:
    """A version-0 file (no version in its header) is brought all the way forward."""
    path = tmp_path / "state.db"
    released_file(path, 0)
    store = SqliteStore(path)
    try:
        kept_everything(store)
    finally:
        store.close()


KEYS = "sqlite_autoindex_trigger_state_1"  # trigger_state's primary key
RETENTION = Retention(older_than=T0 - timedelta(days=30), max_runs_per_trigger=1)
# Each call a start, `history`, `dead-letters` or the pruner makes, and the index that serves it.
SERVED_BY = [
    (lambda s: s.mark_interrupted("w"), "runs_running"),
    (lambda s: s.last_fire("w", "cron"), KEYS),
    (
        lambda s: s.load_position("w", "stream", "resume_token:db.c"),
        "sqlite_autoindex_trigger_state_1",
    ),
    (lambda s: s.runs("w", limit=20), "runs_by_start"),
    (lambda s: s.runs("w", "cron", limit=20), "runs_by_trigger"),
    (lambda s: s.runs("w", failed_only=True, limit=20), "runs_failed"),
    (lambda s: s.runs("w", "cron", failed_only=True, limit=20), "runs_failed_by_trigger"),
    (lambda s: s.dead_letters("w"), "dead_letters_by_workflow"),
    (lambda s: s.prune_history("w", RETENTION, batch=10), "runs_by_start"),
]


@pytest.mark.parametrize(
    ("call", "index"), SERVED_BY, ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_query_of_a_start_history_and_pruning_searches_its_index(
    tmp_path: Path, call: Callable[[SqliteStore], object], index: str
) -> None:
    """The statement's query plan searches `index` and reads no table whole: its cost does not
    grow with the history (failed runs are found without walking the succeeded ones)."""
    store = SqliteStore(tmp_path / "state.db")
    for i in range(3):  # a trigger in the history, so pruning looks at its row cap too
        store.record_run_start(f"r{i}", "w", "cron", None, T0 - timedelta(days=i * 20))
        store.record_run_end(f"r{i}", "failed", T0)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # the expanded SQL, values bound in
    call(store)
    store._db.set_trace_callback(None)
    plans = [plan(store, sql) for sql in statements if sql.split(None, 1)[0] in _QUERIES]
    store.close()
    lines = [line for lines in plans for line in lines]
    assert any(f"INDEX {index} " in line for line in lines), plans
    assert not [line for line in lines if line.startswith("SCAN ") and line != "SCAN t"], plans


_QUERIES = {"SELECT", "UPDATE", "DELETE", "WITH"}


def plan(store: SqliteStore, sql: str) -> list[str]:
    return [str(row["detail"]) for row in store._db.execute(f"EXPLAIN QUERY PLAN {sql}")]
