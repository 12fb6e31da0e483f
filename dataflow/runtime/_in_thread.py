"""Runs executed inline in a trigger's own worker thread (change streams): no hop per event.

Recorded, logged, observed, timed out and retried like the dispatcher's async path, through
the same `RunBook`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TYPE_CHECKING

import anyio
from structlog.contextvars import bound_contextvars

from dataflow._core.run import RunStatus, reset_current_run, set_current_run
from dataflow.runtime._runbook import RunBook, completed, failed, thread_deadline
from dataflow.triggers.base import RunOutcome, RunRequest


class InThreadRuns:
    """Mixed into the Dispatcher: `run_in_thread`, the `Runner` method for worker threads."""

    workflow: str
    book: RunBook

    if TYPE_CHECKING:  # provided by the Dispatcher: sleeps on the injected clock

        async def _backoff(self, request: RunRequest, attempt: int) -> None: ...

    def run_in_thread(
        self, request: RunRequest, cancel: threading.Event | None = None
    ) -> RunOutcome:
        """`run()` for a sync handler, inline in the calling worker thread.

        Call it from a worker thread AnyIO started (retry backoff sleeps on the loop's clock).
        `cancel` is the caller's hard stop: once set, the handler sees
        `current_run().cancelled`, its return counts as cancelled, and no retry starts.
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
        run = self.book.new_run(request, attempt, cancel)
        with bound_contextvars(workflow=self.workflow, trigger=request.trigger, run_id=run.run_id):
            self.book.started(run)
            token = set_current_run(run)
            try:
                with self.book.executing(run), thread_deadline(run, request.policy.timeout):
                    request.handler(*request.args)
            except Exception as exc:
                outcome = failed(run, exc)
            else:
                outcome = completed(run, request.policy.timeout)
            finally:
                reset_current_run(token)
            self.book.finished(run, outcome)
        return outcome


def _is_cancellation(exc: BaseException) -> bool:
    """The loop's cancellation, as a call from a worker thread sees it (asyncio or trio):
    outside the loop there is no current backend to ask for its cancellation class."""
    trio = sys.modules.get("trio")
    return isinstance(exc, asyncio.CancelledError) or (
        trio is not None and isinstance(exc, trio.Cancelled)
    )
