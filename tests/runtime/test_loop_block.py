"""An async handler that blocks the event loop (time.sleep): the block is named, and it is not
mistaken for a clock step. Real time, in-process: the only way to block a real loop."""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from dataflow import Runtime, Settings, Workflow, cronjob
from dataflow._core.clock import SystemClock
from dataflow.runtime._eventpaths import event_on_loop
from dataflow.runtime._loopwatch import watch_event_loop
from dataflow.runtime._runbook import RunBook
from dataflow.state import StateStore
from dataflow.triggers._runs import RunRequest
from tests._runtime import captured_logs

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_blocked_loop_is_named_and_no_fire_goes_unrecorded(tmp_path: Path) -> None:
    """An async run blocks the loop ~1.5 s: one "event loop blocked" line names it; no "clock
    stepped/jumped" line; every fire time of another per-second trigger has a run record."""
    blocked = threading.Event()

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * * *")
        async def blocker(self) -> None:
            if not blocked.is_set():
                blocked.set()
                time.sleep(1.5)  # noqa: ASYNC251 - the mistake under test: blocking the loop

        @cronjob("* * * * * *")
        def tick(self) -> None:
            return None

    runtime = Runtime(W(), settings=Settings(state_path=tmp_path / "state.db"))
    with captured_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            with anyio.fail_after(20):
                while not [e for e in logs if e["event"] == "event loop blocked"]:
                    await anyio.sleep(0.05)
                seen = len(logs)
                while sum(e["event"] == "run finished" for e in logs[seen:]) < 4:
                    await anyio.sleep(0.05)  # a couple more seconds of fires
            runtime.stop()
    [block] = [e for e in logs if e["event"] == "event loop blocked"]
    assert block["by"].startswith("run blocker/") and block["seconds"] >= 1.0
    assert not [e for e in logs if "stepped" in e["event"] or "jumped" in e["event"]]
    store = StateStore(tmp_path / "state.db")
    try:
        records = store.runs("w", "tick", limit=1000)
    finally:
        store.close()
    fires = sorted({r.scheduled_at for r in records if r.scheduled_at is not None})
    assert len(fires) == len(records) and fires
    first, last = fires[0], fires[-1]
    expected = [
        first + timedelta(seconds=n) for n in range(int((last - first).total_seconds()) + 1)
    ]
    assert fires == expected  # each second: run or skipped with a reason, none lost


async def test_an_async_change_event_handler_blocking_the_loop_is_named() -> None:
    """A change event's run is an `EventRun` until something asks for its `Run`: the watch
    names it as it names a cron run (it read `run.trigger`, which an EventRun lacked, and its
    thread died: no block was ever reported again)."""

    async def blocking(event: object) -> None:
        time.sleep(1.6)  # noqa: ASYNC251 - the mistake under test: blocking the loop

    with tempfile.TemporaryDirectory() as folder, captured_logs() as logs:
        store = StateStore(Path(folder) / "s.db")
        book = RunBook("w", store, SystemClock())
        request = RunRequest(trigger="stream", handler=blocking, args=({},), batched=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_event_loop)
            await anyio.sleep(0.6)
            await event_on_loop(book, request)
            with anyio.fail_after(10):
                while not [e for e in logs if e["event"] == "event loop blocked"]:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        store.close()
    [block] = [e for e in logs if e["event"] == "event loop blocked"]
    assert block["by"].startswith("run stream/") and block["seconds"] >= 1.0
