"""A change event's first attempt, its `Run` built only if something asks for it (`_eventrun`):
here the async one (on the loop); the sync one is `Dispatcher._event_in_thread`.

What the dispatcher's `_attempt` / `_attempt_in_thread` do for any run, minus what a change
event that succeeds never needs: its `Run`, its start record (see `RunBook.started`), a
generic log-context binding. A failure, a timeout or a cancel builds the run and records it as
before; a retry is an ordinary attempt. The caller has bound `workflow` and `trigger` for the
log lines (the pump, for its thread; a trip to the loop carries the thread's context along);
the run's id is bound here, so every line of the run carries it as before.
"""

from __future__ import annotations

from functools import partial

import anyio
from structlog.contextvars import bind_contextvars, reset_contextvars

from dataflow._core import offload
from dataflow._core.run import Run, RunStatus, reset_current_run, set_current_run
from dataflow.runtime._calls import call_async
from dataflow.runtime._eventrun import EventRun
from dataflow.runtime._outcomes import completed, failed
from dataflow.runtime._runbook import RunBook
from dataflow.triggers.base import RunOutcome, RunRequest

SUCCEEDED = RunOutcome(RunStatus.SUCCEEDED)  # frozen: one for every change event that succeeds


async def event_on_loop(book: RunBook, request: RunRequest) -> RunOutcome:
    """An async handler, on the loop. Start and end of a run that does not succeed are
    recorded whatever happens (shielded), as `Dispatcher._attempt` records them."""
    event = EventRun(book, request, book.clock.now())
    bound = bind_contextvars(run_id=event.run_id)
    try:
        book.event_started(event, in_thread=False)
        token = set_current_run(event)
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled meanwhile: do not run
            error = await call_async(event, request)
        except anyio.get_cancelled_exc_class():
            run = event.materialize()
            run.request_cancel()
            with anyio.CancelScope(shield=True):
                await _finish(book, run, RunOutcome(RunStatus.CANCELLED))
            raise
        finally:
            reset_current_run(token)
        if error is None and not event.cancelled:
            book.event_succeeded(event)
            return SUCCEEDED
        run = event.materialize()
        outcome = completed(run, request.policy.timeout) if error is None else failed(run, error)
        with anyio.CancelScope(shield=True):
            await _finish(book, run, outcome)
        return outcome
    finally:
        reset_contextvars(**bound)


async def _finish(book: RunBook, run: Run, outcome: RunOutcome) -> None:
    await offload.run_sync(partial(book.finished, run, outcome, batched=True))
