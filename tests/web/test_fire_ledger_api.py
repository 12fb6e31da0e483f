"""GET /api/triggers/{name}/fires over real HTTP: the fire ledger with explain's lines, its
`since`/`limit`, and its refusals (404 unknown trigger, 400 not a cron trigger or a bad value)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dataflow import Runtime, Workflow, cronjob, startup
from tests._runtime import START
from tests.web._status import fetch, serving, until

pytestmark = pytest.mark.anyio


class Ticks(Workflow):
    workflow_name = "ticks"

    @startup
    async def prepare(self) -> None:
        pass

    @cronjob("* * * * *", timezone="Europe/Berlin")
    async def tick(self) -> None:
        pass


def _ran(runtime: Runtime, count: int) -> bool:
    runs = runtime.state.runs("ticks", "tick", limit=10)
    return sum(run.ended_at is not None for run in runs) == count


async def test_the_ledger_answers_newest_first_with_lines(tmp_path: Path) -> None:
    async with serving(Ticks(), tmp_path) as (runtime, clock):
        for minute in (1, 2):
            await until(lambda: clock.next_deadline() is not None)
            clock.advance(START + timedelta(minutes=minute) - clock.now())
            await until(lambda m=minute: _ran(runtime, m))  # type: ignore[misc]
        answer = await fetch(runtime, "/api/triggers/tick/fires")
        since = await fetch(runtime, "/api/triggers/tick/fires?since=2026-03-02T09:02:00Z")
        limited = await fetch(runtime, "/api/triggers/tick/fires?limit=1")
    assert answer.status == 200
    ledger = answer.json()
    assert ledger["trigger"] == "tick" and ledger["timezone"] == "Europe/Berlin"
    fires = ledger["fires"]
    assert [f["fire_at"] for f in fires] == [
        "2026-03-02T09:02:00+00:00",
        "2026-03-02T09:01:00+00:00",
    ]
    assert [f["outcome"] for f in fires] == ["ran", "ran"]
    assert fires[0]["local"] == "2026-03-02T10:02:00+01:00"
    assert fires[0]["line"].startswith(f"2026-03-02 10:02 CET: ran: run {fires[0]['run_id'][:8]}")
    assert fires[0]["run"]["status"] == "succeeded"
    assert [f["fire_at"] for f in since.json()["fires"]] == ["2026-03-02T09:02:00+00:00"]
    assert len(limited.json()["fires"]) == 1


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/api/triggers/nope/fires", 404, "workflow 'ticks' has no trigger 'nope'"),
        ("/api/triggers/prepare/fires", 400, "only cron triggers have fire times"),
        ("/api/triggers/tick/fires?limit=0", 400, "limit='0' is not valid"),
        ("/api/triggers/tick/fires?since=soon", 400, "since='soon' is not valid"),
    ],
)
async def test_refusals_name_the_problem(tmp_path: Path, path: str, status: int, says: str) -> None:
    async with serving(Ticks(), tmp_path) as (runtime, _):
        answer = await fetch(runtime, path)
    assert answer.status == status
    assert says in answer.json()["error"]
