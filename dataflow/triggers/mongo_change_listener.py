"""`@mongodb_change_stream(uri, database, collection)`: run a handler for each change event.

Delivery is at-least-once with no gap: the stream's resume token is saved in the state store
only after the handler succeeded (or the event went to the dead-letter table), and a restart
resumes after the last saved token. See docs/change-streams.md.

This module stays light (no pymongo): the trigger itself is built from `_changestream.trigger`
when the workflow starts.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar, get_args

from dataflow._core.errors import WorkflowError
from dataflow._core.redact import redact_text, register_url
from dataflow.triggers._changestream.policy import (
    OPERATION_TYPES,
    ChangeStreamPolicy,
    OnError,
    OnHistoryLost,
    StreamOptions,
    describe_stream,
)
from dataflow.triggers.base import Description, RunPolicy, Trigger, TriggerSpec, attach_spec

__all__ = ["OPERATION_TYPES", "ChangeStreamPolicy", "ChangeStreamSpec", "mongodb_change_stream"]

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=str)
FullDocument = Literal["updateLookup", "whenAvailable", "required"]
FullDocumentBefore = Literal["whenAvailable", "required", "off"]

_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class ChangeStreamSpec(TriggerSpec, StreamOptions):
    kind: ClassVar[str] = "mongodb_change_stream"
    handler_args: ClassVar[tuple[str, ...]] = ("change_event",)

    def build(self, handler: Callable[..., Any]) -> Trigger:
        from dataflow.triggers._changestream.trigger import ChangeStreamTrigger

        return ChangeStreamTrigger(self.trigger_name, handler, self)

    def description(self, handler: Callable[..., Any], now: datetime, count: int) -> Description:
        return describe_stream(self)  # building the trigger would load pymongo for nothing


def mongodb_change_stream(
    source: object,
    database: str | None = None,
    collection: str | None = None,
    *,
    name: str | None = None,
    operation_types: Sequence[str] | None = None,
    pipeline: Sequence[Mapping[str, Any]] | None = None,
    full_document: FullDocument | None = None,
    full_document_before_change: FullDocumentBefore | None = None,
    start_at: datetime | None = None,
    on_error: OnError = "dead_letter",
    on_history_lost: OnHistoryLost = "fail",
    retries: int = 3,
    retry_delay: float = 1.0,
    timeout: float | None = None,
    max_await_time: float = 1.0,
    checkpoint_interval: float = 10.0,
    reconnect_delay: float = 1.0,
    batch_events: int = 100,
) -> Callable[[F], F]:
    """Call the handler with each change event of `database.collection`, one at a time, in order.

    `source`: a `mongodb://` URI, the name of an environment variable holding one (read at
    start), or a `MongoDB`/`MongoDBAsync` connection. `collection=None` watches the whole
    database, `database=None` the whole deployment. A failing handler is retried `retries`
    times with backoff, then its event goes to the dead-letter table (`on_error="stop"`: the
    trigger stops there instead, its position not advanced). `max_await_time` bounds how long
    a stop takes; an idle stream's position is saved every `checkpoint_interval` seconds; after
    a network error the stream is reopened from the saved position, waiting `reconnect_delay`
    seconds, doubled on each further failure up to a minute. Successes are booked per batch of
    at most `batch_events` events (one history row, one position save; a crash redelivers at
    most two batches). docs/change-streams.md has more.
    """
    policy = ChangeStreamPolicy(
        operation_types=_operation_types(operation_types),
        full_document=_choice("full_document", full_document, FullDocument),
        full_document_before_change=_choice(
            "full_document_before_change", full_document_before_change, FullDocumentBefore
        ),
        start_at=_aware("start_at", start_at),
        on_error=_choice("on_error", on_error, OnError) or "dead_letter",
        on_history_lost=_choice("on_history_lost", on_history_lost, OnHistoryLost) or "fail",
        max_await_time=_positive("max_await_time", max_await_time),
        checkpoint_interval=_positive("checkpoint_interval", checkpoint_interval),
        reconnect_delay=_positive("reconnect_delay", reconnect_delay),
        batch_events=_count("batch_events", batch_events),
        run=_run_policy(timeout, retries, retry_delay),
    )
    if collection is not None and database is None:
        raise _error(f"collection={collection!r} needs a database: pass database as well")
    spec = ChangeStreamSpec(
        name=name,
        source=_source(source),
        database=_name("database", database),
        collection=_name("collection", collection),
        pipeline=_pipeline(pipeline),
        policy=policy,
    )

    def decorator(func: F) -> F:
        return attach_spec(func, spec)

    return decorator


def _error(text: str) -> WorkflowError:
    return WorkflowError(f"@mongodb_change_stream: {text}")


def _source(source: object) -> object:
    if isinstance(source, str):
        if "://" in source or _SETTING_NAME.fullmatch(source):
            register_url(source)
            return source
        raise _error(  # redacted: a mistyped URI (`mongodb:/user:pw@host`) still holds a password
            f"{redact_text(repr(source))} is neither a mongodb:// URI nor a setting name (an "
            "environment variable name such as 'CONRAD_MONGODB_URL')"
        )
    if _is_mongo_connection(source):
        return source
    raise _error(
        f"the source must be a URI, a setting name or a MongoDB connection, not {source!r}"
    )


def _name(option: str, value: str | None) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise _error(f"{option} must be a non-empty name or None, not {value!r}")
    return value


def _operation_types(types: Sequence[str] | None) -> tuple[str, ...] | None:
    if types is None:
        return None
    if isinstance(types, str):
        types = [types]
    valid = ", ".join(sorted(OPERATION_TYPES))
    if not types:
        raise _error(f"operation_types is empty: list some of {valid}, or leave it out")
    for kind in types:
        if kind not in OPERATION_TYPES:
            raise _error(f"operation type {kind!r} is not a MongoDB change event: use {valid}")
    return tuple(dict.fromkeys(types))


def _pipeline(pipeline: Sequence[Mapping[str, Any]] | None) -> tuple[Mapping[str, Any], ...]:
    stages = list(pipeline or ())
    if isinstance(pipeline, Mapping | str) or not all(isinstance(s, Mapping) for s in stages):
        raise _error("pipeline must be a list of stages (dicts) such as [{'$match': {...}}]")
    return tuple(stages)


def _run_policy(timeout: float | None, retries: int, retry_delay: float) -> RunPolicy:
    return RunPolicy(
        timeout=None if timeout is None else _positive("timeout", timeout),
        retries=int(_non_negative("retries", retries)),
        retry_delay=_non_negative("retry_delay", retry_delay),
    )


def _choice(option: str, value: S | None, allowed: object) -> S | None:
    choices = get_args(allowed)
    if value is not None and value not in choices:
        raise _error(f"{option}={value!r} is not valid: use one of {', '.join(choices)}")
    return value


def _aware(option: str, value: datetime | None) -> datetime | None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise _error(f"{option} must be an aware datetime (with a time zone), not {value!r}")
    return value


def _positive(option: str, value: float) -> float:
    if not isinstance(value, int | float) or value <= 0:
        raise _error(f"{option}={value!r} must be a positive number of seconds")
    return float(value)


def _count(option: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _error(f"{option}={value!r} must be a whole number of events, 1 or more")
    return value


def _non_negative(option: str, value: float) -> float:
    if not isinstance(value, int | float) or value < 0:
        raise _error(f"{option}={value!r} must not be negative")
    return float(value)


def _is_mongo_connection(source: object) -> bool:
    """A MongoDB or MongoDBAsync, checked without importing pymongo: their modules are loaded
    if the caller could have built one."""
    for module, name in (("_mongo", "MongoDB"), ("_mongo_async", "MongoDBAsync")):
        loaded = sys.modules.get(f"dataflow.connection.{module}")
        if loaded is not None and isinstance(source, getattr(loaded, name)):
            return True
    return False
