"""A change stream's bookkeeping per batch of events, not per event.

Events handled successfully in a row form a batch: one history row (its event count, first and
last position, duration) and one position save for them all. A batch ends after `batch_events`
events or `batch_seconds` (the policy's: 100, 1 s), before an event the handler failed on (each
failure, retry and dead letter is recorded on its own, as before), when the stream is
interrupted, and when the trigger stops. Its row is begun (`running`) with its first event,
so a batch a crash cut shows as `interrupted` after the restart. Ending a batch first makes
the previous batch's writes durable if the store's group commit has not yet (`Store.flush`),
so the durable position is never more than two batches behind the handled events: after a
crash (kill -9) at most `2 * batch_events` events are delivered again, and none is skipped (a
position is only saved once its events were handled).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument

from dataflow._core.clock import Clock
from dataflow._core.logs import get_logger
from dataflow.state import Store
from dataflow.triggers._changestream.checkpoint import dumps
from dataflow.triggers._changestream.policy import ChangeStreamPolicy
from dataflow.triggers.base import StreamStats

log = get_logger("dataflow.trigger")
PROGRESS_SECONDS = 10.0  # between two "change stream progress" lines


class Batch:
    """The events handled since the position was last saved."""

    def __init__(
        self, store: Store, workflow: str, trigger: str, clock: Clock, policy: ChangeStreamPolicy
    ):
        self.store, self.workflow, self.trigger, self.clock = store, workflow, trigger, clock
        self.limit, self.seconds = policy.batch_events, policy.batch_seconds
        self.count = 0
        self.first: Any = None  # the first event's resume token
        self.last: Any = None  # the stream's position after the last event handled
        self.started_at: datetime | None = None
        self.run_id = ""
        self.opened = False  # its row begun
        self._began = 0.0  # monotonic: the age check runs once per event, and must be cheap

    def begin(self) -> None:
        """An event's handler is about to run; a batch with none yet starts now."""
        if self.count == 0:
            self.started_at, self._began = self.clock.now(), time.monotonic()

    def open(self, event_id: Any) -> None:
        """Begin the batch's row, its first event being this one (once per batch)."""
        if not self.opened:
            self.first, self.opened = event_id, True
            self._record_start()

    def handled(self, event_id: Any) -> bool:
        """The event with this resume token succeeded: True once the batch is due."""
        if self.count == 0:
            self.open(event_id)
        self.count += 1
        self.last = event_id  # pymongo's `resume_token` deep-copies: too dear once per event
        return self.count >= self.limit or self.due()

    def due(self, idle_after: float | None = None) -> bool:
        """Open `batch_seconds` (or, on an idle stream, `idle_after`, if sooner)."""
        limit = self.seconds if idle_after is None else min(self.seconds, idle_after)
        return self.count > 0 and time.monotonic() - self._began >= limit

    def _record_start(self) -> None:
        assert self.started_at is not None
        self.run_id = uuid.uuid4().hex
        self.store.record_run_start(self.run_id, self.workflow, self.trigger, None, self.started_at)

    def end(self, position: Any, save: Callable[[Any], None]) -> None:
        """`save` the position, then end the batch's row there. The previous batch's writes are
        made durable first: the durable position stays within two batches of the handled
        events. (A reader that sees the row ended sees the position saved.)"""
        if self.count:
            self.store.flush()
        save(position)
        if self.count:
            first, last = _text(self.first), _text(position)
            ended_at = self.clock.now()
            self.store.record_batch_end(self.run_id, ended_at, self.count, first, last)
            log.debug("change events batch", events=self.count, position=last)
        self.count, self.first, self.last, self.started_at = 0, None, None, None
        self.opened = False


class Progress:
    """Every `PROGRESS_SECONDS` an info line: events handled and failed since the last one, and
    how old the saved position is (per event the lines are at debug)."""

    def __init__(self, stats: StreamStats, clock: Clock, interval: float = PROGRESS_SECONDS):
        self.stats, self.clock, self.interval = stats, clock, interval
        self._at = time.monotonic()
        self._handled = self._failed = 0

    def tick(self, *, failed: int) -> None:
        """Log if the interval passed (cheap otherwise: called on every pump step)."""
        if time.monotonic() - self._at < self.interval:
            return
        self.log(failed=failed)

    def log(self, *, failed: int) -> None:
        stats = self.stats
        log.info(
            "change stream progress",
            events_handled=stats.events_handled - self._handled,
            events_failed=failed - self._failed,
            position_age=stats.token_age(self.clock.now()),
        )
        self._at, self._handled, self._failed = time.monotonic(), stats.events_handled, failed


def _text(token: Any) -> str | None:
    if isinstance(token, RawBSONDocument):
        token = bson.decode(token.raw)
    return None if token is None else dumps(token)
