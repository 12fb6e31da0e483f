"""The fire ledger through the runtime's real path, on SQLite and PostgreSQL, asyncio and trio,
under the fake clock: each outcome recorded with its reason, and `explain`'s line for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from dataflow import Runtime, Settings, Workflow, cronjob, current_run
from dataflow.runtime._backfill import run_backfill
from dataflow.runtime._explain import cron_schedule_of, explain_at, explain_since
from dataflow.runtime._pruner import prune_history
from dataflow.state import FireEntry, FireOutcome, Store
from dataflow.testing import FakeClock
from tests._runtime import START, until
from tests.state.conftest import IMPLEMENTATIONS

pytestmark = pytest.mark.anyio
MINUTE = timedelta(minutes=1)
SKIP = FireEntry(fire_at=START, outcome=FireOutcome.CLAIMED)  # a fire not in the ledger yet


@pytest.fixture(params=list(IMPLEMENTATIONS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with IMPLEMENTATIONS[request.param](tmp_path) as opened:
        yield opened


def flow(
    expression: str = "* * * * *", hold: anyio.Event | None = None, **policy: object
) -> type[Workflow]:
    """A workflow "w" with one trigger "job"; `hold`, when set, keeps each run going."""

    class W(Workflow):
        workflow_name = "w"

        @cronjob(expression, name="job", **policy)  # type: ignore[arg-type]
        async def job(self) -> None:
            assert current_run().scheduled_at is not None
            if hold is not None:
                await hold.wait()

    return W


@asynccontextmanager
async def running(
    workflow: Workflow, store: Store, clock: FakeClock, *, autojump: bool = False
) -> AsyncIterator[Runtime]:
    """Time moves only by `to()` (an autojumping clock would race through fires meanwhile)."""
    runtime = Runtime(workflow, settings=Settings(grace_period=5), clock=clock, state=store)
    async with AsyncExitStack() as stack:
        if autojump:
            await stack.enter_async_context(clock.autojump())
        tg = await stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(runtime.run)
        await until(runtime.started.is_set)
        yield runtime
        runtime.stop()


async def to(clock: FakeClock, when: datetime) -> None:
    """Let time pass to `when` once the scheduler sleeps for its next fire."""
    await until(lambda: clock.next_deadline() is not None)
    clock.advance(when - clock.now())


def ledger(store: Store) -> dict[datetime, FireEntry]:
    return {entry.fire_at: entry for entry in store.fires("w", "job", limit=1000)}


def has_run(store: Store, fire_at: datetime) -> bool:
    """The fire's run has ended (its record too)."""
    entry = ledger(store).get(fire_at)
    if entry is None or entry.run_id is None:
        return False
    runs = store.runs_by_id([entry.run_id])
    return bool(runs) and runs[0].ended_at is not None


def lines(store: Store, wf: Workflow, since: datetime, now: datetime) -> dict[datetime, str]:
    schedule = cron_schedule_of(type(wf).declared_trigger("job"))
    found = explain_since(store, "w", "job", schedule, since, now)
    return {account.fire_at.astimezone(UTC): account.line for account in found}


async def test_each_fire_that_ran_names_its_run(store: Store) -> None:
    wf, clock = flow()(), FakeClock(START)
    async with running(wf, store, clock):
        for n in (1, 2):
            await to(clock, START + n * MINUTE)
            await until(lambda n=n: has_run(store, START + n * MINUTE))  # type: ignore[misc]
    entries = ledger(store)
    assert entries[START + MINUTE].outcome is FireOutcome.RAN
    run_id = entries[START + MINUTE].run_id
    assert run_id is not None and store.runs_by_id([run_id])[0].scheduled_at == START + MINUTE
    said = lines(store, wf, START + MINUTE, START + MINUTE)
    assert said[START + MINUTE] == f"2026-03-02 09:01 UTC: ran: run {run_id[:8]}, succeeded in 0.0s"


async def test_a_fire_skipped_by_overlap_names_the_run_still_running(store: Store) -> None:
    hold = anyio.Event()
    wf, clock = flow(hold=hold, overlap="skip")(), FakeClock(START)
    async with running(wf, store, clock):
        await to(clock, START + MINUTE)
        await until(lambda: ledger(store).get(START + MINUTE, SKIP).outcome == "ran")
        await to(clock, START + 2 * MINUTE)
        await until(lambda: ledger(store).get(START + 2 * MINUTE, SKIP).outcome == "skipped")
        hold.set()
    first, skipped = ledger(store)[START + MINUTE], ledger(store)[START + 2 * MINUTE]
    assert first.run_id is not None
    assert (skipped.run_id, skipped.related_at) == (first.run_id, START + MINUTE)
    said = lines(store, wf, START + 2 * MINUTE, START + 2 * MINUTE)[START + 2 * MINUTE]
    assert said == (
        f"2026-03-02 09:02 UTC: skipped: the 09:01 run (run {first.run_id[:8]}) was still "
        "running (overlap=skip)"
    )


async def test_a_forward_step_coalesces_the_fires_it_skipped_into_one(store: Store) -> None:
    wf = flow("*/10 * * * *")()
    clock = FakeClock(START)
    async with running(wf, store, clock):
        await to(clock, START + 10 * MINUTE)
        await until(lambda: has_run(store, START + 10 * MINUTE))
        await until(lambda: clock.next_deadline() is not None)
        with anyio.fail_after(10):  # set again if slow: wakes the scheduler (see the policies)
            while not has_run(store, START + 60 * MINUTE):
                clock.set(START + 65 * MINUTE)
                with anyio.move_on_after(0.5):
                    await until(lambda: has_run(store, START + 60 * MINUTE))
    entries = ledger(store)
    skipped = [START + n * 10 * MINUTE for n in (2, 3, 4, 5)]
    assert [entries[f].outcome for f in skipped] == ["coalesced"] * 4
    assert {entries[f].related_at for f in skipped} == {START + 60 * MINUTE}
    assert entries[START + 60 * MINUTE].outcome is FireOutcome.RAN
    said = lines(store, wf, START + 20 * MINUTE, START + 20 * MINUTE)[START + 20 * MINUTE]
    assert said == (
        "2026-03-02 09:20 UTC: coalesced into the 10:00 fire: the wall clock stepped forward"
    )


@pytest.mark.parametrize(("grace", "older"), [(60, "missed"), (300, "coalesced")])
async def test_after_downtime_one_fire_catches_up_and_the_rest_say_why(
    store: Store, grace: int, older: str
) -> None:
    store.set_state("w", "job", "last_fire", START.isoformat())
    wf = flow(misfire_grace=grace)()
    restart = START + timedelta(minutes=4, seconds=30)  # 09:01 .. 09:04 missed
    async with running(wf, store, FakeClock(restart)):  # catches up at start: no time moves
        await until(lambda: has_run(store, START + 4 * MINUTE))
    entries = ledger(store)
    caught = entries[START + 4 * MINUTE]
    assert caught.outcome is FireOutcome.CAUGHT_UP and caught.run_id is not None
    assert [entries[START + n * MINUTE].outcome for n in (1, 2, 3)] == [older] * 3
    said = lines(store, wf, START + MINUTE, restart)
    assert said[START + 4 * MINUTE].startswith(
        f"2026-03-02 09:04 UTC: caught up: run {caught.run_id[:8]}, succeeded in"
    )
    assert said[START + 4 * MINUTE].endswith(
        "(after downtime: 4 fire(s) were due while the workflow was down)"
    )
    expected = {
        "missed": "missed: after downtime; past the misfire grace of 60 s",
        "coalesced": "coalesced into the 09:04 fire: after downtime (catchup=coalesce)",
    }[older]
    assert said[START + MINUTE] == f"2026-03-02 09:01 UTC: {expected}"


async def test_fires_a_late_wake_finds_past_the_grace_are_missed(store: Store) -> None:
    """The loop wakes 5.5 min late (time passed: no clock step): 09:05 runs, 09:01..09:04 are
    past the 60 s grace."""
    wf, clock = flow()(), FakeClock(START)
    async with running(wf, store, clock):
        await to(clock, START + timedelta(minutes=5, seconds=30))
        await until(lambda: has_run(store, START + 5 * MINUTE))
        await until(lambda: len(ledger(store)) == 5)
    entries = ledger(store)
    assert [entries[START + n * MINUTE].outcome for n in (1, 2, 3, 4)] == ["missed"] * 4
    said = lines(store, wf, START + MINUTE, START + MINUTE)[START + MINUTE]
    assert (
        said == "2026-03-02 09:01 UTC: missed: the trigger was late; past the misfire grace of 60 s"
    )


async def test_a_fire_time_a_dst_gap_skipped_runs_at_the_jump_and_says_so(store: Store) -> None:
    """Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; `30 2 * * *` runs at 03:00."""
    store.set_state("w", "job", "last_fire", datetime(2026, 3, 28, 1, 30, tzinfo=UTC).isoformat())
    wf = flow("30 2 * * *", timezone="Europe/Berlin")()
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    clock = FakeClock(jump - MINUTE)
    async with running(wf, store, clock):
        await to(clock, jump)
        await until(lambda: has_run(store, jump))
    schedule = cron_schedule_of(type(wf).declared_trigger("job"))
    run_id = ledger(store)[jump].run_id
    assert run_id is not None
    [said] = explain_at(store, "w", "job", schedule, datetime(2026, 3, 29, 2, 30), jump)
    assert not isinstance(said, str)
    assert said.line == (
        "02:30 Europe/Berlin on 2026-03-29 did not exist; ran at 03:00 CEST as cron does: "
        f"run {run_id[:8]}, succeeded in 0.0s"
    )
    [other] = explain_at(store, "w", "job", schedule, datetime(2026, 3, 29, 2, 0), jump)
    assert other == (
        "2026-03-29 02:00:00 Europe/Berlin did not exist (a DST gap) and is not a fire time of "
        "`30 2 * * *`; the nearest are 2026-03-28 02:30 CET and 2026-03-29 03:00 CEST"
    )


async def test_a_backfill_marks_the_fire_and_keeps_what_it_was(store: Store) -> None:
    fire = START - 60 * MINUTE
    missed = FireEntry(fire_at=fire, outcome=FireOutcome.MISSED, reason="past the grace")
    store.record_fires("w", "job", [missed])
    wf = flow()()
    runtime = Runtime(wf, settings=Settings(), clock=FakeClock(START), state=store)
    with anyio.fail_after(10):
        await run_backfill(runtime, "job", [fire], startup=False)
    entry = ledger(store)[fire]
    assert entry.outcome is FireOutcome.BACKFILLED and entry.run_id is not None
    said = lines(store, wf, fire, fire)[fire]
    assert said == (
        f"2026-03-02 08:00 UTC: backfilled: run {entry.run_id[:8]}, succeeded in 0.0s "
        "(before: missed: past the grace)"
    )


async def test_the_pruner_takes_ledger_rows_past_the_retention(store: Store) -> None:
    for days in (3, 2, 0):
        store.claim_fire("w", "job", START - timedelta(days=days))
    settings = Settings(history_days=1)
    assert await prune_history(store, "w", settings, FakeClock(START)) == 2
    assert list(ledger(store)) == [START]


def test_a_time_that_is_no_fire_time_names_the_nearest(store: Store) -> None:
    schedule = cron_schedule_of(flow("0 2 * * *").declared_trigger("job"))
    [said] = explain_at(store, "w", "job", schedule, datetime(2026, 3, 2, 3, 0), START)
    assert said == (
        "2026-03-02 03:00 UTC is not a fire time of `0 2 * * *`; the nearest are "
        "2026-03-02 02:00 UTC and 2026-03-03 02:00 UTC"
    )
