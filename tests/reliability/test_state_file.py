"""A state file this dataflow must not use as it is: an older schema (brought forward, positions
kept), a newer one, an empty or foreign file, a directory. Each refusal is one line and exit 2
(bad input: a restart cannot help); nothing is ever silently recreated.
"""

from __future__ import annotations

import signal
import sqlite3
from contextlib import closing
from importlib.resources import files
from pathlib import Path

import pytest

from dataflow.state import StateStore
from dataflow.state._migrate import SCHEMA_VERSION
from tests.reliability._proc import TICKER, run_cli, runs, started, write_workflow

pytestmark = pytest.mark.slow

OLD_FIRE = "2026-01-01T00:00:00+00:00"


def version_0_file(state: Path) -> None:
    """A file as dataflow wrote it before files had a version: its positions and a run."""
    db = sqlite3.connect(state, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(files("dataflow.state").joinpath("_schema.sql").read_text())
    db.execute(
        "INSERT INTO trigger_state VALUES ('ticker', 'tick', 'last_fire', ?, ?)",
        (OLD_FIRE, OLD_FIRE),
    )
    db.execute(
        "INSERT INTO runs VALUES ('r1', 'ticker', 'tick', ?, ?, NULL, 'running', 1, NULL)",
        (OLD_FIRE, OLD_FIRE),
    )
    db.close()


def dump(state: Path) -> tuple[int, list[str]]:
    """The file's content as SQL, and its version (SQLite may rewrite header counters)."""
    with closing(sqlite3.connect(state)) as db, db:  # closed: no -wal left behind
        return db.execute("PRAGMA user_version").fetchone()[0], list(db.iterdump())


def one_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dataflow: error: "), lines[0]
    return lines[0].removeprefix("dataflow: error: ")


def test_a_version_0_file_is_brought_forward_and_keeps_its_positions(tmp_path: Path) -> None:
    """Today's files carry no version: opened, they get the current schema (version, indexes)
    in one transaction, and their positions and runs are read back unchanged, by column name."""
    state = tmp_path / "state.db"
    version_0_file(state)
    store = StateStore(state)
    try:
        assert store.get_state("ticker", "tick", "last_fire") == OLD_FIRE
        assert [r.run_id for r in store.mark_interrupted("ticker")] == ["r1"]
    finally:
        store.close()
    db = sqlite3.connect(state)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT run_id FROM runs WHERE workflow='t' AND status='running'"
    ).fetchall()
    db.close()
    assert "runs_running" in str(plan)


def newer_by_version(state: Path) -> str:
    version_0_file(state)
    StateStore(state).close()
    with closing(sqlite3.connect(state)) as db, db:  # closed: no -wal left behind
        db.execute("PRAGMA user_version = 99")
    return "schema 99"


def newer_by_column(state: Path) -> str:
    version_0_file(state)
    with closing(sqlite3.connect(state)) as db, db:  # closed: no -wal left behind
        db.execute("ALTER TABLE runs ADD COLUMN host TEXT")
    return "schema 0 with columns it added: runs.host"


@pytest.mark.parametrize("make", [newer_by_version, newer_by_column])
@pytest.mark.parametrize("command", ["run", "history"])
def test_a_newer_file_is_refused_in_one_line(tmp_path: Path, make: object, command: str) -> None:
    """A file a newer dataflow wrote (a higher version, or a column this one does not know) is
    refused with one line saying so, exit 2: never read by position ("too many values to
    unpack") nor written over."""
    write_workflow(tmp_path, "ticker", TICKER)
    state = tmp_path / "state.db"
    what = make(state)  # type: ignore[operator]
    before = dump(state)
    result = run_cli(tmp_path, command, "ticker")
    assert result.returncode == 2, result.stderr
    assert one_error(result.stderr) == (
        f"state file {state} was written by a newer dataflow ({what}, this one reads up to "
        f"schema {SCHEMA_VERSION}): upgrade dataflow"
    )
    assert dump(state) == before


def empty(state: Path) -> str:
    state.write_bytes(b"")
    return "is empty (0 bytes)"


def random_bytes(state: Path) -> str:
    state.write_bytes(bytes(range(256)) * 16)
    return "is not a dataflow state file (not an SQLite database)"


def another_database(state: Path) -> str:
    with closing(sqlite3.connect(state)) as db, db:  # closed: no -wal left behind
        db.execute("CREATE TABLE users (name TEXT)")
    return "is an SQLite database but not a dataflow state file (tables: users)"


@pytest.mark.parametrize("make", [empty, random_bytes, another_database])
def test_an_empty_or_foreign_file_is_refused_until_reset(tmp_path: Path, make: object) -> None:
    """An empty file, random bytes, another program's SQLite database: `run`, `history` and
    `check` refuse it in one line and leave it as it is (today an empty file is silently
    started from scratch: every last fire and resume token gone). `run --reset-state` moves it
    aside, says so, and starts fresh."""
    write_workflow(tmp_path, "ticker", TICKER)
    state = tmp_path / "state.db"
    what = make(state)  # type: ignore[operator]
    before = state.read_bytes()
    for command in ("run", "history"):
        result = run_cli(tmp_path, command, "ticker")
        assert result.returncode == 2, result.stderr
        message = one_error(result.stderr)
        assert message.startswith(f"state file {state} {what}"), message
        assert message.endswith("`run --reset-state` to move it aside and start fresh")
    checked = run_cli(tmp_path, "check", "ticker")
    assert checked.returncode == 1
    assert f"FAIL  state       state file {state} {what}" in checked.stdout
    assert state.read_bytes() == before
    with started(tmp_path, "run", "ticker", "--reset-state") as process:
        moved = process.wait_for("state file set aside, starting fresh")["moved_to"]
        process.wait_for("run finished")
        assert process.stop(signal.SIGTERM).code == 0, process.stderr
    assert Path(moved).read_bytes() == before
    assert "succeeded" in [row.status for row in runs(state)]


def test_reset_state_never_moves_a_newer_file(tmp_path: Path) -> None:
    """`--reset-state` is for files holding nothing readable: a newer dataflow's file is kept."""
    write_workflow(tmp_path, "ticker", TICKER)
    state = tmp_path / "state.db"
    newer_by_version(state)
    result = run_cli(tmp_path, "run", "ticker", "--reset-state")
    assert result.returncode == 2
    assert "written by a newer dataflow" in one_error(result.stderr)
    assert list(tmp_path.glob("state.db.broken-*")) == []


@pytest.mark.parametrize("command", ["run", "history", "list", "dead-letters", "check"])
def test_a_directory_as_state_path_is_named_by_every_command(tmp_path: Path, command: str) -> None:
    """The state path is a directory: every command says so in one line (today `check`
    passes and `history` shows "no runs" while `run` fails)."""
    write_workflow(tmp_path, "ticker", TICKER)
    state = tmp_path / "state.db"
    state.mkdir()
    result = run_cli(tmp_path, command, "ticker")
    expected = f"state file {state} is a directory: set DATAFLOW_STATE_PATH (or --state) to a file"
    if command == "check":
        assert result.returncode == 1
        assert f"FAIL  state       {expected}" in result.stdout
    else:
        assert result.returncode == 2, result.stderr
        assert one_error(result.stderr) == expected


def test_a_lock_path_that_is_a_directory_is_one_line(tmp_path: Path) -> None:
    """`<state>.lock` is a directory: one line naming it, no IsADirectoryError traceback."""
    write_workflow(tmp_path, "ticker", TICKER)
    state = tmp_path / "state.db"
    (tmp_path / "state.db.lock").mkdir()
    result = run_cli(tmp_path, "run", "ticker")
    assert result.returncode == 2, result.stderr
    assert one_error(result.stderr) == (
        f"lock file {state}.lock of state file {state} is a directory: remove it"
    )
