"""`run_backfill`: a cron trigger's past fires run again, in order, one at a time, through the
dispatcher (recorded and marked, timeout and retries), with `scheduled_at` as the schedule's own
fire would have it; and the schema step that added the mark keeps older files' data."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from dataflow import Runtime, Settings, Workflow, cronjob, current_run, startup
from dataflow._core.errors import SettingsError
from dataflow.runtime._backfill import Backfill, run_backfill
from dataflow.state import RunRecord, StateStore
from dataflow.state._migrate import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from dataflow.testing import FakeClock
from dataflow.triggers._cron.span import fires_between
from dataflow.triggers.cronjob import CronSchedule
from tests._runtime import START, running, until

pytestmark = pytest.mark.anyio


class Nightly(Workflow):
    """Records what each run saw; fails the fires listed in `failing`, on every attempt."""

    workflow_name = "w"

    def __init__(self) -> None:
        self.seen: list[tuple[str, datetime | None, bool, int]] = []
        self.failing: set[int] = set()  # days of the month whose fire fails
        self.in_flight = 0

    @startup
    def prepare(self) -> None:
        self.seen.append(("prepare", None, False, 1))

    @cronjob("30 2 * * *", timezone="Europe/Berlin", retries=1, retry_delay=0)
    async def load(self) -> None:
        run = current_run()
        self.in_flight += 1
        try:
            assert self.in_flight == 1, "two backfill runs at once"
            await anyio.lowlevel.checkpoint()  # yields: the next run must still wait
            self.seen.append(("load", run.scheduled_at, run.backfill, run.attempt))
            assert run.scheduled_at is not None
            if run.scheduled_at.day in self.failing:
                raise ValueError(f"bad day {run.scheduled_at.day}")
        finally:
            self.in_flight -= 1

    @cronjob("* * * * *", timeout=0.05)
    async def slow(self) -> None:
        await anyio.sleep_forever()


BERLIN = CronSchedule("30 2 * * *", "Europe/Berlin")
SPRING = fires_between(  # 27th to 30th March 2026; the 29th's 02:30 is skipped: 03:00 CEST
    BERLIN, datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC), 100
)


def new_runtime(workflow: Workflow, state: Path) -> Runtime:
    return Runtime(workflow, settings=Settings(state_path=state), clock=FakeClock(START))


async def backfill(
    workflow: Workflow, tmp_path: Path, trigger: str, fires: list[datetime], **options: bool
) -> tuple[Backfill, list[RunRecord]]:
    runtime = new_runtime(workflow, tmp_path / "state.db")
    try:
        with anyio.fail_after(10):
            done = await run_backfill(runtime, trigger, fires, **options)
        return done, list(reversed(runtime.state.runs("w", trigger, limit=100)))
    finally:
        runtime.state.close()


async def test_each_fire_runs_once_in_order_after_startup_marked_as_backfill(
    tmp_path: Path,
) -> None:
    flow = Nightly()
    done, records = await backfill(flow, tmp_path, "load", SPRING)
    utc = [fire.astimezone(UTC) for fire in SPRING]
    assert [fire.strftime("%d %H:%M %Z") for fire in SPRING] == [
        "27 02:30 CET",
        "28 02:30 CET",
        "29 03:00 CEST",
        "30 02:30 CEST",
    ]
    assert flow.seen == [("prepare", None, False, 1)] + [("load", t, True, 1) for t in utc]
    assert [(r.scheduled_at, r.status, r.backfill) for r in records] == [
        (t, "succeeded", True) for t in utc
    ]
    assert (len(done.done), done.left, done.failed_fires, done.interrupted) == (4, [], [], False)


async def test_scheduled_at_is_what_the_schedules_own_fire_gives_the_handler(
    tmp_path: Path,
) -> None:
    """The same fire, once by the running schedule and once by a backfill: equal values, same
    tzinfo (the README's "the fire time, UTC"), and only the backfill's run is marked."""
    seen: list[tuple[datetime, bool]] = []

    class Minutely(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *", timezone="Europe/Berlin")
        async def tick(self) -> None:
            run = current_run()
            assert run.scheduled_at is not None
            seen.append((run.scheduled_at, run.backfill))

    async with running(Minutely(), tmp_path):
        await until(lambda: len(seen) >= 1)
    scheduled, _ = seen[0]
    await backfill(Minutely(), tmp_path, "tick", [scheduled.astimezone(BERLIN.timezone)])
    (first, marked_first), (again, marked_again) = seen[0], seen[-1]
    assert again == first and again.tzinfo is first.tzinfo is UTC
    assert (marked_first, marked_again) == (False, True)


async def test_a_failed_fire_is_retried_by_policy_and_the_backfill_goes_on(tmp_path: Path) -> None:
    flow = Nightly()
    flow.failing = {28}
    done, records = await backfill(flow, tmp_path, "load", SPRING, startup=False)
    assert [(r.scheduled_at.day, r.attempt, r.status) for r in records if r.scheduled_at] == [
        (27, 1, "succeeded"),
        (28, 1, "failed"),
        (28, 2, "failed"),
        (29, 1, "succeeded"),
        (30, 1, "succeeded"),
    ]
    assert all(r.backfill for r in records)
    assert done.failed_fires == [SPRING[1]] and not done.left


async def test_stop_on_failure_leaves_the_later_fires_unstarted(tmp_path: Path) -> None:
    flow = Nightly()
    flow.failing = {28}
    done, records = await backfill(
        flow, tmp_path, "load", SPRING, startup=False, stop_on_failure=True
    )
    assert [r.scheduled_at.day for r in records if r.scheduled_at] == [27, 28, 28]
    assert done.stopped_at_failure and done.left == SPRING[2:]


async def test_the_triggers_timeout_ends_each_attempt(tmp_path: Path) -> None:
    fires = [START + timedelta(minutes=1), START + timedelta(minutes=2)]
    done, records = await backfill(Nightly(), tmp_path, "slow", fires, startup=False)
    assert [(r.scheduled_at, r.status, r.backfill) for r in records] == [
        (fires[0], "timed_out", True),
        (fires[1], "timed_out", True),
    ]
    assert done.failed_fires == fires


async def test_a_trigger_without_fires_is_refused_before_anything_runs(tmp_path: Path) -> None:
    flow = Nightly()
    with pytest.raises(SettingsError, match="'prepare' is a startup trigger"):
        await backfill(flow, tmp_path, "prepare", [START])
    assert flow.seen == []


async def test_a_backfill_run_left_running_is_not_caught_up_by_the_schedule(
    tmp_path: Path,
) -> None:
    """A backfill process that died leaves its run `running`; the workflow's next start marks
    it interrupted, but its fire is a past one re-run by hand, not a fire the schedule missed."""
    seen: list[datetime] = []

    class Minutely(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *", misfire_grace=None, catchup="all")
        async def tick(self) -> None:
            seen.append(current_run().scheduled_at)  # type: ignore[arg-type]

    store = StateStore(tmp_path / "state.db")
    old_fire = START - timedelta(days=3)
    store.set_state("w", "tick", "last_fire", (START - timedelta(minutes=1)).isoformat())
    store.record_run_start("b" * 32, "w", "tick", old_fire, START, backfill=True)
    store.close()
    async with running(Minutely(), tmp_path):
        await until(lambda: len(seen) >= 2)
    assert old_fire not in seen


def schema_2_file(state: Path) -> None:
    """A state file as dataflow wrote it at schema 2, with a run and a dead letter's BSON."""
    with sqlite3.connect(state) as db:
        db.executescript(files("dataflow.state").joinpath("_schema.sql").read_text())
        db.executescript("".join(MIGRATIONS[:2]))
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO runs VALUES ('r1', 'w', 'load', ?, ?, ?, 'failed', 2, 'ValueError: x')",
            ("2026-01-01T01:30:00+00:00", "2026-01-01T01:30:01+00:00", "2026-01-01T01:30:02+00:00"),
        )
        db.execute(
            "INSERT INTO dead_letters (workflow, trigger, payload, error, created_at, raw)"
            " VALUES ('w', 'feed', '{}', 'KeyError', '2026-01-01T00:00:00+00:00', x'0500')"
        )
    db.close()


async def test_a_schema_2_file_keeps_its_runs_and_takes_backfill_runs(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    schema_2_file(state)
    await backfill(Nightly(), tmp_path, "load", SPRING[:1], startup=False)
    store = StateStore(state)
    try:
        new, old = store.runs("w", "load")
        [letter] = store.dead_letters("w")
    finally:
        store.close()
    assert (old.run_id, old.status, old.attempt, old.error) == ("r1", "failed", 2, "ValueError: x")
    assert old.scheduled_at == datetime(2026, 1, 1, 1, 30, tzinfo=UTC) and old.backfill is False
    assert (new.scheduled_at, new.backfill) == (SPRING[0].astimezone(UTC), True)
    assert letter.raw == b"\x05\x00"
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()
