"""`list`, `trigger`, `history`, `dead-letters` and `check` against a state file from a real run.

The state file comes from the workflow run in-process by `Runtime` under a hand-driven
`FakeClock` (fires at 09:15, 09:30 and 09:45 UTC, the 09:30 one failing). Read-only commands
are called through `main([...])`; the commands that run handlers run as subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from dataflow import Runtime, Settings
from dataflow._cli.loader import load_workflow
from dataflow._cli.tables import print_table
from dataflow.main import main
from dataflow.state import StateStore
from dataflow.testing import FakeClock
from tests._paths import ROOT
from tests._runtime import START

SHOP = """
import json, os
from pathlib import Path
from dataflow import Workflow, cronjob, current_run, startup

class Shop(Workflow):
    @startup
    def prepare(self):
        if os.environ.get("SHOP_BREAK_STARTUP"):
            raise ConnectionRefusedError("source down")

    @cronjob("*/15 * * * *", timezone="Europe/Berlin")
    def sync(self):
        run = current_run()
        if run.payload is not None:
            Path(os.environ["SHOP_SEEN"]).write_text(json.dumps(run.payload))
            if run.payload.get("fail"):
                raise ValueError("still bad")
        elif run.scheduled_at is not None and run.scheduled_at.minute == 30:
            raise ValueError("bad row 42")

    @cronjob("0 6 * * 1-5", timezone="America/New_York", overlap="queue_one", timeout=600)
    def report(self):
        pass
"""


def write_workflow(folder: Path, name: str, source: str) -> Path:
    (folder / "workflows").mkdir(exist_ok=True)
    path = folder / "workflows" / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


async def _produce_state(workflow_file: Path, state: Path) -> None:
    """Run the workflow to 09:45, firing by hand, then stop: the state file stays behind."""
    clock = FakeClock(START)
    runtime = Runtime(
        load_workflow(str(workflow_file))(), settings=Settings(state_path=state), clock=clock
    )
    finished = _finished_runs(runtime)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            await _wait(runtime.started.is_set)
            for count, minute in enumerate((15, 30, 45), start=1):
                clock.set(START + timedelta(minutes=minute))
                await _wait_for_runs(finished, "sync", count)
            runtime.stop()
    runtime.state.close()


def _finished_runs(runtime: Runtime) -> Callable[[str], float]:
    def count(trigger: str) -> float:
        registry = runtime.metrics.registry
        return sum(
            registry.get_sample_value(
                "dataflow_runs_total", {"workflow": "shop", "trigger": trigger, "status": s}
            )
            or 0.0
            for s in ("succeeded", "failed")
        )

    return count


async def _wait(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.001)


async def _wait_for_runs(finished: Callable[[str], float], trigger: str, count: int) -> None:
    await _wait(lambda: finished(trigger) == count)


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("produced")
    workflow_file = write_workflow(folder, "shop", SHOP)
    anyio.run(_produce_state, workflow_file, folder / "state.db")
    return folder


@pytest.fixture
def shop(produced: Path, tmp_path: Path) -> Path:
    """A copy of the produced workflow and state file, for one test to read or change."""
    write_workflow(tmp_path, "shop", SHOP)
    shutil.copy(produced / "state.db", tmp_path / "state.db")
    return tmp_path


def cli(folder: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(
        [
            *args[:1],
            str(folder / "workflows" / "shop.py"),
            *args[1:],
            "--state",
            str(folder / "state.db"),
        ]
    )
    out, err = capsys.readouterr()
    assert err == "" or code != 0, err
    return code, out


def cli_json(folder: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> Any:
    code, out = cli(folder, *args, "--json", capsys=capsys)
    assert code == 0
    return json.loads(out)


def run_cli(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAFLOW_STATE_PATH": str(folder / "state.db"),
        "SHOP_SEEN": str(folder / "seen.json"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "dataflow", *args],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- list ---------------------------------------------------------------------------------------
def test_list_shows_next_fires_in_zone_and_utc_policies_and_last_fire(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = cli_json(shop, "list", "--next", "2", "--after", "2026-03-02T09:50:00Z", capsys=capsys)
    prepare, sync, report = found["triggers"]
    assert (prepare["name"], prepare["kind"], prepare["next"]) == ("prepare", "startup", [])
    assert sync["source"] == "*/15 * * * *" and sync["timezone"] == "Europe/Berlin"
    assert sync["next"] == [
        {"local": "2026-03-02T11:00:00+01:00", "utc": "2026-03-02T10:00:00+00:00"},
        {"local": "2026-03-02T11:15:00+01:00", "utc": "2026-03-02T10:15:00+00:00"},
    ]
    assert [(s["key"], s["value"]) for s in sync["state"]] == [
        ("last_fire", "2026-03-02T09:45:00+00:00")
    ]
    assert report["policy"] == {
        "overlap": "queue_one",
        "catchup": "coalesce",
        "misfire_grace": 60.0,
        "jitter": None,
        "timeout": 600,
    }
    assert [n["utc"] for n in report["next"]] == [  # 06:00 New York (EST) on weekdays
        "2026-03-02T11:00:00+00:00",
        "2026-03-03T11:00:00+00:00",
    ]


def test_list_table_is_plain_when_piped(
    shop: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped: no escape codes; long cells wrap inside their column to fit 100 columns."""
    monkeypatch.setenv("COLUMNS", "100")
    code, out = cli(shop, "list", "--next", "1", "--after", "2026-03-02T09:50:00Z", capsys=capsys)
    assert code == 0 and "\x1b" not in out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split() == [
        "TRIGGER",
        "KIND",
        "SCHEDULE",
        "/",
        "SOURCE",
        "POLICY",
        "NEXT",
        "(ZONE)",
        "NEXT",
        "(UTC)",
        "STATE",
    ]
    first = lines.index(next(line for line in lines if line.startswith("sync")))
    block = lines[first : lines.index("", first)]  # the row and the lines its cells wrap to
    assert "*/15 * * * *" in block[0] and "overlap=skip" in block[0]
    assert "2026-03-02" in block[0] and "11:00:00 CET" in block[1] and "10:00:00Z" in block[1]
    state = " ".join(line[lines[0].index("STATE") :] for line in block)  # the last column
    assert state.startswith("last fire 2026-03-02 09:45:00Z")


def test_list_needs_no_state_file_and_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_workflow(tmp_path, "shop", SHOP)
    found = cli_json(tmp_path, "list", capsys=capsys)
    assert [t["state"] for t in found["triggers"]] == [[], [], []]
    assert not (tmp_path / "state.db").exists()


def test_table_on_a_terminal_has_a_bold_header_and_cuts_the_last_column(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("COLUMNS", "30")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    print_table(("A", "B"), [["x", "a long error message that does not fit"]], stream=out)
    header, row = out.getvalue().splitlines()
    assert header == "\x1b[1mA  B\x1b[0m"
    assert row == "x  a long error message that…" and len(row) <= 30


# -- history ------------------------------------------------------------------------------------
def test_history_lists_runs_newest_first_with_status_and_error(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = cli_json(shop, "history", capsys=capsys)
    assert [(r["trigger"], r["scheduled_at"], r["status"]) for r in runs] == [
        ("sync", "2026-03-02T09:45:00+00:00", "succeeded"),
        ("sync", "2026-03-02T09:30:00+00:00", "failed"),
        ("sync", "2026-03-02T09:15:00+00:00", "succeeded"),
        ("prepare", None, "succeeded"),
    ]
    assert runs[1]["error_summary"] == "ValueError: bad row 42"
    assert runs[1]["started_at"] == "2026-03-02T09:30:00+00:00" and runs[1]["duration"] == 0.0


def test_history_filters_by_trigger_failure_and_limit(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = cli(shop, "history", "--failed", capsys=capsys)
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:4] == ["RUN", "TRIGGER", "SCHEDULED", "(UTC)"]
    assert row.split()[1:] == [
        "sync",
        "2026-03-02",
        "09:30:00Z",
        "2026-03-02",
        "09:30:00Z",
        "0.000s",
        "failed",
        "ValueError:",
        "bad",
        "row",
        "42",
    ]
    limited = cli_json(shop, "history", "--trigger", "sync", "--limit", "2", capsys=capsys)
    assert [r["scheduled_at"][11:16] for r in limited] == ["09:45", "09:30"]


def test_history_shows_a_batch_of_change_events_with_its_count_and_positions(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One row for a batch of change events: its count in the status, its first and last
    position (the start of their resume tokens) in the last column; --json has all of it."""
    store = StateStore(shop / "state.db")
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    store.record_run_start("b" * 32, "shop", "sync", None, at)
    first, last = '{"_data": "8265A1B2C3000000012B"}', '{"_data": "8265A1B2C9000000052B"}'
    store.record_batch_end("b" * 32, at + timedelta(seconds=1.5), 1234, first, last)
    store.close()
    code, out = cli(shop, "history", "--limit", "1", capsys=capsys)
    assert code == 0
    row = out.splitlines()[1].split()
    assert row[0] == "bbbbbbbb" and row[5:] == [
        "1.5s",
        "succeeded",
        "(1,234",
        "events)",
        "8265A1B2C300000001",
        "..",
        "8265A1B2C900000005",
    ]
    [batch] = cli_json(shop, "history", "--limit", "1", capsys=capsys)
    assert (batch["events"], batch["duration"]) == (1234, 1.5)
    assert (batch["first_position"], batch["last_position"]) == (first, last)


def test_history_finds_a_run_by_the_short_id_the_console_log_shows(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = cli_json(shop, "history", "--failed", capsys=capsys)[0]
    short = failed["run_id"][:8]
    code, out = cli(shop, "history", "--run", short.upper(), capsys=capsys)
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [[short, "sync"]]
    [found] = cli_json(shop, "history", "--run", short, capsys=capsys)
    assert found["run_id"] == failed["run_id"] and found["status"] == "failed"
    assert cli_json(shop, "history", "--run", failed["run_id"], capsys=capsys) == [found]


def test_history_refuses_a_run_id_that_is_not_hex(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["history", str(shop / "workflows" / "shop.py"), "--run", "run-42"]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "--run: expected a run id (hex digits), not 'run-42'" in line


# -- trigger ------------------------------------------------------------------------------------
def _history(folder: Path) -> list[Any]:
    store = StateStore(folder / "state.db")
    try:
        return store.runs("shop", limit=100)
    finally:
        store.close()


def test_trigger_runs_startup_then_the_handler_and_records_the_run(shop: Path) -> None:
    result = run_cli(shop, "trigger", "shop", "sync", "--json")
    assert result.returncode == 0, result.stderr
    [printed] = json.loads(result.stdout)
    newest, startup, *older = _history(shop)
    assert (newest.trigger, newest.status, newest.scheduled_at) == ("sync", "succeeded", None)
    assert printed["run_id"] == newest.run_id
    assert (startup.trigger, startup.status) == ("prepare", "succeeded")
    assert startup.ended_at is not None and startup.ended_at <= newest.started_at
    assert len(older) == 4


def test_trigger_no_startup_and_payload_failure_exit_1(shop: Path) -> None:
    result = run_cli(shop, "trigger", "shop", "sync", "--no-startup", "--payload", '{"fail": 1}')
    assert result.returncode == 1
    assert "failed" in result.stdout and "ValueError: still bad" in result.stdout
    assert json.loads((shop / "seen.json").read_text()) == {"fail": 1}
    newest, previous = _history(shop)[:2]
    assert (newest.trigger, newest.status) == ("sync", "failed")
    assert previous.scheduled_at == datetime(2026, 3, 2, 9, 45, tzinfo=UTC)  # no startup run


def test_trigger_startup_failure_exits_1_naming_the_handler(shop: Path) -> None:
    result = run_cli(shop, "trigger", "shop", "sync", SHOP_BREAK_STARTUP="1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "dataflow: error: startup handler 'prepare' failed: ConnectionRefusedError: source down"
    )
    assert _history(shop)[0].trigger == "prepare"


def test_trigger_unknown_name_or_bad_payload_exits_2(shop: Path) -> None:
    unknown = run_cli(shop, "trigger", "shop", "nosuch")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "dataflow: error: workflow 'shop' has no trigger 'nosuch': it has prepare, sync, report"
    )
    bad = run_cli(shop, "trigger", "shop", "sync", "--payload", "{oops")
    assert bad.returncode == 2 and "--payload: not valid JSON" in bad.stderr


SLOW = """
import time
from dataflow import Workflow, cronjob, current_run

class Slow(Workflow):
    @cronjob("0 0 1 1 *")
    def crawl(self):
        while not current_run().cancelled:
            time.sleep(0.005)
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigint_cancels_a_triggered_run_and_records_it(tmp_path: Path, backend: str) -> None:
    write_workflow(tmp_path, "slow", SLOW)
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "DATAFLOW_STATE_PATH": str(tmp_path / "s.db")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dataflow",
            "trigger",
            "slow",
            "crawl",
            "--backend",
            backend,
            "--log-format",
            "json",
            "--json",
        ],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, proc.kill)  # a hung process fails the test, never hangs it
    watchdog.start()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"run started"' in line:
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        watchdog.cancel()
    assert proc.returncode == 1
    [run] = json.loads(out)
    assert (run["trigger"], run["status"]) == ("crawl", "cancelled")


# -- dead letters -------------------------------------------------------------------------------
def _add_letters(folder: Path) -> None:
    store = StateStore(folder / "state.db")
    try:
        store.add_dead_letter("shop", "sync", '{"order": 42}', "Traceback ...\nKeyError: 'sku'")
        store.add_dead_letter("shop", "sync", '{"fail": true}', "Traceback ...\nValueError: x")
    finally:
        store.close()


def test_dead_letters_lists_and_retry_reruns_one(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_letters(shop)
    code, out = cli(shop, "dead-letters", capsys=capsys)
    header, first, second = out.splitlines()
    assert code == 0
    assert header.split() == ["ID", "TRIGGER", "CREATED", "(UTC)", "RETRIED", "ERROR", "PAYLOAD"]
    assert first.split()[:2] == ["1", "sync"] and first.split()[-4:] == [
        "KeyError:",
        "'sku'",
        '{"order":',
        "42}",
    ]
    assert second.split()[:2] == ["2", "sync"] and second.split()[-4:] == [
        "ValueError:",
        "x",
        '{"fail":',
        "true}",
    ]
    retried = run_cli(shop, "dead-letters", "shop", "--retry", "1")
    assert retried.returncode == 0, retried.stderr
    assert json.loads((shop / "seen.json").read_text()) == {"order": 42}
    assert [letter["id"] for letter in cli_json(shop, "dead-letters", capsys=capsys)] == [2]
    everything = cli_json(shop, "dead-letters", "--all", capsys=capsys)
    assert [(x["id"], x["retry_status"]) for x in everything] == [(1, "succeeded"), (2, None)]


def test_dead_letter_retry_that_fails_exits_1_and_keeps_the_letter(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_letters(shop)
    retried = run_cli(shop, "dead-letters", "shop", "--retry", "2", "--no-startup")
    assert retried.returncode == 1 and "ValueError: still bad" in retried.stdout
    letters = cli_json(shop, "dead-letters", capsys=capsys)
    assert [(x["id"], x["retry_status"]) for x in letters] == [(1, None), (2, "failed")]
    missing = run_cli(shop, "dead-letters", "shop", "--retry", "9")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "dataflow: error: workflow 'shop' has no dead letter 9"


# -- check --------------------------------------------------------------------------------------
CONNECTED = """
import threading
from dataflow import Workflow, cronjob
from dataflow.connection import Connection, MongoDB, SQLiteConnection

class Hung(Connection):
    def connect(self): pass
    def disconnect(self): pass
    def ping(self): threading.Event().wait()
    def __repr__(self): return "Hung()"

class Connected(Workflow):
    cache = SQLiteConnection(r"{cache}")
    source = MongoDB("mongodb://etl:s3cret@127.0.0.1:{port}/shop")

    def __init__(self):
        self.stuck = Hung()

    @cronjob("0 * * * *")
    def hourly(self):
        pass
"""


def test_check_tries_each_connection_and_never_prints_a_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    source = CONNECTED.format(cache=tmp_path / "cache.db", port=unused_tcp_port)
    path = write_workflow(tmp_path, "connected", source)
    code = main(["check", str(path), "--state", str(tmp_path / "s.db"), "--timeout", "0.5"])
    out, err = capsys.readouterr()
    assert code == 1 and "s3cret" not in out + err
    lines = [line.split(None, 2) for line in out.splitlines()]
    assert [(status, kind) for status, kind, _ in lines] == [
        ("ok", "settings"),
        ("ok", "import"),
        ("ok", "trigger"),
        ("ok", "state"),
        ("ok", "instance"),
        ("ok", "connection"),
        ("FAIL", "connection"),
        ("FAIL", "connection"),
    ]
    cache, source, stuck = (detail for _, _, detail in lines[5:])
    assert cache.startswith("cache: SQLiteConnection(") and "answered in" in cache
    assert source.startswith(f"source: MongoDB('mongodb://etl:***@127.0.0.1:{unused_tcp_port}")
    assert stuck == "stuck: Hung(): no answer within 0.5s"


def test_check_uses_the_workflows_own_connections_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = CONNECTED.format(cache=tmp_path / "cache.db", port=1) + (
        "\n    def connections(self):\n        return {'only_cache': self.cache}\n"
    )
    path = write_workflow(tmp_path, "connected", source)
    checks = json.loads(_check_json(path, tmp_path, capsys))
    assert [c["detail"].split(":")[0] for c in checks if c["kind"] == "connection"] == [
        "only_cache"
    ]
    assert all(c["ok"] for c in checks)


def test_check_reports_an_import_error_as_one_failed_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_workflow(tmp_path, "broken", "import json\n\nvalue = json.loads('{')\n")
    code = main(["check", str(path), "--state", str(tmp_path / "s.db")])
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and out[0].startswith("ok    settings")
    assert out[1].startswith("FAIL  import      workflow ") and "JSONDecodeError" in out[1]
    assert len(out) == 2


def _check_json(path: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["check", str(path), "--state", str(folder / "s.db"), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- change streams -----------------------------------------------------------------------------
FEED = """
import json, os
from pathlib import Path
from dataflow import Workflow
from dataflow.triggers.mongo_change_listener import mongodb_change_stream

class Feed(Workflow):
    @mongodb_change_stream("mongodb://etl:s3cret@127.0.0.1:{port}/?replicaSet=rs0", "shop",
                           "orders", operation_types=["insert", "update"])
    def orders(self, change):
        seen = {{"id": type(change["_id"]).__name__, "sku": change["fullDocument"]["sku"]}}
        Path(os.environ["SHOP_SEEN"]).write_text(json.dumps(seen))

    @mongodb_change_stream("FEED_MONGO_URL", "shop", "returns")
    def returns(self, change):
        pass
"""
TOKEN = {"_data": "8265E3A4C0000000012B0229296E04"}  # cluster time 0x65E3A4C0 seconds


def _feed(folder: Path, port: int) -> Path:
    """The feed workflow, with the position `orders` saved the way its checkpoint saves it."""
    from dataflow.triggers._changestream.checkpoint import Checkpoint

    path = write_workflow(folder, "feed", FEED.format(port=port))
    store = StateStore(folder / "state.db")
    try:
        Checkpoint(store, "feed", "orders", "shop.orders", FakeClock(START)).save(TOKEN)
    finally:
        store.close()
    return path


def test_list_shows_a_streams_namespace_source_policy_and_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    path = _feed(tmp_path, unused_tcp_port)
    code = main(["list", str(path), "--state", str(tmp_path / "state.db"), "--json"])
    out = capsys.readouterr().out
    orders, returns = json.loads(out)["triggers"]
    assert code == 0 and "s3cret" not in out
    assert orders["kind"] == "mongodb_change_stream" and orders["next"] == []
    assert orders["source"] == f"shop.orders\nmongodb://etl:***@127.0.0.1:{unused_tcp_port}/"
    assert orders["policy"]["operation_types"] == "insert,update"
    assert (orders["policy"]["on_error"], orders["policy"]["retries"]) == ("dead_letter", 3)
    [position] = orders["state"]
    assert position["key"] == "resume_token:shop.orders"
    assert position["position_time"] == datetime.fromtimestamp(0x65E3A4C0, UTC).isoformat()
    assert returns["source"] == "shop.returns\n$FEED_MONGO_URL" and returns["state"] == []


def test_trigger_and_retry_hand_a_stream_handler_a_bson_event(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """The payload is Extended JSON: the handler gets BSON types, and nothing connects."""
    from bson import ObjectId

    from dataflow.triggers._changestream.checkpoint import dumps

    _feed(tmp_path, unused_tcp_port)
    event = '{"_id": {"$oid": "65e3a4c0aaaaaaaaaaaaaaaa"}, "fullDocument": {"sku": "A1"}}'
    result = run_cli(tmp_path, "trigger", "feed", "orders", "--payload", event)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "seen.json").read_text()) == {"id": "ObjectId", "sku": "A1"}
    letter = {"_id": ObjectId("65e3a4c0bbbbbbbbbbbbbbbb"), "fullDocument": {"sku": "B2"}}
    store = StateStore(tmp_path / "state.db")
    try:
        store.add_dead_letter("feed", "orders", dumps(letter), "Traceback ...\nKeyError: 'qty'")
    finally:
        store.close()
    retried = run_cli(tmp_path, "dead-letters", "feed", "--retry", "1")
    assert retried.returncode == 0, retried.stderr
    assert json.loads((tmp_path / "seen.json").read_text()) == {"id": "ObjectId", "sku": "B2"}


def test_an_undecodable_letter_is_shown_marked_and_its_retry_says_why_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    """A letter holding an event no strict decoder accepts, as the trigger writes it: `--json`
    shows it marked `undecodable`, with a lenient decode; `--retry` fails in one line naming the
    decode error (exit 1), without connecting."""
    import bson
    from bson.datetime_ms import DatetimeMS

    from dataflow.triggers._changestream.events import undecodable_text

    path = _feed(tmp_path, unused_tcp_port)
    event = {"_id": TOKEN, "operationType": "insert", "fullDocument": {"due": DatetimeMS(2**48)}}
    raw = bson.encode(event)
    with pytest.raises(bson.errors.InvalidBSON) as caught:
        bson.decode(raw)
    store = StateStore(tmp_path / "state.db")
    try:
        store.add_dead_letter("feed", "orders", undecodable_text(raw, caught.value), "x", raw)
    finally:
        store.close()
    state = ["--state", str(tmp_path / "state.db")]
    code = main(["dead-letters", str(path), *state, "--json"])
    [letter] = json.loads(capsys.readouterr().out)
    shown = json.loads(letter["payload"])
    assert code == 0 and "InvalidBSON: year 10889 is out of range" in shown["undecodable"]
    due = {"$date": {"$numberLong": str(2**48)}}
    assert shown["lenient"]["fullDocument"] == {"due": due}
    code = main(["dead-letters", str(path), *state, "--retry", "1", "--no-startup"])
    last = capsys.readouterr().err.splitlines()[-1]
    assert code == 1
    assert last.startswith(
        "dataflow: error: dead letter 1 holds a change event this stream cannot decode "
        "(InvalidBSON: year 10889 is out of range"
    )


def test_check_tries_each_stream_source(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    unused_tcp_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FEED_MONGO_URL", raising=False)
    path = _feed(tmp_path, unused_tcp_port)
    state = str(tmp_path / "state.db")
    code = main(["check", str(path), "--state", state, "--timeout", "0.5", "--json"])
    out = capsys.readouterr().out
    connections = [c for c in json.loads(out) if c["kind"] == "connection"]
    assert code == 1 and "s3cret" not in out
    orders, returns = (c["detail"] for c in connections)
    assert orders.startswith(
        f"orders.source: MongoDB('mongodb://etl:***@127.0.0.1:{unused_tcp_port}"
    )
    assert returns == (
        "returns.source: $FEED_MONGO_URL: SettingsError: missing setting FEED_MONGO_URL: "
        "set the environment variable FEED_MONGO_URL"
    )


def test_history_shows_how_long_a_running_run_has_been_going(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run still `running` (its process is alive, or died) shows its elapsed time so far."""
    store = StateStore(shop / "state.db")
    started = datetime.now(UTC) - timedelta(minutes=5)
    try:
        store.record_run_start("f" * 32, "shop", "sync", None, started)
    finally:
        store.close()
    code, out = cli(shop, "history", "--trigger", "sync", "--limit", "1", capsys=capsys)
    assert code == 0
    row = out.splitlines()[1]
    assert row.split()[0] == "f" * 8 and "so far" in row and "running" in row
    [found] = cli_json(shop, "history", "--trigger", "sync", "--limit", "1", capsys=capsys)
    assert found["status"] == "running" and found["duration"] is None
    assert 299 <= found["elapsed"] < 3600
