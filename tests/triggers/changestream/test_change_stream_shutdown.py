"""Stopping a change-stream trigger: an idle stream stops within `max_await_time`, an event in
hand is finished first (at-least-once), and past the grace period the handler is cancelled and
its event left unsaved, so it is delivered again."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from dataflow import Workflow, current_run, mongodb_change_stream
from dataflow.state import StateStore
from dataflow.triggers._changestream.checkpoint import loads
from tests._change_stream_peer import new_runtime, open_oplog, token, wait_for

pytestmark = pytest.mark.anyio
FAST: dict[str, Any] = {"max_await_time": 0.05, "checkpoint_interval": 0.05}


def saved(state: Path) -> Any:
    store = StateStore(state)
    try:
        return loads(store.get_state("shop", "sync", "resume_token:shop.orders") or "null")
    finally:
        store.close()


async def stop_and_time(runtime: Any, ready: Any, feed: Any = None, timeout: float = 5.0) -> float:
    """Run, `feed()` once started, stop once `ready()`; return the seconds stop() took."""
    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            await wait_for(runtime.started.is_set)
            if feed is not None:
                feed()
            await wait_for(ready)
            started = time.monotonic()
            runtime.stop()
    elapsed = time.monotonic() - started
    runtime.state.close()
    return elapsed


async def test_stop_while_idle_lands_within_max_await_time(tmp_path: Path) -> None:
    """With the default `max_await_time` of 1 s, a stop while a getMore waits ends the run in
    well under 2 s, and the cursor is killed."""
    with open_oplog() as oplog:
        source = oplog.mongo.url("shop")

        class Shop(Workflow):
            workflow_name = "shop"

            @mongodb_change_stream(source, "shop", "orders", name="sync")
            def sync(self, change_event: dict[str, Any]) -> None:
                pass

        runtime = new_runtime(Shop(), tmp_path / "state.db")
        elapsed = await stop_and_time(runtime, lambda: len(oplog.mongo.commands("getMore")) >= 2)
        assert elapsed < 2.0
        assert oplog.mongo.wait_for("killCursors")


async def test_stop_finishes_the_event_in_hand_and_saves_it(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        in_handler = threading.Event()
        seen: list[int] = []

        class Shop(Workflow):
            workflow_name = "shop"

            @mongodb_change_stream(oplog.mongo.url("shop"), "shop", "orders", name="sync", **FAST)
            def sync(self, change_event: dict[str, Any]) -> None:
                in_handler.set()
                time.sleep(0.3)
                seen.append(change_event["documentKey"]["_id"])

        runtime = new_runtime(Shop(), state)
        await stop_and_time(runtime, in_handler.is_set, lambda: oplog.updates(3))
        assert in_handler.is_set()
    assert seen == [1]
    assert saved(state) == token(1)


async def test_past_grace_a_sync_handler_sees_cancelled_and_its_event_stays_unsaved(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        observed: list[bool] = []
        in_handler = threading.Event()

        class Shop(Workflow):
            workflow_name = "shop"

            @mongodb_change_stream(oplog.mongo.url("shop"), "shop", "orders", name="sync", **FAST)
            def sync(self, change_event: dict[str, Any]) -> None:
                in_handler.set()
                deadline = time.monotonic() + 5
                while not current_run().cancelled and time.monotonic() < deadline:
                    time.sleep(0.01)
                observed.append(current_run().cancelled)

        runtime = new_runtime(Shop(), state, grace=0.2)
        elapsed = await stop_and_time(runtime, in_handler.is_set, lambda: oplog.updates(1))
        await wait_for(lambda: bool(observed))
    assert 0.2 <= elapsed < 1.5
    assert observed == [True]
    assert saved(state) == token(0)  # the opening position: event 1 comes again next start
    store = StateStore(state)
    assert [run.status for run in store.runs("shop", "sync")] == ["cancelled"]
    store.close()


async def test_past_grace_an_async_handler_is_cancelled_and_recorded(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        started = anyio.Event()

        class Shop(Workflow):
            workflow_name = "shop"

            @mongodb_change_stream(oplog.mongo.url("shop"), "shop", "orders", name="sync", **FAST)
            async def sync(self, change_event: dict[str, Any]) -> None:
                started.set()
                await anyio.sleep(30)

        runtime = new_runtime(Shop(), state, grace=0.2)
        elapsed = await stop_and_time(runtime, started.is_set, lambda: oplog.updates(1))
    store = StateStore(state)
    [run] = store.runs("shop", "sync")
    store.close()
    assert 0.2 <= elapsed < 1.5
    assert run.status == "cancelled"
    assert saved(state) == token(0)
