"""Load: 1,000 per-second cron triggers for 60 s of fake-clock time, in process, on both backends.

A tenth of the handlers fail on some fires (and are retried), a tenth hang past their timeout
on some fires (async: cancelled; sync: flagged, they return), the rest succeed. Checked from
the state file after a graceful stop: every fire time up to each trigger's saved last fire has
exactly one first attempt recorded (succeeded, failed, timed out or skipped) and none is
missing: no fire lost, none doubled, the stop included. Memory is measured at 20 s and 60 s
of fake time, each time from inside a run at the start of the second (RSS, and live Python
objects after a full collection): 40,000 runs later, growth stays within a small margin.

Responsiveness to SIGTERM under the same load is a separate test with a real process.
"""

from __future__ import annotations

import gc
import logging
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from dataflow import Runtime, Settings, Workflow, cronjob, current_run
from dataflow.testing import FakeClock
from tests._runtime import START
from tests.reliability._proc import DataflowProcess, alive, write_workflow

TRIGGERS = 1000
SECONDS = 60
EVERY_SECOND = "* * * * * *"
HANG = 1.0  # seconds (real) a hanging handler runs before its timeout stops it


def _ok() -> Callable[..., Any]:
    async def ok(self: Workflow) -> None:
        pass

    return ok


def _probe(calls: Mapping[datetime, Callable[[], None]]) -> Callable[..., Any]:
    async def probe(self: Workflow) -> None:
        call = calls.get(current_run().scheduled_at)  # type: ignore[arg-type]
        if call is not None:
            call()  # while the other triggers hand out the same second's fires

    return probe


def _fails_first_try() -> Callable[..., Any]:
    async def flaky(self: Workflow) -> None:
        run = current_run()
        if run.attempt == 1 and run.scheduled_at is not None and run.scheduled_at.second % 3 == 0:
            raise ValueError("bad row")

    return flaky


def _async_hang() -> Callable[..., Any]:
    async def hangs(self: Workflow) -> None:
        fire = current_run().scheduled_at
        if fire is not None and fire.second % 5 == 4:  # 59: still hanging when the stop comes
            await anyio.sleep(3600)  # cancelled by its timeout

    return hangs


def _sync_hang() -> Callable[..., Any]:
    def hangs(self: Workflow) -> None:
        run = current_run()
        if run.scheduled_at is not None and run.scheduled_at.second % 7 == 3:  # 59 too
            while not run.cancelled:  # flagged at its timeout
                time.sleep(0.002)

    return hangs


def load_workflow(count: int, calls: Mapping[datetime, Callable[[], None]]) -> type[Workflow]:
    """`count` per-second triggers: 7 in 10 succeed, 1 fails first tries (retried once), 1 hangs
    on the loop past its timeout, 1 hangs in a thread past its timeout (a second of real time,
    while fake time goes on: later fires of it are skipped). The first one's run at a time in
    `calls` calls what is given for it (measure, stop)."""
    namespace: dict[str, Any] = {"workflow_name": "load"}
    for i in range(count):
        name = f"t{i:04d}"
        kind = i % 10
        if i == 0:
            spec = cronjob(EVERY_SECOND, name=name)(_probe(calls))
        elif kind == 7:
            spec = cronjob(EVERY_SECOND, name=name, retries=1, retry_delay=0.2)(_fails_first_try())
        elif kind == 8:
            spec = cronjob(EVERY_SECOND, name=name, timeout=HANG)(_async_hang())
        elif kind == 9:
            spec = cronjob(EVERY_SECOND, name=name, timeout=HANG)(_sync_hang())
        else:
            spec = cronjob(EVERY_SECOND, name=name)(_ok())
        namespace[name] = spec
    return type("Load", (Workflow,), namespace)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """120,000 run log lines would only cost time: drop them for this test."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.reset_defaults()


def memory() -> tuple[int, int]:
    """(RSS in bytes, live Python objects), after a full collection."""
    gc.collect()
    status = Path("/proc/self/status").read_text()
    rss_kb = int(status.split("VmRSS:")[1].split()[0])
    return rss_kb * 1024, len(gc.get_objects())


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_thousand_triggers_for_a_minute_lose_and_double_no_fire(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    clock = FakeClock(START, hold_during_threads=False)  # hangs in threads let time pass too
    samples: dict[int, tuple[int, int]] = {}
    runtimes: list[Runtime] = []

    def measure(second: int) -> None:
        samples[second] = memory()
        if second == SECONDS:
            runtimes[0].stop()  # mid-burst: the other triggers are firing this second too

    calls = {START + timedelta(seconds=s): partial(measure, s) for s in (20, SECONDS)}
    runtime = Runtime(
        load_workflow(TRIGGERS, calls)(),
        clock=clock,
        settings=Settings(state_path=state, grace_period=5),
    )
    runtimes.append(runtime)
    with quiet_logs(), anyio.fail_after(600):
        async with clock.autojump(), anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)

    fires, statuses, last_fires = _recorded(state)
    for trigger in (f"t{i:04d}" for i in range(TRIGGERS)):
        last = last_fires[trigger]
        assert last >= START + timedelta(seconds=SECONDS - 1), trigger  # a minute
        expected = [START + timedelta(seconds=s) for s in range(1, _seconds(last) + 1)]
        assert sorted(fires[trigger]) == expected, f"{trigger}: fires lost or doubled"
    assert {"succeeded", "failed", "timed_out", "skipped"} <= set(statuses)
    assert "running" not in statuses

    (rss_20, objects_20), (rss_60, objects_60) = samples[20], samples[SECONDS]
    print(
        f"memory at 20 s / 60 s: RSS {rss_20 / 2**20:.1f} / {rss_60 / 2**20:.1f} MiB, "
        f"objects {objects_20} / {objects_60}"
    )
    assert rss_60 - rss_20 < 32 * 2**20  # 40,000 runs later: no per-run leak
    assert objects_60 - objects_20 < 0.1 * objects_20


def _recorded(state: Path) -> tuple[dict[str, list[datetime]], Counter[str], dict[str, datetime]]:
    """Per trigger: the fire time of every first attempt; all statuses; the saved last fire."""
    db = sqlite3.connect(state)
    try:
        rows = db.execute("SELECT trigger, scheduled_at, status, attempt FROM runs").fetchall()
        saved = db.execute("SELECT trigger, value FROM trigger_state WHERE key = 'last_fire'")
        last_fires = {trigger: datetime.fromisoformat(value) for trigger, value in saved}
    finally:
        db.close()
    fires: dict[str, list[datetime]] = {}
    for trigger, scheduled_at, _, attempt in rows:
        if attempt == 1:
            fires.setdefault(trigger, []).append(datetime.fromisoformat(scheduled_at))
    return fires, Counter(status for _, _, status, _ in rows), last_fires


def _seconds(when: datetime) -> int:
    return int((when - START).total_seconds())


LOAD_PROCESS = """
import time

import anyio
from dataflow import Workflow, cronjob, current_run


def handler(i):
    kind = i % 10
    if kind == 7:
        async def fails(self):
            if current_run().scheduled_at.second % 3 == 0:
                raise ValueError("bad row")
        return cronjob("* * * * * *", name=f"t{i:04d}")(fails)
    if kind == 8:
        async def hangs(self):
            await anyio.sleep(3600)
        return cronjob("* * * * * *", name=f"t{i:04d}", timeout=0.5)(hangs)
    if kind == 9:
        def hangs_in_a_thread(self):
            while not current_run().cancelled:
                time.sleep(0.01)
        return cronjob("* * * * * *", name=f"t{i:04d}", timeout=0.5)(hangs_in_a_thread)
    async def ok(self):
        pass
    return cronjob("* * * * * *", name=f"t{i:04d}")(ok)


Load = type("Load", (Workflow,), {"__module__": __name__, "workflow_name": "load",
                                  **{f"t{i:04d}": handler(i) for i in range(COUNT)}})
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_under_load_exits_within_grace(tmp_path: Path, backend: str) -> None:
    """1,000 per-second triggers on the real clock (a tenth failing, a fifth hanging until
    their timeout) keep the process busy; a SIGTERM after some thousands of runs still gets a
    clean exit 0 within grace + 2 s, with nothing left `running` in the state file."""
    grace = 1.0
    write_workflow(tmp_path, "load", LOAD_PROCESS.replace("COUNT", str(TRIGGERS)))
    process = DataflowProcess(
        tmp_path, "run", "load", "--backend", backend, "--grace-period", str(grace)
    )
    try:
        process.wait_for("run finished", timeout=30, count=2 * TRIGGERS)
        assert alive(process.pid) and process.children() == []
        result = process.stop(signal.SIGTERM, timeout=30)
    finally:
        process.kill()
    print(f"{backend}: exit {result.code} {result.seconds:.2f}s after SIGTERM")
    assert result.code == 0, result.stderr
    assert result.seconds <= grace + 2
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        statuses = dict(db.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    finally:
        db.close()
    assert "running" not in statuses and statuses["succeeded"] >= TRIGGERS
