"""Runs handlers: records each run, applies timeout and retries, never lets a failure escape.

APScheduler's habit: catch the cancellation, record the outcome under a shielded scope, re-raise.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import random
import sys
import threading
import traceback
import uuid
from datetime import timedelta
from functools import partial
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup
from structlog.contextvars import bound_contextvars

from dataflow import _offload
from dataflow._clock import Clock
from dataflow._logging import get_logger
from dataflow._run import Run, RunStatus, TriggerState, reset_current_run, set_current_run
from dataflow.state import StateStore
from dataflow.triggers.base import RunHandle, RunOutcome, RunRequest

log = get_logger("dataflow.run")


class RunObserver(Protocol):
    """Told about every run (on the thread that records it); must be quick and not raise."""

    def run_started(self, run: Run) -> None: ...

    def run_finished(self, run: Run, status: RunStatus, duration: float) -> None: ...

    def run_skipped(self, trigger: str) -> None: ...


class Dispatcher:
    """The runtime's `Runner`: executes run requests inline or in the run group."""

    def __init__(
        self, workflow: str, state: StateStore, clock: Clock, limiter: anyio.CapacityLimiter
    ) -> None:
        self.workflow = workflow
        self.state = state
        self.clock = clock
        self.limiter = limiter
        self.active: set[RunHandle] = set()
        self.observers: list[RunObserver] = []  # metrics and the like; called on each run
        self._group: TaskGroup | None = None

    def bind(self, group: TaskGroup | None) -> None:
        """Set the task group that spawned runs live in (the runtime's run group)."""
        self._group = group

    def spawn(self, request: RunRequest) -> RunHandle:
        if self._group is None:
            raise RuntimeError("no run group: spawn() is only valid while triggers run")
        handle = RunHandle(request)
        self.active.add(handle)
        self._group.start_soon(self._run_spawned, handle, name=f"run {request.trigger}")
        return handle

    async def _run_spawned(self, handle: RunHandle) -> None:
        try:
            with handle.cancel_scope:
                await self.run(handle.request, handle)
        finally:
            self.active.discard(handle)
            handle.finished.set()

    async def run(self, request: RunRequest, handle: RunHandle | None = None) -> RunOutcome:
        """Run with retries by policy; returns the last attempt's outcome."""
        policy = request.policy
        for attempt in range(1, policy.retries + 2):
            outcome = await self._attempt(request, attempt, handle)
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

    async def record_skipped(self, request: RunRequest, reason: str) -> None:
        now = self.clock.now()
        run_id = uuid.uuid4().hex
        await self.state.call(
            self.state.record_run_start, run_id, self.workflow, request.trigger,
            request.scheduled_at, now,
        )  # fmt: skip
        await self.state.call(self.state.record_run_end, run_id, RunStatus.SKIPPED, now, reason)
        for observer in self.observers:
            observer.run_skipped(request.trigger)
        log.warning("run skipped", trigger=request.trigger, reason=reason,
                    scheduled_at=_iso(request.scheduled_at))  # fmt: skip

    async def _attempt(
        self, request: RunRequest, attempt: int, handle: RunHandle | None
    ) -> RunOutcome:
        run = Run(
            run_id=uuid.uuid4().hex, workflow=self.workflow, trigger=request.trigger,
            scheduled_at=request.scheduled_at, started_at=self.clock.now(), attempt=attempt,
            payload=request.payload,
            state=TriggerState(self.state, self.workflow, request.trigger),
        )  # fmt: skip
        if handle is not None:
            handle.run = run
        with bound_contextvars(workflow=self.workflow, trigger=request.trigger, run_id=run.run_id):
            await self.state.call(
                self.state.record_run_start, run.run_id, self.workflow, request.trigger,
                request.scheduled_at, run.started_at, attempt,
            )  # fmt: skip
            log.info("run started", scheduled_at=_iso(request.scheduled_at), attempt=attempt)
            for observer in self.observers:
                observer.run_started(run)
            outcome = await self._execute_and_record(run, request)
        return outcome

    async def _execute_and_record(self, run: Run, request: RunRequest) -> RunOutcome:
        try:
            outcome = await self._execute(run, request)
        except anyio.get_cancelled_exc_class():
            run.request_cancel()
            with anyio.CancelScope(shield=True):
                await self._record_end(run, RunOutcome(RunStatus.CANCELLED))
            raise
        except Exception as exc:
            log.error("run failed", exc_info=exc, error=f"{type(exc).__name__}: {exc}")
            status = RunStatus.TIMED_OUT if run.timed_out else RunStatus.FAILED
            outcome = RunOutcome(status, exc)
        await self._record_end(run, outcome)
        return outcome

    async def _record_end(self, run: Run, outcome: RunOutcome) -> None:
        error = None
        if outcome.error is not None:
            error = "".join(traceback.format_exception(outcome.error)).strip()
        await self.state.call(
            self.state.record_run_end, run.run_id, outcome.status, self.clock.now(), error
        )
        seconds = (self.clock.now() - run.started_at).total_seconds()
        log.info("run finished", status=outcome.status.value, duration=seconds)
        for observer in self.observers:
            observer.run_finished(run, outcome.status, seconds)

    async def _execute(self, run: Run, request: RunRequest) -> RunOutcome:
        timeout = request.policy.timeout
        if inspect.iscoroutinefunction(request.handler):
            with anyio.move_on_after(timeout) as scope:
                await self._call(run, request, is_async=True)
            if scope.cancelled_caught:
                run.expire()
        else:
            # A thread cannot be cancelled: at the deadline the run is flagged (the handler sees
            # current_run().cancelled) and we wait for the thread to return.
            timer = threading.Timer(timeout, run.expire) if timeout is not None else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                await self._call(run, request, is_async=False)
            finally:
                if timer is not None:
                    timer.cancel()
        if run.timed_out:
            log.error("run timed out", timeout=timeout)
            return RunOutcome(RunStatus.TIMED_OUT, _timeout_error(timeout))
        return RunOutcome(RunStatus.SUCCEEDED)

    async def _call(self, run: Run, request: RunRequest, is_async: bool) -> None:
        token = set_current_run(run)
        try:
            if is_async:
                await request.handler(*request.args)
            else:
                # Sync handlers run in a worker thread; they see current_run() and the log context.
                ctx = contextvars.copy_context()
                await _offload.run_sync(
                    partial(ctx.run, request.handler, *request.args),
                    limiter=self.limiter, abandon_on_cancel=True, kind="handler",
                )  # fmt: skip
        finally:
            reset_current_run(token)

    # -- runs inline in a trigger's own worker thread (change streams) --------------------------
    def run_in_thread(
        self, request: RunRequest, cancel: threading.Event | None = None
    ) -> RunOutcome:
        """`run()` for a sync handler, inline in the calling worker thread: no hop per event.

        Call it from a worker thread AnyIO started (retry backoff sleeps on the loop's clock).
        Recorded, logged and observed like `run()`. `cancel` is the caller's hard stop: once
        set, the handler sees `current_run().cancelled`, its return counts as cancelled (it may
        have stopped early), and no retry starts.
        """
        for attempt in range(1, request.policy.retries + 2):
            outcome = self._attempt_in_thread(request, attempt, cancel)
            if outcome.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
                break
            if attempt <= request.policy.retries and not self._backoff_in_thread(
                request, attempt, cancel
            ):
                return RunOutcome(RunStatus.CANCELLED, outcome.error)
        return outcome

    def _backoff_in_thread(
        self, request: RunRequest, attempt: int, cancel: threading.Event | None
    ) -> bool:
        """Wait before a retry; False when stopped instead (hard stop, loop cancelled or gone)."""
        if cancel is not None and cancel.is_set():
            return False
        try:
            anyio.from_thread.run(self._backoff, request, attempt)
        except BaseException as exc:
            if isinstance(exc, anyio.RunFinishedError) or _is_cancellation(exc):
                return False
            raise
        return cancel is None or not cancel.is_set()

    def _attempt_in_thread(
        self, request: RunRequest, attempt: int, cancel: threading.Event | None
    ) -> RunOutcome:
        run = Run(
            run_id=uuid.uuid4().hex, workflow=self.workflow, trigger=request.trigger,
            scheduled_at=request.scheduled_at, started_at=self.clock.now(), attempt=attempt,
            payload=request.payload,
            state=TriggerState(self.state, self.workflow, request.trigger),
            _cancel_requested=threading.Event() if cancel is None else _CancelFlag(cancel),
        )  # fmt: skip
        with bound_contextvars(workflow=self.workflow, trigger=request.trigger, run_id=run.run_id):
            self.state.record_run_start(
                run.run_id, self.workflow, request.trigger, request.scheduled_at,
                run.started_at, attempt,
            )  # fmt: skip
            log.info("run started", scheduled_at=_iso(request.scheduled_at), attempt=attempt)
            for observer in self.observers:
                observer.run_started(run)
            outcome = self._execute_in_thread(run, request)
            self._record_end_in_thread(run, outcome)
        return outcome

    def _execute_in_thread(self, run: Run, request: RunRequest) -> RunOutcome:
        timeout = request.policy.timeout
        timer = threading.Timer(timeout, run.expire) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        token = set_current_run(run)
        try:
            request.handler(*request.args)
        except Exception as exc:
            log.error("run failed", exc_info=exc, error=f"{type(exc).__name__}: {exc}")
            return RunOutcome(RunStatus.TIMED_OUT if run.timed_out else RunStatus.FAILED, exc)
        finally:
            reset_current_run(token)
            if timer is not None:
                timer.cancel()
        if run.timed_out:
            log.error("run timed out", timeout=timeout)
            return RunOutcome(RunStatus.TIMED_OUT, _timeout_error(timeout))
        return RunOutcome(RunStatus.CANCELLED if run.cancelled else RunStatus.SUCCEEDED)

    def _record_end_in_thread(self, run: Run, outcome: RunOutcome) -> None:
        error = None
        if outcome.error is not None:
            error = "".join(traceback.format_exception(outcome.error)).strip()
        ended_at = self.clock.now()
        self.state.record_run_end(run.run_id, outcome.status, ended_at, error)
        seconds = (ended_at - run.started_at).total_seconds()
        log.info("run finished", status=outcome.status.value, duration=seconds)
        for observer in self.observers:
            observer.run_finished(run, outcome.status, seconds)


class _CancelFlag(threading.Event):
    """A run's cancel flag that also reads as set once `parent` (a trigger's hard stop) is."""

    def __init__(self, parent: threading.Event) -> None:
        super().__init__()
        self._parent = parent

    def is_set(self) -> bool:
        return super().is_set() or self._parent.is_set()


def _is_cancellation(exc: BaseException) -> bool:
    """The loop's cancellation, as a call from a worker thread sees it (asyncio or trio)."""
    trio = sys.modules.get("trio")
    return isinstance(exc, asyncio.CancelledError) or (
        trio is not None and isinstance(exc, trio.Cancelled)
    )


def _timeout_error(timeout: float | None) -> TimeoutError:
    return TimeoutError(f"run exceeded its timeout of {timeout or 0:g} s")


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
