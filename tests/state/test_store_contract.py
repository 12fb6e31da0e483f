"""The `Store` contract: what every implementation's methods do, as a caller sees it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dataflow.state import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def start(store: Store, run_id: str, at: datetime, *, trigger: str = "t", wf: str = "w") -> None:
    store.record_run_start(run_id, wf, trigger, at, at)


def ids(
    store: Store, trigger: str | None = None, *, failed_only: bool = False, limit: int = 50
) -> list[str]:
    return [r.run_id for r in store.runs("w", trigger, failed_only=failed_only, limit=limit)]


def test_trigger_values_round_trip_and_are_replaced(store: Store) -> None:
    """A value comes back as saved; saving again replaces it; a missing key reads None."""
    assert store.get_state("w", "t", "user:k") is None
    store.set_state("w", "t", "user:k", '{"a": 1}')
    store.set_state("w", "t", "user:k", '{"a": 2}')
    assert store.get_state("w", "t", "user:k") == '{"a": 2}'


def test_trigger_values_are_kept_per_workflow_and_trigger(store: Store) -> None:
    """One key under two workflows and two triggers holds four separate values."""
    for wf in ("w", "v"):
        for trigger in ("t", "u"):
            store.set_state(wf, trigger, "user:k", f"{wf}/{trigger}")
    found = {(wf, t): store.get_state(wf, t, "user:k") for wf in "wv" for t in "tu"}
    assert found == {(wf, t): f"{wf}/{t}" for wf in "wv" for t in "tu"}
    assert [(t, k, v) for t, k, v, _ in store.state_items("v")] == [
        ("t", "user:k", "v/t"),
        ("u", "user:k", "v/u"),
    ]


def test_state_items_show_last_fires_and_positions_in_order(store: Store) -> None:
    """Inspection sees every saved value of the workflow, by trigger then key, with an aware
    time of its last update."""
    store.save_position("w", "stream", "resume_token:db.c", '{"_data": "82"}')
    store.claim_fire("w", "cron", T0)
    store.set_state("w", "cron", "user:a", "1")
    items = store.state_items("w")
    assert [(t, k) for t, k, _, _ in items] == [
        ("cron", "last_fire"),
        ("cron", "user:a"),
        ("stream", "resume_token:db.c"),
    ]
    assert all(updated.utcoffset() is not None for _, _, _, updated in items)


def test_a_claimed_fire_is_the_last_fire_as_an_aware_time(store: Store) -> None:
    """Claiming returns True (this process has it) and the fire time comes back as the same
    instant, aware, whatever its zone (the second pass of a repeated hour included: compared in
    UTC, since PEP 495 makes such a time unequal to any other zone's); a claim of a later fire
    replaces it, per workflow and trigger."""
    assert store.last_fire("w", "t") is None
    local = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)  # the repeated hour's 2nd pass
    assert store.claim_fire("w", "t", local) is True
    found = store.last_fire("w", "t")
    assert found is not None and found.utcoffset() == timedelta(hours=1)
    assert (
        found.astimezone(UTC) == local.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    )
    later = datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert store.claim_fire("w", "t", later) is True
    assert store.last_fire("w", "t") == later
    assert store.last_fire("v", "t") is None and store.last_fire("w", "u") is None


def test_positions_round_trip_per_trigger_and_key(store: Store) -> None:
    """A stream position comes back as saved; each key (namespace) has its own."""
    store.save_position("w", "s", "resume_token:db.a", "A1")
    store.save_position("w", "s", "resume_token:db.a", "A2")
    store.save_position("w", "s", "resume_token:db.b", "B1")
    assert store.load_position("w", "s", "resume_token:db.a") == "A2"
    assert store.load_position("w", "s", "resume_token:db.b") == "B1"
    assert store.load_position("v", "s", "resume_token:db.a") is None


def test_a_run_record_round_trips(store: Store) -> None:
    """Start then end: every field comes back, times aware and equal to what was given."""
    started = datetime(2026, 3, 29, 3, 0, 0, 123456, tzinfo=BERLIN)
    store.record_run_start("r1", "w", "t", None, started, attempt=3)
    (running,) = store.runs("w")
    assert (running.status, running.ended_at, running.attempt) == ("running", None, 3)
    ended = started + timedelta(seconds=2)
    store.record_run_end("r1", "failed", ended, "ValueError: bad row")
    (record,) = store.runs("w")
    assert record.started_at == started and record.started_at.utcoffset() is not None
    assert (record.scheduled_at, record.ended_at) == (None, ended)
    assert (record.status, record.error, record.trigger, record.workflow) == (
        "failed",
        "ValueError: bad row",
        "t",
        "w",
    )


def test_runs_are_newest_first_and_ties_go_by_recording_order(store: Store) -> None:
    """Ordered by start time, newest first; runs started at the same instant, last recorded
    first; in another zone a later instant still sorts later."""
    start(store, "old", T0)
    start(store, "tie1", T0 + timedelta(minutes=1))
    start(store, "tie2", T0 + timedelta(minutes=1))
    start(store, "new", (T0 + timedelta(minutes=2)).astimezone(BERLIN))
    assert ids(store) == ["new", "tie2", "tie1", "old"]


def test_runs_by_trigger_and_limit(store: Store) -> None:
    """A trigger's runs only; `limit` keeps the newest."""
    for i in range(5):
        start(store, f"t{i}", T0 + timedelta(minutes=i))
        start(store, f"u{i}", T0 + timedelta(minutes=i), trigger="u")
    start(store, "other", T0, wf="v")
    assert ids(store, "t", limit=2) == ["t4", "t3"]
    assert len(ids(store, limit=100)) == 10
    assert ids(store, "u", limit=1) == ["u4"]


def test_failed_only_lists_every_failure_kind_and_nothing_else(store: Store) -> None:
    """failed, timed_out, cancelled and interrupted are failures; succeeded, skipped and
    running are not."""
    statuses = ["succeeded", "failed", "timed_out", "skipped", "cancelled", "interrupted"]
    for i, status in enumerate(statuses):
        start(store, status, T0 + timedelta(minutes=i), trigger="t" if i % 2 else "u")
        store.record_run_end(status, status, T0 + timedelta(minutes=i, seconds=1))
    start(store, "running", T0 + timedelta(hours=1))
    assert ids(store, failed_only=True) == ["interrupted", "cancelled", "timed_out", "failed"]
    assert ids(store, "u", failed_only=True) == ["cancelled", "timed_out"]
    assert ids(store, failed_only=True, limit=1) == ["interrupted"]


def test_mark_interrupted_takes_only_this_workflows_running_runs(store: Store) -> None:
    """Running runs of the workflow become interrupted (with a reason) and are returned;
    finished runs and other workflows' runs are untouched; a second call finds none."""
    start(store, "done", T0)
    store.record_run_end("done", "succeeded", T0)
    start(store, "a", T0 + timedelta(minutes=1))
    start(store, "b", T0 + timedelta(minutes=2), trigger="u")
    start(store, "elsewhere", T0, wf="v")
    marked = store.mark_interrupted("w")
    assert sorted(r.run_id for r in marked) == ["a", "b"]
    assert {r.status for r in marked} == {"interrupted"} and all(r.error for r in marked)
    assert [r.status for r in store.runs("w")] == ["interrupted", "interrupted", "succeeded"]
    assert [r.status for r in store.runs("v")] == ["running"]
    assert store.mark_interrupted("w") == []


def test_dead_letters_are_listed_until_retried_successfully(store: Store) -> None:
    """Oldest first with their exact bytes; a failed retry stays listed (with its outcome), a
    successful one leaves the default list; `include_retried` shows both; per workflow."""
    first = store.add_dead_letter("w", "s", '{"a": 1}', "boom", b"\x05\x00\x00\x00\x00")
    second = store.add_dead_letter("w", "s", '{"a": 2}', "bang")
    store.add_dead_letter("v", "s", "{}", "elsewhere")
    assert second > first
    listed = store.dead_letters("w")
    assert [(d.id, d.raw, d.payload) for d in listed] == [
        (first, b"\x05\x00\x00\x00\x00", '{"a": 1}'),
        (second, None, '{"a": 2}'),
    ]
    assert listed[0].created_at.utcoffset() is not None and listed[0].retried_at is None
    store.mark_dead_letter_retried(first, "failed")
    store.mark_dead_letter_retried(second, "succeeded")
    (still,) = store.dead_letters("w")
    assert (still.id, still.retry_status) == (first, "failed") and still.retried_at is not None
    assert [d.retry_status for d in store.dead_letters("w", include_retried=True)] == [
        "failed",
        "succeeded",
    ]
    assert [d.error for d in store.dead_letters("v")] == ["elsewhere"]


def test_a_healthy_store_is_neither_busy_nor_failing_its_check(store: Store) -> None:
    store.check()
    assert store.busy() is False


@pytest.mark.anyio
async def test_call_runs_a_method_in_a_worker_thread(store: Store) -> None:
    """`call` hands back the method's result, computed off the event loop's thread."""
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def claim_and_note() -> bool:
        seen.append(threading.get_ident())
        return store.claim_fire("w", "t", T0)

    assert await store.call(claim_and_note) is True
    assert await store.call(store.last_fire, "w", "t") == T0
    assert seen and seen[0] != loop_thread


def test_a_batch_of_change_events_is_one_row_with_count_and_positions(store: Store) -> None:
    """Begun like a run (`running`, so a crash shows it `interrupted`), ended with its count
    and first and last positions as one `succeeded` row; a run of its own has no count."""
    start(store, "batch", T0, trigger="stream")
    [running] = store.runs("w", "stream")
    assert running.status == "running" and running.events is None
    store.record_batch_end(
        "batch", T0 + timedelta(seconds=2), 250, '{"_data": "8201"}', '{"_data": "82FA"}'
    )
    start(store, "single", T0 + timedelta(seconds=3), trigger="stream")
    store.record_run_end("single", "failed", T0 + timedelta(seconds=3), "Traceback ...")
    single, batch = store.runs("w", "stream")
    assert (batch.status, batch.events, batch.ended_at) == (
        "succeeded",
        250,
        T0 + timedelta(seconds=2),
    )
    assert (batch.first_position, batch.last_position) == ('{"_data": "8201"}', '{"_data": "82FA"}')
    assert (single.events, single.first_position, single.last_position) == (None, None, None)
    assert store.runs_by_id(["batch"]) == [batch]
