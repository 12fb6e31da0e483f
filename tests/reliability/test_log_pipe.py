"""A log reader that goes away or stops reading never stops firing, nor a stop.

Real `python -m dataflow` processes whose stdout (the JSON log) is a pipe the test closes, or
never reads. A per-second job writes a line to a file on each run, so the test sees firing go
on without reading the log.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability._proc import cli_env, started, write_workflow

pytestmark = pytest.mark.slow

CHATTY = """
from pathlib import Path

from dataflow import Workflow, cronjob
from dataflow.utils import get_logger

log = get_logger("chatty")
TICKS = Path(__file__).resolve().parent.parent / "ticks.txt"


class Chatty(Workflow):
    @cronjob("* * * * * *")
    def tick(self) -> None:
        for i in range(300):  # ~100 KB of log a run: more than a pipe holds
            log.info("chatter", i=i, pad="x" * 300)
        with TICKS.open("a") as ticks:
            ticks.write("tick\\n")
"""


def start(project: Path, backend: str) -> subprocess.Popen[bytes]:
    write_workflow(project, "chatty", CHATTY)
    return subprocess.Popen(
        [sys.executable, "-m", "dataflow", "chatty", "--backend", backend, "--grace-period", "1"],
        cwd=project,
        env=cli_env(project),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def ticks(project: Path) -> int:
    path = project / "ticks.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for_ticks(project: Path, count: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while ticks(project) < count:
        assert proc.poll() is None, "the runtime died"
        assert time.monotonic() < deadline, f"only {ticks(project)} runs finished"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=10)  # grace 1 s + 2 s, with room for a busy machine


def runs_left_running(project: Path) -> int:
    with sqlite3.connect(project / "state.db") as db:
        return int(db.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_closed_log_pipe_does_not_stop_the_runtime(tmp_path: Path, backend: str) -> None:
    proc = start(tmp_path, backend)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"{")
    proc.stdout.close()  # the reader goes away: every later write gets EPIPE
    seen = ticks(tmp_path)
    wait_for_ticks(tmp_path, seen + 3, proc)
    assert stop(proc) == 0
    assert b"Traceback" not in proc.stderr.read()
    assert runs_left_running(tmp_path) == 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_stalled_log_reader_does_not_stop_firing_or_the_stop(
    tmp_path: Path, backend: str
) -> None:
    proc = start(tmp_path, backend)
    assert proc.stderr is not None
    wait_for_ticks(tmp_path, 4, proc)  # the pipe filled during the first run; nobody reads it
    assert stop(proc) == 0
    assert b"Traceback" not in proc.stderr.read()
    assert proc.stdout is not None
    proc.stdout.close()


PRINTER = """
import threading

from dataflow import Workflow, startup
from dataflow.utils import get_logger

log = get_logger("printer")


def chatter() -> None:
    for i in range(3000):
        log.info("chatter", i=i)


class Printer(Workflow):
    @startup
    def both_at_once(self) -> None:
        # Log lines (written by the log's own thread) while the handler prints, under
        # PYTHONUNBUFFERED: a print must never be split by a log line, nor a log line by it.
        logger = threading.Thread(target=chatter)
        logger.start()
        for i in range(3000):
            print(f"printed {i}")
        logger.join()
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_handlers_prints_and_the_log_never_mix_within_a_line(
    tmp_path: Path, backend: str
) -> None:
    write_workflow(tmp_path, "printer", PRINTER)
    # cli_env sets PYTHONUNBUFFERED=1: print's text and its newline are two writes there.
    with started(tmp_path, "printer", "--backend", backend) as process:
        assert process.wait().code == 0  # no trigger but the startup one: it ends on its own
    printed = [line.rstrip("\n") for line in process.raw if not line.startswith("{")]
    assert printed == [f"printed {i}" for i in range(3000)]
    assert len(process.events("chatter")) == 3000  # every log line whole: nothing spliced in
