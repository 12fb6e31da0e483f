"""7. 100,000 cron triggers (issue 16) in a real `python -m dataflow run` process, on asyncio and
on trio: start-up (process start → "workflow running"), the child's RSS right after (VmRSS,
read by the parent from /proc/<pid>/status), and the exit after SIGTERM with
`--grace-period 5`. Every trigger is yearly (`0 0 1 1 *`), so nothing fires while measured.
"""

from __future__ import annotations

import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks._cli_process import CliProcess, workflow_file
from benchmarks._common import Row, Sizes, verdict

BACKENDS = ("asyncio", "trio")
CRON = "0 0 1 1 *"
GRACE = 5.0
TARGET_STARTUP = 10.0
TARGET_RSS_MB = 500.0
TARGET_EXIT = GRACE + 2.0


@dataclass
class Outcome:
    backend: str
    startup: float
    rss: float
    exit_after: float
    exit_code: int
    load: tuple[float, float]


def measure(backend: str, triggers: int) -> Outcome:
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"bench-many-{backend}-") as tmp:
        folder = Path(tmp)
        child = CliProcess(folder, backend, GRACE)
        child.start(workflow_file(folder, triggers, CRON))
        try:
            startup = child.wait_running(timeout=300)
            rss = child.rss_mb()
            exit_after, code = child.stop()
        finally:
            child.kill()
    return Outcome(backend, startup, rss, exit_after, code, (load_start, os.getloadavg()[0]))


def run(sizes: Sizes) -> list[Row]:
    triggers = sizes.many_triggers
    if sizes.parallel:
        with ThreadPoolExecutor(len(BACKENDS)) as pool:
            outcomes = list(pool.map(lambda b: measure(b, triggers), BACKENDS))
    else:
        outcomes = [measure(backend, triggers) for backend in BACKENDS]
    rows: list[Row] = []
    for out in outcomes:
        what = f"{triggers:,} `{CRON}` cron triggers, {out.backend}"
        load = f"load {out.load[0]:.1f} → {out.load[1]:.1f}"
        rows += [
            _row(
                f"7. start-up (process start → serving), {what}",
                f"{out.startup:.2f} s ({load})",
                f"< {TARGET_STARTUP:g} s: {verdict(out.startup < TARGET_STARTUP)}",
            ),
            _row(
                f"7. RSS after start, {what}",
                f"{out.rss:.0f} MB",
                f"< {TARGET_RSS_MB:g} MB: {verdict(out.rss < TARGET_RSS_MB)}",
            ),
            _row(
                f"7. exit after SIGTERM, `--grace-period {GRACE:g}`, {what}",
                f"{out.exit_after:.2f} s (exit code {out.exit_code})",
                f"≤ grace + 2 s: {verdict(out.exit_after <= TARGET_EXIT)}",
            ),
        ]
    return rows


def _row(what: str, ours: str, target: str) -> Row:
    return Row(what, ours, "— (no baseline)", "n/a", target)


if __name__ == "__main__":
    raise SystemExit(f"run `{sys.executable} -m benchmarks --only many_triggers`")
