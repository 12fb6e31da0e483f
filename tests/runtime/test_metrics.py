"""Metrics and health over real HTTP on 127.0.0.1, with runs fired by hand on the fake clock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from dataflow import Runtime, Settings, SettingsError, Workflow, cronjob, current_run, startup
from dataflow._core.run import Run, RunStatus, TriggerState
from dataflow.runtime._health import MetricsServer
from dataflow.runtime._metrics import RunMetrics
from dataflow.state import StateStore
from dataflow.testing import FakeClock
from dataflow.triggers.base import StreamStats, Trigger, TriggerContext
from tests._paths import ROOT
from tests._runtime import START


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return found.get((name, frozenset({"workflow": "m", **labels}.items())))


async def get(server: MetricsServer | None, path: str) -> tuple[int, str]:
    assert server is not None
    return await anyio.to_thread.run_sync(fetch, server.url + path)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.001)


class Metered(Workflow):
    workflow_name = "m"

    def __init__(self) -> None:
        self.warmed = anyio.Event()
        self.release = anyio.Event()
        self.calls = 0

    @startup
    async def warm(self) -> None:
        await self.warmed.wait()

    @cronjob("* * * * *")
    async def tick(self) -> None:
        self.calls += 1
        minute = current_run().scheduled_at.minute  # type: ignore[union-attr]
        if minute == 2:
            raise ValueError("bad minute")
        if minute == 3:
            await self.release.wait()


@pytest.mark.anyio
async def test_metrics_and_health_over_http_in_each_phase(tmp_path: Path) -> None:
    """503 starting, 200 running, counts after known runs, 503 stopping, port closed after."""
    clock, workflow = FakeClock(START), Metered()
    settings = Settings(state_path=tmp_path / "s.db", metrics_port=0, grace_period=30)
    runtime = Runtime(workflow, settings=settings, clock=clock)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            await until(lambda: runtime.metrics_server is not None)
            server = runtime.metrics_server
            assert await get(server, "/healthz") == (503, '{"status": "starting"}\n')
            workflow.warmed.set()
            await until(runtime.started.is_set)
            assert await get(server, "/healthz") == (200, '{"status": "running"}\n')
            await _fire_two_runs(clock, runtime)
            await _check_counts(server)
            clock.set(START + timedelta(minutes=3))  # this run waits for `release`
            await until(lambda: workflow.calls == 3)
            _, text = await get(server, "/metrics")
            assert value(samples(text), "dataflow_runs_in_flight", trigger="tick") == 1.0
            runtime.stop()
            assert await get(server, "/healthz") == (503, '{"status": "stopping"}\n')
            workflow.release.set()
    assert server is not None
    with pytest.raises(urllib.error.URLError):
        fetch(server.url + "/healthz")


async def _fire_two_runs(clock: FakeClock, runtime: Runtime) -> None:
    """Move the clock only once the previous run is recorded (else the next fire is skipped)."""
    clock.set(START + timedelta(minutes=1))  # on time: lag 0
    await until(lambda: _recorded(runtime, "succeeded") == 1.0)
    clock.set(START + timedelta(minutes=2, seconds=30))  # 30 s late, and it fails
    await until(lambda: _recorded(runtime, "failed") == 1.0)


def _recorded(runtime: Runtime, status: str) -> float | None:
    labels = {"workflow": "m", "trigger": "tick", "status": status}
    return runtime.metrics.registry.get_sample_value("dataflow_runs_total", labels)


async def _check_counts(server: MetricsServer | None) -> None:
    found = samples((await get(server, "/metrics"))[1])
    assert value(found, "dataflow_runs_total", trigger="tick", status="failed") == 1.0
    assert value(found, "dataflow_runs_total", trigger="tick", status="succeeded") == 1.0
    assert value(found, "dataflow_runs_total", trigger="warm", status="succeeded") == 1.0
    assert value(found, "dataflow_fire_lag_seconds_count", trigger="tick") == 2.0
    assert value(found, "dataflow_fire_lag_seconds_sum", trigger="tick") == 30.0
    assert value(found, "dataflow_fire_lag_seconds_count", trigger="warm") is None  # unscheduled
    assert value(found, "dataflow_run_duration_seconds_count", trigger="tick") == 2.0
    assert value(found, "dataflow_runs_in_flight", trigger="tick") == 0.0


def test_each_runtime_has_its_own_registry(tmp_path: Path) -> None:
    """Two runtimes' metrics never collide, and the global registry is left alone."""
    before = {name for name in REGISTRY._names_to_collectors if name.startswith("dataflow")}
    first, second = RunMetrics("m", lambda: START), RunMetrics("m", lambda: START)
    state = TriggerState(StateStore(tmp_path / "state.db"), "m", "t")
    run = Run(
        run_id="r", workflow="m", trigger="t", scheduled_at=None, started_at=START, state=state
    )
    first.run_started(run)
    first.run_finished(run, RunStatus.SUCCEEDED, 0.5)
    second.run_skipped("t")
    succeeded = {"workflow": "m", "trigger": "t", "status": "succeeded"}
    skipped = {**succeeded, "status": "skipped"}
    assert first.registry.get_sample_value("dataflow_runs_total", succeeded) == 1.0
    assert first.registry.get_sample_value("dataflow_runs_total", skipped) is None
    assert second.registry.get_sample_value("dataflow_runs_total", skipped) == 1.0
    assert second.registry.get_sample_value("dataflow_runs_total", succeeded) is None
    assert before == {n for n in REGISTRY._names_to_collectors if n.startswith("dataflow")}


@dataclass
class _Stats:
    """The counters a change-stream trigger's pump keeps."""

    events_handled: int = 0
    dead_letters: int = 0
    token_saved_at: datetime | None = None


class _Stream(Trigger):
    """Stands in for a change-stream trigger: reports its counters through `stream_stats()`."""

    kind = "mongodb_change_stream"

    def __init__(self, name: str) -> None:
        super().__init__(name, lambda change: None)
        self.stats = _Stats()

    async def serve(self, ctx: TriggerContext, *, task_status: object = None) -> None:
        raise NotImplementedError

    def stream_stats(self) -> StreamStats:
        stats = self.stats
        return StreamStats(
            events_handled=stats.events_handled,
            token_saved_at=stats.token_saved_at,
            dead_letters=stats.dead_letters,
        )


def test_change_stream_counters_are_read_at_scrape_time() -> None:
    """Events handled, dead letters and token age come from the trigger's stats when scraped."""
    stream = _Stream("orders")
    metrics = RunMetrics("m", lambda: START)
    metrics.watch([stream])
    get, labels = metrics.registry.get_sample_value, {"workflow": "m", "trigger": "orders"}
    assert get("dataflow_change_events_total", labels) == 0.0
    assert get("dataflow_resume_token_age_seconds", labels) is None  # nothing saved yet
    stream.stats.events_handled, stream.stats.dead_letters = 7, 1
    stream.stats.token_saved_at = START - timedelta(seconds=45)
    assert get("dataflow_change_events_total", labels) == 7.0
    assert get("dataflow_change_dead_letters_total", labels) == 1.0
    assert get("dataflow_resume_token_age_seconds", labels) == 45.0


@contextmanager
def _occupied_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_a_port_in_use_fails_at_start_naming_it(tmp_path: Path) -> None:
    class W(Workflow):
        @cronjob("0 0 1 1 *")
        def yearly(self) -> None:
            pass

    with _occupied_port() as port:
        settings = Settings(state_path=tmp_path / "s.db", metrics_port=port)
        with anyio.fail_after(5), pytest.raises(SettingsError) as info:
            await Runtime(W(), settings=settings, clock=FakeClock(START)).run()
    assert str(info.value).startswith(f"cannot serve metrics on 127.0.0.1:{port}: ")


SMALL = """
from dataflow import Workflow, cronjob

class Small(Workflow):
    @cronjob("0 0 1 1 *")
    def yearly(self):
        pass
"""


def test_run_metrics_port_flag_serves_health_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "small.py").write_text(textwrap.dedent(SMALL))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATAFLOW_STATE_PATH": str(tmp_path / "s.db")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataflow", "run", "small", "--metrics-port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(20, proc.kill)  # a hung process fails the test, never hangs it
    watchdog.start()
    try:
        serving = _line(proc, "serving metrics")
        assert serving["url"].startswith("http://127.0.0.1:")
        _line(proc, "workflow running")
        assert fetch(serving["health"]) == (200, '{"status": "running"}\n')
        assert "dataflow_runs_in_flight" in fetch(serving["url"])[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        watchdog.cancel()
    assert proc.returncode == 0


def _line(proc: subprocess.Popen[str], event: str) -> dict[str, str]:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line).get("event") == event:
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"no {event!r} line")
