"""Run a cron trigger's past fires again, one at a time: `trigger NAME T --from ... --to ...`.

Each fire runs through the runtime's `Dispatcher`, as a scheduled fire does: recorded in the
state store, with the trigger's timeout and retries, `current_run().scheduled_at` set to the
fire time; its run is marked as a backfill. As for `trigger`, no trigger is started and the
state file is not locked: a backfill may run beside the running workflow, and never moves the
trigger's last fire (the workflow's own schedule is untouched).

A failed run does not stop the backfill unless `stop_on_failure`. The first SIGINT/SIGTERM
lets the run in flight finish (its retries included) and starts no other; a second cancels it.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import anyio
from anyio.abc import TaskStatus

from dataflow._core.errors import StartupFailed
from dataflow._core.logs import get_logger
from dataflow._core.run import RunStatus
from dataflow.runtime._groups import first_error
from dataflow.runtime._lifecycle import Runtime
from dataflow.runtime._manual import find_trigger
from dataflow.triggers.base import RunHandle, Trigger

log = get_logger("dataflow.runtime")


@dataclass(eq=False)
class Backfill:
    """A backfill's progress: its fires (oldest first) and the runs finished so far."""

    fires: Sequence[datetime]
    done: list[RunHandle] = field(default_factory=list)  # one per fire finished, in order
    signalled: bool = False  # a stop signal came: no fire starts after it
    stopped_at_failure: bool = False  # `stop_on_failure` and a run did not succeed
    in_flight: RunHandle | None = None

    @property
    def left(self) -> Sequence[datetime]:
        """The fires not run to the end (one cancelled by a second signal included)."""
        return self.fires[len(self.done) :]

    @property
    def failed_fires(self) -> list[datetime]:
        """The fires whose run ended other than succeeded (failed, timed out, cancelled)."""
        ran = zip(self.fires, self.done, strict=False)  # the fires left have no run yet
        return [fire for fire, handle in ran if not succeeded(handle)]

    @property
    def interrupted(self) -> bool:
        """Stopped by a signal with fires left to run."""
        return self.signalled and bool(self.left)


def succeeded(handle: RunHandle) -> bool:
    return handle.outcome is not None and handle.outcome.status == RunStatus.SUCCEEDED


async def run_backfill(
    runtime: Runtime,
    trigger_name: str,
    fires: Sequence[datetime],
    *,
    startup: bool = True,
    stop_on_failure: bool = False,
) -> Backfill:
    """Run startup handlers (unless `startup=False`), then `trigger_name`'s handler once per
    fire in `fires`, in order, each after the previous one ended."""
    triggers = runtime.workflow.triggers()
    target = find_trigger(runtime.workflow, triggers, trigger_name)
    for fire in fires[:1]:
        target.backfill_request(fire)  # a trigger without fires is refused before any run
    backfill = Backfill(fires)
    with first_error(StartupFailed), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            await tg.start(_stop_on_signals, backfill, scope)
            if startup and fires:
                others = [t for t in triggers if t.runs_before_others and t is not target]
                await runtime.run_startup(others, runtime.context())
            await _run_fires(runtime, target, backfill, stop_on_failure)
            tg.cancel_scope.cancel()
    return backfill


async def _run_fires(
    runtime: Runtime, target: Trigger, backfill: Backfill, stop_on_failure: bool
) -> None:
    for number, fire in enumerate(backfill.fires, start=1):
        if backfill.signalled:
            return
        handle = RunHandle(target.backfill_request(fire))
        backfill.in_flight = handle
        log.info("backfill fire", trigger=target.name, fire=number, of=len(backfill.fires))
        await runtime.dispatcher.execute(handle.request, handle)
        backfill.in_flight = None
        backfill.done.append(handle)
        if stop_on_failure and not succeeded(handle):
            backfill.stopped_at_failure = True
            return


async def _stop_on_signals(
    backfill: Backfill, scope: anyio.CancelScope, *, task_status: TaskStatus[None]
) -> None:
    """First signal: no fire starts after the one in flight. Second: cancel that one too (it
    is recorded cancelled; a sync handler sees `current_run().cancelled`)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            if not backfill.signalled:
                backfill.signalled = True
                log.warning(
                    "backfill stopping: the run in flight finishes, no other starts "
                    "(a second signal cancels it)",
                    left=len(backfill.left) - (backfill.in_flight is not None),
                )
                continue
            log.warning("backfill cancelled: cancelling the run in flight")
            if backfill.in_flight is not None:
                backfill.in_flight.cancel()
            scope.cancel()
            return
