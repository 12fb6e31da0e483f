"""Replicas on the PostgreSQL store: who is live, whose running runs are interrupted, who may
claim their fires again, and `skip` across replicas. Each store is one replica; a replica dies
here by its heartbeat being made old (no test waits out a TTL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dataflow.state import FireEntry, FireOutcome, PostgresStore, RunRecord
from dataflow.state._leases import Claim
from tests.state._pg_store import fresh_schema, schema_url, sql

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
W = "shop"


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


@pytest.fixture
def replicas(schema: str) -> Iterator[dict[str, PostgresStore]]:
    """Replicas a, b, c of workflow `shop` on one fresh schema, each heard from once."""
    stores = {name: PostgresStore(schema_url(schema), replica_id=name) for name in "abc"}
    for name, store in stores.items():
        store.heartbeat(W, name)
    try:
        yield stores
    finally:
        for store in stores.values():
            store.close()


def silence(store: PostgresStore, replica: str) -> None:
    """The replica's last heartbeat an hour ago: dead by any TTL."""
    with store._transaction() as cur:
        cur.execute(
            "UPDATE replicas SET last_heartbeat = now() - interval '1 hour' WHERE replica_id = %s",
            (replica,),
        )


def start_run(store: PostgresStore, run_id: str, fire_at: datetime) -> None:
    assert store.claim_fire(W, "sync", fire_at)
    store.record_run_start(run_id, W, "sync", fire_at, fire_at)


def test_a_live_replicas_running_run_is_left_alone(replicas: dict[str, PostgresStore]) -> None:
    """A replica starting (or sweeping) never marks the run of a replica that is heard from."""
    a, b = replicas["a"], replicas["b"]
    start_run(a, "r1", T0)
    assert b.mark_interrupted(W) == [] and b.recover_dead(W) == []
    assert a.runs(W)[0].status == "running" and a.runs(W)[0].replica == "a"


def test_a_dead_replicas_run_is_interrupted_once_and_reclaimed_once(
    replicas: dict[str, PostgresStore], schema: str
) -> None:
    """b and c sweep together after a went silent: one of them marks a's run, only that one
    may claim its fire again, and only once; a fire nobody ran is never handed out."""
    a, b, c = replicas["a"], replicas["b"], replicas["c"]
    start_run(a, "r1", T0)
    silence(a, "a")
    barrier, found = threading.Barrier(2), {}

    def sweep(name: str, store: PostgresStore) -> None:
        barrier.wait(5)
        found[name] = store.recover_dead(W)

    threads = [threading.Thread(target=sweep, args=item) for item in (("b", b), ("c", c))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    marked = {name: runs for name, runs in found.items() if runs}
    assert len(marked) == 1, found
    ((marker, runs),) = marked.items()
    other = c if marker == "b" else b
    assert [(r.run_id, r.status, r.replica) for r in runs] == [("r1", "interrupted", "a")]
    assert "replica a stopped sending heartbeats" in (runs[0].error or "")
    assert not other.claim_fire(W, "sync", T0)
    assert replicas[marker].claim_fire(W, "sync", T0)
    assert not replicas[marker].claim_fire(W, "sync", T0)
    assert sql(schema, "SELECT attempt, recover_by FROM fires") == [(2, None)]


def test_at_start_a_replica_marks_its_own_earlier_runs(replicas: dict[str, PostgresStore]) -> None:
    """A restart under the same DATAFLOW_REPLICA_ID: its own running runs were the dead
    process's; a sweep while running never marks its own."""
    a = replicas["a"]
    start_run(a, "r1", T0)
    assert a.recover_dead(W) == []
    assert [r.run_id for r in a.mark_interrupted(W)] == ["r1"]


def test_skip_looks_at_live_replicas_runs(replicas: dict[str, PostgresStore]) -> None:
    """`claim_fire_alone` wins the fire but names the live replica running the trigger; once
    that replica is dead its run no longer blocks; a lost fire is lost whatever runs."""
    a, b = replicas["a"], replicas["b"]
    start_run(a, "r1", T0)
    later = T0 + timedelta(minutes=1)
    assert b.claim_fire_alone(W, "sync", later) == Claim(True, "a")
    assert a.claim_fire_alone(W, "sync", later) == Claim(False)
    silence(a, "a")
    assert b.claim_fire_alone(W, "sync", later + timedelta(minutes=1)) == Claim(True, None)
    assert b.claim_counts() == {"won": 2, "lost": 0} and a.claim_counts()["lost"] == 1


def test_a_late_batch_is_written_by_the_replica_whose_claim_won(
    replicas: dict[str, PostgresStore],
) -> None:
    """Two replicas late over the same fires: the winner of the newest fire's claim writes the
    batch's ledger rows and skipped records; the loser writes nothing (either way of claiming),
    so no fire gets two skipped records."""
    a, b = replicas["a"], replicas["b"]
    late, newest = T0, T0 + timedelta(minutes=1)
    note = [FireEntry(fire_at=late, outcome=FireOutcome.MISSED, reason="late")]

    def skipped(run_id: str) -> list[RunRecord]:
        return [RunRecord(run_id, W, "sync", late, newest, newest, "skipped", 1, "late")]

    assert a.claim_fire(W, "sync", newest, note, skipped=skipped("by-a"))
    assert not b.claim_fire(W, "sync", newest, note, skipped=skipped("by-b"))
    assert b.claim_fire_alone(W, "sync", newest, note, skipped=skipped("by-b")) == Claim(False)
    [record] = b.runs(W, "sync")
    assert (record.run_id, record.replica, record.status) == ("by-a", "a", "skipped")
    assert [(e.fire_at, e.outcome) for e in b.fires(W, "sync")] == [
        (newest, FireOutcome.CLAIMED),
        (late, FireOutcome.MISSED),
    ]
    alone = b.claim_fire_alone(W, "sync", newest + timedelta(minutes=1), skipped=skipped("b2"))
    assert alone == Claim(True, None) and b.runs(W, "sync")[0].run_id == "b2"


def test_a_fire_ahead_of_the_database_clock_is_not_claimed(
    replicas: dict[str, PostgresStore], schema: str
) -> None:
    """A replica whose clock runs 5 minutes fast asks for a fire 5 minutes early: refused,
    and the fire stays free for a replica asking on time."""
    a, b = replicas["a"], replicas["b"]
    soon = datetime.now(UTC) + timedelta(minutes=5)
    assert not a.claim_fire(W, "sync", soon) and a.clock_ahead
    assert sql(schema, "SELECT count(*) FROM fires") == [(0,)]
    assert b.claim_fire(W, "sync", datetime.now(UTC))


def test_a_clean_stop_removes_the_heartbeat(replicas: dict[str, PostgresStore]) -> None:
    a, b = replicas["a"], replicas["b"]
    a.leave(W)
    assert sorted(r.replica_id for r in b.replicas(W)) == ["b", "c"]


def test_a_sweep_leaves_runs_of_processes_without_heartbeat(
    replicas: dict[str, PostgresStore], schema: str
) -> None:
    """A run recorded by a process that sends no heartbeat (`trigger` from the CLI) is not a
    dead replica's: sweeps leave it; a replica starting takes it for a previous process's."""
    cli = PostgresStore(schema_url(schema), replica_id="cli-process")
    try:
        cli.record_run_start("manual", W, "sync", None, T0)
    finally:
        cli.close()
    assert replicas["b"].recover_dead(W) == []
    assert [r.run_id for r in replicas["c"].mark_interrupted(W)] == ["manual"]
