"""The change-stream trigger end to end: pymongo against mockupdb, commands asserted exactly.

Every test runs a real `Runtime` on the real clock (driver calls run in threads, so no fake
clock) with short `max_await_time`s, and every wait is bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from dataflow import Workflow, current_run, mongodb_change_stream
from dataflow._core.handlers import call_sync
from dataflow.runtime import _dispatcher
from dataflow.state import StateStore
from dataflow.triggers._changestream.checkpoint import loads
from tests._change_stream_peer import (
    FakeOplog,
    change_streams,
    new_runtime,
    open_oplog,
    position_of,
    run_to_end,
    serving,
    token,
    wait_for,
)
from tests._mockupdb_peer import HANGUP, body, command_error
from tests._runtime import captured_logs

pytestmark = pytest.mark.anyio
FAST: dict[str, Any] = {"max_await_time": 0.05, "checkpoint_interval": 0.05}


class Crash(BaseException):
    """Stands in for the process dying (kill -9) inside a handler: nothing after it runs."""


def _dying(handler: Callable[..., Any], args: tuple[Any, ...]) -> BaseException | None:
    """`call_sync` for a process that dies with its handler: a Crash is not recorded, it
    goes up (a handler's own BaseException only fails its run)."""
    error = call_sync(handler, args)
    if isinstance(error, Crash):
        raise error
    return error


def recorder(oplog: FakeOplog, *, crash_at: int | None = None, **options: Any) -> Any:
    """A workflow whose handler records each event's position; it "dies" at `crash_at` once."""
    options = FAST | options

    class Shop(Workflow):
        workflow_name = "shop"
        seen: list[int]

        def __init__(self) -> None:
            self.seen = []
            self.crashed = False

        @mongodb_change_stream(oplog.mongo.url("shop"), "shop", "orders", name="sync", **options)
        def sync(self, change_event: dict[str, Any]) -> None:
            n = int(change_event["_id"]["_data"][2:], 16)
            self.seen.append(n)
            if n == crash_at and not self.crashed:
                self.crashed = True
                raise Crash

    return Shop()


def saved_token(state: Path, namespace: str = "shop.orders") -> Any:
    store = StateStore(state)
    try:
        raw = store.get_state("shop", "sync", f"resume_token:{namespace}")
    finally:
        store.close()
    return None if raw is None else loads(raw)


async def test_sends_change_stream_stage_with_operation_type_match(tmp_path: Path) -> None:
    """The aggregate carries `$changeStream` with the options, then `$match` on the types."""
    with open_oplog() as oplog:
        flow = recorder(oplog, operation_types=["update", "replace"], full_document="updateLookup")
        async with serving(flow, tmp_path / "state.db"):
            oplog.append("insert")
            oplog.append("update")
            await wait_for(lambda: flow.seen == [2])
        aggregate = body(oplog.mongo.commands("aggregate")[0])
        get_more = body(oplog.mongo.commands("getMore")[0])
    assert aggregate == {
        "aggregate": "orders",
        "pipeline": [
            {"$changeStream": {"fullDocument": "updateLookup"}},
            {"$match": {"operationType": {"$in": ["update", "replace", "invalidate"]}}},
        ],
        "cursor": {},
    }
    assert get_more == {"getMore": 1001, "collection": "orders", "maxTimeMS": 50}


async def test_first_start_saves_the_opening_position_then_each_handled_token(
    tmp_path: Path,
) -> None:
    """No saved token: watch from now, and save that position at once (a crash before the first
    event must not skip events that arrive meanwhile); then save after each handled event."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        oplog.updates(3)  # history before the first start: not delivered
        flow = recorder(oplog)
        async with serving(flow, state):
            assert saved_token(state) == token(3)
            oplog.updates(2)
            await wait_for(lambda: flow.seen == [4, 5])
            await wait_for(lambda: saved_token(state) == token(5))
    assert change_streams(oplog.mongo) == [{}]


async def test_sync_handler_runs_inline_in_the_pump_thread_with_run_context(
    tmp_path: Path,
) -> None:
    """One thread for every event (no hop per event), `current_run()` carries the event, and
    log lines inside the handler carry workflow, trigger and run_id."""
    with open_oplog() as oplog:
        runs: list[Any] = []

        class Shop(Workflow):
            workflow_name = "shop"
            threads: ClassVar[set[int]] = set()

            @mongodb_change_stream(oplog.mongo.url("shop"), "shop", "orders", name="sync", **FAST)
            def sync(self, change_event: dict[str, Any]) -> None:
                self.threads.add(threading.get_ident())
                runs.append(current_run())
                from dataflow.utils import get_logger

                get_logger("test").info("handled", n=change_event["documentKey"]["_id"])

        flow = Shop()
        with captured_logs() as logs:
            async with serving(flow, tmp_path / "state.db"):
                oplog.updates(5)
                await wait_for(lambda: len(runs) == 5)
    assert len(Shop.threads) == 1
    assert [r.payload["documentKey"]["_id"] for r in runs] == [1, 2, 3, 4, 5]
    assert runs[0].scheduled_at is not None and runs[0].scheduled_at.tzinfo is not None
    handled = [entry for entry in logs if entry["event"] == "handled"]
    assert [entry["run_id"] for entry in handled] == [r.run_id for r in runs]
    assert {(entry["workflow"], entry["trigger"]) for entry in handled} == {("shop", "sync")}


async def test_async_handler_runs_on_the_loop_in_order(tmp_path: Path) -> None:
    with open_oplog(batch_size=7) as oplog:
        seen: list[int] = []

        class Shop(Workflow):
            workflow_name = "shop"

            @mongodb_change_stream(oplog.mongo.url("shop"), "shop", "orders", name="sync", **FAST)
            async def sync(self, change_event: dict[str, Any]) -> None:
                await anyio.lowlevel.checkpoint()
                seen.append(change_event["documentKey"]["_id"])

        async with serving(Shop(), tmp_path / "state.db"):
            oplog.updates(30)
            await wait_for(lambda: len(seen) == 30)
    assert seen == list(range(1, 31))


@pytest.mark.parametrize(
    "failure",
    [command_error(6, "host unreachable", labels=("ResumableChangeStreamError",)), HANGUP],
    ids=["resumable-error", "closed-connection"],
)
async def test_resumable_getmore_error_reopens_with_resume_after_the_last_token(
    tmp_path: Path, failure: Any
) -> None:
    """pymongo resumes by itself: a new aggregate with `resumeAfter` = the last token it gave us,
    which is the last one handled; no event is lost or repeated."""
    with open_oplog() as oplog:
        flow = recorder(oplog)
        async with serving(flow, tmp_path / "state.db"):
            oplog.updates(3)
            await wait_for(lambda: flow.seen == [1, 2, 3])
            oplog.mongo.script("getMore", failure)
            await wait_for(lambda: len(oplog.mongo.commands("aggregate")) == 2)
            oplog.updates(2)
            await wait_for(lambda: len(flow.seen) == 5)
    assert flow.seen == [1, 2, 3, 4, 5]
    assert change_streams(oplog.mongo) == [{}, {"resumeAfter": token(3)}]


async def test_crash_then_restart_resumes_after_the_last_handled_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler dies mid-stream (event 37 of 120, batches of 50); a new runtime on the same
    state file resumes with `startAfter` = the token its last batch saved (events are
    saved per batch of `batch_events`, not each: issue 16). Counted end to end: every event
    seen; twice only those after that saved position, up to the one in flight at the crash
    (at most two batches); the batch the crash cut shows as interrupted."""
    monkeypatch.setattr(_dispatcher, "call_sync", _dying)  # nothing runs after the crash
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = recorder(oplog, crash_at=37, batch_events=10)
        failure = await run_to_end(new_runtime(flow, state), lambda: oplog.updates(120))
        assert isinstance(failure, BaseExceptionGroup) and failure.subgroup(Crash) is not None
        saved = position_of(saved_token(state))
        assert saved <= 36
        first_run = list(flow.seen)
        flow.seen.clear()
        async with serving(flow, state) as runtime:
            await wait_for(lambda: len(flow.seen) == 120 - saved)
            interrupted = runtime.state.runs("shop", "sync", failed_only=True, limit=1)
    assert change_streams(oplog.mongo)[-1] == {"startAfter": token(saved)}
    assert first_run == list(range(1, 38))
    everything = first_run + flow.seen
    assert sorted(set(everything)) == list(range(1, 121))  # none lost
    replayed = sorted(n for n in set(everything) if everything.count(n) > 1)
    assert replayed == list(range(saved + 1, 38)) and len(replayed) <= 2 * 10
    assert interrupted[0].status == "interrupted"


@pytest.mark.parametrize(
    ("types", "handled"),
    [(["update"], [1, 2, 5, 6]), (None, [1, 2, 3, 5, 6])],
    ids=["filtered", "all"],
)
async def test_invalidate_reopens_with_start_after_and_logs_it(
    tmp_path: Path, types: list[str] | None, handled: list[int]
) -> None:
    """A drop invalidates the stream: the trigger saves the invalidate token and reopens with
    `startAfter` (a `resumeAfter` would be refused); events of the new collection flow on. The
    handler sees the `drop` event if it asked for it, never the `invalidate`."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = recorder(oplog, operation_types=types)
        with captured_logs() as logs:
            async with serving(flow, state):
                oplog.updates(2)
                invalidated = oplog.drop()
                oplog.updates(2)
                await wait_for(lambda: flow.seen == handled)
                await wait_for(lambda: saved_token(state) == token(6))
    assert change_streams(oplog.mongo)[:2] == [{}, {"startAfter": invalidated}]
    warning = next(e for e in logs if e["event"].startswith("change stream invalidated"))
    assert warning["log_level"] == "warning" and warning["namespace"] == "shop.orders"


async def test_idle_stream_saves_the_post_batch_token_periodically(tmp_path: Path) -> None:
    """No matching event for a while, but the oplog moves (other operations): the post-batch
    resume token is saved, so a quiet stream keeps a position inside the oplog window."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = recorder(oplog, operation_types=["delete"], checkpoint_interval=0.1)
        async with serving(flow, state):
            oplog.updates(40)
            await wait_for(lambda: saved_token(state) == token(40))
    assert flow.seen == []


async def test_a_stream_without_a_saved_position_says_where_it_starts(tmp_path: Path) -> None:
    """No saved position looks the same for a new stream and for a renamed workflow or a lost
    state file: the first start warns (starting from now), a restart with a position does not."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = recorder(oplog)
        with captured_logs() as first:
            async with serving(flow, state):
                oplog.updates(1)
                await wait_for(lambda: flow.seen == [1])
        with captured_logs() as second:
            async with serving(recorder(oplog), state):
                pass
    opened = [e for e in first if e["event"].startswith("change stream open")]
    assert [(e["event"], e["log_level"], e["starting_from"]) for e in opened] == [
        ("change stream open with no saved position", "warning", "now")
    ]
    reopened = [e for e in second if e["event"].startswith("change stream open")]
    assert [(e["event"], e["starting_from"]) for e in reopened] == [
        ("change stream open", "saved position")
    ]
