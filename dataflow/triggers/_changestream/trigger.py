"""The change-stream trigger: serves a `Pump` in a worker thread and bridges it to the loop.

`cancel_on_stop` is False: on the first stop signal the pump finishes the event in hand and
returns (an idle stream within `max_await_time`). If the runtime cancels anyway (grace over),
the pump is told to stop, its calls into the loop are cancelled, a sync handler sees
`current_run().cancelled`, and it gets a second to return before its thread is abandoned.

On a store replicas share the stream is read only while this replica holds its lease
(`ownership`), each position save fenced by the lease's term; a lost lease ends the read (the
event in hand is finished) and the trigger stands by until it can take the lease again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import anyio
import bson.errors
from anyio.abc import TaskStatus

from dataflow._core import offload
from dataflow._core.errors import LeaseLost, SettingsError, StateStoreError
from dataflow._core.handlers import is_async_handler
from dataflow._core.run import RunStatus
from dataflow.connection._mongo import Document
from dataflow.state import Leases
from dataflow.triggers._changestream.batch import Batch
from dataflow.triggers._changestream.bridge import LoopBridge, set_when
from dataflow.triggers._changestream.checkpoint import loads
from dataflow.triggers._changestream.events import decode_letter, event_time
from dataflow.triggers._changestream.ownership import RELEASE_WAIT, Ownership
from dataflow.triggers._changestream.policy import StreamOptions, describe_source, describe_stream
from dataflow.triggers._changestream.pump import Pump
from dataflow.triggers._changestream.source import StreamSource
from dataflow.triggers.base import (
    Description,
    RunPolicy,
    RunRequest,
    StreamStats,
    Trigger,
    TriggerContext,
)

T = TypeVar("T")
_HALT_WAIT = 1.0  # seconds a hard-stopped pump gets to return before it is abandoned


class ChangeStreamTrigger(Trigger):
    kind = "mongodb_change_stream"
    cancel_on_stop = False  # serve() watches ctx.stopping: the event in hand is finished

    def __init__(self, name: str, handler: Callable[..., Any], spec: StreamOptions) -> None:
        super().__init__(name, handler)
        self.spec = spec
        self.policy = spec.policy
        self.is_async = is_async_handler(handler)
        self.stats = StreamStats()

    def describe(self) -> str:
        return f"change stream on {self.spec.namespace}"

    def describe_source(self) -> str:
        types = self.policy.operation_types
        only = f" ({', '.join(types)})" if types else ""
        return f"{describe_source(self.spec.source)} {self.spec.namespace}{only}"

    @property
    def run_policy(self) -> RunPolicy:
        return self.policy.run

    def description(self, now: datetime, count: int) -> Description:
        return describe_stream(self.spec)

    def stream_stats(self) -> StreamStats:
        return self.stats

    def request_for(self, event: Document, *, batched: bool = False) -> RunRequest:
        """`batched`: the pump's, whose successes go in its batch row (a manual run's and a
        dead letter's retry are recorded on their own)."""
        return RunRequest(
            trigger=self.name,
            handler=self.handler,
            args=(event,),
            scheduled_at=event_time(event),
            policy=self.policy.run,
            payload=event,
            batched=batched,
        )

    def manual_request(self, payload: Any) -> RunRequest:
        """A run of the handler on `payload`: a dead letter's event (Extended JSON) or any JSON."""
        if payload is None:
            raise SettingsError(
                f"trigger {self.name!r} passes a change event to its handler: give it with "
                "--payload JSON"
            )
        if not isinstance(payload, dict):
            raise SettingsError(
                f"trigger {self.name!r} takes a change event: --payload must be a JSON object "
                f'such as \'{{"_id": ..., "operationType": "insert"}}\', not {payload!r:.60}'
            )
        try:  # {"$oid": ...} and the like back to BSON types
            event = loads(json.dumps(payload))
        except (ValueError, TypeError, bson.errors.BSONError) as exc:
            raise SettingsError(f"--payload is not valid Extended JSON: {exc}") from None
        return self.request_for(event)

    def retry_request(self, payload: str, raw: bytes | None, letter: int) -> RunRequest:
        """The event exactly as it was delivered, decoded again from its BSON; a letter from
        before dead letters kept it (schema 1) has only its Extended JSON."""
        if raw is None:
            return super().retry_request(payload, raw, letter)
        codec = StreamSource(self.spec).codec_options()
        return self.request_for(decode_letter(raw, codec, letter))

    async def serve(
        self, ctx: TriggerContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """On a store replicas share, the stream is read while this replica owns its lease
        (`ownership`); on a store of its own, always."""
        lease = Ownership.of(ctx, self.name, self.stats)
        if lease is None:
            await self.read_stream(ctx, ctx.stopping, task_status=task_status)
            return
        read = partial(self.read_stream, ctx)
        await lease.serve(read, ctx.stopping, task_status=task_status)

    async def read_stream(
        self,
        ctx: TriggerContext,
        leaving: anyio.Event,
        term: int | None = None,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read until `leaving` (the runtime stops, or the lease is lost); with `term`, every
        position save is fenced by it."""
        bridge = LoopBridge(ctx.clock, leaving)
        pump = Pump(self, ctx, StreamSource(self.spec), bridge)
        if term is not None and isinstance(ctx.state, Leases):
            pump.checkpoint.fence(ctx.state, term)
        limiter = anyio.CapacityLimiter(1)  # the pump's own thread: never waits for a token
        try:
            async with anyio.create_task_group() as tg:
                # tracked: a pump thread stuck in a handler must not keep the process alive
                start, serve = offload.tracked(pump.start), offload.tracked(pump.serve_events)
                await anyio.to_thread.run_sync(start, abandon_on_cancel=True, limiter=limiter)
                tg.start_soon(set_when, leaving, pump.stop.set)
                task_status.started()
                await anyio.to_thread.run_sync(serve, abandon_on_cancel=True, limiter=limiter)
                tg.cancel_scope.cancel()
        except* LeaseLost:
            await end_cut_batch(ctx, pump.batch)
            raise
        finally:
            pump.halt()
            bridge.cancel()
            with anyio.CancelScope(shield=True):  # a short wait, so the run and the stream
                await _wait_set(pump.idle, _HALT_WAIT)  # close while the store is still open


async def _wait_set(flag: threading.Event, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        while not flag.is_set():
            await anyio.sleep(0.005)


async def end_cut_batch(ctx: TriggerContext, batch: Batch) -> None:
    """A batch whose position save was refused (another replica owns the stream now): its row
    ends `interrupted`, not left `running`; the new owner delivers its events again."""
    if not batch.count or not batch.run_id:
        return
    why = "lease lost: another replica owns the stream and delivers these events again"
    record = partial(ctx.state.record_run_end, batch.run_id, RunStatus.INTERRUPTED.value)
    with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_WAIT):
        try:
            await ctx.state.call(record, ctx.clock.now(), why)
        except StateStoreError:
            return  # the database went away: the row is marked when this replica restarts
