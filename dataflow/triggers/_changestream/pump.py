"""The change-stream pump: reads one stream in a worker thread and hands on each event in order.

One loop step: `try_next()` (a getMore that waits at most `max_await_time`), then one of
- an event (read raw, see `events`): decode it and run the handler (sync: inline in this thread;
  async: on the loop, with the events the driver holds already, see `ahead`); a success joins
  the batch (`batch`: one history row and one position save per batch of events); a handler
  that keeps failing ends the batch and sends the event to the dead-letter table (or, with
  `on_error="stop"`, stops the trigger with its position not advanced past it); an event that
  cannot be decoded is dead-lettered as its bytes;
- nothing: end a batch that is due, and save the post-batch resume token every
  `checkpoint_interval`, so a quiet stream's position stays inside the oplog window;
- an error: pymongo already resumed once on its own; a network error left over (or a reply it
  could not parse) closes the stream, and the next step reopens it from the saved token after a
  backoff; a lost history (286) follows `on_history_lost`; anything else fails the trigger.
`stop` (the runtime is stopping) is checked after every step, so an idle stream stops within
`max_await_time` and an event whose handler started is finished first. Positions and
reopening are `keeper`'s.
"""

from __future__ import annotations

from datetime import datetime

from bson.raw_bson import RawBSONDocument
from pymongo.errors import PyMongoError

from dataflow._core.errors import ChangeStreamStopped, one_line
from dataflow._core.logs import get_logger
from dataflow._core.run import RunStatus
from dataflow.connection._mongo import Document
from dataflow.triggers._changestream.ahead import Mark, marks, run_in_order
from dataflow.triggers._changestream.checkpoint import Token
from dataflow.triggers._changestream.events import cluster_time, payload_text, undecodable_text
from dataflow.triggers._changestream.keeper import PumpedTrigger as PumpedTrigger
from dataflow.triggers._changestream.keeper import StreamKeeper
from dataflow.triggers._changestream.letters import (
    dead_letter,
    one_line_error,
    traceback_text,
)
from dataflow.triggers.base import RunOutcome

log = get_logger("dataflow.trigger")


class Pump(StreamKeeper):
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
        if self.ahead:  # read before, not handled yet (a failure came first)
            self._on_event(self.ahead.take())
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
        event = self._readable(raw)
        if event is None:
            return
        if self.trigger.is_async:  # with the events the driver holds: one trip to the loop
            room = self.policy.batch_events - self.batch.count - 1
            self._handle_on_loop([(raw, event), *self.ahead.gather(self.stream, room)])
            return
        mark = marks(event)  # read before the handler runs: it may alter its event
        self.batch.begin()
        request = self.trigger.request_for(event, batched=True)
        self._settle(raw, event, mark, self.ctx.runner.execute_in_thread(request, self.hard))

    def _readable(self, raw: RawBSONDocument) -> Document | None:
        """The event decoded; None if it was dead-lettered (it cannot be decoded) or was an
        invalidate (the trigger's business, not the handler's: handled here)."""
        try:  # read from the decoded event: `raw[...]` would decode the bytes a second time
            event = self.source.decode(raw)
        except Exception as exc:  # not a value this Python can hold: kept as its bytes
            self._end_batch()
            self._dead_letter(
                raw, undecodable_text(bytes(raw.raw), exc), one_line(exc, with_type=True)
            )
            self._acknowledge(raw)
            return None
        if self.ahead.invalidates(event):
            self._on_invalidated(event["_id"])
            return None
        return event

    def _handle_on_loop(self, events: list[tuple[RawBSONDocument, Document]]) -> None:
        """Async handlers, one trip: run in order until one fails (see `ahead`)."""
        positions = [marks(event) for _, event in events]
        requests = [self.trigger.request_for(event, batched=True) for _, event in events]
        outcomes: list[RunOutcome] = []
        self.batch.begin()

        def open_batch(index: int) -> None:
            self.batch.open(positions[index][0])

        done = self.bridge.call(
            lambda: run_in_order(self.ctx.runner, requests, self.stop, outcomes, open_batch)
        )
        self.ahead.put_back([raw for raw, _ in events[len(outcomes) :]])  # before any save
        for (raw, event), mark, outcome in zip(events, positions, outcomes, strict=False):
            self.batch.begin()
            self._settle(raw, event, mark, outcome)
        if done is None:  # cancelled (a hard stop) or the loop is gone: the rest comes again
            self.stop.set()

    def _settle(
        self, raw: RawBSONDocument, event: Document, mark: Mark, outcome: RunOutcome
    ) -> None:
        """After the event's handler: a success joins the batch; a failure is dead-lettered
        (or stops the trigger); a cancelled run stops the pump before the event."""
        if outcome.status is RunStatus.SUCCEEDED:
            self._on_handled(*mark)
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
        # the event's token, or the batch's past it; with events read past it, its own
        self._save(raw["_id"] if self.ahead else self.stream.resume_token)
        stats = self.trigger.stats
        stats.last_cluster_time = cluster_time(raw) or stats.last_cluster_time
