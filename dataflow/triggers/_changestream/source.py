"""What a change-stream trigger watches: its connection, and `watch()` with its options.

The source is a URI, a setting name (an environment variable holding the URI, read at start)
or a `MongoDB`/`MongoDBAsync` connection. A connection the trigger opened itself (from a URI)
it also closes; a workflow's own connection it only connects, and leaves open for the handlers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pymongo
from bson import Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import (
    ConnectionFailure,
    CursorNotFound,
    OperationFailure,
    ProtocolError,
    PyMongoError,
)
from pymongo.synchronous.change_stream import ChangeStream, ClusterChangeStream

from dataflow._core.errors import ChangeStreamUnavailable, one_line
from dataflow._core.settings import require_env
from dataflow.connection._mongo import Document, MongoDB
from dataflow.connection._mongo_async import MongoDBAsync
from dataflow.triggers._changestream.checkpoint import Token
from dataflow.triggers._changestream.events import ChangeEvent, decode, raw_options
from dataflow.triggers._changestream.policy import EXPANDED_TYPES, StreamOptions, describe_source

HISTORY_LOST = 286  # ChangeStreamHistoryLost: the resume point has left the oplog
NO_REPLICA_SET = 40573  # "$changeStream is only supported on replica sets"
_CONNECT_TIMEOUT = 10.0  # seconds: an unreachable server fails the start within this
# ChangeStream's positional arguments that `watch_options` may leave out.
_CHANGE_STREAM_ARGUMENTS = (
    "resume_after",
    "batch_size",
    "collation",
    "start_at_operation_time",
    "session",
    "start_after",
)
_CLOSE_TIMEOUT = 2.0  # seconds: killCursors on a dead connection must not hold up a stop


def is_interruption(exc: PyMongoError) -> bool:
    """A network-level failure: reopening from the saved position may succeed. A reply the
    driver cannot parse (ProtocolError) is one too: pymongo closed that connection."""
    if isinstance(exc, ConnectionFailure | CursorNotFound | ProtocolError) or exc.timeout:
        return True
    return isinstance(exc, OperationFailure) and exc.has_error_label("ResumableChangeStreamError")


def error_code(exc: BaseException) -> int | None:
    return exc.code if isinstance(exc, OperationFailure) else None


class StreamSource:
    """Opens the connection and the change stream one trigger reads (blocking calls)."""

    def __init__(self, spec: StreamOptions) -> None:
        self.spec = spec
        self.connection: MongoDB | None = None
        self._owned = False
        self._codec: CodecOptions[Any] | None = None  # the watch target's, set by open()

    def connect(self) -> None:
        self.connection = self._resolve()
        self.connection.connect(timeout=_CONNECT_TIMEOUT)

    def _resolve(self) -> MongoDB:
        source = self.spec.source
        if isinstance(source, MongoDBAsync):
            source = source.sync
        if isinstance(source, MongoDB):
            return source
        assert isinstance(source, str)
        url = source if "://" in source else require_env(source)
        self._owned = True
        return MongoDB(url, database=self.spec.database or "admin")

    def codec_options(self) -> CodecOptions[Any]:
        """How events are decoded for the handler: the watch target's codec options (the
        connection's URL and keyword options), known without connecting."""
        if self._codec is not None:
            return self._codec
        connection = self.connection or self._resolve()
        return connection.codec_options()

    def decode(self, raw: RawBSONDocument) -> Document:
        if isinstance(raw, ChangeEvent):  # decoded already, when the driver read its `_id`
            return raw.decoded()
        return decode(raw.raw, self.codec_options())

    def open(
        self, start_after: Token | None, start_at: datetime | None
    ) -> ChangeStream[RawBSONDocument]:
        """Start watching after `start_after`, else at `start_at`, else from now; the events
        come raw (see `events`)."""
        assert self.connection is not None, "connect() first"
        client = self.connection.client
        target: Any = client
        if self.spec.database is not None:
            target = client[self.spec.database]
            if self.spec.collection is not None:
                target = target[self.spec.collection]
        self._codec = target.codec_options
        try:
            stream = _watch_raw(target, self.watch_options(start_after, start_at))
        except OperationFailure as exc:
            if exc.code == NO_REPLICA_SET:
                raise self._unavailable(exc) from exc
            raise
        return stream

    def watch_options(self, start_after: Token | None, start_at: datetime | None) -> dict[str, Any]:
        policy = self.spec.policy
        types = set(policy.operation_types or ())
        options: dict[str, Any] = {
            "pipeline": self.pipeline(),
            "full_document": policy.full_document,
            "full_document_before_change": policy.full_document_before_change,
            "max_await_time_ms": max(1, round(policy.max_await_time * 1000)),
            "show_expanded_events": True if types & EXPANDED_TYPES else None,
        }
        if start_after is not None:
            options["start_after"] = start_after
        elif start_at is not None:
            options["start_at_operation_time"] = Timestamp(int(start_at.timestamp()), 0)
        return options

    def pipeline(self) -> list[dict[str, Any]]:
        """The operation-type filter first, then the workflow's own stages.

        `invalidate` is always let through: the trigger needs that event's token to reopen
        after a drop or rename (the handler never sees it unless it asked for it).
        """
        stages = [dict(stage) for stage in self.spec.pipeline]
        types = self.spec.policy.operation_types
        if types is None:
            return stages
        wanted = list(dict.fromkeys([*types, "invalidate"]))
        return [{"$match": {"operationType": {"$in": wanted}}}, *stages]

    def close(self, stream: ChangeStream[RawBSONDocument] | None) -> None:
        if stream is not None:
            try:
                with pymongo.timeout(_CLOSE_TIMEOUT):
                    stream.close()
            except PyMongoError:
                pass  # the server forgets an abandoned cursor on its own

    def disconnect(self) -> None:
        if self._owned and self.connection is not None:
            self.connection.disconnect()

    def describe(self) -> str:
        """The source for logs and `list`: never a password or a URI's options."""
        return describe_source(self.spec.source)

    def _unavailable(self, exc: OperationFailure) -> ChangeStreamUnavailable:
        reason = one_line(exc, with_type=True)
        return ChangeStreamUnavailable(
            f"MongoDB at {self.describe()} cannot serve change streams: it is not a replica set "
            f"or sharded cluster (error {NO_REPLICA_SET}: {reason}). Run mongod with "
            "--replSet (a one-node replica set is enough) and connect with ?replicaSet=..."
        )


def _watch_raw(target: Any, options: dict[str, Any]) -> ChangeStream[RawBSONDocument]:
    """`target.watch(**options)`, the events raw. A client has no `with_options`: its stream is
    opened as `MongoClient.watch` opens it, on the admin database (here a raw one)."""
    raw = raw_options(target.codec_options)
    if not isinstance(target, MongoClient):
        watched: ChangeStream[RawBSONDocument] = target.with_options(codec_options=raw).watch(
            **options
        )
        return watched
    admin = target.get_database("admin", codec_options=raw)
    unset = dict.fromkeys(_CHANGE_STREAM_ARGUMENTS)
    stream = ClusterChangeStream(admin, **(unset | options))
    stream._initialize_cursor()
    return stream
