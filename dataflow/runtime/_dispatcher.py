"""Runs handlers: records each run, applies timeout and retries, never lets a failure escape.

APScheduler's habit: catch the cancellation, record the outcome under a shielded scope, re-raise.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup
from structlog.contextvars import bind_contextvars, reset_contextvars

from dataflow._core import offload
from dataflow._core.clock import Clock
from dataflow._core.handlers import call_sync, is_async_handler
from dataflow._core.logs import get_logger
from dataflow._core.run import Run, RunStatus, reset_current_run, set_current_run
from dataflow.runtime._calls import call_async, is_cancellation
from dataflow.runtime._eventpaths import SUCCEEDED, event_on_loop
from dataflow.runtime._eventrun import EventRun
from dataflow.runtime._outcomes import completed, failed, thread_deadline
from dataflow.runtime._runbook import RunBook, RunObserver
from dataflow.state import FireEntry, RunRecord, Store
from dataflow.triggers.base import RunHandle, RunOutcome, RunRequest

__all__ = ["Dispatcher", "RunObserver"]

log = get_logger("dataflow.run")


class Dispatcher:
    """The runtime's `Runner`: executes run requests on the loop, in the run group, or inline in
    a trigger's own worker thread (change streams: no thread hop per event)."""

    def __init__(
        self, workflow: str, state: Store, clock: Clock, limiter: anyio.CapacityLimiter
    ) -> None:
        self.workflow = workflow
        self.state = state
        self.clock = clock
        self.limiter = limiter
        self.book = RunBook(workflow, state, clock)
        self.observers = self.book.observers
        self.active: set[RunHandle] = set()
        self._group: TaskGroup | None = None
        # by trigger: a handler need not be hashable, and the entries stay as many as triggers
        self._async_handlers: dict[str, tuple[Callable[..., Any], bool]] = {}

    def bind(self, group: TaskGroup | None) -> None:
        """Set the task group that spawned runs live in (the runtime's run group)."""
        self._group = group

    def spawn(self, request: RunRequest, run: Run | None = None) -> RunHandle:
        if self._group is None:
            raise RuntimeError("no run group: spawn() is only valid while triggers run")
        handle = RunHandle(request)
        self.active.add(handle)
        self._group.start_soon(self._run_spawned, handle, run, name=f"run {request.trigger}")
        return handle

    def new_run(self, request: RunRequest, started_at: datetime) -> Run:
        return self.book.new_run(request, 1, started_at=started_at)

    def run_written(self, run: Run) -> None:
        self.book.started(run, written=True)

    async def _run_spawned(self, handle: RunHandle, run: Run | None) -> None:
        try:
            with handle.cancel_scope:
                await self.execute(handle.request, handle, run)
        finally:
            self.active.discard(handle)
            handle.finished.set()

    async def execute(
        self, request: RunRequest, handle: RunHandle | None = None, run: Run | None = None
    ) -> RunOutcome:
        """Run with retries by policy; returns the last attempt's outcome. `run`: the first
        attempt's, its start recorded already (`Runner.run_written`)."""
        policy = request.policy
        for attempt in range(1, policy.retries + 2):
            if attempt == 1 and request.batched and handle is None and self._is_async(request):
                outcome = await event_on_loop(self.book, request)
            else:
                written = run if attempt == 1 else None
                outcome = await self._attempt(request, attempt, handle, written)
            if outcome.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
                break
            if attempt <= policy.retries:
                await self._backoff(request, attempt)
        if handle is not None:
            handle.outcome = outcome
        return outcome

    async def _backoff(self, request: RunRequest, attempt: int) -> None:
        policy = request.policy
        delay = min(policy.retry_max_delay, policy.retry_delay * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # full jitter keeps retrying runs from aligning
        log.info("run retry scheduled", trigger=request.trigger, attempt=attempt + 1, delay=delay)
        await self.clock.sleep_until(self.clock.now() + timedelta(seconds=delay))

    def execute_in_thread(
        self, request: RunRequest, cancel: threading.Event | None = None
    ) -> RunOutcome:
        """`execute()` for a sync handler, inline in the calling worker thread.

        Call it from a worker thread AnyIO started (retry backoff sleeps on the loop's clock).
        `cancel` is the caller's hard stop: once set, the handler sees
        `current_run().cancelled`, its return counts as cancelled, and no retry starts.
        """
        for attempt in range(1, request.policy.retries + 2):
            if attempt == 1 and request.batched:
                outcome = self._event_in_thread(request, cancel)
            else:
                outcome = self._attempt_in_thread(request, attempt, cancel)
            if outcome.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
                break
            if attempt <= request.policy.retries and not self._backoff_in_thread(
                request, attempt, cancel
            ):
                return RunOutcome(RunStatus.CANCELLED, outcome.error)
        return outcome

    def fold_counts(self, trigger: str) -> None:
        self.book.fold(trigger)

    def _backoff_in_thread(
        self, request: RunRequest, attempt: int, cancel: threading.Event | None
    ) -> bool:
        """Wait before a retry; False when stopped instead (hard stop, loop cancelled or gone)."""
        if cancel is not None and cancel.is_set():
            return False
        try:
            anyio.from_thread.run(self._backoff, request, attempt)
        except BaseException as exc:
            if isinstance(exc, anyio.RunFinishedError) or is_cancellation(exc):
                return False
            raise
        return cancel is None or not cancel.is_set()

    def _attempt_in_thread(
        self, request: RunRequest, attempt: int, cancel: threading.Event | None
    ) -> RunOutcome:
        run = self.book.new_run(request, attempt, cancel)
        # bind/reset, not `bound_contextvars` (a generator): this runs once per change event
        bound = bind_contextvars(workflow=self.workflow, trigger=request.trigger, run_id=run.run_id)
        try:
            self.book.started(run, batched=request.batched)
            token = set_current_run(run)
            try:
                deadline = thread_deadline(run, request.policy.timeout)
                with self.book.executing(run, request.batched), deadline:
                    error = call_sync(request.handler, request.args)
            finally:
                reset_current_run(token)
            if error is not None and not (run.cancelled and is_cancellation(error)):
                outcome = failed(run, error)
            else:  # a stop reaching the handler through the loop is the run's cancel
                outcome = completed(run, request.policy.timeout)
            self.book.finished(run, outcome, batched=request.batched)
        finally:
            reset_contextvars(**bound)
        return outcome

    def _event_in_thread(self, request: RunRequest, cancel: threading.Event | None) -> RunOutcome:
        """A change event's first attempt (`_eventpaths`), its sync handler inline in the pump's
        thread: `call_sync` looked up here, as `_attempt_in_thread` does."""
        event = EventRun(self.book, request, self.clock.now(), cancel)
        bound = bind_contextvars(run_id=event.run_id)
        try:
            self.book.event_started(event, in_thread=True)
            token = set_current_run(event)
            try:
                with thread_deadline(event, request.policy.timeout):
                    error = call_sync(request.handler, request.args)
            finally:
                reset_current_run(token)
                self.book.event_returned(event)
            if error is None and not event.cancelled:  # a timeout flags it cancelled too
                self.book.event_succeeded(event)
                return SUCCEEDED
            run = event.materialize()
            if error is not None and not (run.cancelled and is_cancellation(error)):
                outcome = failed(run, error)
            else:  # a stop reaching the handler through the loop is the run's cancel
                outcome = completed(run, request.policy.timeout)
            self.book.event_failed(event, outcome)
            return outcome
        finally:
            reset_contextvars(**bound)

    def _is_async(self, request: RunRequest) -> bool:
        """`is_async_handler`, asked once per handler (it unwraps and inspects: dear per event)."""
        handler = request.handler
        known = self._async_handlers.get(request.trigger)
        if known is None or known[0] is not handler:
            known = self._async_handlers[request.trigger] = (handler, is_async_handler(handler))
        return known[1]

    async def record_skipped(
        self, request: RunRequest, reason: str, ledger: Sequence[FireEntry] | None = None
    ) -> None:
        await offload.run_sync(partial(self.book.skipped, request, reason, ledger))

    def skipped_run(self, request: RunRequest, reason: str) -> RunRecord:
        return self.book.skipped_run(request, reason)

    def skipped_written(self, records: Sequence[RunRecord]) -> None:
        self.book.skipped_written(records)

    async def _attempt(
        self, request: RunRequest, attempt: int, handle: RunHandle | None, written: Run | None
    ) -> RunOutcome:
        run = written or self.book.new_run(request, attempt)
        if handle is not None:
            handle.run = run
        # bind/reset, not `bound_contextvars` (a generator): a change event's run comes here
        bound = bind_contextvars(workflow=self.workflow, trigger=request.trigger, run_id=run.run_id)
        try:
            # Start and end are recorded whatever happens: a stop landing while one of them waits
            # for a worker thread (many do, under load) would leave the run `running` for ever,
            # or its fire without any record.
            batched = request.batched
            if written is not None:  # recorded with its fire's claim (`Runner.run_written`)
                pass
            elif batched:  # nothing to write (see RunBook.started): no thread hop, no await
                self.book.started(run, batched=True)
            else:
                with anyio.CancelScope(shield=True):
                    await offload.run_sync(partial(self.book.started, run))
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled meanwhile: do not run
                outcome = await self._call_handler(run, request)
            except anyio.get_cancelled_exc_class():
                run.request_cancel()
                with anyio.CancelScope(shield=True):
                    cancelled = RunOutcome(RunStatus.CANCELLED)
                    await self._finish(run, cancelled, batched)
                raise
            if batched and outcome.status is RunStatus.SUCCEEDED:  # counted, not written
                self.book.finished(run, outcome, batched=True)
            else:
                with anyio.CancelScope(shield=True):
                    await self._finish(run, outcome, batched)
        finally:
            reset_contextvars(**bound)
        return outcome

    async def _finish(self, run: Run, outcome: RunOutcome, batched: bool) -> None:
        await offload.run_sync(partial(self.book.finished, run, outcome, batched=batched))

    async def _call_handler(self, run: Run, request: RunRequest) -> RunOutcome:
        """Whatever the handler raises fails the run; only the loop's cancellation (the
        runtime's own stop) goes on up."""
        timeout = request.policy.timeout
        token = set_current_run(run)
        try:
            if is_async_handler(request.handler):
                error = await call_async(run, request)
            else:
                with thread_deadline(run, timeout):
                    error = await self._call_in_thread(request)
        finally:
            reset_current_run(token)
        return completed(run, timeout) if error is None else failed(run, error)

    async def _call_in_thread(self, request: RunRequest) -> BaseException | None:
        # AnyIO copies the context into the thread: current_run() and the log context go along.
        # The handler's exceptions stay in the thread, so one that reaches us is the loop's own.
        return await offload.run_sync(
            partial(call_sync, request.handler, request.args),
            limiter=self.limiter,
            abandon_on_cancel=True,
            kind="handler",
        )


handler_code = call_async.__code__  # the loop watcher finds the blocking run by this frame
