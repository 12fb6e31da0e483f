"""The lifecycle on both backends, with the fake clock: startup barrier, firing, failures, stop."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

from dataflow import (
    RunStatus,
    Runtime,
    Settings,
    StartupFailed,
    Workflow,
    cronjob,
    current_run,
    run_workflow,
    startup,
)
from dataflow.state import StateStore
from dataflow.testing import FakeClock
from tests._runtime import START, captured_logs, running, until

pytestmark = pytest.mark.anyio


def statuses(tmp_path: Path, trigger: str) -> list[str]:
    store = StateStore(tmp_path / "state.db")
    try:
        return [r.status for r in reversed(store.runs("w", trigger, limit=1000))]
    finally:
        store.close()


async def test_startup_handlers_run_concurrently_and_finish_before_the_first_fire(
    tmp_path: Path,
) -> None:
    log: list[str] = []

    class W(Workflow):
        workflow_name = "w"
        a_ready = anyio.Event()
        b_ready = anyio.Event()

        @startup
        async def a(self) -> None:
            self.a_ready.set()
            await self.b_ready.wait()  # deadlocks unless b runs at the same time
            log.append("a done")

        @startup
        def b(self) -> None:
            anyio.from_thread.run_sync(self.b_ready.set)
            anyio.from_thread.run(self.a_ready.wait)
            log.append("b done")

        @cronjob("* * * * *")
        async def tick(self) -> None:
            log.append(f"tick {current_run().scheduled_at:%H:%M}")

    async with running(W(), tmp_path):
        await until(lambda: len(log) >= 4)
    assert sorted(log[:2]) == ["a done", "b done"]
    assert log[2:4] == ["tick 09:01", "tick 09:02"]


async def test_startup_failure_cancels_siblings_and_starts_no_trigger(tmp_path: Path) -> None:
    events: list[str] = []

    class W(Workflow):
        workflow_name = "w"

        @startup
        async def slow(self) -> None:
            try:
                await anyio.sleep_forever()
            finally:
                events.append("slow cancelled")

        @startup
        async def broken(self) -> None:
            await anyio.sleep(0.01)
            raise RuntimeError("cannot reach the source")

        @cronjob("* * * * * *")
        async def tick(self) -> None:
            events.append("tick")

    settings = Settings(state_path=tmp_path / "state.db")
    clock = FakeClock(START)
    with anyio.fail_after(3):
        async with clock.autojump():
            with pytest.raises(StartupFailed) as info:
                await run_workflow(W(), settings=settings, clock=clock, handle_signals=False)
    assert info.value.handler == "broken"
    assert "RuntimeError: cannot reach the source" in str(info.value)
    assert events == ["slow cancelled"]
    assert statuses(tmp_path, "broken") == ["failed"]
    assert statuses(tmp_path, "slow") == ["cancelled"]


async def test_a_failing_run_is_recorded_and_later_fires_still_run(tmp_path: Path) -> None:
    fired: list[datetime] = []

    class W(Workflow):
        workflow_name = "w"

        @cronjob("*/15 * * * *")
        def etl(self) -> None:
            fired.append(current_run().scheduled_at)  # type: ignore[arg-type]
            if len(fired) == 1:
                raise ValueError("bad row")

    with captured_logs() as logs:
        async with running(W(), tmp_path):
            await until(lambda: len(fired) >= 3)
    assert fired[:3] == [START + timedelta(minutes=m) for m in (15, 30, 45)]
    assert statuses(tmp_path, "etl")[:3] == ["failed", "succeeded", "succeeded"]
    failure = next(e for e in logs if e["event"] == "run failed")
    assert failure["error"] == "ValueError: bad row" and failure["trigger"] == "etl"
    assert failure["workflow"] == "w" and len(failure["run_id"]) == 32


async def test_stop_lets_an_in_flight_run_finish_within_the_grace_period(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *")
        def job(self) -> None:
            started.set()
            release.wait(5)

    async with running(W(), tmp_path, grace=10) as runtime:
        await until(started.is_set)
        runtime.stop()
        await anyio.sleep(0.05)
        assert runtime.dispatcher.active, "the run must still be going during the grace period"
        release.set()
    first, *later = statuses(tmp_path, "job")
    assert first == "succeeded"
    assert set(later) <= {"skipped"}  # fires that came while it ran (virtual time moves)


async def test_a_second_stop_cancels_runs_at_once_and_records_them(tmp_path: Path) -> None:
    started, seen_cancel = threading.Event(), threading.Event()

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *")
        def job(self) -> None:
            started.set()
            while not current_run().cancelled:
                threading.Event().wait(0.005)
            seen_cancel.set()

    with anyio.fail_after(3):
        async with running(W(), tmp_path, grace=60) as runtime:
            await until(started.is_set)
            runtime.stop()
            runtime.cancel()
    assert seen_cancel.wait(2)
    assert statuses(tmp_path, "job") == ["cancelled"]


async def test_a_blocking_sync_handler_does_not_block_other_triggers(tmp_path: Path) -> None:
    release = threading.Event()
    ticks: list[datetime] = []

    class W(Workflow):
        workflow_name = "w"

        @cronjob("0 * * * *")
        def blocking(self) -> None:
            release.wait(5)

        @cronjob("* * * * *")
        async def ticker(self) -> None:
            ticks.append(current_run().scheduled_at)  # type: ignore[arg-type]

    clock = FakeClock(START, hold_during_threads=False)  # time passes while `blocking` blocks
    async with running(W(), tmp_path, clock=clock) as runtime:
        await until(lambda: len(ticks) >= 70)  # past 10:00, while `blocking` still blocks
        assert any(h.request.trigger == "blocking" for h in runtime.dispatcher.active)
        release.set()
    assert ticks[59] == START + timedelta(hours=1)


async def test_sync_handler_logs_carry_the_run_context(tmp_path: Path) -> None:
    from dataflow._core.logs import get_logger

    done = threading.Event()

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *")
        def job(self) -> None:
            get_logger("user").info("rows loaded", rows=3)
            done.set()

    with captured_logs() as logs:
        async with running(W(), tmp_path):
            await until(done.is_set)
    line = next(e for e in logs if e["event"] == "rows loaded")
    assert line["workflow"] == "w" and line["trigger"] == "job" and len(line["run_id"]) == 32


async def test_overlapping_fire_is_skipped_and_recorded(tmp_path: Path) -> None:
    release = threading.Event()

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *")
        def job(self) -> None:
            release.wait(5)

    clock = FakeClock(START, hold_during_threads=False)
    async with running(W(), tmp_path, clock=clock):
        await until(lambda: statuses(tmp_path, "job").count("skipped") >= 2)
        release.set()
        # The grace period is virtual time too: stopping before the run has returned could
        # see it cancelled, as time passes while its thread runs.
        await until(lambda: statuses(tmp_path, "job")[0] == "succeeded")
    found = statuses(tmp_path, "job")
    assert found[0] == "succeeded" and found[1:3] == ["skipped", "skipped"]
    assert RunStatus.SKIPPED.value == "skipped"


async def test_handlers_keep_values_between_runs_in_the_state_store(tmp_path: Path) -> None:
    seen: list[object] = []

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *")
        def etl(self) -> None:
            state = current_run().state
            assert state is not None
            seen.append(state.get("watermark"))
            state.set("watermark", current_run().scheduled_at)

    async with running(W(), tmp_path):
        await until(lambda: len(seen) >= 3)
    assert seen[:3] == [None, START + timedelta(minutes=1), START + timedelta(minutes=2)]
    store = StateStore(tmp_path / "state.db")
    assert store.get_state("w", "etl", "user:watermark") is not None
    store.close()


async def test_a_run_the_previous_process_left_running_is_caught_up_once(tmp_path: Path) -> None:
    """kill -9 mid-run leaves a 'running' record: the restart marks it interrupted and, being
    within the misfire grace, runs that fire again once (coalesced with anything else missed)."""
    fired: list[datetime] = []

    class W(Workflow):
        workflow_name = "w"

        @cronjob("*/15 * * * *", misfire_grace=600)
        async def etl(self) -> None:
            fired.append(current_run().scheduled_at)  # type: ignore[arg-type]

    crashed_fire = START + timedelta(minutes=15)
    store = StateStore(tmp_path / "state.db")
    store.set_state("w", "etl", "last_fire", crashed_fire.isoformat())
    store.record_run_start("dead", "w", "etl", crashed_fire, crashed_fire)
    store.close()
    restart = FakeClock(crashed_fire + timedelta(minutes=3))
    async with running(W(), tmp_path, clock=restart):
        await until(lambda: len(fired) >= 2)
    assert fired[:2] == [crashed_fire, crashed_fire + timedelta(minutes=15)]
    records = {r.run_id: r.status for r in StateStore(tmp_path / "state.db").runs("w")}
    assert records["dead"] == "interrupted"


async def test_two_runtimes_cannot_share_a_state_file(tmp_path: Path) -> None:
    from dataflow._core.errors import StateStoreError

    class W(Workflow):
        workflow_name = "w"

        @cronjob("0 0 1 1 *")
        def yearly(self) -> None: ...

    async with running(W(), tmp_path):
        second = Runtime(W(), settings=Settings(state_path=tmp_path / "state.db"))
        with pytest.raises(StateStoreError, match="another dataflow process is running"):
            await second.run()


async def test_the_connections_a_workflow_holds_are_closed_at_stop(tmp_path: Path) -> None:
    from dataflow.connection import SQLiteConnection

    class W(Workflow):
        workflow_name = "w"

        def __init__(self) -> None:
            self.cache = SQLiteConnection(tmp_path / "cache.db")

        @startup
        def open_cache(self) -> None:
            self.cache.connect()
            self.cache.execute("CREATE TABLE t (x)")

    workflow = W()
    async with running(workflow, tmp_path):
        pass
    with pytest.raises(Exception, match="not connected"):
        workflow.cache.fetch("SELECT * FROM t")


async def test_a_runtime_runs_once_and_a_second_run_says_so(tmp_path: Path) -> None:
    """A second `run()` of the same Runtime raises at once instead of silently doing nothing."""
    fired: list[int] = []

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *")
        def job(self) -> None:
            fired.append(1)

    async with running(W(), tmp_path) as runtime:
        await until(lambda: len(fired) >= 1)
    with pytest.raises(RuntimeError, match="has already run; create a new Runtime"):
        await runtime.run()
