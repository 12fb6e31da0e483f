"""The fast fire path (`_cron/ahead.py`), on the fake clock, both backends: a fire is claimed,
with its run's start record, `claim_lead` before its time, and its handler starts at the fire
time; a process that dies between that claim and the fire time leaves the run `running`, and
the restart catches the fire up as an interrupted run: it runs once."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

from dataflow import Workflow, cronjob, current_run
from dataflow._core.run import RunStatus
from dataflow.state import RunRecord, Store
from dataflow.testing import FakeClock, wait_until_idle
from tests._runtime import START, captured_logs, running, until

pytestmark = pytest.mark.anyio
LEAD = timedelta(milliseconds=20)
FIRE = START + timedelta(minutes=1)  # 09:01:00, the first fire after START + 30 s


class LeadClock(FakeClock):
    """A fake clock asking the cron scheduler to claim fires `LEAD` ahead, as the real one."""

    claim_lead = LEAD


Entered = list[tuple[datetime, datetime]]  # (scheduled_at, clock time at handler entry)


def minutely(entered: Entered, clock: FakeClock) -> Workflow:
    class Minutely(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *", timezone="UTC")
        async def tick(self) -> None:
            scheduled = current_run().scheduled_at
            assert scheduled is not None
            entered.append((scheduled, clock.now()))

    return Minutely()


def fire_runs(records: list[RunRecord], fire_at: datetime) -> list[RunRecord]:
    return [r for r in records if r.scheduled_at == fire_at]


async def claimed_ahead(clock: FakeClock, state: Store) -> RunRecord:
    """Move to `LEAD` / 2 before the fire, wait for its claim and start record: that record."""
    clock.advance(FIRE - LEAD / 2 - clock.now())
    await until(lambda: bool(fire_runs(state.runs("w"), FIRE)))
    (record,) = fire_runs(state.runs("w"), FIRE)
    return record


async def test_a_fire_is_claimed_ahead_and_its_handler_starts_at_the_fire_time(
    tmp_path: Path,
) -> None:
    entered: Entered = []
    clock = LeadClock(START + timedelta(seconds=30))
    async with running(minutely(entered, clock), tmp_path, clock=clock, autojump=False) as rt:
        await wait_until_idle()
        clock.advance(FIRE - LEAD - timedelta(milliseconds=1) - clock.now())
        await wait_until_idle()
        assert fire_runs(rt.state.runs("w"), FIRE) == []  # not yet within the lead
        record = await claimed_ahead(clock, rt.state)
        assert (record.status, record.started_at) == (RunStatus.RUNNING, FIRE)
        assert rt.state.last_fire("w", "tick") == FIRE  # claimed: the trigger's last fire
        await wait_until_idle()
        assert entered == []  # the handler waits for the fire time
        clock.advance(FIRE - clock.now())
        await until(lambda: len(entered) == 1)
        await until(lambda: fire_runs(rt.state.runs("w"), FIRE)[0].status != RunStatus.RUNNING)
        assert entered == [(FIRE, FIRE)]
        (done,) = fire_runs(rt.state.runs("w"), FIRE)  # the record written ahead, finished
        assert (done.status, done.run_id) == (RunStatus.SUCCEEDED, record.run_id)


async def test_a_fire_due_while_the_previous_run_goes_on_takes_the_usual_path_at_its_time(
    tmp_path: Path,
) -> None:
    """Woken early for a fire that cannot be claimed ahead (a run still going): nothing is
    written before its time; at it the overlap policy (skip) records it skipped."""
    release = anyio.Event()
    started: list[datetime] = []

    class Slow(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *", timezone="UTC")
        async def tick(self) -> None:
            started.append(current_run().scheduled_at)  # type: ignore[arg-type]
            await release.wait()

    second = FIRE + timedelta(minutes=1)
    clock = LeadClock(START + timedelta(seconds=30))
    async with running(Slow(), tmp_path, clock=clock, autojump=False) as rt:
        await wait_until_idle()
        clock.advance(FIRE - clock.now())
        await until(lambda: started == [FIRE])
        clock.advance(second - LEAD / 2 - clock.now())
        await wait_until_idle()
        assert fire_runs(rt.state.runs("w"), second) == []
        assert rt.state.last_fire("w", "tick") == FIRE
        clock.advance(second - clock.now())
        await until(lambda: bool(fire_runs(rt.state.runs("w"), second)))
        (skipped,) = fire_runs(rt.state.runs("w"), second)
        assert skipped.status == RunStatus.SKIPPED
        release.set()
    assert started == [FIRE]


async def test_a_stop_after_the_claim_ahead_starts_the_run_at_its_fire_time(
    tmp_path: Path,
) -> None:
    """A claimed fire is started (as after any claim), and not before its time."""
    entered: Entered = []
    clock = LeadClock(START + timedelta(seconds=30))
    async with running(minutely(entered, clock), tmp_path, clock=clock, autojump=False) as rt:
        await wait_until_idle()
        record = await claimed_ahead(clock, rt.state)
        rt.stop()
        await wait_until_idle()
        assert entered == []
        clock.advance(FIRE - clock.now())
        await until(lambda: len(entered) == 1)
        state = rt.state
    assert entered == [(FIRE, FIRE)]
    (done,) = fire_runs(state.runs("w"), FIRE)
    assert (done.status, done.run_id) == (RunStatus.SUCCEEDED, record.run_id)


async def test_a_crash_between_the_claim_ahead_and_the_fire_time_is_caught_up_once(
    tmp_path: Path,
) -> None:
    """The state file as a `kill -9` between the claim and the fire time leaves it (its
    committed contents, copied then); the restart, 5 s after the fire time, marks the run
    interrupted and its catch-up runs the fire once."""
    entered: Entered = []
    clock = LeadClock(START + timedelta(seconds=30))
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    async with running(minutely(entered, clock), tmp_path, clock=clock, autojump=False) as rt:
        await wait_until_idle()
        await claimed_ahead(clock, rt.state)
        with (
            sqlite3.connect(tmp_path / "state.db") as source,
            sqlite3.connect(crashed / "state.db") as copy,
        ):
            source.backup(copy)  # committed writes only: what survives the process dying
        assert entered == []
        clock.advance(FIRE - clock.now())
        await until(lambda: len(entered) == 1)
    entered.clear()
    after = LeadClock(FIRE + timedelta(seconds=5))
    with captured_logs() as logs:
        async with running(minutely(entered, after), crashed, clock=after, autojump=False) as rt:
            await until(lambda: len(entered) == 1)
            await wait_until_idle()
            with anyio.move_on_after(0.2):
                await until(lambda: len(entered) > 1)
            records = fire_runs(rt.state.runs("w"), FIRE)
    assert entered == [(FIRE, FIRE + timedelta(seconds=5))]  # caught up once, at the restart
    assert sorted(r.status for r in records) == sorted([RunStatus.INTERRUPTED, RunStatus.SUCCEEDED])
    assert any(e["event"] == "missed fires after downtime" for e in logs)
