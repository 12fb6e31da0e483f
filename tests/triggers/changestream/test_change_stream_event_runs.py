"""Through the real trigger, an async handler's run (built only when asked for, on the loop, in
a trip of several events): `current_run()` gives its own run per event, and the handler's log
lines carry workflow, trigger and that run's id, on both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from dataflow import Workflow, current_run, mongodb_change_stream
from dataflow.utils import get_logger
from tests._change_stream_peer import open_oplog, serving, wait_for
from tests._runtime import captured_logs

pytestmark = pytest.mark.anyio
FAST: dict[str, Any] = {"max_await_time": 0.05, "checkpoint_interval": 0.05}


async def test_an_async_handler_gets_its_own_run_and_logs_under_it(tmp_path: Path) -> None:
    with open_oplog(batch_size=7) as oplog:
        runs: list[Any] = []

        class Shop(Workflow):
            workflow_name = "shop"

            @mongodb_change_stream(oplog.mongo.url("shop"), "shop", "orders", name="feed", **FAST)
            async def feed(self, change_event: dict[str, Any]) -> None:
                await anyio.lowlevel.checkpoint()
                runs.append(current_run())
                get_logger("test").info("handled", n=change_event["documentKey"]["_id"])

        with captured_logs() as logs:
            async with serving(Shop(), tmp_path / "state.db"):
                oplog.updates(10)
                await wait_for(lambda: len(runs) == 10)
    handled = [entry for entry in logs if entry["event"] == "handled"]
    assert [entry["n"] for entry in handled] == list(range(1, 11))
    assert [entry["run_id"] for entry in handled] == [run.run_id for run in runs]
    assert len({run.run_id for run in runs}) == 10
    assert {(entry["workflow"], entry["trigger"]) for entry in handled} == {("shop", "feed")}
    assert [run.payload["documentKey"]["_id"] for run in runs] == list(range(1, 11))
    assert all(run.trigger == "feed" and run.scheduled_at is not None for run in runs)
