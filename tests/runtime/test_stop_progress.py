"""After a stop, the log names each run the grace period waits for, and the seconds left."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from dataflow import Workflow, cronjob, current_run
from dataflow.runtime._stopping import PROGRESS_EVERY
from dataflow.testing import FakeClock
from tests._runtime import START, captured_logs, running, until

pytestmark = pytest.mark.anyio

_WAITING = "stopping: waiting for run"


def waiting(logs: list[Any]) -> list[Any]:
    return [e for e in logs if e["event"] == _WAITING]


async def test_a_stop_names_the_run_it_waits_for_every_few_seconds(tmp_path: Path) -> None:
    """A handler that blocks until released: while the stop waits, one line per round names
    its trigger and run id, how long it has run, and the grace left, which goes down; once it
    returns, the lines stop and the run is recorded as succeeded."""
    release, run_ids = anyio.Event(), list[str]()

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *")
        async def slow(self) -> None:
            run_ids.append(current_run().run_id)
            await release.wait()

    clock = FakeClock(START)
    with captured_logs() as logs:
        async with running(W(), tmp_path, clock=clock, grace=12, autojump=False) as runtime:
            clock.advance(60)  # the 09:01 fire
            await until(lambda: bool(run_ids))
            runtime.stop()
            for rounds in (1, 2):
                await until(lambda: len(waiting(logs)) == rounds)  # noqa: B023
                clock.advance(PROGRESS_EVERY)
            await until(lambda: len(waiting(logs)) == 3)
            release.set()
            await until(lambda: any(e["event"] == "run finished" for e in logs))
    lines = waiting(logs)
    assert [(e["trigger"], e["run_id"]) for e in lines] == [("slow", run_ids[0])] * 3
    assert [e["grace_left"] for e in lines] == [12.0, 7.0, 2.0]
    assert [e["elapsed"] for e in lines] == [0.0, 5.0, 10.0]
    finished = next(e for e in logs if e["event"] == "run finished")
    assert finished["status"] == "succeeded"


async def test_past_the_grace_the_named_run_is_cancelled(tmp_path: Path) -> None:
    """The grace runs on the runtime's clock: when it is over, the lines stop and the run that
    never returned is cancelled and recorded so."""
    started = anyio.Event()

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *")
        async def stuck(self) -> None:
            started.set()
            await anyio.sleep_forever()

    clock = FakeClock(START)
    with captured_logs() as logs:
        async with running(W(), tmp_path, clock=clock, grace=7, autojump=False) as runtime:
            clock.advance(60)
            with anyio.fail_after(5):
                await started.wait()
            runtime.stop()
            await until(lambda: len(waiting(logs)) == 1)
            clock.advance(PROGRESS_EVERY)
            await until(lambda: len(waiting(logs)) == 2)
            clock.advance(timedelta(seconds=2))  # the grace is over
            await until(lambda: any(e["event"] == "run finished" for e in logs))
    assert [e["grace_left"] for e in waiting(logs)] == [7.0, 2.0]
    assert any(e["event"] == "grace period over" for e in logs)
    finished = next(e for e in logs if e["event"] == "run finished")
    assert (finished["trigger"], finished["status"]) == ("stuck", "cancelled")


async def test_a_stop_with_no_run_in_flight_names_none(tmp_path: Path) -> None:
    class W(Workflow):
        workflow_name = "w"

        @cronjob("0 0 1 1 *")
        async def yearly(self) -> None:
            pass

    with captured_logs() as logs:
        async with running(W(), tmp_path, autojump=False):
            pass
    assert any(e["event"] == "workflow stopped" for e in logs)
    assert waiting(logs) == []


@pytest.mark.parametrize(("offset", "grace"), [(1.8984972911602638, 7.5), (0.1234567891, 30.0)])
async def test_the_grace_ends_on_a_fake_clock_whatever_its_rounding(
    offset: float, grace: float
) -> None:
    """A monotonic time that is not a whole microsecond once left the grace a fraction of a
    microsecond short for ever (autojump advancing by nothing): it ends."""
    from dataflow.runtime._stopping import wait_out_grace

    clock = FakeClock(START)
    clock.advance(offset)
    async with clock.autojump():
        with anyio.fail_after(5):
            await wait_out_grace(clock, grace, list)
