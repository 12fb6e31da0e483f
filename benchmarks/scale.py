"""2. Scale: 10,000 cron triggers in one workflow vs 10,000 APScheduler 4 schedules.

Each side runs in its own process on the real clock. Start-up = from building the definitions
(decorating the handlers / constructing the cron triggers) until every trigger is serving
(dataflow: `Runtime.started`; APScheduler: `start_in_background()` returned). Then the process
sits idle, nothing due (every schedule fires once a day, ~12 h from now), and its CPU time
(user + system, all threads) over the idle window and its RSS are read from inside.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import (
    Child,
    Result,
    Row,
    Sizes,
    cpu_seconds,
    has_module,
    peak_rss_mb,
    ratio,
    rss_mb,
    run_children,
    verdict,
    write_result,
)

BACKENDS = ("asyncio", "trio")
TARGET_CPU_SHARE = 0.01  # of one core
TARGET_RSS_MB = 150.0


def quiet_hour() -> int:
    """An hour of the day (UTC) about 12 h away: no daily schedule at it is due soon."""
    return (datetime.now(UTC).hour + 12) % 24


def _handler(index: int) -> Any:
    async def handler(self: object) -> None:
        pass

    handler.__name__ = handler.__qualname__ = f"job_{index}"
    return handler


def build_workflow(count: int, hour: int) -> Any:
    """A workflow class with `count` daily cron triggers, spread over the minutes of `hour`."""
    from dataflow import Workflow, cronjob

    namespace: dict[str, Any] = {"workflow_name": "scale"}
    for i in range(count):
        namespace[f"job_{i}"] = cronjob(f"{i % 60} {hour} * * *", timezone="UTC")(_handler(i))
    return type("Scale", (Workflow,), namespace)


async def _dataflow_side(count: int, idle: float, tmp: Path) -> Result:
    from dataflow import Runtime, Settings, SystemClock
    from dataflow._core.logs import configure_logging

    with (tmp / "dataflow.log").open("w") as log_file:
        configure_logging("json", "info", stream=log_file)
        started = time.perf_counter()
        workflow = build_workflow(count, quiet_hour())()
        settings = Settings(state_path=tmp / "state.db", grace_period=1.0)
        runtime = Runtime(workflow, settings=settings, clock=SystemClock())
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            await runtime.started.wait()
            result = await _watch_idle(started, idle)
            runtime.stop()
        runtime.state.close()
    return result


async def _apscheduler_job() -> None:
    pass


async def _apscheduler_side(count: int, idle: float, tmp: Path) -> Result:
    from apscheduler import AsyncScheduler
    from apscheduler.triggers.cron import CronTrigger

    logging.basicConfig(filename=tmp / "apscheduler.log", level=logging.INFO)
    started = time.perf_counter()
    hour = quiet_hour()
    async with AsyncScheduler() as scheduler:
        for i in range(count):
            trigger = CronTrigger(minute=i % 60, hour=hour, timezone="UTC")
            await scheduler.add_schedule(_apscheduler_job, trigger, id=f"job_{i}")
        await scheduler.start_in_background()
        result = await _watch_idle(started, idle)
        await scheduler.stop()
    return result


async def _watch_idle(started: float, idle: float) -> Result:
    ready = time.perf_counter()
    rss_ready = rss_mb()
    cpu_before = cpu_seconds()
    await anyio.sleep(idle)
    cpu_idle = cpu_seconds() - cpu_before
    return {
        "startup": ready - started,
        "rss_ready": rss_ready,
        "rss_idle": rss_mb(),
        "rss_peak": peak_rss_mb(),
        "cpu_idle": cpu_idle,
        "cpu_share": cpu_idle / idle if idle else 0.0,
        "idle": idle,
    }


def child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("dataflow", "apscheduler"), required=True)
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--triggers", type=int, required=True)
    parser.add_argument("--idle", type=float, required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    side = _dataflow_side if args.side == "dataflow" else _apscheduler_side
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        result = anyio.run(side, args.triggers, args.idle, Path(tmp), backend=args.backend)
    write_result(args.result, result)


# -- parent ---------------------------------------------------------------------------------


def run(sizes: Sizes) -> list[Row]:
    with_aps = has_module("apscheduler")
    sides = ["dataflow", "apscheduler"] if with_aps else ["dataflow"]
    args = ("--triggers", str(sizes.triggers), "--idle", str(sizes.idle))
    children = [
        Child("scale", ("--side", side, "--backend", backend, *args), timeout=sizes.idle + 600)
        for backend in BACKENDS
        for side in sides
    ]
    results = iter(run_children(children, parallel=sizes.parallel))
    rows: list[Row] = []
    for backend in BACKENDS:
        ours = next(results)
        theirs = next(results) if with_aps else None
        rows += _rows(backend, sizes, ours, theirs)
    return rows


def _rows(backend: str, sizes: Sizes, ours: Result, theirs: Result | None) -> list[Row]:
    n = f"{sizes.triggers:,}"

    def pair(key: str) -> tuple[float, float | None]:
        return float(ours[key]), None if theirs is None else float(theirs[key])

    (startup, startup_aps), (rss, rss_aps), (cpu, cpu_aps) = map(
        pair, ("startup", "rss_idle", "cpu_share")
    )
    return [
        _row(
            f"2. start-up, {n} cron triggers, {backend}",
            startup,
            startup_aps,
            lambda s: f"{s:.2f} s",
            "",
        ),
        _row(
            f"2. RSS after {sizes.idle:g} s idle, {n} triggers, {backend}",
            rss,
            rss_aps,
            lambda m: f"{m:.0f} MB",
            _target("≤ 150 MB", rss <= TARGET_RSS_MB, rss, rss_aps),
        ),
        _row(
            f"2. idle CPU over {sizes.idle:g} s, {n} triggers, {backend}",
            cpu,
            cpu_aps,
            _cpu_cell(sizes.idle),
            _target("≤ 1% of a core", cpu <= TARGET_CPU_SHARE, cpu, cpu_aps),
        ),
    ]


def _cpu_cell(idle: float) -> Callable[[float], str]:
    """Share of one core, with the CPU seconds behind it."""
    return lambda share: f"{share * 100:.2f}% ({share * idle:.2f} CPU-s)"


def _row(
    what: str, ours: float, theirs: float | None, fmt: Callable[[float], str], target: str
) -> Row:
    if theirs is None:
        return Row(what, fmt(ours), "APScheduler not installed", "n/a", target)
    return Row(what, fmt(ours), fmt(theirs), ratio(ours, theirs), target)


def _target(goal: str, met_goal: bool, ours: float, theirs: float | None) -> str:
    if theirs is None:
        return f"{goal}: {verdict(met_goal)}"
    return f"{goal}: {verdict(met_goal)}; ≤ APScheduler: {verdict(ours <= theirs)}"


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        child(argv[1:])
        return
    raise SystemExit("run `python -m benchmarks --only scale`")


if __name__ == "__main__":
    main(sys.argv[1:])
