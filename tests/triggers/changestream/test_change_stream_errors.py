"""The change-stream trigger when things go wrong: network errors pymongo cannot resume, lost
history (286) under both policies, a standalone server (40573), failing handlers (dead letters,
`on_error="stop"`) and re-running a dead letter."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from bson import Timestamp

from dataflow import Runtime, TriggerFailed, Workflow, mongodb_change_stream
from dataflow._core.errors import ChangeStreamUnavailable
from dataflow.runtime._manual import retry_dead_letter
from dataflow.state import StateStore, Store
from dataflow.triggers._changestream.checkpoint import loads
from dataflow.triggers._changestream.trigger import ChangeStreamTrigger
from tests._change_stream_peer import (
    FakeOplog,
    change_streams,
    new_runtime,
    open_oplog,
    run_to_end,
    serving,
    token,
    wait_for,
)
from tests._mockupdb_peer import HANGUP, command_error, open_mock_mongo
from tests._runtime import captured_logs

pytestmark = pytest.mark.anyio
FAST: dict[str, Any] = {
    "max_await_time": 0.05,
    "checkpoint_interval": 0.05,
    "reconnect_delay": 0.05,
}
RESUMABLE = command_error(6, "host unreachable", labels=("ResumableChangeStreamError",))


def shop(source: object, *, fail_on: set[int] | None = None, **options: Any) -> Any:
    """A workflow whose handler records document ids and raises on those in `fail_on`."""
    options = FAST | options

    class Shop(Workflow):
        workflow_name = "shop"

        def __init__(self) -> None:
            self.seen: list[int] = []
            self.fail_on = set(fail_on or ())

        @mongodb_change_stream(source, "shop", "orders", name="sync", **options)
        def sync(self, change_event: dict[str, Any]) -> None:
            n = change_event["documentKey"]["_id"]
            self.seen.append(n)
            if n in self.fail_on:
                raise ValueError(f"cannot sync order {n}")

    return Shop()


def saved_text(store: Store, key: str) -> str:
    """A value the `sync` trigger must have saved."""
    value = store.get_state("shop", "sync", key)
    assert value is not None, key
    return value


def trigger_of(runtime: Any) -> ChangeStreamTrigger:
    found: ChangeStreamTrigger = next(
        t for t in runtime.metrics.streams.triggers if t.name == "sync"
    )
    return found


async def test_network_error_pymongo_cannot_resume_reopens_from_saved_token(
    tmp_path: Path,
) -> None:
    """pymongo's one resume attempt fails too (its aggregate is retried once, then the
    connection drops again): the trigger waits `reconnect_delay` and opens a new stream with
    `startAfter` = the saved token. Nothing is lost."""
    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"))
        with captured_logs() as logs:
            async with serving(flow, tmp_path / "state.db") as runtime:
                oplog.updates(3)
                await wait_for(lambda: flow.seen == [1, 2, 3])
                oplog.mongo.script("getMore", RESUMABLE)
                oplog.mongo.script("aggregate", HANGUP, HANGUP)
                await wait_for(lambda: len(oplog.mongo.commands("aggregate")) == 4)
                oplog.updates(2)
                await wait_for(lambda: len(flow.seen) == 5)
                reopens = trigger_of(runtime).stats.reopens
    assert flow.seen == [1, 2, 3, 4, 5]
    assert change_streams(oplog.mongo) == [
        {},
        {"resumeAfter": token(3)},
        {"resumeAfter": token(3)},
        {"startAfter": token(3)},
    ]
    assert reopens == 1
    warning = next(e for e in logs if e["event"].startswith("change stream interrupted"))
    assert "AutoReconnect" in warning["error"] and warning["retry_in"] == 0.05


async def _handle_five_then_lose_history(oplog: FakeOplog, state: Path, **options: Any) -> Any:
    """Run once (events 1-5 handled and saved), then the oplog rolls over past them."""
    flow = shop(oplog.mongo.url("shop"), **options)
    async with serving(flow, state):
        oplog.updates(5)
        await wait_for(lambda: len(flow.seen) == 5)
    oplog.updates(10)
    oplog.floor = 12  # positions 5..11 are gone: events 6..12 can never be delivered
    return flow


async def test_history_lost_fails_the_trigger_by_default(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = await _handle_five_then_lose_history(oplog, state)
        mark = len(change_streams(oplog.mongo))
        started = time.monotonic()
        failure = await run_to_end(new_runtime(flow, state))
        assert time.monotonic() - started < 2.0
        assert change_streams(oplog.mongo)[mark:] == [{"startAfter": token(5)}]
    assert isinstance(failure, TriggerFailed) and failure.trigger == "sync"
    message = str(failure)
    assert "history lost on shop.orders" in message and "OperationFailure" in message
    assert "on_history_lost='fail'" in message and "\n" not in message


async def test_history_lost_restarts_from_now_with_a_warning_and_a_recorded_gap(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = await _handle_five_then_lose_history(
            oplog, state, on_history_lost="restart_from_now"
        )
        flow.seen.clear()
        mark = len(change_streams(oplog.mongo))
        with captured_logs() as logs:
            async with serving(flow, state) as runtime:
                oplog.updates(2)
                await wait_for(lambda: flow.seen == [16, 17])
                gaps = json.loads(saved_text(runtime.state, "history_gaps:shop.orders"))
                # saved once the batch ends (issue 16: per batch, not per event)
                position = "resume_token:shop.orders"
                await wait_for(lambda: loads(saved_text(runtime.state, position)) == token(17))
                saved = loads(saved_text(runtime.state, position))
                stats = trigger_of(runtime).stats
        assert change_streams(oplog.mongo)[mark:] == [{"startAfter": token(5)}, {}]
    assert saved == token(17) and stats.history_gaps == 1
    assert [gap["lost_after"] for gap in gaps] == [token(5)]
    assert "286" not in gaps[0]["reason"] and "no longer be in the oplog" in gaps[0]["reason"]
    loud = next(e for e in logs if e["event"].startswith("CHANGE STREAM HISTORY LOST"))
    assert loud["log_level"] == "error"


async def test_history_lost_mid_stream_restarts_from_now(tmp_path: Path) -> None:
    """pymongo's own resume meets 286 (the stream was down too long): same policy applies."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"), on_history_lost="restart_from_now")
        async with serving(flow, state):
            oplog.updates(2)
            await wait_for(lambda: flow.seen == [1, 2])
            oplog.floor = 3
            oplog.mongo.script("getMore", RESUMABLE)
            await wait_for(lambda: len(oplog.mongo.commands("aggregate")) == 3)
            oplog.updates(1)
            await wait_for(lambda: flow.seen == [1, 2, 3])
        assert change_streams(oplog.mongo) == [{}, {"resumeAfter": token(2)}, {}]


async def test_standalone_server_fails_the_start_with_a_clear_message(tmp_path: Path) -> None:
    with open_mock_mongo() as mongo:
        mongo.script(
            "aggregate",
            command_error(40573, "The $changeStream stage is only supported on replica sets"),
        )
        started = time.monotonic()
        failure = await run_to_end(new_runtime(shop(mongo.url("shop")), tmp_path / "state.db"))
        elapsed = time.monotonic() - started
    assert isinstance(failure, TriggerFailed)
    assert isinstance(failure.error, ChangeStreamUnavailable)
    assert "is not a replica set or sharded cluster (error 40573" in str(failure)
    assert "--replSet" in str(failure) and "\n" not in str(failure)
    assert elapsed < 2.0


async def batches_ended(runtime: Runtime) -> None:
    """Successes are booked per batch (issue 16): its row shows `running` until the batch ends
    (the stream idle for `checkpoint_interval`), then `succeeded` with its count."""
    await wait_for(lambda: "running" not in {r.status for r in runtime.state.runs("shop")})


async def test_failing_handler_is_retried_then_dead_lettered_and_the_stream_moves_on(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"), fail_on={2}, retries=2, retry_delay=0.01)
        async with serving(flow, state) as runtime:
            oplog.updates(3)
            await wait_for(lambda: flow.seen[-1:] == [3])
            await wait_for(lambda: trigger_of(runtime).stats.events_handled == 2)
            await batches_ended(runtime)
            letters = runtime.state.dead_letters("shop")
            runs = runtime.state.runs("shop", "sync")
            saved = loads(saved_text(runtime.state, "resume_token:shop.orders"))
    assert flow.seen == [1, 2, 2, 2, 3]
    assert [(r.attempt, r.status) for r in reversed(runs)] == [
        (1, "succeeded"),
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (1, "succeeded"),
    ]
    assert saved == token(3)
    [letter] = letters
    event = loads(letter.payload)
    assert event["_id"] == token(2) and isinstance(event["clusterTime"], Timestamp)
    assert letter.trigger == "sync" and "ValueError: cannot sync order 2" in letter.error


async def test_dead_letter_rerun_passes_the_event_with_its_bson_types(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"), fail_on={1}, retry_delay=0.01)
        async with serving(flow, state):
            oplog.updates(1)
            await wait_for(lambda: len(flow.seen) == 4)  # 1 try + 3 retries
        flow.fail_on.clear()
        received: list[Any] = []
        flow.sync = lambda event: received.append(event)  # the fixed handler
        runtime = new_runtime(flow, state)
        try:
            [letter] = runtime.state.dead_letters("shop")
            handle = await retry_dead_letter(runtime, letter.id, startup=False)
            retried = runtime.state.dead_letters("shop", include_retried=True)
        finally:
            runtime.state.close()
    assert handle.outcome is not None and handle.outcome.status == "succeeded"
    assert [r.retry_status for r in retried] == ["succeeded"]
    assert received[0]["_id"] == token(1)
    assert isinstance(received[0]["clusterTime"], Timestamp)


async def test_on_error_stop_stops_the_trigger_without_advancing(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"), fail_on={3}, on_error="stop", retries=0)
        failure = await run_to_end(new_runtime(flow, state), lambda: oplog.updates(5))
        store = StateStore(state)
        saved = loads(saved_text(store, "resume_token:shop.orders"))
        letters = store.dead_letters("shop")
        store.close()
    assert flow.seen == [1, 2, 3]
    assert isinstance(failure, TriggerFailed) and "on_error='stop'" in str(failure)
    assert "ValueError: cannot sync order 3" in str(failure)
    assert saved == token(2) and letters == []


class Hostile(BaseException):
    """Not an Exception: a handler raising it must still only fail its run."""


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "error", [SystemExit(1), KeyboardInterrupt(), Hostile(), GeneratorExit()], ids=repr
)
async def test_a_handler_raising_a_base_exception_dead_letters_the_event(
    tmp_path: Path, kind: str, error: BaseException
) -> None:
    """SystemExit and friends from a change-stream handler (inline in the pump thread, or on
    the loop) follow the retries and the dead-letter policy: no poison pill that kills every
    restart on the same event; the stream moves on."""
    seen: list[int] = []

    def handle(change_event: dict[str, Any]) -> None:
        seen.append(change_event["documentKey"]["_id"])
        if seen[-1] == 2:
            raise error

    async def handle_async(change_event: dict[str, Any]) -> None:
        handle(change_event)

    with open_oplog() as oplog:
        stream = mongodb_change_stream(
            oplog.mongo.url("shop"), "shop", "orders", name="sync", retries=1, **FAST
        )
        handler = stream(handle if kind == "sync" else handle_async)
        flow = type("Shop", (Workflow,), {"workflow_name": "shop", "sync": staticmethod(handler)})
        async with serving(flow(), tmp_path / "state.db") as runtime:
            oplog.updates(3)
            await wait_for(
                lambda: seen[-1:] == [3] and trigger_of(runtime).stats.events_handled == 2
            )
            await batches_ended(runtime)
            letters = runtime.state.dead_letters("shop")
            runs = runtime.state.runs("shop", "sync")
            saved = loads(saved_text(runtime.state, "resume_token:shop.orders"))
    assert seen == [1, 2, 2, 3]
    assert [r.status for r in reversed(runs)] == ["succeeded", "failed", "failed", "succeeded"]
    [letter] = letters
    assert type(error).__name__ in letter.error and saved == token(3)


async def test_an_async_handler_behind_a_wraps_decorator_is_awaited(tmp_path: Path) -> None:
    """The pump asks the same helper as the dispatcher: a wrapped async handler really runs."""
    seen: list[int] = []

    async def handle(change_event: dict[str, Any]) -> None:
        seen.append(change_event["documentKey"]["_id"])

    @functools.wraps(handle)
    def wrapped(change_event: dict[str, Any]) -> Any:
        return handle(change_event)

    with open_oplog() as oplog:
        stream = mongodb_change_stream(
            oplog.mongo.url("shop"), "shop", "orders", name="sync", **FAST
        )
        flow = type(
            "Shop", (Workflow,), {"workflow_name": "shop", "sync": staticmethod(stream(wrapped))}
        )
        async with serving(flow(), tmp_path / "state.db") as runtime:
            oplog.updates(2)
            await wait_for(lambda: trigger_of(runtime).stats.events_handled == 2)
            await batches_ended(runtime)
            runs = runtime.state.runs("shop", "sync")
    assert seen == [1, 2] and {r.status for r in runs} == {"succeeded"}
