"""What a change-stream trigger reads and how: the options of `@mongodb_change_stream`.

Plain data, no pymongo: the decorator and the inspection commands use it without loading the
driver; the trigger (`_changestream.trigger`) reads it when the workflow starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from dataflow._core.redact import redact_url
from dataflow.triggers.base import Description, RunPolicy

# A stream's position is saved under `resume_token:<namespace>` among its trigger's values.
TOKEN_KEY = "resume_token"

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
    batch_events: int = 100  # events per history row and position save, at most (`batch`)
    batch_seconds: float = 1.0  # and the longest a batch stays open
    run: RunPolicy = field(default_factory=RunPolicy)

    def options(self) -> dict[str, Any]:
        """The policy as `list` shows it."""
        types = self.operation_types
        return {
            "operation_types": ",".join(types) if types else None,
            "full_document": self.full_document,
            "on_error": self.on_error,
            "on_history_lost": self.on_history_lost,
            "checkpoint_interval": self.checkpoint_interval,
            **self.run.options(),
        }


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


def describe_source(source: object) -> str:
    """A change stream's source without password or URI options; `$NAME` for a setting."""
    if isinstance(source, str):
        if "://" not in source:
            return f"${source}"
        return urlunsplit(urlsplit(redact_url(source))._replace(query="", fragment=""))
    target = getattr(getattr(source, "sync", source), "target", None)  # MongoDB(Async)
    return str(target) if target is not None else type(source).__name__


def describe_stream(options: StreamOptions) -> Description:
    """What `list` shows of a change stream: namespace, source, options (pymongo not loaded)."""
    return Description(
        source=f"{options.namespace}\n{describe_source(options.source)}",
        options=options.policy.options(),
    )
