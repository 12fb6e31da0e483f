"""A cron fire runs only where `claim_fire` says it was claimed: the runtime's path for a
store shared by replicas, driven here by a store that lets every other fire go elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from dataflow import Runtime, Settings, Workflow, cronjob, current_run
from dataflow.state import FireEntry, RunRecord, SqliteStore
from dataflow.testing import FakeClock
from tests._runtime import START, until

pytestmark = pytest.mark.anyio


class EveryOtherFire(SqliteStore):
    """A store on which another replica claims the fires of odd minutes."""

    def claim_fire(
        self,
        workflow: str,
        trigger: str,
        fire_at: datetime,
        ledger: Sequence[FireEntry] = (),
        *,
        skipped: Sequence[RunRecord] = (),
    ) -> bool:
        mine = fire_at.minute % 2 == 0
        return super().claim_fire(workflow, trigger, fire_at, ledger, skipped=skipped) and mine


async def test_a_fire_claimed_elsewhere_is_not_run_here(tmp_path: Path) -> None:
    """Of minutes 1 to 6 only the even ones run here, none twice; the last fire still moves on
    (the next fire is computed after it, claimed here or not)."""
    ran: list[int] = []

    class Ticker(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *", timezone="UTC")
        def tick(self) -> None:
            scheduled = current_run().scheduled_at
            assert scheduled is not None
            ran.append(scheduled.minute)

    clock = FakeClock(START)
    store = EveryOtherFire(tmp_path / "state.db")
    runtime = Runtime(Ticker(), settings=Settings(), clock=clock, state=store)
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(runtime.run)
        await until(lambda: len(ran) >= 3)
        runtime.stop()
    store.close()
    assert ran[:3] == [2, 4, 6]
    assert len(set(ran)) == len(ran)
