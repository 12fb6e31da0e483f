"""Async handlers: the events the driver already holds go to the loop in one trip, not one each.

A trip from the pump thread to the event loop and back (`anyio.from_thread.run`) costs more than
everything else an event goes through (60-100 µs here, on asyncio and trio alike). So when the
pump reads an event for an async handler it also takes the events the driver has buffered from
the same getMore (no wait, no network), up to what is left of the batch, and the loop runs their
handlers one after the other, in order, in one trip. It stops at the first event whose handler
does not succeed, so a failure is retried, dead-lettered (or stops the trigger) exactly as when
events went one by one, before any later event runs; the events not run yet are handled after
it. At a stop the events not started are left unhandled (and their positions unsaved): they are
delivered again after the restart.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from bson.raw_bson import RawBSONDocument

from dataflow._core import offload
from dataflow._core.run import RunStatus
from dataflow.connection._mongo import Document
from dataflow.triggers._changestream.checkpoint import Token
from dataflow.triggers._changestream.events import cluster_time
from dataflow.triggers._changestream.source import StreamSource
from dataflow.triggers.base import Runner, RunOutcome, RunRequest

Mark = tuple[Token, datetime | None]  # an event's position and cluster time


def marks(event: Document) -> Mark:
    """Read before its handler runs: the handler may alter its event."""
    return dict(event["_id"]), cluster_time(event)


class ReadAhead:
    """Events read from the stream and not handled yet, in order."""

    def __init__(self, source: StreamSource, operation_types: Sequence[str] | None) -> None:
        self.source = source
        self._events: deque[RawBSONDocument] = deque()
        self._invalidate_asked = "invalidate" in (operation_types or ())

    def __bool__(self) -> bool:
        return bool(self._events)

    def take(self) -> RawBSONDocument:
        return self._events.popleft()

    def put_back(self, events: Sequence[RawBSONDocument]) -> None:
        self._events.extendleft(reversed(events))

    def clear(self) -> None:
        self._events.clear()

    def invalidates(self, event: Document) -> bool:
        """An invalidate the handler did not ask for: the trigger reopens after it."""
        return event.get("operationType") == "invalidate" and not self._invalidate_asked

    def gather(self, stream: Any, room: int) -> list[tuple[RawBSONDocument, Document]]:
        """Up to `room` events to hand on with the one in hand: those read before, then those
        the driver holds (no getMore). Stops before one that cannot be decoded or is an
        invalidate: those are the pump's to handle, on their own."""
        taken: list[tuple[RawBSONDocument, Document]] = []
        while len(taken) < room:
            if self._events:
                raw = self._events.popleft()
            elif buffered(stream):
                raw = stream.try_next()
                if raw is None:
                    break
            else:
                break
            try:
                event = self.source.decode(raw)
            except Exception:
                event = None
            if event is None or self.invalidates(event):
                self._events.appendleft(raw)
                break
            taken.append((raw, event))
        return taken


def buffered(stream: Any) -> int:
    """How many events the driver holds already: the rest of pymongo's last getMore batch (its
    cursor's private `_data`, so: 0 if a driver version lacks it, and each event is a trip)."""
    data = getattr(getattr(stream, "_cursor", None), "_data", None)
    try:
        return len(data) if data is not None else 0
    except TypeError:
        return 0


async def run_in_order(
    runner: Runner,
    requests: Sequence[RunRequest],
    stop: threading.Event,
    outcomes: list[RunOutcome],
    open_batch: Callable[[int], None],
) -> bool:
    """On the loop: run the requests one after the other into `outcomes`, until one does not
    succeed or the pump is told to stop. `outcomes` is the pump's own list, so the runs that
    finished are known to it even when the trip is cancelled (a hard stop) part-way.

    After the first success, before the next run, `open_batch(index)` (a store write, in a
    worker thread) begins the batch's history row: a failure after it is recorded after the
    row of the events before it, as when events went one by one."""
    for index, request in enumerate(requests):
        if stop.is_set():
            break
        if index == 1:
            await offload.run_sync(partial(open_batch, 0))
        outcome = await runner.execute(request)
        outcomes.append(outcome)
        if outcome.status is not RunStatus.SUCCEEDED:
            break
    return True  # not None: the trip was not cancelled
