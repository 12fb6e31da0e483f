"""The change-stream trigger: serves a `Pump` in a worker thread and bridges it to the loop.

`cancel_on_stop` is False: on the first stop signal the pump finishes the event in hand and
returns (an idle stream within `max_await_time`). If the runtime cancels anyway (grace over),
the pump is told to stop, its calls into the loop are cancelled, a sync handler sees
`current_run().cancelled`, and it gets a second to return before its thread is abandoned.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus

from dataflow import _offload
from dataflow._clock import Clock
from dataflow._errors import SettingsError
from dataflow._mongo import Document
from dataflow.triggers._change_pump import Pump, event_time
from dataflow.triggers._change_source import StreamSource, describe_source
from dataflow.triggers._checkpoint import loads
from dataflow.triggers.base import RunRequest, StreamStats, Trigger, TriggerContext
from dataflow.triggers.mongo_change_listener import ChangeStreamSpec

T = TypeVar("T")
_HALT_WAIT = 1.0  # seconds a hard-stopped pump gets to return before it is abandoned


@dataclass
class StreamCounters:
    """What the trigger reports about itself (metrics, inspection); written by the pump."""

    events_handled: int = 0
    dead_letters: int = 0
    last_cluster_time: datetime | None = None  # of the last event handled or dead-lettered
    token_saved_at: datetime | None = None  # when the resume token was last saved
    reopens: int = 0
    invalidations: int = 0
    history_gaps: int = 0

    def token_age(self, now: datetime) -> float | None:
        """Seconds since the position was last saved (None: not saved by this process)."""
        saved = self.token_saved_at
        return None if saved is None else max((now - saved).total_seconds(), 0.0)


class ChangeStreamTrigger(Trigger):
    kind = "mongodb_change_stream"
    cancel_on_stop = False  # serve() watches ctx.stopping: the event in hand is finished

    def __init__(self, name: str, handler: Callable[..., Any], spec: ChangeStreamSpec) -> None:
        super().__init__(name, handler)
        self.spec = spec
        self.policy = spec.policy
        self.is_async = inspect.iscoroutinefunction(handler)
        self.stats = StreamCounters()

    def describe(self) -> str:
        return f"change stream on {self.spec.namespace}"

    def describe_source(self) -> str:
        types = self.policy.operation_types
        only = f" ({', '.join(types)})" if types else ""
        return f"{describe_source(self.spec.source)} {self.spec.namespace}{only}"

    def stream_stats(self) -> StreamStats:
        stats = self.stats
        return StreamStats(
            events_handled=stats.events_handled,
            token_saved_at=stats.token_saved_at,
            dead_letters=stats.dead_letters,
        )

    def request_for(self, event: Document) -> RunRequest:
        return RunRequest(
            trigger=self.name, handler=self.handler, args=(event,), scheduled_at=event_time(event),
            policy=self.policy.run, payload=event,
        )  # fmt: skip

    def manual_request(self, payload: Any) -> RunRequest:
        """A run of the handler on `payload`: a dead letter's event (Extended JSON) or any JSON."""
        if payload is None:
            raise SettingsError(
                f"trigger {self.name!r} passes a change event to its handler: give it with "
                "--payload JSON"
            )
        event = loads(json.dumps(payload))  # {"$oid": ...} and the like back to BSON types
        return self.request_for(event)

    async def serve(
        self, ctx: TriggerContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        bridge = LoopBridge(ctx.clock, ctx.stopping)
        pump = Pump(self, ctx, StreamSource(self.spec), bridge)
        limiter = anyio.CapacityLimiter(1)  # the pump's own thread: never waits for a token
        try:
            async with anyio.create_task_group() as tg:
                # tracked: a pump thread stuck in a handler must not keep the process alive
                start, run = _offload.tracked(pump.start), _offload.tracked(pump.run)
                await anyio.to_thread.run_sync(start, abandon_on_cancel=True, limiter=limiter)
                tg.start_soon(_set_when, ctx.stopping, pump.stop.set)
                task_status.started()
                await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=limiter)
                tg.cancel_scope.cancel()
        finally:
            pump.halt()
            bridge.cancel()
            with anyio.CancelScope(shield=True):  # a short wait, so the run and the stream
                await _wait_set(pump.idle, _HALT_WAIT)  # close while the store is still open


class LoopBridge:
    """The pump thread's way back to the loop: async handler runs, and sleeps on the clock.

    Each call runs in a cancel scope that `cancel()` cancels: a hard stop ends it on both
    backends (on trio a call from an abandoned thread would otherwise run until the loop ends).
    """

    def __init__(self, clock: Clock, stopping: anyio.Event) -> None:
        self.clock, self.stopping = clock, stopping
        self.scopes: set[anyio.CancelScope] = set()
        self.cancelled = False
        self._cancelled_exc = anyio.get_cancelled_exc_class()

    def call(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        """From the pump thread: `await fn()` on the loop; None if cancelled or the loop is gone."""
        try:
            return anyio.from_thread.run(self._scoped, fn)
        except (anyio.RunFinishedError, self._cancelled_exc):
            return None

    def sleep(self, seconds: float) -> bool:
        """From the pump thread: wait on the clock, or until stopping; False on a hard stop."""
        return self.call(lambda: self._nap(seconds)) is not None

    def cancel(self) -> None:
        self.cancelled = True
        for scope in list(self.scopes):
            scope.cancel()

    async def _scoped(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        with anyio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                if self.cancelled:
                    scope.cancel()
                return await fn()
            finally:
                self.scopes.discard(scope)
        return None

    async def _nap(self, seconds: float) -> bool:
        deadline = self.clock.now() + timedelta(seconds=seconds)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_set_when, self.stopping, tg.cancel_scope.cancel)
            await self.clock.sleep_until(deadline)
            tg.cancel_scope.cancel()
        return True


async def _wait_set(flag: threading.Event, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        while not flag.is_set():
            await anyio.sleep(0.005)


async def _set_when(event: anyio.Event, action: Callable[[], object]) -> None:
    await event.wait()
    action()
