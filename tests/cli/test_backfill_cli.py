"""`trigger NAME T --from A --to B`: backfill a cron trigger's past fires from the command line.

In-process through `main([...])` where a test can (listing, bad input, runs), real
`python -m dataflow` processes for what only a process shows: Ctrl-C after the run in flight.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from dataflow.main import main
from dataflow.state import RunRecord, StateStore
from tests._paths import ROOT
from tests.cli.test_inspect_cli import write_workflow

SHOP = """
import os
from dataflow import Workflow, cronjob, current_run, startup
from dataflow.triggers.mongo_change_listener import mongodb_change_stream

class Shop(Workflow):
    @startup
    def prepare(self):
        pass

    @cronjob("*/30 * * * *", timezone="Europe/Berlin")
    def halfhourly(self):
        if current_run().scheduled_at.minute == 30 and os.environ.get("SHOP_FAIL_AT_30"):
            raise ValueError("bad half hour")

    @cronjob("15 * * * *", timezone="Europe/Berlin")
    def quarter_past(self):
        pass

    @cronjob("* * * * *", timezone="UTC")
    def minutely(self):
        raise ValueError("source down")

    @mongodb_change_stream("mongodb://127.0.0.1:1/?replicaSet=rs0", "shop", "orders")
    def orders(self, change):
        pass
"""


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Path]:
    """The workflow in a folder; the logging a run configures is undone afterwards."""
    write_workflow(tmp_path, "shop", SHOP)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield tmp_path
    finally:
        structlog.reset_defaults()
        root.handlers, root.level = handlers, level


def cli(folder: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`main` in-process; argparse's own errors exit, and their code is taken the same way."""
    workflow = str(folder / "workflows" / "shop.py")
    try:
        code = main([args[0], workflow, *args[1:], "--state", str(folder / "state.db")])
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def recorded(folder: Path, trigger: str | None = None) -> list[RunRecord]:
    store = StateStore(folder / "state.db")
    try:
        return list(reversed(store.runs("shop", trigger, limit=100)))
    finally:
        store.close()


# -- dry run ------------------------------------------------------------------------------------
def test_dry_run_lists_the_fires_of_a_spring_forward_night_and_runs_nothing(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Berlin skips 02:00-03:00 on 2026-03-29: a wildcard job has no fire in the gap."""
    span = ("--from", "2026-03-29T01:00", "--to", "2026-03-29T04:00", "--dry-run")
    code, out, err = cli(shop, "trigger", "halfhourly", *span, "--json", capsys=capsys)
    listed = json.loads(out)
    assert (code, err, listed["count"], listed["timezone"]) == (0, "", 4, "Europe/Berlin")
    assert [(f["local"], f["utc"][11:16]) for f in listed["fires"]] == [
        ("2026-03-29T01:00:00+01:00", "00:00"),
        ("2026-03-29T01:30:00+01:00", "00:30"),
        ("2026-03-29T03:00:00+02:00", "01:00"),
        ("2026-03-29T03:30:00+02:00", "01:30"),
    ]
    code, out, _ = cli(shop, "trigger", "halfhourly", *span, capsys=capsys)
    header, *rows = out.splitlines()
    assert header.split() == ["#", "FIRE", "(ZONE)", "FIRE", "(UTC)"]
    assert rows[2].split() == ["3", "2026-03-29", "03:00:00", "CEST", "2026-03-29", "01:00:00Z"]
    assert not (shop / "state.db").exists()


def test_dry_run_lists_both_passes_of_a_repeated_hour_and_takes_offsets(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Berlin repeats 02:00-03:00 on 2026-10-25: 02:15 fires on both passes; `--to` is
    excluded; a time with an offset (here UTC) is that instant."""
    span = ("--from", "2026-10-24T23:00:00Z", "--to", "2026-10-25T03:15", "--dry-run", "--json")
    code, out, _ = cli(shop, "trigger", "quarter_past", *span, capsys=capsys)
    assert code == 0
    assert [f["local"] for f in json.loads(out)["fires"]] == [
        "2026-10-25T01:15:00+02:00",
        "2026-10-25T02:15:00+02:00",
        "2026-10-25T02:15:00+01:00",
    ]


# -- runs ---------------------------------------------------------------------------------------
def test_a_backfill_runs_each_fire_marks_it_in_history_and_exits_0(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    span = ("--from", "2026-03-02T10:00", "--to", "2026-03-02T11:30")
    code, out, err = cli(shop, "trigger", "halfhourly", *span, capsys=capsys)
    assert code == 0, err
    assert last_line(err) == "backfill of halfhourly: 3 fires run, all succeeded"
    assert [line.split()[-2:] for line in out.splitlines()[1:]] == [["(backfill)", "-"]] * 3
    runs = recorded(shop, "halfhourly")
    assert [(r.scheduled_at.isoformat(), r.status, r.backfill) for r in runs if r.scheduled_at] == [
        ("2026-03-02T09:00:00+00:00", "succeeded", True),
        ("2026-03-02T09:30:00+00:00", "succeeded", True),
        ("2026-03-02T10:00:00+00:00", "succeeded", True),
    ]
    assert [r.trigger for r in recorded(shop, "prepare")] == ["prepare"]  # startup ran once
    code, out, _ = cli(shop, "history", "--trigger", "halfhourly", "--json", capsys=capsys)
    assert [run["backfill"] for run in json.loads(out)] == [True, True, True]
    code, out, _ = cli(shop, "history", "--limit", "1", capsys=capsys)
    assert "succeeded (backfill)" in out.splitlines()[1]


def test_a_failed_run_does_not_stop_the_backfill_and_exits_1_naming_it(
    shop: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_FAIL_AT_30", "1")
    span = ("--from", "2026-03-02T10:00", "--to", "2026-03-02T11:30", "--no-startup", "--json")
    code, out, err = cli(shop, "trigger", "halfhourly", *span, capsys=capsys)
    report = json.loads(out)
    assert code == 1
    assert last_line(err) == (
        "backfill of halfhourly: 3 fires run, 1 failed: 2026-03-02T10:30:00+01:00"
    )
    assert {k: report[k] for k in ("fires", "done", "failed", "left", "resume_from")} == {
        "fires": 3,
        "done": 3,
        "failed": 1,
        "left": 0,
        "resume_from": None,
    }
    assert [run["status"] for run in report["runs"]] == ["succeeded", "failed", "succeeded"]


def test_over_1000_fires_need_yes(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1,001 minutes: refused without --yes in one line naming the count; with --yes it runs
    (here it stops at its first failed run, so the test stays short)."""
    span = ("--from", "2026-03-02T00:00", "--to", "2026-03-02T16:41", "--no-startup")
    code, _, err = cli(shop, "trigger", "minutely", *span, capsys=capsys)
    assert (code, err) == (
        2,
        "dataflow: error: the range holds 1,001 fires of minutely (more than 1,000): "
        "add --yes to run them all, or --dry-run to list them\n",
    )
    assert not (shop / "state.db").exists()
    thousand = (*span[:3], "2026-03-02T16:40", "--dry-run")
    code, out, _ = cli(shop, "trigger", "minutely", *thousand, capsys=capsys)
    assert code == 0 and len(out.splitlines()) == 1 + 1000
    confirmed = (*span, "--yes", "--stop-on-failure")
    code, _, err = cli(shop, "trigger", "minutely", *confirmed, capsys=capsys)
    assert code == 1
    assert last_line(err) == (
        "backfill of minutely stopped at its failed run of 2026-03-02T00:00:00+00:00: 1 of "
        "1,001 fires done (1 failed), 1,000 left; resume with --from 2026-03-02T00:00:00+00:00 "
        "--to 2026-03-02T16:41:00+00:00"
    )
    assert [(r.status, r.backfill) for r in recorded(shop)] == [("failed", True)]


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("halfhourly", "--from", "2026-03-02T10:00"),
            "dataflow: error: --from needs --to: a backfill runs the fires in [--from, --to); "
            "give both",
        ),
        (
            ("halfhourly", "--to", "2026-03-02T10:00"),
            "dataflow: error: --to needs --from: a backfill runs the fires in [--from, --to); "
            "give both",
        ),
        (
            ("halfhourly", "--from", "2026-03-02T10:00", "--to", "2026-03-02T10:00"),
            "dataflow: error: --from 2026-03-02T10:00:00+01:00 is not before --to "
            "2026-03-02T10:00:00+01:00: the fires in [--from, --to) run, so give a --from "
            "earlier than --to",
        ),
        (
            ("halfhourly", "--from", "2026-03-03", "--to", "2026-03-02T09:00:00Z"),
            "dataflow: error: --from 2026-03-03T00:00:00+01:00 is not before --to "
            "2026-03-02T09:00:00+00:00: the fires in [--from, --to) run, so give a --from "
            "earlier than --to",
        ),
        (
            ("halfhourly", "--from", "last tuesday", "--to", "2026-03-02"),
            "python -m dataflow trigger: error: argument --from: not an ISO time: 'last tuesday' "
            "(use YYYY-MM-DDTHH:MM[:SS][+HH:MM], e.g. 2026-11-01T00:00) (see --help)",
        ),
        (
            ("orders", "--from", "2026-03-01", "--to", "2026-03-02"),
            "dataflow: error: trigger orders is a change-stream trigger; --from/--to need a "
            "cron trigger",
        ),
        (
            ("prepare", "--from", "2026-03-01", "--to", "2026-03-02"),
            "dataflow: error: trigger prepare is a startup trigger; --from/--to need a cron "
            "trigger",
        ),
        (
            ("nosuch", "--from", "2026-03-01", "--to", "2026-03-02"),
            "dataflow: error: workflow 'shop' has no trigger 'nosuch': it has prepare, "
            "halfhourly, quarter_past, minutely, orders",
        ),
        (
            ("halfhourly", "--dry-run"),
            "dataflow: error: --dry-run is a backfill option: give --from and --to with it",
        ),
        (
            ("halfhourly", "--from", "2026-03-01", "--to", "2026-03-02", "--payload", "{}"),
            "dataflow: error: --payload is for one run now; a backfill's runs get the fire time, "
            "not a payload: drop --payload",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    shop: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = cli(shop, "trigger", *args, capsys=capsys)
    assert (code, err) == (2, message + "\n")
    assert not (shop / "state.db").exists()


# -- signals: a real process --------------------------------------------------------------------
GATED = """
import os, time
from pathlib import Path
from dataflow import Workflow, cronjob, current_run

class Gated(Workflow):
    @cronjob("0 * * * *", timezone="Europe/Berlin")
    def hourly(self):
        run = current_run()
        gate = Path(os.environ["GATE"])
        (gate / f"started-{run.scheduled_at:%H}").touch()
        while not (gate / "release").exists() and not run.cancelled:
            time.sleep(0.005)
"""
SPAN = ("--from", "2026-11-01T00:00", "--to", "2026-11-01T03:00")  # three fires


def start_backfill(folder: Path, backend: str) -> subprocess.Popen[str]:
    write_workflow(folder, "gated", GATED)
    (folder / "gate").mkdir()
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAFLOW_STATE_PATH": str(folder / "state.db"),
        "GATE": str(folder / "gate"),
    }
    command = ["trigger", "gated", "hourly", *SPAN, "--backend", backend, "--log-format", "json"]
    return subprocess.Popen(
        [sys.executable, "-m", "dataflow", *command, "--json"],
        cwd=folder,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], event: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if f'"event": "{event}' in line:
            return
    raise AssertionError(f"the process ended before logging {event!r}")


def finish(proc: subprocess.Popen[str]) -> tuple[Any, str]:
    out, err = proc.communicate(timeout=30)
    return json.loads(out), err


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigint_lets_the_run_in_flight_finish_and_names_where_to_resume(
    tmp_path: Path, backend: str
) -> None:
    proc = start_backfill(tmp_path, backend)
    watchdog = threading.Timer(60, proc.kill)  # a hung process fails the test, never hangs it
    watchdog.start()
    try:
        read_until(proc, "run started")
        proc.send_signal(signal.SIGINT)
        read_until(proc, "backfill stopping")
        (tmp_path / "gate" / "release").touch()  # only now may the run in flight end
        report, err = finish(proc)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "backfill of hourly interrupted: 1 of 3 fires done (0 failed), 2 left; resume with "
        "--from 2026-11-01T01:00:00+01:00 --to 2026-11-01T03:00:00+01:00"
    )
    assert (report["interrupted"], report["resume_from"]) == (True, "2026-11-01T01:00:00+01:00")
    assert sorted(p.name for p in (tmp_path / "gate").iterdir()) == ["release", "started-23"]
    [run] = StateStore(tmp_path / "state.db").runs("gated")
    assert (run.status, run.backfill, run.scheduled_at.isoformat()) == (  # type: ignore[union-attr]
        "succeeded",
        True,
        "2026-10-31T23:00:00+00:00",
    )


def test_sigterm_stops_too_and_a_second_signal_cancels_the_run_in_flight(tmp_path: Path) -> None:
    proc = start_backfill(tmp_path, "asyncio")
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        read_until(proc, "run started")
        proc.send_signal(signal.SIGTERM)
        read_until(proc, "backfill stopping")
        proc.send_signal(signal.SIGINT)
        report, err = finish(proc)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            "0 of 3 fires done (0 failed), 3 left; resume with --from 2026-11-01T00:00:00+01:00 "
            "--to 2026-11-01T03:00:00+01:00"
        )
    )
    assert report["runs"] == []
    [run] = StateStore(tmp_path / "state.db").runs("gated")
    assert (run.status, run.backfill) == ("cancelled", True)
