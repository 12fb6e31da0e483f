"""Run one trigger's handler once, now: `python -m dataflow trigger` and dead-letter retries.

The run goes through the runtime's `Dispatcher`, so it is recorded in the state store (and
counted in metrics) like a scheduled one, with the trigger's timeout and retries. Startup
handlers run first, all of them concurrently, as they would at start-up, unless told not to.
No trigger is started and the state file is not locked: a backfill may run beside a running
workflow.
"""

from __future__ import annotations

import signal
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from dataflow._core import offload
from dataflow._core.errors import StartupFailed, WorkflowNotFound
from dataflow._core.run import RunStatus
from dataflow.runtime._groups import first_error
from dataflow.runtime._lifecycle import Runtime
from dataflow.state import DeadLetter
from dataflow.triggers.base import RunHandle, RunRequest, Trigger
from dataflow.triggers.workflow import Workflow


async def run_trigger_once(
    runtime: Runtime, trigger_name: str, *, payload: Any = None, startup: bool = True
) -> RunHandle:
    """Run startup handlers (unless `startup=False`), then `trigger_name`'s handler once."""
    triggers = runtime.workflow.triggers()
    target = find_trigger(runtime.workflow, triggers, trigger_name)
    return await _run_request(runtime, triggers, target.manual_request(payload), startup)


async def _run_request(
    runtime: Runtime, triggers: list[Trigger], request: RunRequest, startup: bool
) -> RunHandle:
    target = next(t for t in triggers if t.name == request.trigger)
    handle = RunHandle(request)
    with first_error(StartupFailed), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            await tg.start(_cancel_on_signal, handle, scope)
            if startup:
                others = [t for t in triggers if t.runs_before_others and t is not target]
                await runtime.run_startup(others, runtime.context())
            await runtime.dispatcher.execute(request, handle)
            tg.cancel_scope.cancel()
    return handle


async def retry_dead_letter(runtime: Runtime, letter_id: int, *, startup: bool = True) -> RunHandle:
    """Re-run a dead letter's event through its trigger, the event as it was delivered (the
    trigger decodes the letter: see `Trigger.retry_request`); the outcome is written back."""
    letter = await runtime.state.call(find_dead_letter, runtime, letter_id)
    triggers = runtime.workflow.triggers()
    target = find_trigger(runtime.workflow, triggers, letter.trigger)
    retry = partial(target.retry_request, letter.payload, letter.raw, letter.id)
    request = await offload.run_sync(retry)  # may read a connection's options: no loop stall
    handle = await _run_request(runtime, triggers, request, startup)
    status = handle.outcome.status.value if handle.outcome else RunStatus.CANCELLED.value
    await runtime.state.call(runtime.state.mark_dead_letter_retried, letter.id, status)
    return handle


def find_dead_letter(runtime: Runtime, letter_id: int) -> DeadLetter:
    letters = runtime.state.dead_letters(runtime.name, include_retried=True)
    found = next((letter for letter in letters if letter.id == letter_id), None)
    if found is None:
        raise WorkflowNotFound(f"workflow {runtime.name!r} has no dead letter {letter_id}")
    return found


def find_trigger(workflow: Workflow, triggers: list[Trigger], name: str) -> Trigger:
    declared = workflow.declared_trigger(name)  # an unknown name is bad input
    return next(t for t in triggers if t.name == declared.name)


async def _cancel_on_signal(
    handle: RunHandle, scope: anyio.CancelScope, *, task_status: TaskStatus[None]
) -> None:
    """Ctrl-C or SIGTERM cancels startup or the run, which is then recorded as cancelled."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            if handle.run is not None:
                handle.run.request_cancel()  # a sync handler sees current_run().cancelled
            scope.cancel()
            return
