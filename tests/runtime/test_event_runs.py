"""A change event's run is built only when something asks for it (`runtime/_eventrun`): the
handler through `current_run()`, `/healthz` and the metrics through the runs in flight, a
timeout, a failure. Whoever asks first, everyone gets the same run, with the id its log lines
carry; a success that nobody asked about leaves no run record (its batch's row counts it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from dataflow import current_run
from dataflow._core.logs import get_logger
from dataflow._core.run import Run, RunStatus
from dataflow.runtime._dispatcher import Dispatcher
from dataflow.runtime._tally import Tally
from dataflow.state import StateStore
from dataflow.testing import FakeClock
from dataflow.triggers.base import RunPolicy, RunRequest
from tests._runtime import captured_logs

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HAPPENED = datetime(2026, 3, 2, 8, 59, 58, tzinfo=UTC)
EVENT = {"_id": {"_data": "82"}, "operationType": "insert"}


class Folded:
    """A run observer: the successes folded per batch, and the runs told one by one."""

    def __init__(self) -> None:
        self.folded: list[int] = []
        self.finished: list[RunStatus] = []

    def run_started(self, run: Run) -> None:
        return None

    def run_finished(self, run: Run, status: RunStatus, duration: float) -> None:
        self.finished.append(status)

    def runs_folded(self, trigger: str, tally: Tally) -> None:
        self.folded.append(tally.count)

    def run_skipped(self, trigger: str) -> None:
        return None


def dispatcher(tmp_path: Path) -> tuple[Dispatcher, Folded]:
    store = StateStore(tmp_path / "state.db")
    found = Dispatcher("shop", store, FakeClock(NOW), anyio.CapacityLimiter(4))
    observer = Folded()
    found.observers.append(observer)
    return found, observer


def event_request(handler: Callable[..., Any], timeout: float | None = None) -> RunRequest:
    return RunRequest(
        trigger="sync",
        handler=handler,
        args=(EVENT,),
        scheduled_at=HAPPENED,
        policy=RunPolicy(timeout=timeout),
        payload=EVENT,
        batched=True,
    )


async def in_thread(runner: Dispatcher, request: RunRequest, cancel: threading.Event) -> Any:
    return await anyio.to_thread.run_sync(runner.execute_in_thread, request, cancel)


async def test_the_run_a_sync_handler_asks_for_is_the_one_in_flight_and_in_its_log_lines(
    tmp_path: Path,
) -> None:
    runner, observer = dispatcher(tmp_path)
    seen: list[Any] = []

    def handler(event: dict[str, Any]) -> None:
        seen.extend([current_run(), current_run(), runner.book.in_flight()])
        get_logger("test").info("handled")

    with captured_logs() as logs:
        outcome = await in_thread(runner, event_request(handler), threading.Event())
    run, again, in_flight = seen
    assert outcome.status is RunStatus.SUCCEEDED
    assert run is again and in_flight == [run]
    assert (run.trigger, run.workflow, run.attempt) == ("sync", "shop", 1)
    assert run.scheduled_at == HAPPENED and run.payload is EVENT and run.started_at == NOW
    assert not run.cancelled and not run.backfill
    assert [e["run_id"] for e in logs if e["event"] == "handled"] == [run.run_id]
    assert runner.book.in_flight() == [] and runner.state.runs("shop") == []  # counted only
    runner.fold_counts("sync")
    assert observer.folded == [1] and observer.finished == []


async def test_a_run_nobody_asks_for_is_never_built_and_each_event_has_its_own_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, observer = dispatcher(tmp_path)
    built: list[Run] = []
    new_run = runner.book.new_run

    def building(*args: Any, **kwargs: Any) -> Run:
        built.append(new_run(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(runner.book, "new_run", building)

    def handler(event: dict[str, Any]) -> None:
        get_logger("test").info("handled")

    with captured_logs() as logs:
        for _ in range(3):
            outcome = await in_thread(runner, event_request(handler), threading.Event())
            assert outcome.status is RunStatus.SUCCEEDED
    ids = [e["run_id"] for e in logs if e["event"] == "handled"]
    assert built == [] and len(set(ids)) == 3
    runner.fold_counts("sync")
    assert observer.folded == [3]


async def test_the_runs_in_flight_build_the_run_the_handler_then_gets(tmp_path: Path) -> None:
    """`/healthz` and the metrics read the runs in flight from the loop while the handler runs
    (and has not asked for its run): both see the same run."""
    runner, _ = dispatcher(tmp_path)
    entered, release = threading.Event(), threading.Event()
    mine: list[Run] = []

    def handler(event: dict[str, Any]) -> None:
        entered.set()
        release.wait(10)
        mine.append(current_run())

    async with anyio.create_task_group() as tg:
        tg.start_soon(in_thread, runner, event_request(handler), threading.Event())
        with anyio.fail_after(10):
            while not entered.is_set():
                await anyio.sleep(0.01)
        seen = runner.book.in_flight()
        release.set()
    assert seen == mine and seen[0].trigger == "sync"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_failing_event_is_recorded_with_its_traceback_under_the_id_it_logged(
    tmp_path: Path, kind: str
) -> None:
    runner, observer = dispatcher(tmp_path)

    def broken(event: dict[str, Any]) -> None:
        raise ValueError("no such order")

    async def broken_async(event: dict[str, Any]) -> None:
        broken(event)

    with captured_logs() as logs:
        if kind == "sync":
            outcome = await in_thread(runner, event_request(broken), threading.Event())
        else:
            outcome = await runner.execute(event_request(broken_async))
    assert outcome.status is RunStatus.FAILED and isinstance(outcome.error, ValueError)
    [record] = runner.state.runs("shop", "sync", failed_only=True)
    [line] = [e for e in logs if e["event"] == "run failed"]
    assert record.run_id == line["run_id"] and record.status == "failed"
    assert record.scheduled_at == HAPPENED and record.attempt == 1
    assert (
        record.error is not None and "Traceback" in record.error and "no such order" in record.error
    )
    assert runner.book.in_flight() == [] and observer.finished == [RunStatus.FAILED]


async def test_the_trigger_hard_stop_is_the_run_cancelled_asked_or_not(tmp_path: Path) -> None:
    runner, _ = dispatcher(tmp_path)
    cancel = threading.Event()
    flags: list[bool] = []

    def stopped_unasked(event: dict[str, Any]) -> None:
        cancel.set()  # the hard stop lands while the handler runs

    def stopped_and_asked(event: dict[str, Any]) -> None:
        flags.append(current_run().cancelled)
        cancel.set()
        flags.append(current_run().cancelled)

    first = await in_thread(runner, event_request(stopped_unasked), cancel)
    cancel.clear()
    second = await in_thread(runner, event_request(stopped_and_asked), cancel)
    assert first.status is second.status is RunStatus.CANCELLED and flags == [False, True]
    records = runner.state.runs("shop", "sync", failed_only=True)
    assert [r.status for r in records] == ["cancelled", "cancelled"]


async def test_a_timeout_flags_the_run_a_handler_never_asked_for(tmp_path: Path) -> None:
    runner, _ = dispatcher(tmp_path)

    def slow(event: dict[str, Any]) -> None:
        time.sleep(0.3)  # past its 0.05 s: the watchdog builds the run and expires it

    def polite(event: dict[str, Any]) -> None:
        deadline = time.monotonic() + 10
        while not current_run().cancelled and time.monotonic() < deadline:
            time.sleep(0.01)

    for handler in (slow, polite):
        outcome = await in_thread(runner, event_request(handler, timeout=0.05), threading.Event())
        assert outcome.status is RunStatus.TIMED_OUT
    records = runner.state.runs("shop", "sync", failed_only=True)
    assert [r.status for r in records] == ["timed_out", "timed_out"]


async def test_an_async_handler_run_on_the_loop_and_cancelled_there(tmp_path: Path) -> None:
    runner, observer = dispatcher(tmp_path)
    seen: list[Any] = []
    entered = anyio.Event()

    async def handler(event: dict[str, Any]) -> None:
        seen.extend([current_run(), runner.book.in_flight()])
        get_logger("test").info("handled")

    async def stuck(event: dict[str, Any]) -> None:
        entered.set()
        await anyio.sleep_forever()

    with captured_logs() as logs:
        outcome = await runner.execute(event_request(handler))
    run, in_flight = seen
    assert outcome.status is RunStatus.SUCCEEDED and in_flight == [run]
    assert run.scheduled_at == HAPPENED and run.trigger == "sync"
    assert [e["run_id"] for e in logs if e["event"] == "handled"] == [run.run_id]
    assert runner.state.runs("shop") == []

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.execute, event_request(stuck))
        with anyio.fail_after(10):
            await entered.wait()
        tg.cancel_scope.cancel()  # the runtime's stop reaching the run
    [record] = runner.state.runs("shop", "sync", failed_only=True)
    assert record.status == "cancelled" and runner.book.in_flight() == []
    runner.fold_counts("sync")
    assert observer.folded == [1] and observer.finished == [RunStatus.CANCELLED]
