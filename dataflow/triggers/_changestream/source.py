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
from pymongo.errors import ConnectionFailure, CursorNotFound, OperationFailure, PyMongoError
from pymongo.synchronous.change_stream import ChangeStream

from dataflow._core.errors import ChangeStreamUnavailable, one_line
from dataflow._core.settings import require_env
from dataflow.connection._mongo import Document, MongoDB
from dataflow.connection._mongo_async import MongoDBAsync
from dataflow.triggers._changestream.checkpoint import Token
from dataflow.triggers._changestream.policy import EXPANDED_TYPES, StreamOptions, describe_source

HISTORY_LOST = 286  # ChangeStreamHistoryLost: the resume point has left the oplog
NO_REPLICA_SET = 40573  # "$changeStream is only supported on replica sets"
_CONNECT_TIMEOUT = 10.0  # seconds: an unreachable server fails the start within this
_CLOSE_TIMEOUT = 2.0  # seconds: killCursors on a dead connection must not hold up a stop


def is_interruption(exc: PyMongoError) -> bool:
    """A network-level failure: reopening from the saved position may succeed."""
    if isinstance(exc, ConnectionFailure | CursorNotFound) or exc.timeout:
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

    def connect(self) -> None:
        source = self.spec.source
        if isinstance(source, MongoDBAsync):
            source = source.sync
        if isinstance(source, MongoDB):
            self.connection = source
            source.connect(timeout=_CONNECT_TIMEOUT)
            return
        assert isinstance(source, str)
        url = source if "://" in source else require_env(source)
        self.connection = MongoDB(url, database=self.spec.database or "admin")
        self._owned = True
        self.connection.connect(timeout=_CONNECT_TIMEOUT)

    def open(self, start_after: Token | None, start_at: datetime | None) -> ChangeStream[Document]:
        """Start watching after `start_after`, else at `start_at`, else from now."""
        assert self.connection is not None, "connect() first"
        client = self.connection.client
        target: Any = client
        if self.spec.database is not None:
            target = client[self.spec.database]
            if self.spec.collection is not None:
                target = target[self.spec.collection]
        try:
            stream: ChangeStream[Document] = target.watch(
                **self.watch_options(start_after, start_at)
            )
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

    def close(self, stream: ChangeStream[Document] | None) -> None:
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
