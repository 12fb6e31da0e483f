"""GET /api/charts over real HTTP: each trigger's recent runs as points with their duration and
fire lag (start minus scheduled fire time), bounded by `hours` and `limit`, and its refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dataflow import Runtime, Workflow, cronjob, current_run
from dataflow.testing import FakeClock
from tests._runtime import START
from tests.web._status import fetch, serving, until

pytestmark = pytest.mark.anyio
LATE = timedelta(seconds=5)  # each fire's run starts this late: the clock jumps past the fire
TAKES = 2.0  # seconds each run of `tick` takes, by the fake clock


class Timed(Workflow):
    workflow_name = "timed"

    def __init__(self) -> None:
        self.clock: FakeClock | None = None

    @cronjob("* * * * *")
    async def tick(self) -> None:
        assert self.clock is not None
        self.clock.advance(TAKES)
        if current_run().scheduled_at.minute == 2:  # type: ignore[union-attr]
            raise ValueError("bad row")

    @cronjob("30 2 * * *", timezone="Europe/Berlin")
    async def nightly(self) -> None:
        pass


async def _three_late_runs(runtime: Runtime, clock: FakeClock) -> None:
    """Runs of the fires at 09:01, 09:02 (fails) and 09:03, each started 5 s late; and one
    recorded seven hours earlier, outside the default window."""
    old = START - timedelta(hours=7)
    runtime.state.record_run_start("0ld" * 8, "timed", "tick", old, old)
    runtime.state.record_run_end("0ld" * 8, "succeeded", old + timedelta(seconds=1))
    for minute in (1, 2, 3):
        clock.set(START + timedelta(minutes=minute) + LATE)
        await until(lambda m=minute: _ended(runtime) == m + 1)  # type: ignore[misc]


def _ended(runtime: Runtime) -> int:
    return sum(run.ended_at is not None for run in runtime.state.runs("timed", "tick", limit=10))


def _points(answer: dict[str, Any], trigger: str) -> list[dict[str, Any]]:
    return next(t["points"] for t in answer["triggers"] if t["trigger"] == trigger)


async def test_points_carry_duration_and_fire_lag_oldest_first(tmp_path: Path) -> None:
    workflow = Timed()
    async with serving(workflow, tmp_path) as (runtime, clock):
        workflow.clock = clock
        await _three_late_runs(runtime, clock)
        answer = await fetch(runtime, "/api/charts")
        longer = (await fetch(runtime, "/api/charts?hours=8")).json()
        newest = (await fetch(runtime, "/api/charts?limit=2&trigger=tick")).json()
    assert answer.status == 200
    charts = answer.json()
    assert charts["hours"] == 6 and charts["limit"] == 100 and charts["more"] is False
    assert charts["now"] == "2026-03-02T09:03:07+00:00"
    assert charts["since"] == "2026-03-02T03:03:07+00:00"
    assert [t["trigger"] for t in charts["triggers"]] == ["tick", "nightly"]
    points = _points(charts, "tick")
    assert [p["started_at"][11:19] for p in points] == ["09:01:05", "09:02:05", "09:03:05"]
    assert [p["status"] for p in points] == ["succeeded", "failed", "succeeded"]
    assert [p["duration"] for p in points] == [TAKES] * 3
    assert [p["lag"] for p in points] == [LATE.total_seconds()] * 3
    assert _points(charts, "nightly") == []
    assert len(_points(longer, "tick")) == 4  # and the run 7 hours back
    assert _points(longer, "tick")[0]["run_id"] == "0ld" * 8
    assert [t["trigger"] for t in newest["triggers"]] == ["tick"]
    assert [p["started_at"][11:19] for p in _points(newest, "tick")] == ["09:02:05", "09:03:05"]


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("hours=0", 400, "hours='0' is not valid: use 1 to 168"),
        ("hours=soon", 400, "hours='soon' is not valid: use a whole number"),
        ("limit=1001", 400, "limit='1001' is not valid: use 1 to 1000"),
        ("trigger=nope", 404, "workflow 'timed' has no trigger 'nope'"),
    ],
)
async def test_refusals_name_the_problem(
    tmp_path: Path, query: str, status: int, says: str
) -> None:
    async with serving(Timed(), tmp_path) as (runtime, _):
        answer = await fetch(runtime, f"/api/charts?{query}")
    assert answer.status == status
    assert says in answer.json()["error"]
