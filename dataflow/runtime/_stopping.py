"""The grace period of a stop, said while it runs: which runs it waits for, and for how long.

After Ctrl-C a person sees `stopping: no new fires`, then, every `PROGRESS_EVERY` seconds while
runs are still going, one line per run: its trigger, its id, how long it has run, and the
seconds left before it is cancelled. The grace is measured on the runtime's clock (a test's
fake clock moves it by hand).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from dataflow._core.clock import Clock
from dataflow._core.logs import get_logger
from dataflow._core.run import Run

PROGRESS_EVERY = 5.0  # seconds between two rounds of "waiting for run" lines
NAMED_RUNS = 10  # runs named in one round; the others are counted on one more line
_OVER = 1e-6  # seconds left that count as none: a clock keeping microseconds cannot sleep less

log = get_logger("dataflow.runtime")


async def wait_out_grace(clock: Clock, grace: float, in_flight: Callable[[], list[Run]]) -> None:
    """Return once `grace` seconds have passed on `clock`, naming the runs still in flight
    at once and then every `PROGRESS_EVERY` seconds. The runtime cancels this wait as soon
    as the last run is done."""
    deadline = clock.monotonic() + grace
    report_at = clock.monotonic()
    while (left := deadline - clock.monotonic()) > _OVER:
        if clock.monotonic() >= report_at:
            say_waiting(in_flight(), left, clock.now())
            report_at = clock.monotonic() + PROGRESS_EVERY
        await clock.sleep(min(left, report_at - clock.monotonic()))


def say_waiting(runs: list[Run], grace_left: float, now: datetime) -> None:
    left = round(grace_left, 1)
    for run in runs[:NAMED_RUNS]:
        log.info(
            "stopping: waiting for run",
            trigger=run.trigger,
            run_id=run.run_id,
            elapsed=round((now - run.started_at).total_seconds(), 1),
            grace_left=left,
        )
    if len(runs) > NAMED_RUNS:
        log.info("stopping: waiting for more runs", runs=len(runs) - NAMED_RUNS, grace_left=left)
