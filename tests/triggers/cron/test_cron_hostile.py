"""The cron trigger in a hostile world, on the fake clock: wall-clock steps both ways, a saved
last fire in the future, long downtime, many runs under `overlap="allow"`."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from dataflow import current_run
from dataflow.state import StateStore
from dataflow.testing import FakeClock
from dataflow.triggers.base import RunHandle
from tests._runtime import START, captured_logs, running, until
from tests.triggers.cron.test_cron_policies import runs, workflow

pytestmark = pytest.mark.anyio
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def held_handles() -> int:
    gc.collect()
    return sum(isinstance(o, RunHandle) for o in gc.get_objects())


async def test_allow_drops_the_handles_of_finished_runs(tmp_path: Path) -> None:
    """`overlap="allow"`: 500 runs, and only the handles of runs still going are held."""
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    async with running(workflow(job, "* * * * *", overlap="allow"), tmp_path):
        await until(lambda: len(fired) >= 500, timeout=60)
        assert held_handles() <= 5
    assert len(runs(tmp_path)) >= 500


def recorder() -> tuple[list[datetime], Callable[[], Awaitable[None]]]:
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    return fired, job


def events(logs: list[Any], name: str) -> list[Any]:
    return [e for e in logs if e["event"] == name]


async def tick(clock: FakeClock, fired: list[datetime], seconds: int) -> None:
    """Let `seconds` pass one at a time, each time until its fire ran."""
    for _ in range(seconds):
        count = len(fired)
        clock.advance(SECOND)
        await until(lambda count=count: len(fired) > count)  # type: ignore[misc]


async def test_a_forward_step_on_a_per_second_job_gives_one_coalesced_run(tmp_path: Path) -> None:
    """+2 h on a per-second job: one run at the new time, no catch-up flood, no skipped rows,
    one warning with both times; then one run a second again."""
    fired, job = recorder()
    clock = FakeClock(START)
    with captured_logs() as logs:
        async with running(
            workflow(job, "* * * * * *", overlap="allow"), tmp_path, clock=clock, autojump=False
        ):
            await tick(clock, fired, 3)
            clock.set(clock.now() + 2 * HOUR)
            await until(lambda: len(fired) >= 4)
            await tick(clock, fired, 2)
    jumped = START + 3 * SECOND + 2 * HOUR
    assert fired == [START + n * SECOND for n in (1, 2, 3)] + [
        jumped + n * SECOND for n in (0, 1, 2)
    ]
    assert all(r.status == "succeeded" for r in runs(tmp_path))
    [step] = events(logs, "wall clock stepped forward: fires coalesced")
    stepped = datetime.fromisoformat(step["step_to"]) - datetime.fromisoformat(step["step_from"])
    assert stepped == 2 * HOUR


async def test_a_backward_step_runs_a_wildcard_job_on_the_new_wall_time(tmp_path: Path) -> None:
    """-2 h (< 3 h) on a per-second job: logged with both times, and the job goes on at once
    on the new wall time (cronie's rule), not silent for two hours."""
    fired, job = recorder()
    clock = FakeClock(START)
    with captured_logs() as logs:
        async with running(
            workflow(job, "* * * * * *", overlap="allow"), tmp_path, clock=clock, autojump=False
        ):
            await tick(clock, fired, 3)
            clock.set(clock.now() - 2 * HOUR)
            await anyio.sleep(0.05)  # let the trigger see the step
            await tick(clock, fired, 2)
    back = START + 3 * SECOND - 2 * HOUR
    assert fired[3:] == [back + SECOND, back + 2 * SECOND]
    [step] = events(logs, "wall clock stepped back")
    assert step["resumes"] == "on the new wall time"


@pytest.mark.parametrize(("back", "repeats"), [(2, False), (4, True)])
async def test_a_backward_step_repeats_a_fixed_time_job_only_on_a_reset(
    tmp_path: Path, back: int, repeats: bool
) -> None:
    """A daily 17:00 job, the clock set back after its run: under 3 h the 17:00 fire does not
    run again the same day; 3 h or more is a reset and it does (cronie)."""
    fired, job = recorder()
    start = START.replace(hour=16, minute=59)
    clock = FakeClock(start)
    async with running(
        workflow(job, "0 17 * * *", overlap="allow"), tmp_path, clock=clock, autojump=False
    ):
        clock.advance(MINUTE)
        await until(lambda: len(fired) >= 1)
        clock.set(clock.now() - back * HOUR)
        await anyio.sleep(0.05)  # let the trigger see the step
        clock.advance(back * HOUR)  # 17:00 again on the wall clock
        if not repeats:
            await anyio.sleep(0.05)
            clock.advance(timedelta(days=1))
        await until(lambda: len(fired) >= 2)
    today = start.replace(minute=0, hour=17)
    assert fired[:2] == [today, today if repeats else today + timedelta(days=1)]


async def test_a_saved_last_fire_in_the_future_is_an_error_and_not_trusted(
    tmp_path: Path,
) -> None:
    """The hourly job ran its 17:00 fire two hours early (clock +2 h, then corrected): at the
    restart the saved 17:00 is in the future. Logged as an error with both times; 16:00 and
    17:00 still run at their real times instead of two silent hours."""
    store = StateStore(tmp_path / "state.db")
    now = START.replace(hour=15, minute=5)
    store.set_state("w", "job", "last_fire", (now + 2 * HOUR).replace(minute=0).isoformat())
    store.close()
    fired, job = recorder()
    with captured_logs() as logs:
        async with running(workflow(job, "0 * * * *"), tmp_path, clock=FakeClock(now)):
            await until(lambda: len(fired) >= 2)
    assert fired[:2] == [now.replace(hour=16, minute=0), now.replace(hour=17, minute=0)]
    [error] = events(logs, "saved last fire is in the future: resuming from the current time")
    assert error["log_level"] == "error" and error["now"] == now.isoformat()


async def test_a_step_and_its_correction_do_not_skip_real_hours(tmp_path: Path) -> None:
    """While running: +2 h (17:00 runs early, coalesced), then -2 h: the hourly job runs on the
    new wall time, so the real 16:00 and 17:00 are not lost."""
    fired, job = recorder()
    clock = FakeClock(START.replace(hour=15, minute=59))
    async with running(
        workflow(job, "0 * * * *", overlap="allow"), tmp_path, clock=clock, autojump=False
    ):
        clock.advance(MINUTE)
        await until(lambda: len(fired) >= 1)  # 16:00
        clock.set(clock.now() + 2 * HOUR)  # 18:00: runs early
        await until(lambda: len(fired) >= 2)
        clock.set(clock.now() - 2 * HOUR)  # corrected: 16:00 again
        for hours in (1, 2):
            await anyio.sleep(0.05)  # let the trigger see the step, or its last run
            clock.advance(HOUR)
            await until(lambda hours=hours: len(fired) >= 2 + hours)  # type: ignore[misc]
    assert [t.hour for t in fired] == [16, 18, 17, 18]


@pytest.mark.parametrize("catchup", ["none", "coalesce"])
async def test_long_downtime_respects_the_grace_exactly(tmp_path: Path, catchup: str) -> None:
    """A per-second job down 2 h with a 60 s grace: no fire older than the grace runs, however
    many fires the downtime held (7,200, past any iteration bound)."""
    fired, job = recorder()
    wf = workflow(job, "* * * * * *", catchup=catchup, misfire_grace=60)
    async with running(wf, tmp_path):
        await until(lambda: len(fired) >= 2)
    restart = fired[-1] + 2 * HOUR + timedelta(milliseconds=500)
    fired.clear()
    async with running(wf, tmp_path, clock=FakeClock(restart)):
        await until(lambda: len(fired) >= 3)
    assert all(restart - t <= timedelta(seconds=60) for t in fired)
    expected_first = restart.replace(microsecond=0) + (SECOND if catchup == "none" else 0 * SECOND)
    assert fired[0] == expected_first


async def test_catch_up_all_is_bounded_with_one_summary_record(tmp_path: Path) -> None:
    """`catchup="all"`, no grace, 2 h down on a per-second job: the newest 1,000 fires run in
    order, the 6,200 older ones are ONE skipped record, not 6,200 rows."""
    fired, job = recorder()
    wf = workflow(job, "* * * * * *", catchup="all", misfire_grace=None)
    async with running(wf, tmp_path):
        await until(lambda: len(fired) >= 1)
    last = fired[-1]
    fired.clear()
    restart = last + 2 * HOUR
    async with running(wf, tmp_path, clock=FakeClock(restart)):
        await until(lambda: len(fired) >= 1001, timeout=60)
    assert fired[:1000] == [restart - (999 - n) * SECOND for n in range(1000)]
    skipped = [r for r in runs(tmp_path) if r.status == "skipped"]
    assert len(skipped) == 1 and "6200 fires from" in (skipped[0].error or "")


async def test_a_late_loop_is_not_a_clock_step_and_every_fire_is_recorded(
    tmp_path: Path,
) -> None:
    """Time passes (wall and monotonic alike) while the trigger could not run: no "clock
    stepped" warning; the newest due fire runs, every other one has a skipped record."""
    fired, job = recorder()
    clock = FakeClock(START)
    with captured_logs() as logs:
        async with running(
            workflow(job, "* * * * * *", overlap="allow"), tmp_path, clock=clock, autojump=False
        ):
            clock.advance(1)
            await until(lambda: len(fired) >= 1)
            clock.advance(5)  # the loop "sleeps" through five fires
            await until(lambda: len(fired) >= 2 and len(runs(tmp_path)) >= 6)
    assert not [e for e in logs if "stepped" in e["event"] or "jumped" in e["event"]]
    assert events(logs, "trigger woke late: fires came due meanwhile")
    by_time = {r.scheduled_at: r.status for r in runs(tmp_path)}
    assert by_time == {
        START + n * SECOND: "succeeded" if n in (1, 6) else "skipped" for n in range(1, 7)
    }
