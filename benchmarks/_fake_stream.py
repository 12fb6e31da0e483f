"""An in-memory change stream, handed to the change-stream trigger through its public API.

`InMemoryMongo` is a `MongoDB` connection whose client's `watch()` returns an
`InMemoryChangeStream`: `@mongodb_change_stream(InMemoryMongo(stream), "bench", "orders")`
then runs the trigger's own code (source, pump, dispatcher, checkpoint) on the fake events.
The stream behaves like pymongo's `ChangeStream` as the trigger uses it: `try_next()` returns
the next event or None, `resume_token` is the last returned event's `_id`, `alive`, `close()`.
Watched through `with_options(codec_options=<RawBSONDocument>)`, as the trigger watches, it
hands out each event as its BSON bytes (encoded once, before the clock starts) in the codec's
document class, as pymongo does.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from bson import Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from dataflow.connection import MongoDB

Event = dict[str, Any]
_EMPTY_WAIT = 0.005  # seconds an empty getMore "waits": keeps an idle reader from spinning


def change_events(count: int) -> list[Event]:
    """`count` insert events shaped like a MongoDB 7 server's, each with its own resume token."""
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    events = []
    for i in range(count):
        wall = start + timedelta(milliseconds=i)
        document = {"_id": i, "customer": f"customer {i % 97}", "amount": i * 0.25}
        events.append(
            {
                "_id": {"_data": f"8265{i:012X}2B0229296E04"},
                "operationType": "insert",
                "clusterTime": Timestamp(int(wall.timestamp()), i % 1000 + 1),
                "wallTime": wall,
                "ns": {"db": "bench", "coll": "orders"},
                "documentKey": {"_id": i},
                "fullDocument": document,
            }
        )
    return events


class InMemoryChangeStream:
    """Hands out `events` once, then reports nothing new. Records when reading began and when
    the first read after the last event came (so: after that event was handled and saved)."""

    def __init__(self, events: list[Event]) -> None:
        self._events = events
        self._served: list[Any] = list(events)  # or the same events raw: `read_raw()`
        self._next = 0
        self.resume_token: dict[str, Any] | None = {"_data": "8265000000000000START"}
        self.alive = True
        self.first_read: float | None = None
        self.drained_at: float | None = None
        self.drained = threading.Event()

    def read_raw(self, codec: CodecOptions[RawBSONDocument]) -> None:
        self._served = [codec.document_class(bson.encode(e), codec) for e in self._events]

    def try_next(self) -> Any:
        if self.first_read is None:
            self.first_read = time.perf_counter()
        if self._next < len(self._served):
            event = self._served[self._next]
            self._next += 1
            self.resume_token = event["_id"]
            return event
        if self.drained_at is None:
            self.drained_at = time.perf_counter()
            self.drained.set()
        time.sleep(_EMPTY_WAIT)
        return None

    @property
    def _cursor(self) -> InMemoryChangeStream:
        """pymongo's stream reads its cursor, whose `_data` holds the events of the last
        getMore not handed out yet; here every event not handed out is such a one."""
        return self

    @property
    def _data(self) -> range:
        return range(len(self._served) - self._next)

    def close(self) -> None:
        self.alive = False

    @property
    def last_token(self) -> dict[str, Any] | None:
        """The resume token of the last event: what must be saved once all were handled."""
        return self._events[-1]["_id"] if self._events else None

    @property
    def seconds(self) -> float:
        """From the first read until every event was handled (and its token saved)."""
        assert self.first_read is not None and self.drained_at is not None, "not drained yet"
        return self.drained_at - self.first_read


class _InMemoryClient:
    """Stands in for `MongoClient`, its databases and collections: `client[db][coll].watch()`."""

    codec_options: CodecOptions[Event] = CodecOptions()

    def __init__(self, stream: InMemoryChangeStream) -> None:
        self.stream = stream
        self.watch_options: dict[str, Any] = {}

    def __getitem__(self, name: str) -> _InMemoryClient:
        return self

    def with_options(self, *, codec_options: CodecOptions[Any]) -> _InMemoryClient:
        if issubclass(codec_options.document_class, RawBSONDocument):
            self.stream.read_raw(codec_options)
        return self

    def watch(self, **options: Any) -> InMemoryChangeStream:
        self.watch_options = options
        return self.stream


class InMemoryMongo(MongoDB):
    """A `MongoDB` connection that needs no server: its client serves one in-memory stream."""

    def __init__(self, stream: InMemoryChangeStream) -> None:
        super().__init__("mongodb://in-memory/bench")
        self._fake = _InMemoryClient(stream)

    def connect(self, *, timeout: float | None = None) -> None:
        pass

    def disconnect(self) -> None:
        pass

    @property
    def client(self) -> Any:
        return self._fake
