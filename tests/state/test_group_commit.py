"""Group commit in the SQLite store: writes that may wait share one commit; durable ones wait for
theirs and take every earlier write with them; reads see what was written; close flushes; a
failed commit is never dropped silently. Commits are counted from the statements SQLite runs."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataflow._core.errors import StateStoreError
from dataflow.state import FireEntry, FireOutcome, RunRecord, SqliteStore
from tests.reliability._disk import small_disk

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NEVER = 3600.0  # a commit interval no test waits for: only count and durable writes commit


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., SqliteStore]]:
    opened: list[SqliteStore] = []

    def opening(
        interval: float = NEVER, writes: int = 500, path: Path | None = None
    ) -> SqliteStore:
        store = SqliteStore(
            path or tmp_path / "state.db", commit_interval=interval, commit_writes=writes
        )
        opened.append(store)
        return store

    yield opening
    for store in opened:
        with contextlib.suppress(StateStoreError):  # the disk-full tests': the point
            store.close()


def count_commits(store: SqliteStore) -> list[str]:
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    return commits


def committed_runs(path: Path) -> int:
    """What another connection (a `history` in another process, a restart) sees."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    finally:
        db.close()


def start_runs(store: SqliteStore, count: int, first: int = 0, error: str = "") -> None:
    for n in range(first, first + count):
        store.record_run_start(f"r{n}", "w", "t", None, T0 + timedelta(seconds=n))
        if error:
            store.record_run_end(f"r{n}", "failed", T0, error)


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


def test_many_batched_writes_share_one_commit(open_store: Callable[..., SqliteStore]) -> None:
    """200 run records and positions: not one commit until the flush, then exactly one."""
    store = open_store()
    commits = count_commits(store)
    start_runs(store, 100)
    for n in range(100):
        store.save_position("w", "s", "resume_token:db.c", f'{{"_data": "{n}"}}')
    assert commits == [] and committed_runs(store.path) == 0
    store.flush()
    assert commits == ["COMMIT"] and committed_runs(store.path) == 100


def test_a_full_batch_commits_at_once(open_store: Callable[..., SqliteStore]) -> None:
    """At `commit_writes` pending writes the writer commits without waiting for the interval."""
    store = open_store(writes=50)
    commits = count_commits(store)
    start_runs(store, 120)
    assert len(commits) == 2 and committed_runs(store.path) == 100


def test_batched_writes_are_committed_by_the_interval_alone(
    open_store: Callable[..., SqliteStore],
) -> None:
    """No further call needed: the background writer commits within the interval."""
    store = open_store(interval=0.005)
    start_runs(store, 3)
    wait_until(lambda: committed_runs(store.path) == 3)


def test_a_durable_write_waits_for_its_commit_and_takes_earlier_writes_along(
    open_store: Callable[..., SqliteStore],
) -> None:
    """A trigger value, a fire's claim, a dead letter: each durable when its call returns, with
    every write made before it (in order: nothing later can be durable without them)."""
    store = open_store()
    commits = count_commits(store)
    start_runs(store, 5)
    store.set_state("w", "t", "user:k", "1")
    assert len(commits) == 1 and committed_runs(store.path) == 5
    start_runs(store, 5, first=5)
    store.claim_fire("w", "cron", T0)
    store.add_dead_letter("w", "s", "{}", "boom")
    assert len(commits) == 3 and committed_runs(store.path) == 10
    other = open_store(path=store.path)
    assert other.get_state("w", "t", "user:k") == "1" and other.last_fire("w", "cron") == T0


def test_a_late_batch_claim_is_one_commit_durable_at_return(
    open_store: Callable[..., SqliteStore],
) -> None:
    """A late batch's claim with its ledger rows and 10 skipped records: one commit, which
    another connection sees as soon as the call returns (a stop after it loses none)."""
    store = open_store()
    commits = count_commits(store)
    fires = [T0 + timedelta(seconds=n) for n in range(11)]
    notes = [FireEntry(fire_at=f, outcome=FireOutcome.MISSED, reason="late") for f in fires[:-1]]
    records = [
        RunRecord(f"s{n}", "w", "cron", f, T0, T0, "skipped", 1, "late")
        for n, f in enumerate(fires[:-1])
    ]
    assert store.claim_fire("w", "cron", fires[-1], notes, skipped=records)
    assert len(commits) == 1 and committed_runs(store.path) == 10
    other = open_store(path=store.path)
    assert len(other.fires("w", "cron")) == 11 and other.last_fire("w", "cron") == fires[-1]


def test_reads_see_batched_writes_before_their_commit(
    open_store: Callable[..., SqliteStore],
) -> None:
    """Read-your-writes: the same store sees a saved position and a run at once; another
    connection sees them only after the commit."""
    store = open_store()
    store.save_position("w", "s", "resume_token:db.c", '{"_data": "82"}')
    start_runs(store, 1)
    assert store.load_position("w", "s", "resume_token:db.c") == '{"_data": "82"}'
    assert [r.run_id for r in store.runs("w")] == ["r0"]
    assert committed_runs(store.path) == 0


def test_close_commits_what_is_batched(open_store: Callable[..., SqliteStore]) -> None:
    store = open_store()
    start_runs(store, 7)
    store.close()
    assert committed_runs(store.path) == 7


def test_mark_interrupted_is_durable_at_once(open_store: Callable[..., SqliteStore]) -> None:
    store = open_store()
    start_runs(store, 2)
    store.flush()
    assert len(store.mark_interrupted("w")) == 2
    other = sqlite3.connect(store.path)
    statuses = {row[0] for row in other.execute("SELECT status FROM runs")}
    other.close()
    assert statuses == {"interrupted"}


def test_a_failed_commit_surfaces_and_is_never_dropped(
    tmp_path: Path, open_store: Callable[..., SqliteStore]
) -> None:
    """The disk fills under batched writes: the flush raises StateStoreError naming the file,
    and so does every later call (the runtime's `check()` included): the writes it held are
    lost, so nothing may go on as if they were kept. The file stays intact."""
    with small_disk(tmp_path / "disk") as disk:
        store = open_store(path=disk.path / "state.db")
        start_runs(store, 2)
        store.flush()
        disk.fill()
        start_runs(store, 100, first=2, error="x" * 4000)  # more than the log can take
        with pytest.raises(StateStoreError, match=r"state\.db: database or disk is full"):
            store.flush()
        for call in (store.check, lambda: store.runs("w"), lambda: start_runs(store, 1, 200)):
            with pytest.raises(StateStoreError, match="database or disk is full"):
                call()
        disk.free()
        assert committed_runs(store.path) == 2


def test_a_failed_background_commit_surfaces_at_check_and_close(
    tmp_path: Path, open_store: Callable[..., SqliteStore]
) -> None:
    """No caller waits for the background commit: its failure is kept for `check()` (the
    runtime calls it every second) and, if no one saw it, raised by `close()`."""
    with small_disk(tmp_path / "disk") as disk:
        checked = open_store(interval=0.005, path=disk.path / "checked.db")
        closed = open_store(interval=0.005, path=disk.path / "closed.db")
        for store in (checked, closed):
            start_runs(store, 1)
            store.flush()
        disk.fill()
        for store in (checked, closed):  # one write: no later call may meet the failure first
            store.save_position("w", "s", "resume_token:db.c", "x" * 300_000)
            wait_until(lambda store=store: store._tx._failure is not None)  # type: ignore[misc]
        with pytest.raises(StateStoreError, match=r"checked\.db: database or disk is full"):
            checked.check()
        with pytest.raises(StateStoreError, match=r"closed\.db: database or disk is full"):
            closed.close()
        disk.free()
        assert committed_runs(checked.path) == committed_runs(closed.path) == 1
