"""A real `python -m dataflow run` child for the overload and 100,000-trigger rows.

The parent writes a workflow file into a temp folder, starts the CLI on it with JSON logs to a
file and the state file in that folder, watches the log for "workflow running", reads the
child's RSS from /proc/<pid>/status, stops it with SIGTERM and times its exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT

RUNNING = "workflow running"

WORKFLOW = '''"""{count} cron triggers `{cron}`{failing}, built in a loop (a file of {count} methods
would time the compiler, not dataflow)."""

from dataflow import Workflow, cronjob


def _handler(index):
    if {fail_every} and index % {fail_every} == 0:
        async def handler(self):
            raise RuntimeError(f"benchmark failure {{index}}")
    else:
        async def handler(self):
            pass
    handler.__name__ = handler.__qualname__ = f"t{{index}}"
    return cronjob("{cron}", timezone="UTC")(handler)


Bench = type(
    "Bench",
    (Workflow,),
    {{"workflow_name": "bench", **{{f"t{{i}}": _handler(i) for i in range({count})}}}},
)
'''


def workflow_file(folder: Path, count: int, cron: str, fail_every: int = 0) -> Path:
    """Write the workflow: `count` async no-op handlers on `cron`, every `fail_every`-th raising."""
    failing = f", every {fail_every}th raising" if fail_every else ""
    path = folder / "bench_workflow.py"
    source = WORKFLOW.format(count=count, cron=cron, failing=failing, fail_every=fail_every)
    path.write_text(source)
    return path


@dataclass
class CliProcess:
    """One `python -m dataflow run` child; times are `time.time()` seconds (the log's clock)."""

    folder: Path
    backend: str
    grace: float
    proc: subprocess.Popen[bytes] = field(init=False)
    started_at: float = field(init=False)
    log_path: Path = field(init=False)

    @property
    def state_path(self) -> Path:
        return self.folder / "state.db"

    def start(self, workflow: Path) -> None:
        self.log_path = self.folder / "dataflow.log"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATAFLOW_STATE_PATH": str(self.state_path),
            "DATAFLOW_LOG_FORMAT": "json",
            "DATAFLOW_LOG_LEVEL": "info",
        }
        env.pop("DATAFLOW_STATE_URL", None)
        cmd = [sys.executable, "-m", "dataflow", "run", str(workflow)]
        cmd += ["--backend", self.backend, "--grace-period", f"{self.grace:g}"]
        with self.log_path.open("wb") as log:
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                cmd, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_running(self, timeout: float) -> float:
        """Seconds from the process start to its "workflow running" line (the line's own
        timestamp, so how often this polls does not count)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in log_lines(self.log_path):
                if line.get("event") == RUNNING:
                    stamp = datetime.fromisoformat(line["timestamp"]).timestamp()
                    return stamp - self.started_at
            if self.proc.poll() is not None:
                raise RuntimeError(f"dataflow exited {self.proc.returncode}: {self.tail()}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"no {RUNNING!r} line within {timeout:g} s: {self.tail()}")

    def rss_mb(self) -> float:
        """The child's VmRSS now, from /proc/<pid>/status."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc status")

    def stop(self) -> tuple[float, int]:
        """SIGTERM, then wait: (seconds from the signal to the exit, exit code)."""
        signalled = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(self.grace + 60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"still running {self.grace + 60:g} s after SIGTERM") from None
        return time.monotonic() - signalled, code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-5:])


def log_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON log lines written so far (a half-written last line is left for later)."""
    with path.open(errors="replace") as log:
        for text in log:
            if text.startswith("{") and text.endswith("\n"):
                try:
                    yield json.loads(text)
                except json.JSONDecodeError:
                    continue
