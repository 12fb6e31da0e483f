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

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import anyio

from dataflow._core.clock import Clock
from dataflow.runtime._describe import STREAM_KIND, token_time
from dataflow.runtime._web._api import Served
from dataflow.state import Store
from dataflow.triggers._changestream.policy import TOKEN_KEY

if TYPE_CHECKING:  # imported when a stream is shown: pymongo is 10 MB a runtime without one
    from dataflow.triggers._changestream.oplog import OplogStart
    from dataflow.triggers._changestream.trigger import ChangeStreamTrigger

REREAD = timedelta(seconds=60)  # the oldest oplog entry is read again after this


class StreamsView:
    """Builds the answer; remembers each trigger's oplog start for `REREAD`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._read: dict[str, tuple[datetime, OplogStart]] = {}
        self._lock = anyio.Lock()  # one read at a time: a page polled by many browsers

    async def streams(self, served: Served) -> list[dict[str, Any]]:
        found = []
        for trigger in served.metrics.streams.triggers:
            if trigger.kind == STREAM_KIND:
                found.append(await self._stream(served, cast("ChangeStreamTrigger", trigger)))
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
            from dataflow.triggers._changestream.oplog import read_oplog_start

            found = await anyio.to_thread.run_sync(
                read_oplog_start, trigger.spec, abandon_on_cancel=True
            )
            self._read[trigger.name] = (now, found)
            return found


def _saved_position_time(store: Store, workflow: str, trigger: str, key: str) -> datetime | None:
    saved = store.load_position(workflow, trigger, key)
    return None if saved is None else token_time(saved)
