"""A workflow is named after its file (or its own `workflow_name`), not its class: renaming the
class keeps its state, and state saved under the class name by earlier releases is carried over
once (file moved, rows renamed), never merged, never taken from another workflow."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import types
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


def open_state(workflow_class: type[Workflow], **settings: Any) -> StateStore:
    return open_workflow_state(workflow_class, Settings(**settings))


def test_old_file_moves_with_companions_and_its_rows_are_renamed_in_one_go(
    project: Path,
) -> None:
    """Every row keyed `feed` is keyed `shop` after, the file and its -wal, -shm and lock are
    gone from the old name, and one info line says what moved where."""
    old = project / ".dataflow" / "feed.db"
    old_release_state(old, "feed")
    for companion in ("-wal", "-shm", ".lock"):
        old.with_name(old.name + companion).touch()
    feed = load(project, "shop", CRON.format(name="Feed", extra=""))
    with captured_logs() as logs:
        store = open_state(feed)
    store.close()
    new = project / ".dataflow" / "shop.db"
    assert store.path.resolve() == new and sorted(p.name for p in new.parent.iterdir()) == [
        "shop.db",
        "shop.db.lock",  # the new name's lock, held while moving
    ]
    assert rows_by_name(new) == {
        "trigger_state": {"shop"},
        "runs": {"shop"},
        "dead_letters": {"shop"},
    }
    assert [(e["event"], e["log_level"], e["rows"]) for e in logs] == [
        ("state carried over to the workflow's new name", "info", 4)
    ]


def test_both_files_present_warns_and_merges_nothing(project: Path) -> None:
    old, new = project / ".dataflow" / "feed.db", project / ".dataflow" / "shop.db"
    old_release_state(old, "feed")
    old_release_state(new, "shop")
    before = rows_by_name(old)
    feed = load(project, "shop", CRON.format(name="Feed", extra=""))
    with captured_logs() as logs:
        open_state(feed).close()
    assert [(e["log_level"], e["state"], e["previous_state"]) for e in logs] == [
        ("warning", ".dataflow/shop.db", ".dataflow/feed.db")
    ]
    assert rows_by_name(old) == before and rows_by_name(new)["runs"] == {"shop"}


def test_explicit_workflow_name_wins_over_file_and_class(project: Path) -> None:
    """Set in the class body, it names the state file whatever the file or class is called, and
    nothing is carried over (earlier releases used that name too)."""
    old_release_state(project / ".dataflow" / "feed.db", "feed")
    pinned = CRON.format(name="Feed", extra='\n    workflow_name = "orders"\n')
    for file in ("shop", "renamed_file"):
        feed = load(project, file, pinned)
        assert feed.workflow_name == previous_workflow_name(feed) == "orders"
        assert state_file_of(feed, Settings()) == Path(".dataflow/orders.db")
    assert (project / ".dataflow" / "feed.db").exists()


def test_a_subclass_does_not_inherit_the_name_and_a_bad_name_is_refused(project: Path) -> None:
    base = load(project, "shop", CRON.format(name="Feed", extra='\n    workflow_name = "o"\n'))
    child: type[Workflow] = type("Child", (base,), {"__module__": "workflows.child"})
    assert child.workflow_name == "child"
    with pytest.raises(WorkflowError, match=r"workflow_name = 'a/b' is not a usable name"):
        type("Bad", (Workflow,), {"workflow_name": "a/b"})


def test_module_style_is_named_after_its_file_also_as_a_script(project: Path) -> None:
    nightly = load(
        project,
        "nightly",
        "from dataflow import cronjob\n\n@cronjob('@daily')\ndef job():\n    pass\n",
    )
    assert nightly.workflow_name == previous_workflow_name(nightly) == "nightly"
    script = types.ModuleType("__main__")
    script.__file__ = str(project / "workflows" / "nightly.py")
    exec("from dataflow import cronjob\n\n@cronjob('@daily')\ndef job():\n    pass\n", vars(script))
    run_directly = implicit_workflow(script)
    assert run_directly is not None
    assert (run_directly.workflow_name, previous_workflow_name(run_directly)) == (
        "nightly",
        "__main__",
    )


def test_several_unnamed_workflows_in_one_file_fail_at_load_naming_the_fix(project: Path) -> None:
    two = CRON.format(name="First", extra="") + CRON.format(name="Second", extra="")
    with pytest.raises(
        WorkflowError, match=r"set workflow_name in each .*First: 'first', Second: 'second'"
    ):
        load_workflow("two:First", _write(project, "two", two))
    named = CRON.format(name="First", extra="") + CRON.format(
        name="Second", extra='\n    workflow_name = "second"\n'
    )
    assert load_workflow("two:First", _write(project, "two", named)).workflow_name == "two"


def _write(project: Path, file: str, source: str) -> Path:
    (project / "workflows" / f"{file}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(f"workflows.{file}", None)
    return project / "workflows"


def test_old_file_held_by_a_running_process_is_not_moved(project: Path) -> None:
    """An earlier release still runs on `.dataflow/feed.db`: refused in one line naming the file
    and the fix, and nothing moved or created."""
    old = project / ".dataflow" / "feed.db"
    old_release_state(old, "feed")
    feed = load(project, "shop", CRON.format(name="Feed", extra=""))
    with exclusive_lock(old), pytest.raises(StateStoreError) as refused:
        open_state(feed)
    assert str(refused.value) == (
        "another dataflow process is running with state file .dataflow/feed.db: stop it, then "
        "start again: its state moves to .dataflow/shop.db (the workflow's name 'shop')"
    )
    assert old.exists() and not (project / ".dataflow" / "shop.db").exists()


def test_a_file_another_workflow_claimed_is_not_taken(project: Path) -> None:
    """`workflows/feed.py` now owns `.dataflow/feed.db`; a class `Feed` in `workflows/shop.py`
    (whose earlier name was `feed`) must not move it, nor take its rows in a shared file."""
    feed_file = load(project, "feed", CRON.format(name="Anything", extra=""))
    open_state(feed_file).close()  # claims `feed` in .dataflow/feed.db
    shop = load(project, "shop", CRON.format(name="Feed", extra=""))
    open_state(shop).close()
    assert (project / ".dataflow" / "feed.db").exists()
    shared = project / "shared.db"
    old_release_state(shared, "feed")
    open_state(feed_file, state_path=shared).close()
    open_state(shop, state_path=shared).close()
    assert rows_by_name(shared)["runs"] == {"feed"}


def test_rows_in_a_file_set_by_state_path_are_renamed_in_place(project: Path) -> None:
    shared = project / "shared.db"
    old_release_state(shared, "feed")
    feed = load(project, "shop", CRON.format(name="Feed", extra=""))
    with captured_logs() as logs:
        open_state(feed, state_path=shared).close()
    assert rows_by_name(shared)["trigger_state"] == {"shop"}
    assert [(e["moved_from"], e["moved_to"], e["rows"]) for e in logs] == [
        (str(shared), str(shared), 4)
    ]


def test_every_read_command_uses_the_carried_over_state(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`history` (the first command after the upgrade) carries it over; `list`, `dead-letters`
    and `check` then read the same file under the new name."""
    old_release_state(project / ".dataflow" / "feed.db", "feed")
    (project / "workflows" / "shop.py").write_text(
        textwrap.dedent(CRON.format(name="Feed", extra=""))
    )
    assert main(["history", "shop", "--json"]) == 0
    assert [run["workflow"] for run in json.loads(capsys.readouterr().out)] == ["shop"]
    assert main(["list", "shop", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["value"] for t in listed["triggers"] for s in t["state"]] == [OLD_FIRE]
    assert main(["dead-letters", "shop", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    main(["check", "shop", "--json"])
    states = [c for c in json.loads(capsys.readouterr().out) if c["kind"] == "state"]
    assert [c["detail"].split(":")[0] for c in states] == [".dataflow/shop.db"]
