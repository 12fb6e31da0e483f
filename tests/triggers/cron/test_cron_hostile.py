"""The cron trigger in a hostile world, on the fake clock: wall-clock steps both ways, a saved
last fire in the future, long downtime, many runs under `overlap="allow"`."""

from __future__ import annotations

import gc
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dataflow import current_run
from dataflow.triggers.base import RunHandle
from tests._runtime import running, until
from tests.triggers.cron.test_cron_policies import runs, workflow

pytestmark = pytest.mark.anyio
SECOND = timedelta(seconds=1)


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
