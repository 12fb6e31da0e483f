"""One state file, one runtime, whatever the path: two paths to the same file share one lock;
a file deleted or replaced under a running process stops it; a `-wal` left beside the file by
another database is refused rather than replayed."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.reliability._proc import (
    TICKER,
    DataflowProcess,
    alive,
    run_cli,
    runs,
    started,
    write_workflow,
)

pytestmark = pytest.mark.slow


def symlink_to_file(tmp_path: Path, real: Path) -> Path:
    link = tmp_path / "elsewhere" / "linked.db"
    link.parent.mkdir()
    link.symlink_to(real)
    return link


def symlinked_folder(tmp_path: Path, real: Path) -> Path:
    folder = tmp_path / "mounted-again"
    folder.symlink_to(real.parent, target_is_directory=True)
    return folder / real.name


@pytest.mark.parametrize("other_path", [symlink_to_file, symlinked_folder])
def test_two_paths_to_one_state_file_share_one_lock(tmp_path: Path, other_path: object) -> None:
    """A second process on the same file by another path (a symlink to it, a symlinked folder
    standing in for a volume mounted twice) exits 1 with the "another dataflow process" line;
    the first keeps running."""
    write_workflow(tmp_path, "ticker", TICKER)
    real = tmp_path / "data" / "state.db"
    real.parent.mkdir()
    with started(tmp_path, "run", "ticker", DATAFLOW_STATE_PATH=str(real)) as first:
        first.wait_for("run finished")
        second_path = other_path(tmp_path, real)  # type: ignore[operator]
        result = run_cli(tmp_path, "run", "ticker", DATAFLOW_STATE_PATH=str(second_path))
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (
            f"dataflow: error: another dataflow process is running with state file "
            f"{second_path}: stop it first, or give this one its own DATAFLOW_STATE_PATH"
        )
        assert first.proc.poll() is None
        assert first.stop(signal.SIGTERM).code == 0


def delete(state: Path) -> str:
    state.unlink()
    return "was deleted"


def replace(state: Path) -> str:
    copy = state.with_name("copy.db")
    shutil.copyfile(state, copy)
    os.rename(copy, state)
    return "was replaced by another file"


@pytest.mark.parametrize("change", [delete, replace])
def test_a_state_file_deleted_or_replaced_while_running_stops_the_runtime(
    tmp_path: Path, change: object
) -> None:
    """The state file is deleted (or renamed over) under a running process: it notices within
    5 seconds or so and exits 1 with one line naming the file, so it never goes on firing into a
    file no one reads. A new process then starts on the path alone; after a replace, the old
    file's -wal is left beside the new file, and is refused, not replayed into it."""
    write_workflow(tmp_path, "ticker", TICKER)
    state = tmp_path / "state.db"
    with started(tmp_path, "run", "ticker") as first:
        first.wait_for("run finished")
        happened = change(state)  # type: ignore[operator]
        result = first.wait(timeout=20)  # the path is looked at every 5 s
    assert result.code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"dataflow: error: state store {state}: the file {happened} while this process ran; "
        "stopping, as its writes would go to a file no one reads"
    ), result.stderr
    assert len(lines) == 1, result.stderr
    assert not alive(first.pid)
    if change is replace and state.with_name("state.db-wal").exists():
        refused = run_cli(tmp_path, "run", "ticker")
        assert refused.returncode == 2
        assert "beside it was not written for this file" in refused.stderr
        return
    with started(tmp_path, "run", "ticker") as second:
        second.wait_for("run finished")
        assert second.stop(signal.SIGTERM).code == 0, second.stderr


def crashed_with_wal(project: Path, state: Path) -> Path:
    """Run a ticker on `state` and kill it (SIGKILL): its -wal stays behind; a copy of it."""
    process = DataflowProcess(project, "run", "ticker", DATAFLOW_STATE_PATH=str(state))
    process.wait_for("run finished", count=2)
    process.kill()
    wal = state.with_name(state.name + "-wal")
    assert wal.stat().st_size > 0
    kept = state.with_name(state.name + ".kept-wal")
    shutil.copyfile(wal, kept)
    return kept


def test_a_foreign_wal_beside_a_closed_store_is_refused(tmp_path: Path) -> None:
    """Store B's leftover -wal copied beside closed store A: SQLite itself would replay it (its
    checksums hold), so A would show B's runs and lose its own. dataflow refuses in one line,
    exit 2, and A is unchanged; A's own leftover -wal after a crash is replayed as before."""
    write_workflow(tmp_path, "ticker", TICKER)
    a, b = tmp_path / "a" / "state.db", tmp_path / "b" / "state.db"
    a.parent.mkdir()
    b.parent.mkdir()
    own_wal = crashed_with_wal(tmp_path, a)
    a_runs = {row.run_id for row in runs(a)}  # replays A's own WAL (read-only, no checkpoint)
    foreign = crashed_with_wal(tmp_path, b)
    b_runs = {row.run_id for row in runs(b)}
    shutil.copyfile(foreign, a.with_name("state.db-wal"))
    result = run_cli(tmp_path, "run", "ticker", DATAFLOW_STATE_PATH=str(a))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"dataflow: error: state file {a}: the write-ahead log {a}-wal beside it was not "
        "written for this file (a leftover of another database); replaying it would swap in "
        "that file's runs and positions. Move the -wal file aside to open this file as it is"
    )
    history = run_cli(tmp_path, "history", "ticker", DATAFLOW_STATE_PATH=str(a))
    assert history.returncode == 2
    shutil.copyfile(own_wal, a.with_name("state.db-wal"))  # A's own log: accepted, replayed
    with started(tmp_path, "run", "ticker", DATAFLOW_STATE_PATH=str(a)) as again:
        again.wait_for("run finished")
        assert again.stop(signal.SIGTERM).code == 0, again.stderr
    after = {row.run_id for row in runs(a)}
    assert a_runs < after
    assert not after & b_runs
    with sqlite3.connect(a) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
