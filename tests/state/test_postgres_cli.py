"""The PostgreSQL store through the runtime and the CLI: two replicas of one workflow running in
this process on one schema (each fire runs once between them), then every CLI command against
that schema with `--state postgresql://...` or DATAFLOW_STATE_URL, and the one-line errors of
a URL that cannot work. The password in the URL never reaches the output."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from dataflow import Runtime, Settings
from dataflow._cli.loader import load_workflow
from dataflow.main import main
from dataflow.testing import FakeClock
from tests._paths import ROOT
from tests._runtime import START
from tests.state._pg_store import CLOSED_PORT, fresh_schema, schema_url

PASSWORD = "pg-S3cret-pw"  # the server trusts local connections: the password is carried, unused
SHOP = """
from dataflow import Workflow, cronjob, current_run

class Shop(Workflow):
    @cronjob("*/15 * * * *", timezone="UTC")
    def sync(self):
        scheduled = current_run().scheduled_at
        if scheduled is not None and scheduled.minute == 30:
            raise ValueError("bad row 42")
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The workflow file, and a schema two replicas ran it on from 09:00 to 09:45."""
    folder = tmp_path_factory.mktemp("shared")
    workflow_file = folder / "shop.py"
    workflow_file.write_text(textwrap.dedent(SHOP))
    with fresh_schema() as schema:
        url = schema_url(schema, password=PASSWORD)
        anyio.run(_two_replicas, workflow_file, url)
        yield workflow_file, url


async def _two_replicas(workflow_file: Path, url: str) -> None:
    """Both replicas see every fire time (their clocks move together); the fire ledger lets
    one of them run each."""
    workflow_class = load_workflow(str(workflow_file))
    clocks = [FakeClock(START), FakeClock(START)]
    replicas = [
        Runtime(workflow_class(), settings=Settings(state_url=url), clock=clock) for clock in clocks
    ]
    finished = _finished_runs(replicas)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for replica in replicas:
                tg.start_soon(replica.run)
            for replica in replicas:
                await _wait(replica.started.is_set)
            for count, minute in enumerate((15, 30, 45), start=1):
                for clock in clocks:
                    clock.set(START + timedelta(minutes=minute))
                await _wait(lambda count=count: finished() == count)  # type: ignore[misc]
            for replica in replicas:
                replica.stop()
    for replica in replicas:
        replica.state.close()


def _finished_runs(replicas: list[Runtime]) -> Callable[[], float]:
    def count() -> float:
        return sum(
            replica.metrics.registry.get_sample_value(
                "dataflow_runs_total", {"workflow": "shop", "trigger": "sync", "status": status}
            )
            or 0.0
            for replica in replicas
            for status in ("succeeded", "failed")
        )

    return count


async def _wait(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.001)


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    return code, out, err


def test_two_replicas_ran_each_fire_once_and_history_shows_them(
    shared: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`history --state postgresql://...`: three runs, one per fire, the 09:30 one failed."""
    workflow_file, url = shared
    code, out, _ = cli("history", str(workflow_file), "--state", url, "--json", capsys=capsys)
    runs = json.loads(out)
    assert code == 0
    assert sorted(run["scheduled_at"][11:16] for run in runs) == ["09:15", "09:30", "09:45"]
    assert [run["status"] for run in runs if run["scheduled_at"][11:16] == "09:30"] == ["failed"]


def test_list_dead_letters_and_check_read_the_shared_store(
    shared: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through DATAFLOW_STATE_URL: `list` shows the last fire, `dead-letters` none, `check`
    the store with its password masked."""
    workflow_file, url = shared
    monkeypatch.setenv("DATAFLOW_STATE_URL", url)
    code, out, _ = cli("list", str(workflow_file), "--json", capsys=capsys)
    (sync,) = json.loads(out)["triggers"]
    assert code == 0 and [e["value"] for e in sync["state"] if e["key"] == "last_fire"] == [
        "2026-03-02T09:45:00+00:00"
    ]
    code, out, _ = cli("dead-letters", str(workflow_file), "--json", capsys=capsys)
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = cli("check", str(workflow_file), capsys=capsys)
    state_line = next(line for line in out.splitlines() if " state " in line)
    assert code == 0 and state_line.startswith("ok")
    assert "postgres:***@127.0.0.1:5432/test" in state_line and "saved value" in state_line


def test_trigger_runs_once_against_the_shared_store(
    shared: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`trigger` runs the handler once and records the run in the shared store."""
    workflow_file, url = shared
    code, out, _ = cli(
        "trigger", str(workflow_file), "sync", "--state", url, "--json", capsys=capsys
    )
    (run,) = json.loads(out)
    assert (code, run["status"], run["scheduled_at"]) == (0, "succeeded", None)
    code, out, _ = cli("history", str(workflow_file), "--state", url, "--json", capsys=capsys)
    assert run["run_id"] in [r["run_id"] for r in json.loads(out)]


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        (CLOSED_PORT, 1, "state store postgresql://ops:***@127.0.0.1:1/test: connection failed"),
        ("mysql://ops:pg-S3cret-pw@db/x", 2, "DATAFLOW_STATE_URL='mysql://ops:***@db/x' is not"),
        (
            "postgresql://ops:pg-S3cret-pw@127.0.0.1/test?nonsense=1",
            2,
            "state store URL postgresql://ops:***@127.0.0.1/test?nonsense=1 is not valid",
        ),
        (
            "postgresql://ops:pg-S3cret-pw@127.0.0.1:abc/test",
            2,
            "DATAFLOW_STATE_URL='postgresql://ops:***@127.0.0.1:abc/test' is not valid: Port",
        ),
        (
            "postgresql://ops@127.0.0.1/test?password=pg-S3cret-pw&nonsense=1",
            2,
            "state store URL postgresql://ops@127.0.0.1/test?password=*** is not valid",
        ),
    ],
)
def test_a_url_that_cannot_work_is_one_line_without_the_password(
    shared: tuple[Path, str], capsys: pytest.CaptureFixture[str], url: str, code: int, says: str
) -> None:
    """Unreachable server: exit 1 (a restart may help); not a PostgreSQL URL, or one psycopg
    cannot read: exit 2 (bad input)."""
    workflow_file, _ = shared
    found, out, err = cli("history", str(workflow_file), "--state", url, capsys=capsys)
    assert (found, out) == (code, "")
    assert err.startswith(f"dataflow: error: {says}") and err.count("\n") == 1
    assert "S3cret" not in err


def test_reset_state_with_a_postgresql_store_is_refused(
    shared: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--reset-state` sets a broken state FILE aside: with a URL store it would silently do
    nothing, so it is bad input (exit 2), said in one line."""
    workflow_file, url = shared
    code, out, err = cli("run", str(workflow_file), "--state", url, "--reset-state", capsys=capsys)
    assert (code, out) == (2, "")
    assert err.startswith("dataflow: error: --reset-state sets a broken state file aside")


def test_without_psycopg_the_error_says_what_to_install(
    shared: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_file, url = shared
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    code, _, err = cli("history", str(workflow_file), "--state", url, capsys=capsys)
    assert code == 1 and err.count("\n") == 1
    assert "psycopg, which is not installed: pip install 'dataflow-runtime[postgresql]'" in err


def test_import_dataflow_and_the_sqlite_default_never_load_psycopg(tmp_path: Path) -> None:
    """psycopg is imported by the first PostgreSQL store only: a process that imports dataflow
    and uses a state file never loads it."""
    code = (
        "import sys, dataflow\n"
        "from dataflow.state import PostgresStore, SqliteStore\n"
        f"SqliteStore({str(tmp_path / 'state.db')!r}).close()\n"
        "print('psycopg' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "False\n", "")
