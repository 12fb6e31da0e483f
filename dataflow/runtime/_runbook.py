"""What every run goes through however it executes: its record, log lines and observers.

Blocking (SQLite) and thread-safe: the async dispatcher offloads these calls, the in-thread
path (change streams) calls them directly.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from structlog.contextvars import bound_contextvars

from dataflow._core.clock import Clock, iso
from dataflow._core.logs import debug_enabled, error_text, escape_surrogates, get_logger
from dataflow._core.redact import redact_text
from dataflow._core.run import Run, RunStatus, TriggerState
from dataflow.runtime._eventrun import CancelFlag, EventRun
from dataflow.runtime._tally import Tally
from dataflow.state import FireEntry, FireOutcome, RunRecord, Store
from dataflow.triggers.base import RunOutcome, RunRequest

log = get_logger("dataflow.run")
SKIPPED = FireOutcome.SKIPPED


class RunObserver(Protocol):
    """Told about every run (on the thread that records it); must be quick and not raise.
    A change event's run that succeeds is told in its batch's `runs_folded` instead."""

    def run_started(self, run: Run) -> None: ...

    def run_finished(self, run: Run, status: RunStatus, duration: float) -> None: ...

    def runs_folded(self, trigger: str, tally: Tally) -> None: ...

    def run_skipped(self, trigger: str) -> None: ...


class RunBook:
    def __init__(self, workflow: str, state: Store, clock: Clock) -> None:
        self.workflow = workflow
        self.state = state
        self.clock = clock
        self.observers: list[RunObserver] = []  # metrics and the like; called on each run
        # in-thread runs not returned yet, and runs started and not yet finished (a change
        # event's `EventRun` is put and taken without the lock: one dict store, atomic)
        self._executing: dict[str, tuple[Run | EventRun, bool]] = {}
        self._in_flight: dict[str, Run | EventRun] = {}
        self._tallies: dict[str, Tally] = {}  # change events' successes not yet folded
        self._states: dict[str, TriggerState] = {}  # one per trigger: runs share it
        self._lock = threading.Lock()

    def new_run(
        self,
        request: RunRequest,
        attempt: int,
        cancel: threading.Event | None = None,
        *,
        run_id: str | None = None,
        started_at: datetime | None = None,
    ) -> Run:
        """`run_id`, `started_at`: an `EventRun`'s, built late."""
        if run_id is None:  # a change event's: from `random` (uuid4 reads the OS per call: dear)
            run_id = f"{random.getrandbits(128):032x}" if request.batched else uuid.uuid4().hex
        return Run(
            run_id=run_id,
            workflow=self.workflow,
            trigger=request.trigger,
            scheduled_at=request.scheduled_at,
            started_at=self.clock.now() if started_at is None else started_at,
            attempt=attempt,
            payload=request.payload,
            backfill=request.backfill,
            state=self._trigger_state(request.trigger),
            _cancel_requested=threading.Event() if cancel is None else CancelFlag(cancel),
        )

    def _trigger_state(self, trigger: str) -> TriggerState:
        state = self._states.get(trigger)
        if state is None:
            state = self._states[trigger] = TriggerState(self.state, self.workflow, trigger)
        return state

    def started(self, run: Run, *, batched: bool = False, written: bool = False) -> None:
        """`batched`: a change event's run, recorded only if it does not succeed (its success
        is counted in its trigger's batch row and folded into the observers with its batch:
        see `fold`), and logged at debug. `written`: its start record is written already
        (with its fire's claim, ahead of the fire time)."""
        if not (batched or written):  # durable before the handler runs: cut off: `interrupted`
            self._record_start(run)
            self.state.flush()
        with self._lock:
            self._in_flight[run.run_id] = run
        if not batched or debug_enabled():
            extra = {"backfill": True} if run.backfill else {}
            (log.debug if batched else log.info)(
                "run started", scheduled_at=iso(run.scheduled_at), attempt=run.attempt, **extra
            )
        if not batched:
            for observer in self.observers:
                observer.run_started(run)

    def finished(self, run: Run, outcome: RunOutcome, *, batched: bool = False) -> None:
        ended_at = self.clock.now()
        seconds = (ended_at - run.started_at).total_seconds()
        quiet = batched and outcome.status is RunStatus.SUCCEEDED
        with self._lock:
            self._in_flight.pop(run.run_id, None)
            if quiet:  # under the lock: `fold` may take the tally from another thread
                self._tally(run.trigger, run.scheduled_at, run.started_at, run.attempt, seconds)
        if quiet:
            if debug_enabled():
                log.debug("run finished", status=outcome.status.value, duration=seconds)
            return
        if batched:  # a failure (or cancel) of a change event: recorded as any run is
            self._record_start(run)
        # A traceback shows source lines: one may hold a connection URI with its password.
        error = None if outcome.error is None else redact_text(error_text(outcome.error))
        self.state.record_run_end(run.run_id, outcome.status, ended_at, error)
        log.info("run finished", status=outcome.status.value, duration=seconds)
        for observer in self.observers:
            if batched:  # not told at its start: it might have succeeded
                observer.run_started(run)
            observer.run_finished(run, outcome.status, seconds)

    def event_started(self, event: EventRun, *, in_thread: bool) -> None:
        """`started(batched=True)` for a run not built (see `_eventrun`); `in_thread`: its
        handler runs in the calling thread (`executing`)."""
        self._in_flight[event.run_id] = event
        if in_thread:
            self._executing[event.run_id] = (event, True)
        if debug_enabled():
            request = event.request
            extra = {"backfill": True} if request.backfill else {}
            log.debug("run started", scheduled_at=iso(request.scheduled_at), attempt=1, **extra)

    def event_succeeded(self, event: EventRun) -> None:
        """`finished(batched=True)` of a success, the run perhaps never built."""
        seconds = (self.clock.now() - event.started_at).total_seconds()
        request = event.request
        with self._lock:
            self._in_flight.pop(event.run_id, None)
            self._tally(request.trigger, request.scheduled_at, event.started_at, 1, seconds)
        if debug_enabled():
            log.debug("run finished", status=RunStatus.SUCCEEDED.value, duration=seconds)

    def event_returned(self, event: EventRun) -> None:
        """Its handler (in the calling thread) returned or raised: see `executing`."""
        self._executing.pop(event.run_id, None)

    def event_failed(self, event: EventRun, outcome: RunOutcome) -> None:
        """The event's run did not succeed: built, and recorded as any run is."""
        self.finished(event.materialize(), outcome, batched=True)

    def _tally(
        self,
        trigger: str,
        scheduled_at: datetime | None,
        started_at: datetime,
        attempt: int,
        seconds: float,
    ) -> None:
        tally = self._tallies.get(trigger)
        if tally is None:
            tally = self._tallies[trigger] = Tally()
        tally.count += 1
        tally.durations.append(seconds)
        if scheduled_at is not None and attempt == 1:
            tally.lags.append((started_at - scheduled_at).total_seconds())

    def fold(self, trigger: str) -> None:
        """Tell the observers about the trigger's change events that succeeded since the last
        fold (the pump calls it when a batch ends)."""
        with self._lock:
            tally = self._tallies.pop(trigger, None)
        if tally is not None:
            for observer in self.observers:
                observer.runs_folded(trigger, tally)

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
            found = list(self._in_flight.values())
        runs = [run if isinstance(run, Run) else run.materialize() for run in found]
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
        for entry, batched in stuck:  # batched: its start was not recorded, `finished` does it
            run = entry if isinstance(entry, Run) else entry.materialize()
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


class _Executing:
    """`RunBook.executing`: a class, not a generator, as it is entered once per change event."""

    def __init__(
        self,
        runs: dict[str, tuple[Run | EventRun, bool]],
        lock: threading.Lock,
        run: Run,
        batched: bool,
    ) -> None:
        self.runs, self.lock, self.run, self.batched = runs, lock, run, batched

    def __enter__(self) -> None:
        with self.lock:
            self.runs[self.run.run_id] = (self.run, self.batched)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.runs.pop(self.run.run_id, None)
