"""What every benchmark shares: sizes, result rows, child processes, and number formatting.

Each side of a comparison that measures memory or CPU runs in its own child process
(`python -m benchmarks.<module> --child ...`), so one side's imports, threads and garbage
never show up in the other's numbers. A child writes one JSON object to the file named by
`--result`; its stdout and stderr stay free for logs.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Result = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """How big each benchmark is. `quick()` is the smoke-test size: everything in seconds."""

    fires: int = 200  # 1-second cron fires measured per side and backend
    triggers: int = 10_000  # cron triggers (APScheduler: schedules) in one process
    idle: float = 60.0  # seconds of idle watched for CPU use
    events: int = 100_000  # change events dispatched
    records: int = 100_000  # records upserted into MongoDB, rows inserted over ODBC
    cli_runs: int = 20  # `python -m dataflow --help` launches
    repeats: int = 5  # SQL loads per variant; the best counts (the server is shared)
    overload_triggers: int = 2_000  # one-second cron triggers in the overload run
    overload_seconds: float = 60.0  # how long the overload run serves them
    many_triggers: int = 100_000  # yearly cron triggers started and stopped
    failovers: int = 5  # change-stream failovers timed per signal (kill -9, SIGTERM)
    parallel: bool = False  # run independent children at once (only sane for smoke runs)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            fires=2,
            triggers=200,
            idle=0.5,
            events=2_000,
            records=1_000,
            cli_runs=2,
            repeats=1,
            overload_triggers=50,
            overload_seconds=3.0,
            many_triggers=200,
            failovers=1,
            parallel=True,
        )


@dataclass(frozen=True)
class Row:
    """One line of the results table. `ratio` is dataflow / baseline of the row's key number."""

    what: str
    dataflow: str
    baseline: str
    ratio: str
    target: str = ""


@dataclass(frozen=True)
class Child:
    """One side of a comparison, run as `python -m benchmarks.<module> --child ARGS`."""

    module: str
    args: tuple[str, ...] = ()
    timeout: float = 900.0


class ChildFailed(RuntimeError):
    """A child process exited non-zero or ran past its time limit."""


class Unavailable(Exception):
    """This benchmark cannot run here (a peer or a module is missing); the row says why."""


def run_children(children: Sequence[Child], *, parallel: bool) -> list[Result]:
    """Run each child (all at once if `parallel`) and return their results in order."""
    with tempfile.TemporaryDirectory(prefix="dataflow-bench-") as tmp:
        outs = [Path(tmp) / f"result-{i}.json" for i in range(len(children))]
        if parallel:
            procs = [_launch(child, out) for child, out in zip(children, outs, strict=True)]
            for child, proc in zip(children, procs, strict=True):
                _finish(child, proc)
        else:
            for child, out in zip(children, outs, strict=True):
                _finish(child, _launch(child, out))
        return [json.loads(out.read_text()) for out in outs]


def run_child(child: Child) -> Result:
    return run_children([child], parallel=False)[0]


def _launch(child: Child, out: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", f"benchmarks.{child.module}", "--child", *child.args]
    return subprocess.Popen(
        [*cmd, "--result", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(child: Child, proc: subprocess.Popen[str]) -> None:
    try:
        _, stderr = proc.communicate(timeout=child.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ChildFailed(f"{child.module} {' '.join(child.args)}: timed out") from None
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise ChildFailed(
            f"{child.module} {' '.join(child.args)} exited {proc.returncode}:\n{tail}"
        )


def write_result(path: str, result: Result) -> None:
    Path(path).write_text(json.dumps(result))


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# -- measuring inside a child ------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size now (VmRSS), in MB."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """Peak resident set size so far (VmHWM), in MB."""
    return _status_kb("VmHWM") / 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- numbers --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ratio(dataflow: float, baseline: float) -> str:
    if baseline == 0:
        return "n/a"
    return f"{dataflow / baseline:.2f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"
