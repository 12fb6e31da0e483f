"""The change-stream pump: reads one stream in a worker thread and hands on each event in order.

One loop step: `try_next()` (a getMore that waits at most `max_await_time`), then one of
- an event (read raw, see `events`): decode it and run the handler (sync: inline in this thread;
  async: on the loop); a success joins the batch (`batch`: one history row and one position
  save per batch of events); a handler that keeps failing ends the batch and sends the event to
  the dead-letter table (or, with `on_error="stop"`, stops the trigger with its position not
  advanced past it); an event that cannot be decoded is dead-lettered as its bytes;
- nothing: end a batch that is due, and save the post-batch resume token every
  `checkpoint_interval`, so a quiet stream's position stays inside the oplog window;
- an error: pymongo already resumed once on its own; a network error left over (or a reply it
  could not parse) closes the stream, and the next step reopens it from the saved token after a
  backoff; a lost history (286) follows `on_history_lost`; anything else fails the trigger.
`stop` (the runtime is stopping) is checked after every step, so an idle stream stops within
`max_await_time` and an event whose handler started is finished first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Protocol

from bson.raw_bson import RawBSONDocument
from pymongo.errors import PyMongoError
from pymongo.synchronous.change_stream import ChangeStream
from structlog.contextvars import bound_contextvars

from dataflow._core.errors import ChangeStreamStopped, one_line
from dataflow._core.logs import get_logger
from dataflow._core.run import RunStatus
from dataflow.connection._mongo import Document
from dataflow.triggers._changestream.batch import Batch, Progress
from dataflow.triggers._changestream.bridge import LoopBridge
from dataflow.triggers._changestream.checkpoint import Checkpoint, Token, dumps
from dataflow.triggers._changestream.events import cluster_time, payload_text, undecodable_text
from dataflow.triggers._changestream.letters import (
    dead_letter,
    history_lost,
    one_line_error,
    traceback_text,
)
from dataflow.triggers._changestream.policy import ChangeStreamPolicy, StreamOptions
from dataflow.triggers._changestream.source import (
    HISTORY_LOST,
    StreamSource,
    error_code,
    is_interruption,
)
from dataflow.triggers.base import RunOutcome, RunRequest, StreamStats, TriggerContext

log = get_logger("dataflow.trigger")


class PumpedTrigger(Protocol):
    """What the pump needs of its trigger (the ChangeStreamTrigger)."""

    name: str
    spec: StreamOptions
    policy: ChangeStreamPolicy
    stats: StreamStats
    is_async: bool

    def request_for(self, event: Document, *, batched: bool = False) -> RunRequest: ...


class Pump:
    def __init__(
        self, trigger: PumpedTrigger, ctx: TriggerContext, source: StreamSource, bridge: LoopBridge
    ) -> None:
        self.trigger, self.ctx, self.source, self.bridge = trigger, ctx, source, bridge
        self.policy, self.namespace = trigger.policy, trigger.spec.namespace
        self.checkpoint = Checkpoint(
            ctx.state, ctx.workflow, trigger.name, self.namespace, ctx.clock
        )
        self.stop = threading.Event()  # finish the event in hand, then return
        self.hard = threading.Event()  # the runtime cancelled us: this thread is abandoned
        self.idle = threading.Event()  # set while no thread is in start() or run()
        self.idle.set()
        self.stream: ChangeStream[RawBSONDocument] | None = None
        self.start_at = self.policy.start_at  # used until a position is saved
        self.delay = 0.0  # seconds to wait before the next (re)open
        self.batch = Batch(ctx.state, ctx.workflow, trigger.name, ctx.clock, self.policy)
        self.progress = Progress(trigger.stats, ctx.clock)
        self.failed = 0  # events the handler failed on (dead-lettered or stopping the trigger)

    def halt(self) -> None:
        """Called on the loop when `serve` ends: a thread still running returns soon after."""
        self.hard.set()
        self.stop.set()

    # -- the two calls `serve` runs in its worker thread -----------------------------------------
    def start(self) -> None:
        """Connect and open the stream: a bad source fails here, before the trigger is ready."""
        with self._in_thread():
            try:
                self.source.connect()
                self.checkpoint.load()
                saved = self.checkpoint.token is not None  # _open saves a first position
                self._open()
            except BaseException:
                self._close()
                raise
            # No saved position: a new stream, or a renamed workflow / lost state file (say so).
            start = "saved position" if saved else (self.start_at or "now")
            (log.info if saved else log.warning)(
                "change stream open" if saved else "change stream open with no saved position",
                namespace=self.namespace,
                source=self.source.describe(),
                starting_from=str(start),
            )
            if self.hard.is_set():  # cancelled while opening: nobody will call run()
                self._close()

    def serve_events(self) -> None:
        with self._in_thread():
            try:
                while not self.stop.is_set():
                    self._step()
                    self.progress.tick(failed=self.failed)
                self._end_batch()  # the events handled so far: not delivered again
            finally:  # not on an exception (a crash): the batch's row shows `interrupted`
                self._close()

    # -- one step ---------------------------------------------------------------------------------
    def _step(self) -> None:
        if self.stream is None:
            self._reopen()
            return
        try:
            event = self.stream.try_next()
        except PyMongoError as exc:
            self._on_error(exc)
            return
        if self.stop.is_set():
            return  # an event read but not handled is delivered again after the restart
        if event is not None:
            self._on_event(event)
        elif not self.stream.alive:
            self._on_invalidated(self.stream.resume_token)
        elif self.batch.due(idle_after=self.policy.checkpoint_interval):
            self._end_batch(self.stream.resume_token)  # past every event read: all handled
        elif self.checkpoint.due(self.policy.checkpoint_interval):
            self._save(self.stream.resume_token)

    def _on_event(self, raw: RawBSONDocument) -> None:
        try:  # read from the decoded event: `raw[...]` would decode the bytes a second time
            event = self.source.decode(raw)
        except Exception as exc:  # not a value this Python can hold: kept as its bytes
            self._end_batch()
            self._dead_letter(
                raw, undecodable_text(bytes(raw.raw), exc), one_line(exc, with_type=True)
            )
            self._acknowledge(raw)
            return
        asked = "invalidate" in (self.policy.operation_types or ())
        if event.get("operationType") == "invalidate" and not asked:
            self._on_invalidated(event["_id"])  # the trigger's business, not the handler's
            return
        position, happened = dict(event["_id"]), cluster_time(event)  # the handler may alter it
        self.batch.begin()
        outcome = self._handle(event)
        if outcome.status is RunStatus.SUCCEEDED:
            self._on_handled(position, happened)
            return
        self._end_batch()  # the events before it, then the failure on its own
        if outcome.status is RunStatus.CANCELLED:
            self.stop.set()  # not saved: the event is delivered again after the restart
            return
        self.failed += 1
        self._on_failed(raw, event, outcome)
        self._acknowledge(raw)

    def _on_handled(self, position: Token, happened: datetime | None) -> None:
        due = self.batch.handled(position)  # booked (its batch's row begun) before counted
        stats = self.trigger.stats
        stats.events_handled += 1
        stats.last_cluster_time = happened or stats.last_cluster_time
        if due:
            self._end_batch()

    def _handle(self, event: Document) -> RunOutcome:
        request = self.trigger.request_for(event, batched=True)
        if not self.trigger.is_async:
            return self.ctx.runner.execute_in_thread(request, self.hard)
        outcome = self.bridge.call(lambda: self.ctx.runner.execute(request))
        return outcome or RunOutcome(RunStatus.CANCELLED)

    def _on_failed(self, raw: RawBSONDocument, event: Document, outcome: RunOutcome) -> None:
        error = one_line_error(outcome)
        if self.policy.on_error == "stop":
            raise ChangeStreamStopped(
                f"handler failed on a change event (on_error='stop'): {error}; the saved position "
                "stays before it, so it is delivered again after a restart"
            )
        self._dead_letter(raw, payload_text(event), traceback_text(outcome), error)

    def _dead_letter(self, raw: RawBSONDocument, shown: str, why: str, error: str = "") -> None:
        dead_letter(self.ctx, self.trigger.name, self.trigger.stats, raw, shown, why, error)

    def _acknowledge(self, raw: RawBSONDocument) -> None:
        """Move past an event that was dead-lettered (durably, before this)."""
        assert self.stream is not None
        self._save(self.stream.resume_token)  # the event's token, or the batch's past it
        stats = self.trigger.stats
        stats.last_cluster_time = cluster_time(raw) or stats.last_cluster_time

    def _end_batch(self, position: Token | None = None) -> None:
        """Save the batch's position (`position`, else its last event's) and its history row."""
        if position is None and not self.batch.count:
            return  # nothing handled since the last save (and no backoff to reset)
        self.batch.end(self.batch.last if position is None else position, self._save)

    def _save(self, token: Token | None) -> None:
        self.checkpoint.save(token)
        self.trigger.stats.token_saved_at = self.checkpoint.saved_at
        self.delay = 0.0  # the stream works again: the next interruption starts a new backoff

    # -- reopening --------------------------------------------------------------------------------
    def _on_invalidated(self, token: Token | None) -> None:
        """The collection was dropped or renamed (or the database dropped): the server closed
        the stream. Reopen *after* the invalidate event, with `startAfter`."""
        log.warning(
            "change stream invalidated: reopening after it",
            namespace=self.namespace,
            token=dumps(token),
        )
        self.trigger.stats.invalidations += 1
        self._end_batch()
        self._save(token)
        self._close_stream()

    def _on_error(self, exc: PyMongoError) -> None:
        self._end_batch()  # handled events are saved before the stream reopens from there
        if error_code(exc) == HISTORY_LOST:
            self._history_lost(exc)
            return
        if not is_interruption(exc):
            raise exc
        self._close_stream()
        self.delay = min(
            max(self.delay * 2, self.policy.reconnect_delay), self.policy.reconnect_max_delay
        )
        log.warning(
            "change stream interrupted: reopening from the saved position",
            error=one_line(exc, with_type=True),
            retry_in=self.delay,
        )

    def _reopen(self) -> None:
        if self.delay and not self.bridge.sleep(self.delay):
            self.stop.set()  # hard stop, or the loop is gone
            return
        if self.stop.is_set():
            return
        try:
            self._open()
        except PyMongoError as exc:
            self._on_error(exc)
            return
        self.trigger.stats.reopens += 1
        log.info("change stream reopened", start_after=dumps(self.checkpoint.token))

    def _open(self) -> None:
        """Open after the saved token (`startAfter`: valid after an invalidate too), else at
        `start_at`, else from now; a position never saved before is saved at once."""
        try:
            self.stream = self.source.open(self.checkpoint.token, self.start_at)
        except PyMongoError as exc:
            if error_code(exc) != HISTORY_LOST:
                raise
            self._history_lost(exc)  # raises, or forgets the lost position
            self.stream = self.source.open(None, None)
        if self.checkpoint.token is None:  # durable at once: a crash must not skip to "now"
            self._save(self.stream.resume_token)
            self.ctx.state.flush()

    def _history_lost(self, exc: PyMongoError) -> None:
        history_lost(self.policy, self.namespace, self.checkpoint, self.trigger.stats, exc)
        self._close_stream()
        self.start_at = None

    def _close_stream(self) -> None:
        stream, self.stream = self.stream, None
        self.source.close(stream)

    def _close(self) -> None:
        self._close_stream()
        self.source.disconnect()

    @contextmanager
    def _in_thread(self) -> Iterator[None]:
        self.idle.clear()
        try:
            with bound_contextvars(workflow=self.ctx.workflow, trigger=self.trigger.name):
                yield
        finally:
            self.idle.set()
