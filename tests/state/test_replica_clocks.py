"""Replicas in this process on one PostgreSQL schema, each on a clock of its own: a replica
whose clock runs 5 minutes fast claims no fire (none runs early, none twice), and two replicas
through a spring-forward day run exactly the fires one process on a state file runs, once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import pytest

from dataflow import Runtime, Settings, SystemClock, Workflow, cronjob, current_run
from dataflow._core.clock import Clock
from dataflow.state import PostgresStore
from dataflow.testing import FakeClock
from tests._runtime import until
from tests.state._pg_store import fresh_schema, schema_url

pytestmark = pytest.mark.anyio
NEW_YORK = "America/New_York"
DAY = datetime(2024, 3, 10, 0, 0, tzinfo=ZoneInfo(NEW_YORK))  # 02:00 -> 03:00 in New York
END = DAY + timedelta(hours=6)

Ran = list[tuple[str, datetime, datetime, str]]  # trigger, scheduled at, started at, replica


class Recording(Workflow):
    """Its handlers record each fire, and which replica ran it, in `ran`."""

    workflow_name = "clocks"

    def __init__(self, ran: Ran, replica: str) -> None:
        super().__init__()
        self.ran, self.replica = ran, replica

    def record(self) -> None:
        run = current_run()
        assert run.scheduled_at is not None
        self.ran.append((run.trigger, run.scheduled_at, datetime.now(UTC), self.replica))


class EverySecond(Recording):
    workflow_name = "every_second"

    @cronjob("* * * * * *", timezone="UTC")
    def tick(self) -> None:
        self.record()


class SpringForward(Recording):
    workflow_name = "spring_forward"

    @cronjob("30 2 * * *", timezone=NEW_YORK)
    def daily_0230(self) -> None:
        self.record()

    @cronjob("0 * * * *", timezone=NEW_YORK)
    def hourly(self) -> None:
        self.record()

    @cronjob("*/30 1-3 * * *", timezone=NEW_YORK)
    def half_hourly(self) -> None:
        self.record()


class FastClock(SystemClock):
    """The real clock, 5 minutes ahead (a replica whose time sync is broken)."""

    def now(self) -> datetime:
        return super().now() + timedelta(minutes=5)


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as schema:
        yield schema_url(schema)


def replica(workflow: Recording, clock: Clock, settings: Settings) -> Runtime:
    return Runtime(workflow, settings=settings, clock=clock)


async def test_a_replica_with_a_fast_clock_claims_nothing_early(url: str) -> None:
    """`fast` (5 min ahead) and `true` share a per-second trigger for 3 fires: `true` runs
    each once, never before its time; `fast` wins no claim and knows its clock is ahead."""
    ran: Ran = []
    runtimes = [
        replica(EverySecond(ran, name), clock, Settings(state_url=url, replica_id=name))
        for name, clock in (("true", SystemClock()), ("fast", FastClock()))
    ]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for runtime in runtimes:
                tg.start_soon(runtime.run)
            await until(lambda: len(ran) >= 3, timeout=20)
            for runtime in runtimes:
                runtime.stop()
    fast = runtimes[1].state
    assert isinstance(fast, PostgresStore)
    assert fast.claim_counts()["won"] == 0 and fast.clock_ahead
    won = runtimes[0].metrics.registry.get_sample_value(
        "dataflow_fire_claims_total", {"workflow": "every_second", "outcome": "won"}
    )
    assert won is not None and won >= 3
    fires = [scheduled for _, scheduled, _, _ in ran]
    assert len(fires) == len(set(fires)) and {who for *_, who in ran} == {"true"}
    assert all(started >= scheduled for _, scheduled, started, _ in ran)


async def _run_until_end(runtimes: list[Runtime], clocks: list[FakeClock]) -> None:
    """Every runtime until every clock passed END (fires before END are all claimed)."""
    with anyio.fail_after(60):
        async with AsyncExitStack() as stack:
            for clock in clocks:
                await stack.enter_async_context(clock.autojump())
            tg = await stack.enter_async_context(anyio.create_task_group())
            for runtime in runtimes:
                tg.start_soon(runtime.run)
            await until(lambda: all(clock.now() >= END for clock in clocks), timeout=50)
            for runtime in runtimes:
                runtime.stop()
    for runtime in runtimes:
        runtime.state.close()


def fires(ran: Ran) -> list[tuple[str, datetime]]:
    return sorted((trigger, at) for trigger, at, _, _ in ran if at < END)


async def test_two_replicas_through_spring_forward_run_what_one_process_runs(
    url: str, tmp_path: Path
) -> None:
    """2024-03-10 in New York (02:00 -> 03:00): two replicas on PostgreSQL, each on its own
    fake clock, run the same fires (trigger, time) as one process on a state file, each once:
    the 02:30 job (a time that day lacks) once at 03:00 EDT, the hour the clock jumps to."""
    start = DAY.astimezone(UTC)
    alone: Ran = []
    clock = FakeClock(start)
    settings = Settings(state_path=tmp_path / "state.db", replica_id="alone")
    await _run_until_end([replica(SpringForward(alone, "alone"), clock, settings)], [clock])
    shared: Ran = []
    clocks = [FakeClock(start), FakeClock(start)]
    await _run_until_end(
        [
            replica(SpringForward(shared, name), c, Settings(state_url=url, replica_id=name))
            for name, c in zip("ab", clocks, strict=True)
        ],
        clocks,
    )
    assert fires(shared) == fires(alone)
    assert len(set(fires(shared))) == len(fires(shared))
    local = [(t, at.astimezone(ZoneInfo(NEW_YORK)).strftime("%H:%M")) for t, at in fires(alone)]
    assert local == [
        ("daily_0230", "03:00"),
        ("half_hourly", "01:00"),
        ("half_hourly", "01:30"),
        ("half_hourly", "03:00"),
        ("half_hourly", "03:30"),
        ("hourly", "01:00"),
        ("hourly", "03:00"),
        ("hourly", "04:00"),
        ("hourly", "05:00"),
    ]
