"""1. Fire precision: how late a 1-second cron schedule's handler starts, dataflow vs APScheduler 4.

Lag = wall time at handler entry - the fire's scheduled time. Both sides run an async handler
on the event loop with the real clock, log at INFO to a file, and drop their first fire (it
pays one-off imports and caches). dataflow's lag includes what a production fire does before
the handler: the last-fire write and the run-start record in the SQLite state store.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from benchmarks._common import (
    Child,
    Result,
    Row,
    Sizes,
    has_module,
    ms,
    percentile,
    ratio,
    run_children,
    verdict,
    write_result,
)

BACKENDS = ("asyncio", "trio")
TARGET_P99 = 0.005  # seconds

_lags: list[float] = []
_wanted = 0
_done: anyio.Event | None = None


def _record(lag: float) -> None:
    _lags.append(lag)
    if len(_lags) >= _wanted and _done is not None:
        _done.set()


async def _dataflow_side(tmp: Path) -> None:
    from dataflow import Runtime, Settings, SystemClock, Workflow, cronjob, current_run
    from dataflow._core.logs import configure_logging

    class Precision(Workflow):
        @cronjob("* * * * * *", timezone="UTC")
        async def every_second(self) -> None:
            entered = time.time()
            scheduled = current_run().scheduled_at
            assert scheduled is not None
            _record(entered - scheduled.timestamp())

    with (tmp / "dataflow.log").open("w") as log_file:
        configure_logging("json", "info", stream=log_file)
        settings = Settings(state_path=tmp / "state.db", grace_period=1.0)
        runtime = Runtime(Precision(), settings=settings, clock=SystemClock())
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            assert _done is not None
            await _done.wait()
            runtime.stop()
        runtime.state.close()


async def _apscheduler_tick() -> None:
    from apscheduler import current_job

    entered = time.time()
    scheduled = current_job.get().scheduled_fire_time
    assert scheduled is not None
    _record(entered - scheduled.timestamp())


async def _apscheduler_side(tmp: Path) -> None:
    from apscheduler import AsyncScheduler
    from apscheduler.triggers.cron import CronTrigger

    logging.basicConfig(filename=tmp / "apscheduler.log", level=logging.INFO)
    async with AsyncScheduler() as scheduler:
        trigger = CronTrigger(second="*", timezone="UTC")
        await scheduler.add_schedule(_apscheduler_tick, trigger, id="every_second")
        await scheduler.start_in_background()
        assert _done is not None
        await _done.wait()
        await scheduler.stop()


async def _child_main(side: str, fires: int) -> list[float]:
    global _wanted, _done
    _wanted = fires + 1  # the first fire is a warm-up
    _done = anyio.Event()
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        with anyio.fail_after(fires + 30):
            if side == "dataflow":
                await _dataflow_side(Path(tmp))
            else:
                await _apscheduler_side(Path(tmp))
    return _lags[1:_wanted]


def child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("dataflow", "apscheduler"), required=True)
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--fires", type=int, required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    lags = anyio.run(_child_main, args.side, args.fires, backend=args.backend)
    write_result(args.result, _summary(lags))


def _summary(lags: list[float]) -> Result:
    return {
        "fires": len(lags),
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "max": max(lags),
        "min": min(lags),
    }


# -- parent ---------------------------------------------------------------------------------


def run(sizes: Sizes) -> list[Row]:
    """Per backend, dataflow and APScheduler run at the same time, in their own processes: on
    a shared machine both then see the same background load (2 cores: one each)."""
    with_aps = has_module("apscheduler")
    sides = ["dataflow", "apscheduler"] if with_aps else ["dataflow"]
    pairs = [
        [
            Child(
                "fire_precision",
                ("--side", side, "--backend", backend, "--fires", str(sizes.fires)),
                timeout=sizes.fires + 120,
            )
            for side in sides
        ]
        for backend in BACKENDS
    ]
    if sizes.parallel:  # a smoke run: everything at once
        results = iter(run_children([c for pair in pairs for c in pair], parallel=True))
    else:
        results = iter([r for pair in pairs for r in run_children(pair, parallel=True)])
    rows = []
    for backend in BACKENDS:
        ours = next(results)
        theirs = next(results) if with_aps else None
        rows.append(_row(backend, ours, theirs, sizes.fires))
    return rows


def _row(backend: str, ours: Result, theirs: Result | None, fires: int) -> Row:
    what = f"1. fire lag p50 / p99 / max, `* * * * * *`, {fires} fires, {backend}"
    target = f"p99 ≤ 5 ms: {verdict(ours['p99'] <= TARGET_P99)}"
    if theirs is None:
        return Row(what, _cell(ours), "APScheduler not installed", "n/a", target)
    target += f"; ≤ APScheduler: {verdict(ours['p99'] <= theirs['p99'])}"
    return Row(
        what, _cell(ours), _cell(theirs), f"{ratio(ours['p99'], theirs['p99'])} (p99)", target
    )


def _cell(result: Result) -> str:
    return " / ".join(ms(result[key]) for key in ("p50", "p99", "max"))


def main(argv: list[str]) -> Any:
    if argv and argv[0] == "--child":
        return child(argv[1:])
    raise SystemExit("run `python -m benchmarks --only fire_precision`")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
