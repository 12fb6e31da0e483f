"""What a change-stream trigger reads and how: the options of `@mongodb_change_stream`.

Plain data, no pymongo: the decorator and the inspection commands use it without loading the
driver; the trigger (`_changestream.trigger`) reads it when the workflow starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from dataflow.triggers.base import RunPolicy

OnError = Literal["dead_letter", "stop"]
OnHistoryLost = Literal["fail", "restart_from_now"]

# MongoDB's change event types; those in EXPANDED_TYPES need `showExpandedEvents` (6.0+), which
# the trigger turns on when one of them is asked for.
EXPANDED_TYPES = frozenset(
    {
        "create",
        "createIndexes",
        "dropIndexes",
        "modify",
        "shardCollection",
        "reshardCollection",
        "refineCollectionShardKey",
    }
)
OPERATION_TYPES = frozenset(
    {"insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate"}
    | EXPANDED_TYPES
)


@dataclass(frozen=True, kw_only=True)
class ChangeStreamPolicy:
    """How the stream is read, checkpointed and recovered; `run` bounds each handler run."""

    operation_types: tuple[str, ...] | None = None
    full_document: str | None = None
    full_document_before_change: str | None = None
    start_at: datetime | None = None  # first start only, when no position is saved
    on_error: OnError = "dead_letter"
    on_history_lost: OnHistoryLost = "fail"
    max_await_time: float = 1.0  # seconds a getMore waits: bounds how long a stop takes
    checkpoint_interval: float = 10.0  # seconds between saves of an idle stream's position
    reconnect_delay: float = 1.0  # first wait before reopening after a network error
    reconnect_max_delay: float = 60.0
    run: RunPolicy = field(default_factory=RunPolicy)


@dataclass(frozen=True, kw_only=True)
class StreamOptions:
    """Which stream to read: the source, the namespace, a pipeline, and the policy."""

    source: object  # a URI, a setting name, or a MongoDB / MongoDBAsync connection
    database: str | None
    collection: str | None
    pipeline: tuple[Mapping[str, Any], ...] = ()
    policy: ChangeStreamPolicy = field(default_factory=ChangeStreamPolicy)

    @property
    def namespace(self) -> str:
        """`db.collection`, `db` (a whole database) or `*` (the whole deployment)."""
        return ".".join(filter(None, (self.database, self.collection))) or "*"
