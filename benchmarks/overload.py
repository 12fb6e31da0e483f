"""6. Overload (issue 16): 2,000 one-second cron triggers, 10% of them raising, for 60 s, in a
real `python -m dataflow run` process on asyncio and on trio.

The parent writes the workflow into a temp folder, starts the CLI (JSON logs to a file, the state
file in the folder), lets it run for the measured window after "workflow running", stops it with
SIGTERM and reads the state file with sqlite3. Rows: start-up (process start → "workflow
running"), every fire accounted for (each second between a trigger's first and last recorded fire
has a succeeded, failed or skipped record), the clock-step and late warnings, and the state
file's growth extrapolated to an hour.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks._cli_process import CliProcess, workflow_file
from benchmarks._common import Row, Sizes, verdict
from benchmarks._overload_records import Fires, Warnings, count_fires, count_warnings, state_size

BACKENDS = ("asyncio", "trio")
CRON = "* * * * * *"
FAIL_EVERY = 10  # every 10th trigger raises: 10% failing
GRACE = 5.0
TARGET_STARTUP = 2.0  # seconds from process start until every trigger serves


@dataclass
class Outcome:
    backend: str
    startup: float
    window: float  # seconds from "workflow running" to SIGTERM
    exit_code: int
    fires: Fires
    warnings: Warnings
    growth: int  # bytes the state file (and its WAL) grew over the window
    load: tuple[float, float]  # 1-min load average at start and end


def measure(backend: str, triggers: int, seconds: float) -> Outcome:
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"bench-overload-{backend}-") as tmp:
        folder = Path(tmp)
        child = CliProcess(folder, backend, GRACE)
        child.start(workflow_file(folder, triggers, CRON, FAIL_EVERY))
        try:
            startup = child.wait_running(timeout=120)
            running_at, size_at_start = time.monotonic(), state_size(child.state_path)
            time.sleep(seconds)
            window = time.monotonic() - running_at
            _, code = child.stop()
        finally:
            child.kill()
        return Outcome(
            backend=backend,
            startup=startup,
            window=window,
            exit_code=code,
            fires=count_fires(child.state_path, "bench"),
            warnings=count_warnings(child.log_path),
            growth=state_size(child.state_path) - size_at_start,
            load=(load_start, os.getloadavg()[0]),
        )


def run(sizes: Sizes) -> list[Row]:
    triggers, seconds = sizes.overload_triggers, sizes.overload_seconds
    if sizes.parallel:
        with ThreadPoolExecutor(len(BACKENDS)) as pool:
            outcomes = list(pool.map(lambda b: measure(b, triggers, seconds), BACKENDS))
    else:
        outcomes = [measure(backend, triggers, seconds) for backend in BACKENDS]
    rows: list[Row] = []
    for outcome in outcomes:
        rows += _rows(outcome, triggers, seconds)
    return rows


def _rows(out: Outcome, triggers: int, seconds: float) -> list[Row]:
    what = f"{triggers:,} `{CRON}` triggers, 10% raising, {seconds:g} s, {out.backend}"
    fires, warned = out.fires, out.warnings
    statuses = ", ".join(f"{n:,} {status}" for status, n in sorted(fires.statuses.items()))
    per_hour = out.growth / out.window * 3600 if out.window else 0.0
    runs_per_hour = fires.statuses.total() / out.window * 3600 if out.window else 0.0
    return [
        _row(
            f"6. overload start-up (process start → serving), {what}",
            f"{out.startup:.2f} s",
            f"≤ {TARGET_STARTUP:g} s: {verdict(out.startup <= TARGET_STARTUP)}",
        ),
        _row(
            f"6. overload fires accounted, {what}",
            f"{fires.share:.2%} ({fires.accounted:,} of {fires.expected:,} fires of "
            f"{fires.triggers:,} triggers; records: {statuses}; {fires.duplicates} run twice; "
            f"missing in each trigger's last late batch: {fires.in_last_batch:,} of "
            f"{fires.expected - fires.accounted:,})",
            f"100%: {verdict(fires.accounted == fires.expected and fires.triggers == triggers)}",
        ),
        _row(
            f"6. overload clock-step / late / loop-blocked warnings, {what}",
            f"{warned.clock_steps} / {warned.late_lines} (counting {warned.late_fires:,} late "
            f"fires, latest {warned.latest:.1f} s) / {warned.loop_blocked}"
            + (f"; other: {dict(warned.other.most_common(3))}" if warned.other else ""),
            f"0 clock steps: {verdict(warned.clock_steps == 0)}",
        ),
        _row(
            f"6. overload state file growth, extrapolated to 1 h, {what}",
            f"{per_hour / 1e6:,.0f} MB/h ({runs_per_hour:,.0f} run records/h; exit code "
            f"{out.exit_code}; load {out.load[0]:.1f} → {out.load[1]:.1f})",
            "",
        ),
    ]


def _row(what: str, ours: str, target: str) -> Row:
    return Row(what, ours, "— (no baseline)", "n/a", target)


if __name__ == "__main__":
    raise SystemExit(f"run `{sys.executable} -m benchmarks --only overload`")
