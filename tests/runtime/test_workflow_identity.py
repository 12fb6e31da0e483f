"""A workflow is named after its file (or its own `workflow_name`), not its class: renaming the
class keeps its state, and state saved under the class name by earlier releases is carried over
once (file moved, rows renamed), never merged, never taken from another workflow."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from dataflow import Runtime, Settings, Workflow, WorkflowError
from dataflow._cli.loader import load_workflow
from dataflow._core.errors import StateStoreError
from dataflow.main import main
from dataflow.runtime._identity import open_workflow_state, state_file_of
from dataflow.runtime._lock import exclusive_lock
from dataflow.state import StateStore
from dataflow.triggers._changestream.checkpoint import dumps, loads
from dataflow.triggers._cron.trigger import LAST_FIRE
from dataflow.triggers.workflow import implicit_workflow, previous_workflow_name
from tests._change_stream_peer import change_streams, open_oplog, token, wait_for
from tests._runtime import captured_logs

TOKEN_KEY = "resume_token:shop.orders"
OLD_FIRE = "2020-01-01T00:00:00+00:00"
STREAM_AND_CRON = """
from dataflow import Workflow, cronjob, mongodb_change_stream

SEEN = []

class {name}(Workflow):
    @mongodb_change_stream("SHOP_MONGO_URL", "shop", "orders", name="sync",
                           max_await_time=0.05, checkpoint_interval=0.05)
    def sync(self, change_event):
        SEEN.append(int(change_event["_id"]["_data"][2:], 16))

    @cronjob("0 0 1 1 *", timezone="UTC", misfire_grace=None)
    def nightly(self):
        pass
"""
CRON = """
from dataflow import Workflow, cronjob

class {name}(Workflow):{extra}
    @cronjob("0 0 1 1 *", timezone="UTC", misfire_grace=None)
    def nightly(self):
        pass
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder as the working directory: `workflows/`, state in `.dataflow/`."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / ".dataflow").mkdir()
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:  # the workflow modules the loader registered
        if name.startswith("workflows"):
            del sys.modules[name]


def load(project: Path, file: str, source: str) -> type[Workflow]:
    (project / "workflows" / f"{file}.py").write_text(textwrap.dedent(source))
    return load_workflow(file, project / "workflows")


def old_release_state(path: Path, name: str) -> None:
    """What an earlier release left for workflow `name`: a position of each kind, a run and a
    dead letter, all keyed by the class name in lower case."""
    store = StateStore(path)
    try:
        store.set_state(name, "sync", TOKEN_KEY, dumps(token(3)))
        store.set_state(name, "nightly", LAST_FIRE, OLD_FIRE)
        started = datetime.fromisoformat(OLD_FIRE)
        store.record_run_start("old-run", name, "nightly", started, started)
        store.record_run_end("old-run", "succeeded", started)
        store.add_dead_letter(name, "sync", '{"n": 1}', "ValueError: bad")
    finally:
        store.close()


def rows_by_name(path: Path) -> dict[str, set[str]]:
    """Which workflow names each table's rows are keyed by."""
    db = sqlite3.connect(path)
    try:
        return {
            table: {row[0] for row in db.execute(f"SELECT workflow FROM {table}")}
            for table in ("trigger_state", "runs", "dead_letters")
        }
    finally:
        db.close()


@asynccontextmanager
async def serving(workflow: Workflow) -> AsyncIterator[Runtime]:
    """Run on the default state path (`.dataflow/<name>.db`), real clock, until the block ends."""
    runtime = Runtime(workflow, settings=Settings(grace_period=5))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            await wait_for(runtime.started.is_set)
            yield runtime
            runtime.stop()
    finally:
        runtime.state.close()


def succeeded(runtime: Runtime, trigger: str) -> list[datetime | None]:
    runs = runtime.state.runs(runtime.name, trigger)
    return [r.scheduled_at for r in runs if r.status == "succeeded"]


@pytest.mark.anyio
async def test_positions_survive_the_upgrade_and_a_class_rename_and_are_used(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier release saved a resume token and a last fire in `.dataflow/feed.db` (class
    `Feed` in `workflows/shop.py`). The first start moves it to `.dataflow/shop.db` and resumes
    after the saved token, catching up the one yearly fire missed since the saved last fire.
    Then the class is renamed `OrdersFeed`: same file, the stream resumes where it stopped."""
    old_release_state(project / ".dataflow" / "feed.db", "feed")
    this_year = datetime(datetime.now(UTC).year, 1, 1, tzinfo=UTC)
    with open_oplog() as oplog:
        monkeypatch.setenv("SHOP_MONGO_URL", oplog.mongo.url("shop"))
        oplog.updates(3)  # handled by the earlier release: token(3) is saved
        feed = load(project, "shop", STREAM_AND_CRON.format(name="Feed"))
        with captured_logs() as logs:
            async with serving(feed()) as runtime:
                assert runtime.name == "shop"
                oplog.updates(2)
                seen = sys.modules["workflows.shop"].SEEN
                await wait_for(lambda: seen == [4, 5])
                await wait_for(lambda: this_year in succeeded(runtime, "nightly"))
        moved = [e for e in logs if e["event"] == "state carried over to the workflow's new name"]
        assert [(e["moved_from"], e["moved_to"], e["rows"]) for e in moved] == [
            (".dataflow/feed.db", ".dataflow/shop.db", 4)
        ]
        assert not (project / ".dataflow" / "feed.db").exists()

        renamed = load(project, "shop", STREAM_AND_CRON.format(name="OrdersFeed"))
        with captured_logs() as logs:
            async with serving(renamed()) as runtime:
                oplog.updates(1)
                seen = sys.modules["workflows.shop"].SEEN
                await wait_for(lambda: seen == [6])
                await wait_for(
                    lambda: (
                        loads(runtime.state.get_state("shop", "sync", TOKEN_KEY) or "null")
                        == token(6)
                    )
                )
                history = runtime.state.runs("shop", "nightly")
        assert not [e for e in logs if "state" in e["event"] and e["log_level"] != "info"]
    assert change_streams(oplog.mongo) == [{"startAfter": token(3)}, {"startAfter": token(5)}]
    # the catch-up ran once (the last fire was used both times), after the old release's run
    assert [r.run_id for r in history][-1] == "old-run" and len(history) == 2
    assert not (project / ".dataflow" / "ordersfeed.db").exists()
