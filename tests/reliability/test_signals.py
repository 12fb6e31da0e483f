"""SIGTERM and SIGINT sent to a real `python -m dataflow` process, at every phase.

Each test waits until the process is where the test wants it (a handler writes a file with its
run id, or a log line appears), checks it has no child process, sends the signal(s) and checks:
the documented exit code, within grace + 2 s (the process is gone, so no worker thread is left
behind), no traceback, and every run that was in flight recorded as `cancelled`.
"""

from __future__ import annotations

import signal
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests._change_stream_peer import open_oplog, position_of
from tests.reliability._proc import (
    DataflowProcess,
    Exit,
    alive,
    runs,
    started,
    state_value,
    wait_for_file,
    write_workflow,
)
from tests.reliability._streams import handled_ids

pytestmark = pytest.mark.slow

GRACE = 0.5
LIMIT = GRACE + 2.0  # the promise: out within grace + 2 s
SIGTERM, SIGINT = signal.SIGTERM, signal.SIGINT
BOTH = [
    pytest.param("asyncio", SIGTERM, id="asyncio-SIGTERM"),
    pytest.param("asyncio", SIGINT, id="asyncio-SIGINT"),
    pytest.param("trio", SIGTERM, id="trio-SIGTERM"),
    pytest.param("trio", SIGINT, id="trio-SIGINT"),
]

STARTING = """
import time
from pathlib import Path

import anyio
from dataflow import Workflow, cronjob, current_run, startup


class Starting(Workflow):
    @startup
    def load_cache(self):
        Path("load_cache.running").write_text(current_run().run_id)
        while not current_run().cancelled:
            time.sleep(0.01)

    @startup
    async def warm_up(self):
        Path("warm_up.running").write_text(current_run().run_id)
        await anyio.sleep(600)

    @cronjob("* * * * * *")
    def every_second(self):
        Path("every_second.ran").write_text("must not run: startup never finished")
"""

BUSY = """
import time
from pathlib import Path

import anyio
from dataflow import Workflow, cronjob, current_run


class Busy(Workflow):
    @cronjob("* * * * * *")
    def sync_job(self):
        Path("sync_job.running").write_text(current_run().run_id)
        while not current_run().cancelled:
            time.sleep(0.01)

    @cronjob("* * * * * *")
    async def async_job(self):
        Path("async_job.running").write_text(current_run().run_id)
        await anyio.sleep(600)
"""

STUCK = """
import time
from pathlib import Path

from dataflow import Workflow, cronjob, current_run, mongodb_change_stream


class Stuck(Workflow):
    @cronjob("* * * * * *")
    def ignores_cancel(self):
        Path("ignores_cancel.running").write_text(current_run().run_id)
        time.sleep(600)  # never looks at current_run().cancelled

    @mongodb_change_stream({url!r}, "shop", "orders")
    def stream_ignores_cancel(self, change):
        Path("stream_ignores_cancel.running").write_text(current_run().run_id)
        time.sleep(600)
"""

SLOW_CLOSE = """
import time
from pathlib import Path

from dataflow import Workflow, cronjob, startup
from dataflow.connection import Connection


class Hanging(Connection):
    def connect(self):
        pass

    def ping(self):
        pass

    def disconnect(self):
        Path("closing").write_text("x")
        time.sleep(600)  # a server that never answers the goodbye


class SlowClose(Workflow):
    warehouse = Hanging()

    @startup
    def ready(self):
        Path("ready").write_text("x")

    @cronjob("0 0 1 1 *")
    def yearly(self):
        pass
"""

MANY = """
from dataclasses import dataclass

import anyio

from dataflow import Workflow, cronjob
from dataflow.triggers.base import Trigger, TriggerSpec, attach_spec


class SlowStart(Trigger):
    kind = "slow_start"

    async def serve(self, ctx, *, task_status=anyio.TASK_STATUS_IGNORED):
        await anyio.sleep(600)  # a source that takes long to answer: the start waits for it
        task_status.started()


@dataclass(frozen=True, kw_only=True)
class SlowStartSpec(TriggerSpec):
    kind = "slow_start"

    def build(self, handler):
        return SlowStart(self.trigger_name, handler)


def yearly(i):
    async def handler(self):
        pass
    return cronjob("0 0 1 1 *", name=f"t{i:04d}")(handler)


def slow(self):
    pass


Many = type("Many", (Workflow,), {"__module__": __name__,
                                  **{f"t{i:04d}": yearly(i) for i in range(2000)},
                                  "slow": attach_spec(slow, SlowStartSpec())})
"""

IMPORTING = """
import time
from pathlib import Path

from dataflow import cronjob

Path("importing").write_text("x")
time.sleep(600)  # a module-level call that hangs: the runtime never starts


@cronjob("* * * * * *")
def job():
    pass
"""

# Busy in C code (no bytecode boundary for Python's own signal handler to run at), as a module
# that runs a long query or computation at import is.
BUSY_IMPORTING = """
from pathlib import Path

from dataflow import cronjob

Path("importing").write_text("x")
sum(range(10**12))


@cronjob("* * * * * *")
def job():
    pass
"""

IDLE_STREAM = """
from dataflow import Workflow, mongodb_change_stream


class Feed(Workflow):
    @mongodb_change_stream({url!r}, "shop", "orders", max_await_time=0.5)
    def orders(self, change):
        with open("handled.txt", "a") as out:
            out.write(f"{{change['documentKey']['_id']}}\\n")
"""


def check_clean_exit(process: DataflowProcess, result: Exit, limit: float = LIMIT) -> None:
    assert result.code == 0, result.stderr
    assert result.seconds <= limit, f"exit took {result.seconds:.2f}s, allowed {limit}s"
    assert not alive(process.pid)
    assert "Traceback" not in result.stderr and result.stderr == ""
    assert process.events("workflow stopped")


def status_of(state: Path, run_id: str) -> str:
    [found] = [row.status for row in runs(state) if row.run_id == run_id]
    return found


def nothing_left_running(state: Path) -> None:
    assert [row for row in runs(state) if row.status == "running"] == []


@pytest.mark.parametrize(("backend", "sig"), BOTH)
def test_signal_during_the_startup_phase(tmp_path: Path, backend: str, sig: signal.Signals) -> None:
    """Both startup handlers (sync and async) are in flight: after the grace period they are
    cancelled and recorded so, no trigger ever starts, exit 0."""
    with started_process(tmp_path, "starting", STARTING, backend) as process:
        sync_run = wait_for_file(tmp_path / "load_cache.running", process=process)
        async_run = wait_for_file(tmp_path / "warm_up.running", process=process)
        assert process.children() == []
        result = process.stop(sig)
    check_clean_exit(process, result)
    assert status_of(tmp_path / "state.db", sync_run) == "cancelled"
    assert status_of(tmp_path / "state.db", async_run) == "cancelled"
    assert runs(tmp_path / "state.db", "every_second") == []
    assert not (tmp_path / "every_second.ran").exists()
    assert not process.events("workflow running")


@pytest.mark.parametrize(("backend", "sig"), BOTH)
def test_signal_during_sync_and_async_runs(
    tmp_path: Path, backend: str, sig: signal.Signals
) -> None:
    """A sync run (in a worker thread) and an async run (on the loop) are in flight: they get
    the grace period, are cancelled, recorded `cancelled`; exit 0."""
    with started_process(tmp_path, "busy", BUSY, backend) as process:
        sync_run = wait_for_file(tmp_path / "sync_job.running", process=process)
        async_run = wait_for_file(tmp_path / "async_job.running", process=process)
        assert process.children() == []
        result = process.stop(sig)
    check_clean_exit(process, result)
    assert result.seconds >= GRACE  # the runs had their grace period
    assert status_of(tmp_path / "state.db", sync_run) == "cancelled"
    assert status_of(tmp_path / "state.db", async_run) == "cancelled"
    nothing_left_running(tmp_path / "state.db")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_handler_that_ignores_cancel_does_not_hold_the_exit(tmp_path: Path, backend: str) -> None:
    """Sync handlers (a cron run in a worker thread, a change-stream run in the pump's thread)
    that never check `current_run().cancelled` cannot be stopped: their threads are abandoned
    after the grace period and the process still exits 0 within grace + 2 s."""
    with open_oplog() as oplog:
        source = STUCK.format(url=oplog.mongo.url("shop"))
        with started_process(tmp_path, "stuck", source, backend) as process:
            process.wait_for("workflow running")
            oplog.updates(1)
            cron_run = wait_for_file(tmp_path / "ignores_cancel.running", process=process)
            stream_run = wait_for_file(tmp_path / "stream_ignores_cancel.running", process=process)
            result = process.stop(SIGTERM)
    check_clean_exit(process, result)
    assert status_of(tmp_path / "state.db", cron_run) == "cancelled"
    assert status_of(tmp_path / "state.db", stream_run) == "cancelled"
    assert process.events("exiting without abandoned threads")


@pytest.mark.parametrize(("backend", "sig"), [BOTH[0], BOTH[3]])
def test_signal_while_a_change_stream_is_idle(
    tmp_path: Path, backend: str, sig: signal.Signals
) -> None:
    """Two events handled, then the stream waits in a getMore: the stop lands within
    `max_await_time`, the cursor is killed, the position of the last event stays saved."""
    with open_oplog() as oplog:
        source = IDLE_STREAM.format(url=oplog.mongo.url("shop"))
        with started_process(tmp_path, "feed", source, backend) as process:
            process.wait_for("workflow running")
            oplog.updates(2)
            process.wait_until(lambda: handled_ids(tmp_path) == [1, 2], "two events handled")
            idle_since = len(oplog.mongo.commands("getMore"))
            oplog.mongo.wait_for("getMore", idle_since + 2)  # idle: getMores come back empty
            assert process.children() == []
            result = process.stop(sig)
        assert oplog.mongo.wait_for("killCursors")
    check_clean_exit(process, result)
    saved = state_value(tmp_path / "state.db", "orders", "resume_token:shop.orders")
    assert saved is not None and position_of(_token(saved)) == 2
    # successes are one row per batch (issue 16; was a row per event): the two events' batch
    assert {row.status for row in runs(tmp_path / "state.db")} == {"succeeded"}
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("SELECT sum(events), count(*) FROM runs").fetchone() in ((2, 1), (2, 2))
    db.close()


@pytest.mark.parametrize(
    ("backend", "signals"),
    [
        pytest.param("asyncio", (SIGTERM, SIGTERM), id="asyncio-TERM-TERM"),
        pytest.param("asyncio", (SIGINT, SIGTERM), id="asyncio-INT-TERM"),
        pytest.param("trio", (SIGINT, SIGINT), id="trio-INT-INT"),
        pytest.param("trio", (SIGTERM, SIGINT), id="trio-TERM-INT"),
    ],
)
def test_a_second_signal_cancels_at_once(
    tmp_path: Path, backend: str, signals: tuple[signal.Signals, ...]
) -> None:
    """With a 30 s grace period, a second signal cancels the runs at once: out in under 2 s,
    the in-flight runs recorded `cancelled`."""
    with started_process(tmp_path, "busy", BUSY, backend, grace=30) as process:
        sync_run = wait_for_file(tmp_path / "sync_job.running", process=process)
        async_run = wait_for_file(tmp_path / "async_job.running", process=process)
        result = process.stop(*signals)
    check_clean_exit(process, result, limit=2.0)
    assert status_of(tmp_path / "state.db", sync_run) == "cancelled"
    assert status_of(tmp_path / "state.db", async_run) == "cancelled"


@pytest.mark.parametrize(("backend", "sig"), [BOTH[0], BOTH[1], BOTH[2], BOTH[3]])
def test_a_second_signal_while_connections_close(
    tmp_path: Path, backend: str, sig: signal.Signals
) -> None:
    """The runs are over and a connection hangs in `disconnect()`: a second signal ends the
    wait at once, exit 0 (not killed by the signal, not 130)."""
    with started_process(tmp_path, "slow_close", SLOW_CLOSE, backend, grace=30) as process:
        wait_for_file(tmp_path / "ready", process=process)
        process.wait_for("workflow running")
        process.signal(sig)
        wait_for_file(tmp_path / "closing", process=process)
        result = process.stop(sig)
    check_clean_exit(process, result, limit=2.0)


@pytest.mark.parametrize(("backend", "sig"), [BOTH[1], BOTH[2]])
def test_signal_while_the_triggers_start(tmp_path: Path, backend: str, sig: signal.Signals) -> None:
    """2,000 cron triggers and one whose source takes long to answer: a signal while they
    start stops the start there: exit 0 at once, no traceback, and no "workflow running"."""
    with started_process(tmp_path, "many", MANY, backend) as process:
        process.wait_for("workflow starting")
        result = process.stop(sig)
    check_clean_exit(process, result)
    assert not process.events("workflow running")


@pytest.mark.parametrize(("backend", "sig"), [BOTH[0], BOTH[3]])
@pytest.mark.parametrize("source", [IMPORTING, BUSY_IMPORTING], ids=["sleeping", "busy-in-c"])
def test_a_signal_while_the_workflow_imports_ends_the_process_at_once(
    tmp_path: Path, backend: str, sig: signal.Signals, source: str
) -> None:
    """While the workflow module is still importing, a signal ends the process at once, by the
    signal's default action (a shell reports 128 + N: 130 for SIGINT), even when the module is
    busy in C code; no traceback, nothing recorded."""
    with started_process(tmp_path, "importing", source, backend) as process:
        wait_for_file(tmp_path / "importing", process=process)
        result = process.stop(sig)
    assert result.code == -sig and result.seconds <= LIMIT
    assert result.stderr == ""
    assert not (tmp_path / "state.db").exists()


def started_process(
    project: Path, name: str, source: str, backend: str, grace: float = GRACE
) -> AbstractContextManager[DataflowProcess]:
    write_workflow(project, name, source)
    return started(project, "run", name, "--backend", backend, "--grace-period", str(grace))


def _token(text: str) -> dict[str, str]:
    from dataflow.triggers._changestream.checkpoint import loads

    value = loads(text)
    assert isinstance(value, dict)
    return value
