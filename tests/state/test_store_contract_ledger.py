"""The `Store` contract, continued: the fire ledger (`claim_fire`'s rows and a late batch's
skipped records, `record_fires`, `fires`, a run's start completing its fire's row, pruning), on
SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from dataflow.state import FireEntry, FireOutcome, Retention, RunRecord, Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def outcomes(store: Store, trigger: str = "t") -> list[tuple[datetime, str, str | None]]:
    return [(e.fire_at, e.outcome.value, e.run_id) for e in store.fires("w", trigger)][::-1]


def test_a_claim_writes_claimed_and_the_run_start_makes_it_ran(store: Store) -> None:
    assert store.claim_fire("w", "t", T0)
    assert outcomes(store) == [(T0, "claimed", None)]
    store.record_run_start("r1", "w", "t", T0, T0)
    store.record_run_start("r2", "w", "t", T0, T0 + MINUTE, 2)  # a retry: the last attempt
    [entry] = store.fires("w", "t")
    assert (entry.outcome, entry.run_id) == (FireOutcome.RAN, "r2")
    assert entry.fire_at == T0 and entry.fire_at.utcoffset() == timedelta(0)
    assert entry.recorded_at is not None


def test_a_claim_writes_the_fires_it_stands_for_in_the_same_call(store: Store) -> None:
    skipped = [T0 + MINUTE, T0 + 2 * MINUTE]
    into = T0 + 3 * MINUTE
    notes = [
        FireEntry(fire_at=f, outcome=FireOutcome.COALESCED, reason="step", related_at=into)
        for f in skipped
    ]
    caught = FireEntry(fire_at=into, outcome=FireOutcome.CAUGHT_UP, reason="after downtime")
    assert store.claim_fire("w", "t", into, [*notes, caught])
    store.record_run_start("r1", "w", "t", into, into)
    assert outcomes(store) == [
        (skipped[0], "coalesced", None),
        (skipped[1], "coalesced", None),
        (into, "caught_up", "r1"),  # keeps its word, gains the run
    ]
    assert store.fires("w", "t")[-1].related_at == into


def skipped_record(run_id: str, fire_at: datetime, error: str = "late") -> RunRecord:
    at = T0 + 10 * MINUTE
    return RunRecord(run_id, "w", "t", fire_at, at, at, "skipped", 1, error)


def test_a_claim_writes_a_late_batch_s_skipped_records_in_the_same_call(store: Store) -> None:
    """A late wake's claim of the fire that runs: the older fires' ledger rows and skipped
    records go with it, kept as given; the records take no ledger row for a run."""
    late, newest = [T0, T0 + MINUTE], T0 + 2 * MINUTE
    notes = [
        FireEntry(fire_at=late[0], outcome=FireOutcome.MISSED, reason="past the grace"),
        FireEntry(fire_at=late[1], outcome=FireOutcome.COALESCED, related_at=newest),
    ]
    records = [skipped_record("s0", late[0]), skipped_record("s1", late[1], "late\nagain")]
    assert store.claim_fire("w", "t", newest, notes, skipped=records)
    assert store.last_fire("w", "t") == newest
    assert outcomes(store) == [
        (late[0], "missed", None),
        (late[1], "coalesced", None),
        (newest, "claimed", None),
    ]
    written = store.runs("w", "t")[::-1]
    assert [replace(r, replica=None) for r in written] == records
    assert store.runs("w", status="skipped", limit=1)[0].run_id == "s1"
    store.record_run_start("r1", "w", "t", newest, T0 + 10 * MINUTE)
    assert outcomes(store)[-1] == (newest, "ran", "r1")


def test_a_late_batch_with_none_to_run_marks_the_newest_too(store: Store) -> None:
    """All past the grace: the newest fire is claimed (the last fire moves past them all)
    and recorded skipped with the others; its row stays `missed`, no run takes it."""
    fires = [T0 + n * MINUTE for n in range(3)]
    notes = [FireEntry(fire_at=f, outcome=FireOutcome.MISSED, reason="past") for f in fires]
    summary = skipped_record("sum", fires[-1], "3 fires from 09:00 to 09:02: late")
    assert store.claim_fire("w", "t", fires[-1], notes, skipped=[summary])
    assert outcomes(store) == [(f, "missed", None) for f in fires]
    [written] = store.runs("w", "t")
    assert (written.run_id, written.status, written.error) == ("sum", "skipped", summary.error)
    assert store.last_fire("w", "t") == fires[-1]


def test_an_outcome_once_written_stays_and_a_skip_is_not_taken_for_a_run(store: Store) -> None:
    store.claim_fire("w", "t", T0)
    skip = FireEntry(fire_at=T0, outcome=FireOutcome.SKIPPED, reason="overlap=skip", run_id="r0")
    store.record_fires("w", "t", [skip])
    store.record_run_start("skip-record", "w", "t", T0, T0)  # the skipped record's own start
    missed = FireEntry(fire_at=T0, outcome=FireOutcome.MISSED, reason="later word")
    store.record_fires("w", "t", [missed])
    [entry] = store.fires("w", "t")
    assert (entry.outcome, entry.reason, entry.run_id) == ("skipped", "overlap=skip", "r0")


def test_a_backfill_run_marks_its_fire_and_says_what_it_replaced(store: Store) -> None:
    store.record_fires(
        "w", "t", [FireEntry(fire_at=T0, outcome=FireOutcome.MISSED, reason="past the grace")]
    )
    store.record_run_start("b1", "w", "t", T0, T0 + MINUTE, backfill=True)
    store.record_run_start("b2", "w", "t", T0 + MINUTE, T0 + MINUTE, backfill=True)
    [first, second] = store.fires("w", "t")[::-1]
    assert (first.outcome, first.run_id) == ("backfilled", "b1")
    assert first.reason == "before: missed: past the grace"
    assert (second.outcome, second.run_id, second.reason) == ("backfilled", "b2", None)


def test_fires_are_newest_first_by_span_and_limit_per_trigger(store: Store) -> None:
    for n in range(5):
        store.claim_fire("w", "t", T0 + n * MINUTE)
    store.claim_fire("w", "other", T0)
    store.claim_fire("v", "t", T0)
    times = [e.fire_at for e in store.fires("w", "t")]
    assert times == [T0 + n * MINUTE for n in (4, 3, 2, 1, 0)]
    span = store.fires("w", "t", since=T0 + MINUTE, until=T0 + 3 * MINUTE, limit=2)
    assert [e.fire_at for e in span] == [T0 + 3 * MINUTE, T0 + 2 * MINUTE]
    assert [e.fire_at for e in store.fires("w", "t", since=T0, until=T0)] == [T0]


def test_pruning_takes_fires_past_the_age_and_past_the_cap(store: Store) -> None:
    for n in range(6):
        store.claim_fire("w", "t", T0 + n * MINUTE)
    store.claim_fire("v", "t", T0)
    keep = Retention(older_than=T0 + 2 * MINUTE, max_runs_per_trigger=3)
    gone = 0
    while (batch := store.prune_history("w", keep, batch=1)) == 1:
        gone += batch
    assert gone == 3  # 09:00 and 09:01 by age, then 09:02 past the newest 3
    assert [e.fire_at for e in store.fires("w", "t")] == [T0 + n * MINUTE for n in (5, 4, 3)]
    assert len(store.fires("v", "t")) == 1
