"""One cron scheduler serves all of a runtime's cron triggers, on both backends, under the fake
clock: every trigger serves right after start with a handful of tasks, one wake per due fire
time, one warning per wall-clock step with each trigger's policy applied, and a late loop (no
step) never reported as a step."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import sniffio

from dataflow import Workflow, cronjob, current_run
from dataflow.state import RunRecord, StateStore
from dataflow.testing import FakeClock
from dataflow.triggers._cron.steps import LateReport
from tests._runtime import START, captured_logs, running, until

pytestmark = pytest.mark.anyio
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
Fired = list[tuple[str, datetime, datetime]]  # (trigger, scheduled_at, started_at)


class CountingClock(FakeClock):
    """A fake clock that counts monotonic sleeps: the cron scheduler's wakes."""

    sleeps = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        await super().sleep(seconds)


def many(
    expressions: list[str], fired: Fired, then: Callable[[], object] = list, **policy: Any
) -> Workflow:
    """A workflow "w" with one trigger `job_<i>` per expression, each recording its runs in
    `fired` (and calling `then` after)."""

    def handler(index: int) -> Callable[[], Any]:
        async def job() -> None:
            run = current_run()
            fired.append((run.trigger, run.scheduled_at, run.started_at))  # type: ignore[arg-type]
            then()

        job.__name__ = job.__qualname__ = f"job_{index}"
        return job

    namespace: dict[str, Any] = {"workflow_name": "w"}
    for i, expression in enumerate(expressions):
        namespace[f"job_{i}"] = staticmethod(cronjob(expression, **policy)(handler(i)))
    return type("Many", (Workflow,), namespace)()  # type: ignore[no-any-return]


def tasks_alive() -> int:
    if sniffio.current_async_library() == "trio":
        import trio

        def count(task: trio.lowlevel.Task) -> int:
            children = [t for nursery in task.child_nurseries for t in nursery.child_tasks]
            return 1 + sum(count(child) for child in children)

        root = trio.lowlevel.current_root_task()
        assert root is not None
        return count(root)
    import asyncio

    return len(asyncio.all_tasks())


def runs(tmp_path: Path) -> list[RunRecord]:
    store = StateStore(tmp_path / "state.db")
    try:
        return store.runs("w", limit=100_000)
    finally:
        store.close()


async def test_two_thousand_triggers_serve_at_once_and_fire_once_each_at_their_time(
    tmp_path: Path,
) -> None:
    """2,000 daily triggers over the 60 minutes of 10:00: serving as soon as the runtime is
    started, with a few tasks (not three per trigger); each fires once, at its time; the
    scheduler sleeps once per due fire time (61 here), not once per trigger."""
    fired: Fired = []
    clock = CountingClock(START)
    sleeps: list[int] = []  # the scheduler's sleeps when the 2,000th fire ran

    def count_sleeps() -> None:
        if len(fired) == 2000:
            sleeps.append(clock.sleeps)

    wf = many([f"{i % 60} 10 * * *" for i in range(2000)], fired, count_sleeps)
    async with running(wf, tmp_path, clock=clock) as runtime:
        assert runtime.started.is_set() and tasks_alive() < 100  # was 3 per trigger
        await until(lambda: bool(sleeps), timeout=60)
    first_day = [f for f in fired if f[1] < START + timedelta(days=1)]
    assert len(first_day) == 2000 == len({name for name, _, _ in first_day})
    for name, scheduled, started in first_day:
        assert scheduled == START.replace(hour=10, minute=int(name[4:]) % 60)
        assert started == scheduled
    assert sleeps[0] <= 61 + 5  # a sleep per fire time (+ a few to spare), not per trigger


async def test_a_wall_step_is_logged_once_and_each_trigger_applies_its_policy(
    tmp_path: Path,
) -> None:
    """200 hourly (wildcard) and 200 daily 10:mm (fixed-time) triggers. +2 h: ONE forward
    warning, and every trigger runs one coalesced fire. Then -1 h: ONE backward warning; an
    hour later every wildcard trigger has run its fire again on the new wall time, and no
    fixed-time trigger has repeated."""
    fired: Fired = []
    clock = FakeClock(START + 30 * SECOND)
    hourly = [f"{i % 60} * * * *" for i in range(200)]
    daily = [f"{i % 60} 10 * * *" for i in range(200)]
    with captured_logs() as logs:
        wf = many(hourly + daily, fired, overlap="allow")  # a run still ending is no overlap
        async with running(wf, tmp_path, clock=clock, autojump=False):
            clock.set(START + 2 * HOUR + 30 * SECOND)  # 11:00:30
            await until(lambda: len(fired) >= 400, timeout=60)
            clock.set(START + HOUR + 30 * SECOND)  # back to 10:00:30
            await until(lambda: any(e["event"] == "wall clock stepped back" for e in logs))
            clock.advance(HOUR)
            await until(lambda: len(fired) >= 600, timeout=60)
            await anyio.sleep(0.1)  # a fixed-time trigger repeating would show now
    steps = [e for e in logs if "stepped" in e["event"]]
    assert [e["event"] for e in steps] == [
        "wall clock stepped forward: fires coalesced",
        "wall clock stepped back",
    ]
    assert steps[0]["coalesced"] + steps[0]["firing"] == 400
    by_trigger: dict[str, list[datetime]] = {}
    for name, scheduled, _ in fired:
        by_trigger.setdefault(name, []).append(scheduled)
    for i in range(400):
        minute = i % 200 % 60
        coalesced = START.replace(hour=11 if (i < 200 and minute == 0) else 10, minute=minute)
        assert by_trigger[f"job_{i}"] == [coalesced] * (2 if i < 200 else 1), i


async def test_a_late_loop_with_many_triggers_is_one_late_warning_and_no_step(
    tmp_path: Path,
) -> None:
    """200 per-second triggers, then 5 s pass at once (wall and monotonic alike: an overloaded
    or blocked loop, no step): no "stepped" warning, ONE late warning for all of them; each
    runs its newest fire and records the four others skipped."""
    fired: Fired = []
    clock = FakeClock(START)
    wf = many(["* * * * * *"] * 200, fired, overlap="allow")
    with captured_logs() as logs:
        async with running(wf, tmp_path, clock=clock, autojump=False):
            clock.advance(1)
            await until(lambda: len(fired) >= 200, timeout=60)
            clock.advance(5)
            await until(lambda: len(runs(tmp_path)) >= 200 * 6, timeout=60)
    assert not [e for e in logs if "stepped" in e["event"] or "jumped" in e["event"]]
    [late] = [e for e in logs if e["event"] == "trigger woke late: fires came due meanwhile"]
    assert late["triggers"] == 200 and late["due"] == 200 * 5
    statuses: dict[tuple[str, datetime | None], str] = {
        (r.trigger, r.scheduled_at): r.status for r in runs(tmp_path)
    }
    for i in range(200):
        for n in range(1, 7):
            expected = "succeeded" if n in (1, 6) else "skipped"
            assert statuses[(f"job_{i}", START + n * SECOND)] == expected


def test_late_fires_are_reported_at_once_then_at_most_every_ten_seconds() -> None:
    """An overloaded scheduler is late on every wake: the first late fires are reported at
    once, later ones summed into one line at most every 10 s (monotonic), none dropped."""
    clock = FakeClock(START)
    report = LateReport(clock)
    assert report.report() is None  # nothing late
    report.add("a", 3, 2 * SECOND)
    assert report.report() == {"trigger": "a", "triggers": 1, "due": 3, "late": 2.0}
    report.add("a", 2, SECOND)
    report.add("b", 4, 5 * SECOND)
    clock.advance(9.9)
    assert report.report() is None
    clock.set(START + HOUR)  # a wall step is no time passing
    assert report.report() is None
    clock.advance(0.1)
    assert report.report() == {"triggers": 2, "due": 6, "late": 5.0}
