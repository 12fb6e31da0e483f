"""What a change-stream pump keeps across events: the stream, its saved position, the batch.

`StreamKeeper` saves positions (a batch's end, a quiet stream's post-batch token) and reopens
the stream after an invalidate or an interruption; `Pump` (its subclass) reads and hands on the
events. See `pump` for the loop step by step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from bson.raw_bson import RawBSONDocument
from pymongo.errors import PyMongoError
from pymongo.synchronous.change_stream import ChangeStream
from structlog.contextvars import bound_contextvars

from dataflow._core.errors import one_line
from dataflow._core.logs import get_logger
from dataflow.connection._mongo import Document
from dataflow.triggers._changestream.ahead import ReadAhead
from dataflow.triggers._changestream.batch import Batch, Progress
from dataflow.triggers._changestream.bridge import LoopBridge
from dataflow.triggers._changestream.checkpoint import Checkpoint, Token, dumps
from dataflow.triggers._changestream.letters import history_lost
from dataflow.triggers._changestream.policy import ChangeStreamPolicy, StreamOptions
from dataflow.triggers._changestream.source import (
    HISTORY_LOST,
    StreamSource,
    error_code,
    is_interruption,
)
from dataflow.triggers.base import RunRequest, StreamStats, TriggerContext

log = get_logger("dataflow.trigger")


class PumpedTrigger(Protocol):
    """What the pump needs of its trigger (the ChangeStreamTrigger)."""

    name: str
    spec: StreamOptions
    policy: ChangeStreamPolicy
    stats: StreamStats
    is_async: bool

    def request_for(self, event: Document, *, batched: bool = False) -> RunRequest: ...


class StreamKeeper:
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
        self.ahead = ReadAhead(self.source, self.policy.operation_types)

    def halt(self) -> None:
        """Called on the loop when `serve` ends: a thread still running returns soon after."""
        self.hard.set()
        self.stop.set()

    # -- positions --------------------------------------------------------------------------------
    def _end_batch(self, position: Token | None = None) -> None:
        """Save the batch's position (`position`, else its last event's) and its history row."""
        if position is None and not self.batch.count:
            return  # nothing handled since the last save (and no backoff to reset)
        self.batch.end(self.batch.last if position is None else position, self._save)
        self.ctx.runner.fold_counts(self.trigger.name)

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
        self.ahead.clear()  # the last event of its stream: none is read past it
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
        self.ahead.clear()  # read, not handled: delivered again from the saved position
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
