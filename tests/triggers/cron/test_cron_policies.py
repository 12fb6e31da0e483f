"""Cron run policies on both backends under the fake clock: overlap, catch-up, jitter,
timeout, retries, drift and wall-clock steps."""

from __future__ import annotations

import inspect
import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from dataflow import Workflow, cronjob, current_run
from dataflow.state import RunRecord, StateStore
from dataflow.testing import FakeClock
from tests._runtime import START, captured_logs, running, until

pytestmark = pytest.mark.anyio
MINUTE = timedelta(minutes=1)


def runs(tmp_path: Path, trigger: str = "job") -> list[RunRecord]:
    store = StateStore(tmp_path / "state.db")
    try:
        return list(reversed(store.runs("w", trigger, limit=10_000)))
    finally:
        store.close()


def last_fire(tmp_path: Path) -> datetime | None:
    store = StateStore(tmp_path / "state.db")
    try:
        raw = store.get_state("w", "job", "last_fire")
    finally:
        store.close()
    return None if raw is None else datetime.fromisoformat(raw)


def scheduled(records: list[RunRecord], status: str) -> list[datetime | None]:
    return [r.scheduled_at for r in records if r.status == status]


def workflow(handler: Callable[..., Any], expression: str = "* * * * *", **policy: Any) -> Workflow:
    """A one-trigger workflow named "w" whose trigger "job" calls `handler`."""
    job = cronjob(expression, name="job", **policy)(_fresh_function(handler))
    cls = type("W", (Workflow,), {"workflow_name": "w", "job": staticmethod(job)})
    return cls()  # type: ignore[no-any-return]


def _fresh_function(handler: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(handler):

        async def call_async() -> None:
            await handler()

        return call_async

    def call() -> None:
        handler()

    return call


class Gate:
    """Async handlers that block until the test releases them, recording fire times."""

    def __init__(self) -> None:
        self.started: list[datetime] = []
        self.release = anyio.Event()

    async def handler(self) -> None:
        self.started.append(current_run().scheduled_at)  # type: ignore[arg-type]
        await self.release.wait()


@pytest.mark.parametrize(
    ("overlap", "expected_started", "expected_status"),
    [
        ("skip", [0], {"skipped": [1, 2, 3]}),
        ("queue_one", [0, 3], {"skipped": [1, 2]}),  # each newer fire replaces the waiting one
        ("queue_all", [0, 1, 2, 3], {}),
        ("cancel_running", [0, 1, 2, 3], {"cancelled": [0, 1, 2]}),
        ("allow", [0, 1, 2, 3], {}),
    ],
)
async def test_overlap_policies(
    tmp_path: Path, overlap: str, expected_started: list[int], expected_status: dict[str, list[int]]
) -> None:
    gate = Gate()
    fires = [START + MINUTE * (n + 1) for n in range(4)]
    wf = workflow(gate.handler, overlap=overlap)
    async with running(wf, tmp_path, autojump=False) as runtime:
        for fire in fires:  # time moves only here, one fire at a time
            runtime.clock.set(fire)  # type: ignore[attr-defined]
            await until(lambda fire=fire: last_fire(tmp_path) == fire)  # type: ignore[misc]
            await anyio.sleep(0.05)  # let the trigger hand the fire to its overlap gate
        gate.release.set()  # let the running and the queued runs through
        await until(lambda: len(gate.started) >= len(expected_started))
        await anyio.sleep(0.05)
    assert gate.started == [fires[i] for i in expected_started]
    records = [
        r for r in runs(tmp_path) if r.scheduled_at is not None and r.scheduled_at <= fires[3]
    ]
    for status, indexes in expected_status.items():
        assert scheduled(records, status) == [fires[i] for i in indexes], status


async def test_catch_up_after_downtime_coalesces_into_one_run(tmp_path: Path) -> None:
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    async with running(workflow(job, misfire_grace=300), tmp_path):
        await until(lambda: len(fired) >= 3)  # 09:01, 09:02, 09:03
    last = max(r.scheduled_at for r in runs(tmp_path) if r.scheduled_at)
    fired.clear()
    restart = FakeClock(last + timedelta(minutes=4, seconds=30))  # 4 fires missed
    async with running(workflow(job, misfire_grace=300), tmp_path, clock=restart):
        await until(lambda: len(fired) >= 2)
    assert fired[:2] == [last + 4 * MINUTE, last + 5 * MINUTE]


@pytest.mark.parametrize(("catchup", "expected"), [("all", [1, 2, 3, 4, 5]), ("none", [5])])
async def test_catch_up_all_or_none(tmp_path: Path, catchup: str, expected: list[int]) -> None:
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    store = StateStore(tmp_path / "state.db")
    store.set_state("w", "job", "last_fire", START.isoformat())
    store.close()
    restart = FakeClock(START + timedelta(minutes=4, seconds=30))
    async with running(workflow(job, catchup=catchup, misfire_grace=600), tmp_path, clock=restart):
        await until(lambda: START + 5 * MINUTE in fired)
    assert fired[: len(expected)] == [START + n * MINUTE for n in expected]


async def test_missed_fires_outside_the_grace_are_not_run(tmp_path: Path) -> None:
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    store = StateStore(tmp_path / "state.db")
    store.set_state("w", "job", "last_fire", START.isoformat())
    store.close()
    restart = FakeClock(START + timedelta(hours=2, seconds=30))
    async with running(workflow(job, misfire_grace=60), tmp_path, clock=restart):
        await until(lambda: len(fired) >= 2)
    # only 11:00 was within 60 s of the restart at 11:00:30; then on schedule
    assert fired[:2] == [START + timedelta(hours=2), START + timedelta(hours=2, minutes=1)]


async def test_a_fire_time_never_runs_twice_across_a_restart(tmp_path: Path) -> None:
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    async with running(workflow(job, misfire_grace=None), tmp_path):
        await until(lambda: len(fired) >= 2)
    done = list(fired)
    restart = FakeClock(done[-1] + timedelta(seconds=30))  # restart within the same minute
    async with running(workflow(job, misfire_grace=None), tmp_path, clock=restart):
        await until(lambda: len(fired) >= len(done) + 2)
    assert len(set(fired)) == len(fired)


async def test_jitter_delays_start_within_bounds(tmp_path: Path) -> None:
    lags: list[float] = []

    async def job() -> None:
        run = current_run()
        lags.append((run.started_at - run.scheduled_at).total_seconds())  # type: ignore[operator]

    async with running(workflow(job, jitter=20), tmp_path):
        await until(lambda: len(lags) >= 30)
    assert all(0 <= lag <= 20 for lag in lags)
    assert len(set(lags)) > 10  # really random, not a constant delay


async def test_timeout_cancels_async_runs_and_flags_sync_runs(tmp_path: Path) -> None:
    async def slow_async() -> None:
        await anyio.sleep_forever()

    flagged = threading.Event()

    def slow_sync() -> None:
        while not current_run().cancelled:
            threading.Event().wait(0.005)
        flagged.set()

    async with running(workflow(slow_async, timeout=0.05), tmp_path):
        await until(lambda: [r.status for r in runs(tmp_path)][:1] == ["timed_out"])
    async with running(workflow(slow_sync, "0 * * * *", timeout=0.05), tmp_path / "b"):
        await until(lambda: [r.status for r in runs(tmp_path / "b")][:1] == ["timed_out"])
    assert flagged.is_set()
    assert "timeout of 0.05 s" in (runs(tmp_path)[0].error or "")


async def test_retries_back_off_and_then_succeed(tmp_path: Path) -> None:
    attempts: list[tuple[int, datetime]] = []
    clock = FakeClock(START)

    def flaky() -> None:
        attempts.append((current_run().attempt, clock.now()))
        if len(attempts) < 3:
            raise ConnectionError("transient")

    wf = workflow(flaky, "0 10 * * *", retries=3, retry_delay=10)
    async with running(wf, tmp_path, clock=clock):
        await until(lambda: len(attempts) >= 3 and runs(tmp_path)[-1].status == "succeeded")
    assert [r.status for r in runs(tmp_path)][:3] == ["failed", "failed", "succeeded"]
    assert [a for a, _ in attempts[:3]] == [1, 2, 3]
    gaps = [(b - a).total_seconds() for (_, a), (_, b) in itertools.pairwise(attempts)]
    assert 5 <= gaps[0] <= 10 and 10 <= gaps[1] <= 20  # exponential, with jitter


async def test_long_runs_never_shift_later_fires(tmp_path: Path) -> None:
    clock = FakeClock(START)
    record: list[tuple[datetime, datetime]] = []

    async def job() -> None:
        run = current_run()
        record.append((run.scheduled_at, run.started_at))  # type: ignore[arg-type]
        await clock.sleep_until(clock.now() + timedelta(seconds=50))  # most of the interval

    async with running(workflow(job, "*/1 * * * *"), tmp_path, clock=clock):
        await until(lambda: len(record) >= 30)
    assert [s for s, _ in record[:30]] == [START + MINUTE * (n + 1) for n in range(30)]
    assert all(started == sched for sched, started in record)


async def test_clock_step_forward_coalesces_and_backward_is_logged(tmp_path: Path) -> None:
    clock = FakeClock(START)
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    with captured_logs() as logs:
        wf = workflow(job, "*/10 * * * *")
        async with running(wf, tmp_path, clock=clock, autojump=False):
            # Each step lands once the previous run FINISHED: the handler's entry is not enough.
            # A step landing while the 09:10 run was still being recorded made its coalesced
            # 10:00 fire "skipped: previous run still in progress" (overlap=skip, as it should),
            # and this test timed out now and then under load.
            await until(lambda: clock.next_deadline() is not None)
            clock.set(START + timedelta(minutes=10))
            await until(lambda: len(fired) >= 1)  # 09:10
            await until(lambda: any(e["event"] == "run finished" for e in logs))
            await until(lambda: clock.next_deadline() is not None)
            # A forward step: 09:20..10:00 missed. Set again (the same time: no new step) if the
            # fire is slow to come, which wakes the trigger once more.
            with anyio.fail_after(10):
                while len(fired) < 2:
                    clock.set(START + timedelta(hours=1, minutes=5))
                    with anyio.move_on_after(0.5):
                        await until(lambda: len(fired) >= 2)
            clock.set(START + timedelta(minutes=15))  # a backward step to 09:15
            await anyio.sleep(0.05)
            assert len(fired) == 2, "no time passed: nothing is due on the new wall time"
            clock.set(START + timedelta(hours=1, minutes=10))
            await until(lambda: len(fired) >= 3)
    assert fired[:3] == [
        START + timedelta(minutes=10),
        START + timedelta(hours=1),
        START + timedelta(hours=1, minutes=10),
    ]
    assert any(e["event"] == "wall clock stepped forward: fires coalesced" for e in logs)
    back = next(e for e in logs if e["event"] == "wall clock stepped back")
    assert back["step_to"] == (START + timedelta(minutes=15)).isoformat()


async def test_a_wildcard_job_fires_on_both_passes_of_a_repeated_hour(tmp_path: Path) -> None:
    """New York, 2026-11-01: 01:00-01:59 happens twice. A `*/20 1 * * *` job runs at 01:00,
    01:20, 01:40 on each pass (real time), in order, none twice."""
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    start = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 00:30 EDT
    wf = workflow(job, "*/20 1 * * *", timezone="America/New_York")
    async with running(wf, tmp_path, clock=FakeClock(start)):
        await until(lambda: len(fired) >= 6)
    assert [t.astimezone(UTC).strftime("%H:%M") for t in fired[:6]] == [
        "05:00",
        "05:20",
        "05:40",
        "06:00",
        "06:20",
        "06:40",
    ]
