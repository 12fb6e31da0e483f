"""The state file on a disk that cannot take a write: read-only, full, or past the file-size
limit. The process stops with exit 1 and one line naming the state file; the file stays a valid
SQLite database (`PRAGMA integrity_check` = ok) and a later start on a healthy disk works.

Mechanisms: a tmpfs of the test's own, remounted read-only or filled to ENOSPC (as root file
permissions stop nothing); and `RLIMIT_FSIZE` in the child, so a write past the limit fails
with EFBIG (Python ignores SIGXFSZ), which needs no mount at all.
"""

from __future__ import annotations

import re
import resource
import signal
from pathlib import Path

import pytest

from tests.reliability._disk import small_disk
from tests.reliability._proc import (
    TICKER,
    DataflowProcess,
    integrity,
    run_cli,
    runs,
    started,
    wait_for_file,
    write_workflow,
)

pytestmark = pytest.mark.slow


LOADING = """
import time
from pathlib import Path

from dataflow import Workflow, cronjob, startup


class Loading(Workflow):
    @startup
    def load(self):
        Path("loading").write_text("x")
        while not Path("go").exists():
            time.sleep(0.01)

    @cronjob("0 0 1 1 *")
    def yearly(self):
        pass
"""


def one_line(stderr: str, state: Path, reason: str) -> None:
    """Exactly one line, `dataflow: error: ...`, naming the state file and the reason."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    pattern = rf"dataflow: error: (trigger '\w+' failed: StateStoreError: )?state store {state}: "
    assert re.fullmatch(pattern + re.escape(reason), lines[0]), lines[0]


def restart_works(project: Path, state: Path, workflow: str) -> list[str]:
    """A new process on the same state file starts, runs, stops cleanly; its statuses."""
    with started(project, "run", workflow, DATAFLOW_STATE_PATH=str(state)) as process:
        process.wait_for("run finished")
        assert process.stop(signal.SIGTERM).code == 0, process.stderr
    return [row.status for row in runs(state)]


def test_read_only_disk_at_start(tmp_path: Path) -> None:
    """The state file's filesystem is read-only: the start fails with one line naming the file,
    exit 1, and the file is left exactly as it was."""
    write_workflow(tmp_path, "ticker", TICKER)
    with small_disk(tmp_path / "disk") as disk:
        state = disk.path / "state.db"
        with started(tmp_path, "run", "ticker", DATAFLOW_STATE_PATH=str(state)) as first:
            first.wait_for("run finished")
            assert first.stop(signal.SIGTERM).code == 0
        before = state.read_bytes()
        disk.read_only()
        result = run_cli(tmp_path, "run", "ticker", DATAFLOW_STATE_PATH=str(state))
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"dataflow: error: cannot open state store {state}: "
            "unable to open database file (the file system is read-only)"
        )
        assert state.read_bytes() == before
        disk.writable()
        assert integrity(state) == "ok"
        assert set(restart_works(tmp_path, state, "ticker")) <= {"succeeded", "cancelled"}


def test_disk_full_while_firing(tmp_path: Path) -> None:
    """The disk fills while a per-second job runs: the next write fails, exit 1 with one line
    naming the state file; once there is room again the file is intact and a restart runs."""
    write_workflow(tmp_path, "ticker", TICKER)
    with small_disk(tmp_path / "disk") as disk:
        state = disk.path / "state.db"
        with started(tmp_path, "run", "ticker", DATAFLOW_STATE_PATH=str(state)) as process:
            process.wait_for("run finished")
            disk.fill()
            result = process.wait(timeout=10)
        assert result.code == 1
        one_line(result.stderr, state, "database or disk is full")
        disk.free()
        assert integrity(state) == "ok"
        assert "succeeded" in restart_works(tmp_path, state, "ticker")


def test_disk_full_under_a_run_in_flight(tmp_path: Path) -> None:
    """The disk fills while a (startup) handler runs: recording its end fails. The process
    exits 1 with one line naming the state file, not an exception group's traceback."""
    write_workflow(tmp_path, "loading", LOADING)
    with small_disk(tmp_path / "disk") as disk:
        state = disk.path / "state.db"
        with started(tmp_path, "run", "loading", DATAFLOW_STATE_PATH=str(state)) as process:
            wait_for_file(tmp_path / "loading", process=process)
            disk.fill()
            (tmp_path / "go").write_text("x")
            result = process.wait(timeout=10)
        assert result.code == 1
        one_line(result.stderr, state, "database or disk is full")
        disk.free()
        assert integrity(state) == "ok"
        assert [row.status for row in runs(state)] == ["running"]  # its end never made it
        assert restart_works(tmp_path, state, "loading") == ["interrupted", "succeeded"]


def test_state_file_past_the_file_size_limit(tmp_path: Path) -> None:
    """`RLIMIT_FSIZE` of 40 KB (the shared-memory index takes 32) stops the write-ahead log's
    growth after a few writes (EFBIG): the process exits 1 with one line naming the state file;
    the file is intact and usable without the limit."""
    write_workflow(tmp_path, "ticker", TICKER)
    state = tmp_path / "state.db"
    assert "succeeded" in restart_works(tmp_path, state, "ticker")  # the file, before the limit

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_960, 40_960))

    process = DataflowProcess(tmp_path, "run", "ticker", preexec=limit_file_size)
    result = process.wait(timeout=20)
    assert result.code == 1
    one_line(result.stderr, state, "disk I/O error")
    assert integrity(state) == "ok"
    assert "succeeded" in restart_works(tmp_path, state, "ticker")


FROZEN = """
import threading

from dataflow import Workflow, cronjob
from dataflow.state import StateStore

_record_run_end = StateStore.record_run_end
_frozen = threading.Event()


def _freezes(self, *args, **kwargs):
    # After the first run a state write never returns: a disk that stopped answering (a frozen
    # network volume). The thread holds the store's lock, as SQLite holds its file.
    if _frozen.is_set():
        with self._lock:
            threading.Event().wait()
    _frozen.set()
    return _record_run_end(self, *args, **kwargs)


StateStore.record_run_end = _freezes


class Frozen(Workflow):
    @cronjob("* * * * * *")
    def tick(self):
        print("ticked", flush=True)
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("signals", [1, 2], ids=["SIGTERM", "SIGTERM-twice"])
def test_a_state_write_that_never_returns_cannot_hold_the_stop(
    tmp_path: Path, backend: str, signals: int
) -> None:
    """A state write hangs (frozen disk): SIGTERM, once or twice, still ends the process within
    grace + 2 s, exit 1, one line saying the stop did not finish and naming the state file."""
    write_workflow(tmp_path, "frozen", FROZEN)
    grace = 0.5
    args = ("run", "frozen", "--backend", backend, "--grace-period", str(grace))
    with started(tmp_path, *args) as process:
        process.wait_for("run finished")
        process.wait_for("run started", count=2)  # the second run's end is the frozen write
        result = process.stop(*[signal.SIGTERM] * signals)
    assert result.code == 1 and result.seconds <= grace + 2.0, result
    assert result.stderr.strip().splitlines()[-1] == (
        "dataflow: error: the stop did not finish within the grace period: a state write to "
        f"{tmp_path / 'state.db'} or a connection did not return (frozen disk?); exiting without it"
    )
