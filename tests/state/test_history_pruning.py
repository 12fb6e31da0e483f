"""The runtime keeps run history bounded: it prunes at start, then every hour of (fake) wall
time, by `DATAFLOW_HISTORY_DAYS` and `DATAFLOW_HISTORY_MAX_RUNS_PER_TRIGGER`."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

from dataflow import Runtime, Settings, SettingsError, Workflow, cronjob
from dataflow.runtime._pruner import BATCH, PRUNE_INTERVAL
from dataflow.state import SqliteStore
from dataflow.testing import FakeClock
from tests._runtime import START, captured_logs, until

pytestmark = pytest.mark.anyio
DAY = timedelta(days=1)


class Yearly(Workflow):
    workflow_name = "w"

    @cronjob("0 0 1 1 *")
    def tick(self) -> None:
        pass


def seed(path: Path) -> None:
    """Runs 40 days old (past 30 days), one due to pass 30 days in half an hour, a run still
    'running' from 40 days ago of another workflow, and 12 recent runs of one trigger."""
    store = SqliteStore(path)
    for i in range(BATCH + 3):  # more than a batch: the pass takes several writes
        finished(store, f"old{i}", "tick", START - 40 * DAY)
    finished(store, "edge", "tick", START - 30 * DAY + timedelta(minutes=30))
    store.record_run_start("other running", "v", "tick", None, START - 40 * DAY)
    for i in range(12):
        finished(store, f"recent{i}", "busy", START - timedelta(minutes=60 - i))
    store.close()


def finished(store: SqliteStore, run_id: str, trigger: str, at: datetime) -> None:
    store.record_run_start(run_id, "w", trigger, None, at)
    store.record_run_end(run_id, "succeeded", at)


def run_ids(runtime: Runtime, workflow: str = "w") -> set[str]:
    return {r.run_id for r in runtime.state.runs(workflow, limit=10_000)}


async def test_history_is_pruned_at_start_and_then_every_hour(tmp_path: Path) -> None:
    """At start: the runs past 30 days go (in batches) and the busy trigger keeps its newest
    10; the run 29.5 days old stays until the hourly pass after it turns 30 days old; another
    workflow's history is not this runtime's to prune."""
    path = tmp_path / "state.db"
    seed(path)
    clock = FakeClock(START)
    settings = Settings(state_path=path, history_days=30, history_max_runs_per_trigger=10)
    runtime = Runtime(Yearly(), settings=settings, clock=clock)
    with captured_logs() as logs, anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            await until(lambda: any(e["event"] == "run history pruned" for e in logs))
            assert run_ids(runtime) == {"edge"} | {f"recent{i}" for i in range(2, 12)}
            (first,) = [e for e in logs if e["event"] == "run history pruned"]
            assert first["rows"] == BATCH + 3 + 2
            clock.advance(PRUNE_INTERVAL)
            await until(lambda: "edge" not in run_ids(runtime))
            runtime.stop()
    store = SqliteStore(path)
    assert [r.run_id for r in store.runs("v")] == ["other running"]
    store.close()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATAFLOW_HISTORY_DAYS", "0"),
        ("DATAFLOW_HISTORY_DAYS", "nan"),
        ("DATAFLOW_HISTORY_DAYS", "a month"),
        ("DATAFLOW_HISTORY_MAX_RUNS_PER_TRIGGER", "0"),
        ("DATAFLOW_HISTORY_MAX_RUNS_PER_TRIGGER", "1.5"),
    ],
)
def test_bad_history_settings_are_one_line_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}=") and " is not " in message and "\n" not in message


def test_history_settings_are_read_with_their_defaults() -> None:
    assert (Settings.from_env({}).history_days, Settings().history_max_runs_per_trigger) == (
        30.0,
        10_000,
    )
    found = Settings.from_env(
        {"DATAFLOW_HISTORY_DAYS": "7.5", "DATAFLOW_HISTORY_MAX_RUNS_PER_TRIGGER": "100"}
    )
    assert (found.history_days, found.history_max_runs_per_trigger) == (7.5, 100)
