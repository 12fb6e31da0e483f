"""The JSON API over real HTTP: workflow, triggers, runs (filtered, paged), dead letters, and
its refusals (404 unknown, 400 wrong type), with no secret in any answer."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from dataflow import Runtime, Workflow, cronjob, current_run
from dataflow.testing import FakeClock
from tests._runtime import START
from tests.web._status import fetch, serving, until

pytestmark = pytest.mark.anyio
SECRET = "s3cr3t-Pa55"


class Shop(Workflow):
    workflow_name = "shop"

    @cronjob("30 2 * * *", timezone="Europe/Berlin")
    async def nightly(self) -> None:
        pass

    @cronjob("* * * * *")
    async def tick(self) -> None:
        if current_run().scheduled_at.minute == 2:  # type: ignore[union-attr]
            raise ValueError(f"bad row from postgresql://etl:{SECRET}@db/shop")


async def fire_three(runtime: Runtime, clock: FakeClock) -> None:
    """Runs at minutes 1, 2 (fails) and 3, each recorded before the clock moves on."""
    for minute in (1, 2, 3):
        clock.set(START + timedelta(minutes=minute))
        await until(lambda m=minute: _recorded(runtime) == m)  # type: ignore[misc]


def _recorded(runtime: Runtime) -> int:
    """Runs of `tick` that ended (else the next fire would be skipped as an overlap)."""
    runs = runtime.state.runs("shop", "tick", limit=10)
    return sum(run.ended_at is not None for run in runs)


async def test_workflow_and_triggers_with_next_fires_in_their_zone(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with serving(Shop(), tmp_path) as (runtime, clock):
        info = (await fetch(runtime, "/api/workflow")).json()
        assert info["name"] == "shop" and info["phase"] == "running"
        assert info["backend"] == anyio_backend and info["actions"] is False
        clock.set(START + timedelta(minutes=1))
        await until(lambda: _recorded(runtime) == 1)
        triggers = {t["name"]: t for t in (await fetch(runtime, "/api/triggers")).json()}
    nightly, tick = triggers["nightly"], triggers["tick"]
    assert nightly["schedule"] == "at 02:30" and nightly["timezone"] == "Europe/Berlin"
    assert nightly["next"][0]["text"] == "2026-03-03 02:30:00 CET"  # START is 09:00 UTC
    assert nightly["next"][0]["local"] == "2026-03-03T02:30:00+01:00"
    assert nightly["last_run"] is None
    assert tick["schedule"] == "every minute" and tick["last_run"]["status"] == "succeeded"


async def test_runs_newest_first_filtered_paged_and_one_by_id(tmp_path: Path) -> None:
    async with serving(Shop(), tmp_path) as (runtime, clock):
        await fire_three(runtime, clock)
        every = (await fetch(runtime, "/api/runs?trigger=tick")).json()
        failed = (await fetch(runtime, "/api/runs?status=failed")).json()
        first = (await fetch(runtime, "/api/runs?trigger=tick&limit=2")).json()
        rest = await fetch(runtime, f"/api/runs?trigger=tick&before={first['next_before']}")
        one = await fetch(runtime, f"/api/runs/{failed['runs'][0]['run_id']}")
    minutes = [run["scheduled_at"][14:16] for run in every["runs"]]
    assert minutes == ["03", "02", "01"] and every["next_before"] is None
    assert [run["status"] for run in failed["runs"]] == ["failed"]
    assert [run["scheduled_at"][14:16] for run in first["runs"]] == ["03", "02"]
    assert [run["scheduled_at"][14:16] for run in rest.json()["runs"]] == ["01"]
    run = one.json()
    assert one.status == 200 and run["error_summary"].startswith("ValueError: bad row")
    assert "Traceback" in run["error"] and SECRET not in one.body and "***" in run["error"]


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/api/runs?limit=ten", 400, "limit='ten' is not valid"),
        ("/api/runs?limit=0", 400, "limit='0' is not valid"),
        ("/api/runs?before=yesterday", 400, "before='yesterday' is not valid"),
        ("/api/runs?status=fine", 400, "status='fine' is not valid"),
        ("/api/runs?trigger=nope", 404, "has no trigger 'nope'"),
        ("/api/runs/0123456789abcdef", 404, "no run '0123456789abcdef'"),
        ("/api/nothing", 404, "no API route"),
        ("/api/triggers/tick/run", 405, "method GET is not allowed"),
    ],
)
async def test_refusals_are_json_errors(tmp_path: Path, path: str, status: int, says: str) -> None:
    async with serving(Shop(), tmp_path) as (runtime, _):
        if path.endswith("/run"):  # a GET where only POST is an action
            answer = await fetch(runtime, path, method="DELETE")
            says = "method DELETE is not allowed"
        else:
            answer = await fetch(runtime, path)
    assert answer.status == status and answer.headers["content-type"] == "application/json"
    assert says in answer.json()["error"]


async def test_dead_letters_show_their_payload_masked(tmp_path: Path) -> None:
    async with serving(Shop(), tmp_path) as (runtime, _):
        payload = f'{{"order": 7, "source": "postgresql://etl:{SECRET}@db/shop"}}'
        await runtime.state.call(
            runtime.state.add_dead_letter, "shop", "tick", payload, "ValueError: no"
        )
        answer = await fetch(runtime, "/api/dead-letters")
    [letter] = answer.json()
    assert letter["trigger"] == "tick" and '"order": 7' in letter["payload"]
    assert SECRET not in answer.body and "***" in letter["payload"]


async def test_health_and_metrics_answer_beside_the_api(tmp_path: Path) -> None:
    async with serving(Shop(), tmp_path) as (runtime, _):
        with anyio.fail_after(10):
            health = await fetch(runtime, "/healthz")
            metrics = await fetch(runtime, "/metrics")
            page = await fetch(runtime, "/")
    assert (health.status, health.body) == (200, '{"status": "running"}\n')
    assert "dataflow_runs_in_flight" in metrics.body
    assert page.status == 200 and "<title>shop · dataflow</title>" in page.body
