"""The oldest entry of a MongoDB server's oplog: how far back a change stream can resume
(its headroom), read with one `find` on `local.oplog.rs`, or why it cannot be known: a user
without read access to `local` (it needs the `clusterMonitor` role), a `mongos` (each shard
keeps its own oplog), a server not reached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pymongo
from bson import Timestamp
from pymongo.errors import OperationFailure, PyMongoError

from dataflow._core.errors import DataflowError, one_line
from dataflow.triggers._changestream.policy import StreamOptions
from dataflow.triggers._changestream.source import StreamSource

PROBE_TIMEOUT = 2.0  # seconds one oplog read may take (connecting included)
UNAUTHORIZED = 13
ILLEGAL_OPERATION = 20  # `local` read through a mongos


@dataclass(frozen=True)
class OplogStart:
    """The oldest oplog entry's time, or why it is not known."""

    first_entry: datetime | None
    unknown: str | None = None


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
