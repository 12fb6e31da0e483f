"""Real `python -m dataflow` processes: start one in a temp project, read its JSON log lines as
they come, signal it, time its exit, look at its threads and children in /proc, read its state.

Nothing here sleeps for a schedule: tests wait for log lines (or files a handler writes), each
wait bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from signal import Signals
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LogLine = dict[str, Any]

# A workflow with one per-second job that does nothing: fires to watch, runs to count.
TICKER = """
from dataflow import Workflow, cronjob


class Ticker(Workflow):
    @cronjob("* * * * * *")
    def tick(self):
        pass
"""


def write_workflow(project: Path, name: str, source: str) -> Path:
    """Write `workflows/<name>.py` under `project` (the process's working directory)."""
    folder = project / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def cli_env(project: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAFLOW_STATE_PATH": str(project / "state.db"),
        "DATAFLOW_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run_cli(
    project: Path, *args: str, timeout: float = 30, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m dataflow ARGS` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "dataflow", *args],
        cwd=project,
        env=cli_env(project, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class Exit:
    code: int
    seconds: float  # from the signal (or the call) to the exit
    stderr: str


class DataflowProcess:
    """`python -m dataflow ARGS` in the background; its stdout log lines are collected."""

    def __init__(
        self, project: Path, *args: str, preexec: Callable[[], None] | None = None, **extra: str
    ) -> None:
        """`extra`: environment variables; `preexec`: called in the child before it starts
        Python (e.g. to set a resource limit)."""
        self.project = project
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dataflow", *args],
            cwd=project,
            env=cli_env(project, **extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
        )
        self.pid = self.proc.pid
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self._stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    # -- output ---------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            with self._changed:
                self.raw.append(text)
                if text.startswith("{"):
                    self.lines.append(json.loads(text))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for text in self.proc.stderr:
            self._stderr.append(text)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    @property
    def stdout(self) -> str:
        with self._changed:
            return "".join(self.raw)

    def events(self, event: str, **fields: Any) -> list[LogLine]:
        with self._changed:
            return [line for line in self.lines if _matches(line, event, fields)]

    def wait_for(self, event: str, timeout: float = 15.0, count: int = 1, **fields: Any) -> LogLine:
        """The `count`-th log line whose `event` (and `fields`) match; fail after `timeout`."""

        def found() -> LogLine | None:
            matches = self.events(event, **fields)
            return matches[count - 1] if len(matches) >= count else None

        line: LogLine = self.wait_until(found, f"{count} x {event!r} {fields}", timeout)
        return line

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (value := condition()):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reading()):
                    self.kill()
                    raise AssertionError(
                        f"no {what} within {timeout}s (exit {self.proc.poll()}); stderr:\n"
                        f"{self.stderr}\nlast log lines:\n{''.join(self.raw[-5:])}"
                    )
                self._changed.wait(min(left, 0.05))
        return value

    def _reading(self) -> bool:
        return self._readers[0].is_alive()

    # -- the process ----------------------------------------------------------------------------
    def signal(self, sig: Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, *signals: Signals, gap: float = 0.1, timeout: float = 20) -> Exit:
        """Send `signals` (`gap` seconds apart); return the exit code and the seconds it took."""
        started = time.monotonic()
        for i, sig in enumerate(signals):
            if i:
                time.sleep(gap)
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
        return self.wait(timeout, started)

    def wait(self, timeout: float = 20, started: float | None = None) -> Exit:
        started = time.monotonic() if started is None else started
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"still running {timeout}s later; stderr:\n{self.stderr}"
            ) from None
        seconds = time.monotonic() - started
        for reader in self._readers:
            reader.join(5)
        return Exit(code, seconds, self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def children(self) -> list[int]:
        """PIDs of the process's children (every thread's), from /proc."""
        return children_of(self.pid)


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextmanager
def started(
    project: Path, *args: str, preexec: Callable[[], None] | None = None, **extra: str
) -> Iterator[DataflowProcess]:
    """A `DataflowProcess` killed at the end of the block if the test left it running."""
    process = DataflowProcess(project, *args, preexec=preexec, **extra)
    try:
        yield process
    finally:
        process.kill()


def wait_for_file(path: Path, timeout: float = 15.0, process: DataflowProcess | None = None) -> str:
    """A file a handler writes to say where it is; its text once it exists and is non-empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()):
            return text
        if process is not None and process.proc.poll() is not None:
            break
        time.sleep(0.01)
    detail = f"; stderr:\n{process.stderr}" if process is not None else ""
    raise AssertionError(f"{path.name} not written within {timeout}s{detail}")


# -- the state file, read as a user would (read-only) ----------------------------------------------
@dataclass(frozen=True)
class RunRow:
    run_id: str
    trigger: str
    status: str
    scheduled_at: str | None
    attempt: int
    error: str | None


def runs(state: Path, trigger: str | None = None) -> list[RunRow]:
    """Every run recorded in `state`, oldest first."""
    sql = "SELECT run_id, trigger, status, scheduled_at, attempt, error FROM runs"
    params: tuple[str, ...] = ()
    if trigger is not None:
        sql, params = sql + " WHERE trigger = ?", (trigger,)
    with _read_only(state) as db:
        rows = db.execute(sql + " ORDER BY rowid", params).fetchall()
    return [RunRow(*row) for row in rows]


def state_value(state: Path, trigger: str, key: str) -> str | None:
    with _read_only(state) as db:
        row = db.execute(
            "SELECT value FROM trigger_state WHERE trigger = ? AND key = ?", (trigger, key)
        ).fetchone()
    return None if row is None else str(row[0])


def integrity(state: Path) -> str:
    with _read_only(state) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


@contextmanager
def _read_only(state: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def _matches(line: LogLine, event: str, fields: dict[str, Any]) -> bool:
    return line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
