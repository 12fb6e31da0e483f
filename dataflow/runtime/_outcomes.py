"""What a handler's end makes of its run: failed or timed out, succeeded or cancelled, and the
deadline a thread-run handler gets (it cannot be cancelled, only flagged)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from dataflow._core.logs import get_logger
from dataflow._core.run import Run, RunStatus
from dataflow._core.watchdog import watchdog
from dataflow.runtime._eventrun import EventRun
from dataflow.triggers.base import RunOutcome

log = get_logger("dataflow.run")


def failed(run: Run, exc: BaseException) -> RunOutcome:
    """The outcome of a handler that raised: timed out if its deadline had passed."""
    log.error("run failed", exc_info=exc, error=f"{type(exc).__name__}: {exc}")
    return RunOutcome(RunStatus.TIMED_OUT if run.timed_out else RunStatus.FAILED, exc)


def completed(run: Run, timeout: float | None) -> RunOutcome:
    """The outcome of a handler that returned (it may have stopped early when flagged)."""
    if run.timed_out:
        log.error("run timed out", timeout=timeout)
        error = TimeoutError(f"run exceeded its timeout of {timeout or 0:g} s")
        return RunOutcome(RunStatus.TIMED_OUT, error)
    return RunOutcome(RunStatus.CANCELLED if run.cancelled else RunStatus.SUCCEEDED)


def thread_deadline(run: Run | EventRun, timeout: float | None) -> AbstractContextManager[None]:
    """A thread cannot be cancelled: at the deadline the run is flagged timed out and
    cancelled (the handler sees `current_run().cancelled`; SQL statements are stopped)."""
    return watchdog(timeout, run.expire)
