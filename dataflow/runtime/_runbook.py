"""What every run goes through however it executes: its record, log lines and observers.

Blocking (SQLite) and thread-safe: the async dispatcher offloads these calls, the in-thread
path (change streams) calls them directly.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from structlog.contextvars import bound_contextvars

from dataflow._core.clock import Clock, iso
from dataflow._core.logs import debug_enabled, error_text, escape_surrogates, get_logger
from dataflow._core.redact import redact_text
from dataflow._core.run import Run, RunStatus, TriggerState
from dataflow._core.watchdog import watchdog
from dataflow.state import FireEntry, FireOutcome, RunRecord, Store
from dataflow.triggers.base import RunOutcome, RunRequest

log = get_logger("dataflow.run")
SKIPPED = FireOutcome.SKIPPED


class RunObserver(Protocol):
    """Told about every run (on the thread that records it); must be quick and not raise."""

    def run_started(self, run: Run) -> None: ...

    def run_finished(self, run: Run, status: RunStatus, duration: float) -> None: ...

    def run_skipped(self, trigger: str) -> None: ...


class RunBook:
    def __init__(self, workflow: str, state: Store, clock: Clock) -> None:
        self.workflow = workflow
        self.state = state
        self.clock = clock
        self.observers: list[RunObserver] = []  # metrics and the like; called on each run
        self._executing: dict[str, tuple[Run, bool]] = {}  # in-thread runs, not returned yet
        self._in_flight: dict[str, Run] = {}  # runs started and not yet finished
        self._lock = threading.Lock()

    def new_run(
        self, request: RunRequest, attempt: int, cancel: threading.Event | None = None
    ) -> Run:
        return Run(
            # a change event's run: an id from `random` (uuid4 reads the OS per call: dear)
            run_id=f"{random.getrandbits(128):032x}" if request.batched else uuid.uuid4().hex,
            workflow=self.workflow,
            trigger=request.trigger,
            scheduled_at=request.scheduled_at,
            started_at=self.clock.now(),
            attempt=attempt,
            payload=request.payload,
            backfill=request.backfill,
            state=TriggerState(self.state, self.workflow, request.trigger),
            _cancel_requested=threading.Event() if cancel is None else _CancelFlag(cancel),
        )

    def started(self, run: Run, *, batched: bool = False) -> None:
        """`batched`: a change event's run, recorded only if it does not succeed (its success
        is counted in its trigger's batch row), and logged at debug."""
        if not batched:  # durable before the handler runs: cut off, it shows `interrupted`
            self._record_start(run)
            self.state.flush()
        with self._lock:
            self._in_flight[run.run_id] = run
        if not batched or debug_enabled():
            extra = {"backfill": True} if run.backfill else {}
            (log.debug if batched else log.info)(
                "run started", scheduled_at=iso(run.scheduled_at), attempt=run.attempt, **extra
            )
        for observer in self.observers:
            observer.run_started(run)

    def finished(self, run: Run, outcome: RunOutcome, *, batched: bool = False) -> None:
        ended_at = self.clock.now()
        with self._lock:
            self._in_flight.pop(run.run_id, None)
        quiet = batched and outcome.status is RunStatus.SUCCEEDED
        if not quiet:
            if batched:  # a failure (or cancel) of a change event: recorded as any run is
                self._record_start(run)
            # A traceback shows source lines: one may hold a connection URI with its password.
            error = None if outcome.error is None else redact_text(error_text(outcome.error))
            self.state.record_run_end(run.run_id, outcome.status, ended_at, error)
        seconds = (ended_at - run.started_at).total_seconds()
        if not quiet or debug_enabled():
            (log.debug if quiet else log.info)(
                "run finished", status=outcome.status.value, duration=seconds
            )
        for observer in self.observers:
            observer.run_finished(run, outcome.status, seconds)

    def _record_start(self, run: Run) -> None:
        self.state.record_run_start(
            run.run_id,
            self.workflow,
            run.trigger,
            run.scheduled_at,
            run.started_at,
            run.attempt,
            backfill=run.backfill,
        )

    def in_flight(self) -> list[Run]:
        """Runs started and not finished (however they execute), the longest-running first."""
        with self._lock:
            runs = list(self._in_flight.values())
        return sorted(runs, key=lambda run: run.started_at)

    def executing(self, run: Run, batched: bool = False) -> AbstractContextManager[None]:
        """Around a handler running inline in a thread the loop cannot cancel (change streams)."""
        return _Executing(self._executing, self._lock, run, batched)

    def cancel_stuck(self) -> None:
        """At the runtime's end: an in-thread handler that never returned after its cancel (it
        ignored `current_run().cancelled`; its thread is abandoned) would leave its run
        `running` in the state file; record it cancelled while the store is still open."""
        with self._lock:
            stuck = list(self._executing.values())
        for run, batched in stuck:  # batched: its start was not recorded, `finished` does it
            with bound_contextvars(workflow=self.workflow, trigger=run.trigger, run_id=run.run_id):
                log.warning("run abandoned: its handler did not return after the cancel")
                error = RuntimeError("cancelled at shutdown; the handler did not return")
                self.finished(run, RunOutcome(RunStatus.CANCELLED, error), batched=batched)

    def skipped(
        self, request: RunRequest, reason: str, ledger: Sequence[FireEntry] | None = None
    ) -> None:
        """A skipped run record, and its fire's ledger rows first (the record's start must
        not take the fire's row for a run)."""
        record = self.skipped_run(request, reason)
        if ledger is None and request.scheduled_at is not None and not request.backfill:
            ledger = [FireEntry(fire_at=request.scheduled_at, outcome=SKIPPED, reason=reason)]
        if ledger:
            self.state.record_fires(self.workflow, request.trigger, ledger)
        self.state.record_run_start(
            record.run_id, self.workflow, request.trigger, request.scheduled_at, record.started_at
        )
        self.state.record_run_end(record.run_id, RunStatus.SKIPPED, record.started_at, record.error)
        self.skipped_written([record])

    def skipped_run(self, request: RunRequest, reason: str) -> RunRecord:
        """The record of a run skipped now (`reason` kept as its error), not yet written."""
        now = self.clock.now()
        return RunRecord(
            run_id=uuid.uuid4().hex,
            workflow=self.workflow,
            trigger=request.trigger,
            scheduled_at=request.scheduled_at,
            started_at=now,
            ended_at=now,
            status=RunStatus.SKIPPED.value,
            attempt=1,
            error=escape_surrogates(reason),
        )

    def skipped_written(self, records: Sequence[RunRecord]) -> None:
        """Counted one by one; logged in ONE line, however many (a late batch's records: a line
        each would be most of what writing them costs, and a stop under load waits for it)."""
        for record in records:
            for observer in self.observers:
                observer.run_skipped(record.trigger)
        if not records:
            return
        newest = records[-1]
        more = {"skipped": len(records), "oldest": iso(records[0].scheduled_at)}
        log.warning(
            "run skipped",
            trigger=newest.trigger,
            reason=newest.error,
            scheduled_at=iso(newest.scheduled_at),
            **(more if len(records) > 1 else {}),
        )


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


def thread_deadline(run: Run, timeout: float | None) -> AbstractContextManager[None]:
    """A thread cannot be cancelled: at the deadline the run is flagged timed out and
    cancelled (the handler sees `current_run().cancelled`; SQL statements are stopped)."""
    return watchdog(timeout, run.expire)


class _Executing:
    """`RunBook.executing`: a class, not a generator, as it is entered once per change event."""

    def __init__(
        self, runs: dict[str, tuple[Run, bool]], lock: threading.Lock, run: Run, batched: bool
    ) -> None:
        self.runs, self.lock, self.run, self.batched = runs, lock, run, batched

    def __enter__(self) -> None:
        with self.lock:
            self.runs[self.run.run_id] = (self.run, self.batched)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.runs.pop(self.run.run_id, None)


_POLL = 0.05  # seconds between looks at a cancel flag a handler waits on


class _CancelFlag(threading.Event):
    """A run's cancel flag that also reads as set once `parent` (a trigger's hard stop) is.

    A run only sets and reads its flag (never waits on it), so this keeps a plain bool and no
    Event of its own: one is made per change event, and an Event's lock and condition cost
    more than the rest of the run's bookkeeping."""

    def __init__(self, parent: threading.Event) -> None:  # no super().__init__(): see above
        self._parent = parent
        self._own = False

    def is_set(self) -> bool:
        return self._own or self._parent.is_set()

    def set(self) -> None:
        self._own = True

    def clear(self) -> None:
        self._own = False

    def wait(self, timeout: float | None = None) -> bool:
        """A handler's interruptible sleep (`current_run().cancelled.wait(10)`): wakes within
        `_POLL` of its own flag (which has no condition to notify) and at once for the parent's."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._parent.wait(_POLL if left is None else min(_POLL, left))
        return True
