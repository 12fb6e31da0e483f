"""`GET /api/streams`: each change stream's counters (events handled, dead letters, reopens),
where its position is and how old it is, and its oplog headroom where it can be known.

Headroom is how much of the oplog lies behind the stream's position: the position's cluster
time minus the oldest oplog entry's. Only a server query tells the oldest entry (the first
document of `local.oplog.rs`), so the page asks once a minute at most, per trigger, on a
connection of its own (or the workflow's, if the trigger watches through it), and says why
when it cannot: a user without read access to `local` (it needs the `clusterMonitor` role),
a `mongos` (each shard keeps its own oplog), a server not reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import pymongo
from bson import Timestamp
from pymongo.errors import OperationFailure, PyMongoError

from dataflow._core.clock import Clock
from dataflow._core.errors import DataflowError, one_line
from dataflow.runtime._describe import token_time
from dataflow.runtime._web._api import Served
from dataflow.state import Store
from dataflow.triggers._changestream.policy import TOKEN_KEY, StreamOptions
from dataflow.triggers._changestream.source import StreamSource
from dataflow.triggers._changestream.trigger import ChangeStreamTrigger

REREAD = timedelta(seconds=60)  # the oldest oplog entry is read again after this
PROBE_TIMEOUT = 2.0  # seconds one oplog read may take (connecting included)
UNAUTHORIZED = 13
ILLEGAL_OPERATION = 20  # `local` read through a mongos


@dataclass(frozen=True)
class OplogStart:
    """The oldest oplog entry's time, or why it is not known."""

    first_entry: datetime | None
    unknown: str | None = None


class StreamsView:
    """Builds the answer; remembers each trigger's oplog start for `REREAD`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._read: dict[str, tuple[datetime, OplogStart]] = {}
        self._lock = anyio.Lock()  # one read at a time: a page polled by many browsers

    async def streams(self, served: Served) -> list[dict[str, Any]]:
        found = []
        for trigger in served.metrics.streams.triggers:
            if isinstance(trigger, ChangeStreamTrigger):
                found.append(await self._stream(served, trigger))
        return found

    async def _stream(self, served: Served, trigger: ChangeStreamTrigger) -> dict[str, Any]:
        stats, now, state = trigger.stats, self.clock.now(), served.state
        key = f"{TOKEN_KEY}:{trigger.spec.namespace}"
        saved = await state.call(_saved_position_time, state, served.name, trigger.name, key)
        # The last event handled is where the position moves to with its batch (at most two
        # batches later): fresher than the saved token, and always a real cluster time.
        position = stats.last_cluster_time or saved
        oplog = await self.oplog_start(trigger)
        headroom = None
        if position is not None and oplog.first_entry is not None:
            headroom = (position - oplog.first_entry).total_seconds()
        return {
            "trigger": trigger.name,
            "source": trigger.describe_source(),
            "events_handled": stats.events_handled,
            "dead_letters": stats.dead_letters,
            "last_event_at": stats.last_cluster_time,
            "position_time": position,
            "position_saved_at": stats.token_saved_at,
            "position_age": stats.token_age(now),
            "reopens": stats.reopens,
            "invalidations": stats.invalidations,
            "history_gaps": stats.history_gaps,
            "oplog": {
                "first_entry": oplog.first_entry,
                "headroom": headroom,
                "unknown": oplog.unknown,
            },
        }

    async def oplog_start(self, trigger: ChangeStreamTrigger) -> OplogStart:
        async with self._lock:
            now = self.clock.now()
            known = self._read.get(trigger.name)
            if known is not None and now - known[0] < REREAD:
                return known[1]
            found = await anyio.to_thread.run_sync(
                read_oplog_start, trigger.spec, abandon_on_cancel=True
            )
            self._read[trigger.name] = (now, found)
            return found


def _saved_position_time(store: Store, workflow: str, trigger: str, key: str) -> datetime | None:
    saved = store.load_position(workflow, trigger, key)
    return None if saved is None else token_time(saved)


def read_oplog_start(spec: StreamOptions) -> OplogStart:
    """The first entry of `local.oplog.rs` (natural order: the oldest) on the stream's server."""
    source = StreamSource(spec)
    try:
        with pymongo.timeout(PROBE_TIMEOUT):
            source.connect()
            assert source.connection is not None
            oplog = source.connection.client["local"]["oplog.rs"]
            first = oplog.find_one({}, {"ts": 1, "_id": 0}, sort=[("$natural", 1)])
    except OperationFailure as exc:
        return OplogStart(None, _refused(exc))
    except (PyMongoError, DataflowError) as exc:
        return OplogStart(None, f"the oplog could not be read: {one_line(exc)}")
    finally:
        source.disconnect()
    ts = None if first is None else first.get("ts")
    if not isinstance(ts, Timestamp):
        return OplogStart(None, "the oplog has no entries")
    return OplogStart(ts.as_datetime())


def _refused(exc: OperationFailure) -> str:
    if exc.code == UNAUTHORIZED:
        return (
            "the user may not read local.oplog.rs (it needs the clusterMonitor role, or read "
            "on the local database)"
        )
    if exc.code == ILLEGAL_OPERATION:
        return "connected through mongos: each shard keeps its own oplog"
    return f"reading local.oplog.rs failed: {one_line(exc, with_type=True)}"
