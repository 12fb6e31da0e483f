"""The `Store` contract for bounded history: `prune_history` with a `Retention`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dataflow.state import Retention, Store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
KEEP_30_DAYS = Retention(older_than=NOW - 30 * DAY, max_runs_per_trigger=1_000)


def finished(store: Store, run_id: str, at: datetime, trigger: str = "t", wf: str = "w") -> None:
    store.record_run_start(run_id, wf, trigger, at, at)
    store.record_run_end(run_id, "succeeded", at)


def prune_all(store: Store, retention: Retention, wf: str = "w", batch: int = 500) -> int:
    total = 0
    while (gone := store.prune_history(wf, retention, batch=batch)) == batch:
        total += gone
    return total + gone


def run_ids(store: Store, trigger: str | None = None, wf: str = "w") -> list[str]:
    return [r.run_id for r in store.runs(wf, trigger, limit=10_000)]


def test_runs_past_the_age_go_and_running_ones_stay(store: Store) -> None:
    """Finished runs that started before the horizon go, whatever their status; a run still
    running stays however old; younger runs and other workflows' runs stay."""
    finished(store, "old", NOW - 31 * DAY)
    store.record_run_start("old failed", "w", "t", None, NOW - 40 * DAY)
    store.record_run_end("old failed", "failed", NOW - 40 * DAY, "boom")
    store.record_run_start("old running", "w", "t", None, NOW - 90 * DAY)
    finished(store, "young", NOW - 29 * DAY)
    finished(store, "elsewhere", NOW - 31 * DAY, wf="v")
    assert prune_all(store, KEEP_30_DAYS) == 2
    assert run_ids(store) == ["young", "old running"]
    assert run_ids(store, wf="v") == ["elsewhere"]


def test_each_trigger_keeps_its_newest_runs_up_to_the_cap(store: Store) -> None:
    """Beyond `max_runs_per_trigger`, a trigger's oldest finished runs go; another trigger's
    runs count on their own; a running run is never pruned, however old."""
    for i in range(6):
        finished(store, f"t{i}", NOW - timedelta(minutes=10 - i))
    finished(store, "u0", NOW - timedelta(minutes=20), trigger="u")
    store.record_run_start("t running", "w", "t", None, NOW - timedelta(hours=1))
    capped = Retention(older_than=NOW - 30 * DAY, max_runs_per_trigger=2)
    assert prune_all(store, capped) == 4
    assert run_ids(store, "t") == ["t5", "t4", "t running"]
    assert run_ids(store, "u") == ["u0"]


def test_a_call_deletes_at_most_a_batch(store: Store) -> None:
    """Each call takes at most `batch` rows (a short write); calls until one comes back short
    take them all."""
    for i in range(7):
        finished(store, f"old{i}", NOW - 40 * DAY + timedelta(minutes=i))
    assert store.prune_history("w", KEEP_30_DAYS, batch=3) == 3
    assert len(run_ids(store)) == 4
    assert store.prune_history("w", KEEP_30_DAYS, batch=3) == 3
    assert store.prune_history("w", KEEP_30_DAYS, batch=3) == 1
    assert store.prune_history("w", KEEP_30_DAYS, batch=3) == 0
    assert run_ids(store) == []


def test_the_batch_bound_holds_across_age_and_cap(store: Store) -> None:
    """Rows past the age and rows past the cap share one call's batch."""
    for i in range(4):
        finished(store, f"old{i}", NOW - 40 * DAY + timedelta(minutes=i))
        finished(store, f"new{i}", NOW - timedelta(minutes=10 - i), trigger="u")
    capped = Retention(older_than=NOW - 30 * DAY, max_runs_per_trigger=1)
    assert store.prune_history("w", capped, batch=5) == 5
    assert prune_all(store, capped) == 2
    assert run_ids(store) == ["new3"]


def test_only_dead_letters_retried_successfully_before_the_horizon_go(store: Store) -> None:
    """A letter not retried, or whose retry failed, is kept however old; one retried
    successfully goes once its retry is older than the horizon."""
    kept = store.add_dead_letter("w", "s", "{}", "never retried")
    failed = store.add_dead_letter("w", "s", "{}", "retry failed")
    done = store.add_dead_letter("w", "s", "{}", "retried")
    other = store.add_dead_letter("v", "s", "{}", "other workflow")
    store.mark_dead_letter_retried(failed, "failed")
    store.mark_dead_letter_retried(done, "succeeded")
    store.mark_dead_letter_retried(other, "succeeded")
    assert prune_all(store, KEEP_30_DAYS) == 0  # retried just now: younger than 30 days
    later = Retention(older_than=datetime.now(UTC) + DAY, max_runs_per_trigger=1_000)
    assert prune_all(store, later) == 1
    assert [d.id for d in store.dead_letters("w", include_retried=True)] == [kept, failed]
    assert len(store.dead_letters("v", include_retried=True)) == 1


def test_nothing_to_prune_is_zero(store: Store) -> None:
    finished(store, "young", NOW)
    assert store.prune_history("w", KEEP_30_DAYS, batch=500) == 0
    assert store.prune_history("nobody", KEEP_30_DAYS, batch=500) == 0
