"""The run model: one execution of a handler, visible to the handler through `current_run()`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from dataflow._core.exports import publish
from dataflow._core.state_values import decode_value, encode_value


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # the process died (kill -9, power loss) while it ran


class KeyValueStore(Protocol):
    def get_state(self, workflow: str, trigger: str, key: str) -> str | None: ...

    def set_state(self, workflow: str, trigger: str, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class TriggerState:
    """Values a handler keeps between runs (a watermark, a cursor), saved in the state store.

    Keyed by workflow and trigger; values are JSON, plus aware datetimes, which come back
    aware and equal (a naive datetime is refused: its meaning would depend on the machine).
    Any dict round-trips, one shaped like `{"$datetime": ...}` included.
    Calls are quick, blocking SQLite reads and writes.
    """

    store: KeyValueStore
    workflow: str
    trigger: str

    def get(self, key: str, default: Any = None) -> Any:
        """The value saved under `key`, or `default`. A stored value that cannot be read
        (written by hand or by an old version) raises `StateValueError`; `set` replaces it."""
        raw = self.store.get_state(self.workflow, self.trigger, f"user:{key}")
        return default if raw is None else decode_value(raw, self._where(key))

    def set(self, key: str, value: Any) -> None:
        raw = encode_value(value, self._where(key))
        self.store.set_state(self.workflow, self.trigger, f"user:{key}", raw)

    def _where(self, key: str) -> str:
        return f"trigger state {key!r} of {self.workflow}/{self.trigger}"


@dataclass(eq=False, kw_only=True)
class Run:
    """One run of a handler. Sync handlers poll `cancelled` to stop early on shutdown or timeout."""

    run_id: str
    workflow: str
    trigger: str
    scheduled_at: datetime | None
    started_at: datetime
    state: TriggerState  # this trigger's saved values: watermarks and the like
    attempt: int = 1
    payload: object = None
    backfill: bool = False  # re-runs a past fire (`trigger --from/--to`), not the schedule's
    timed_out: bool = False
    _cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    _on_cancel: list[Callable[[], object]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once the runtime wants this run to stop (shutdown past grace, or timeout)."""
        return self._cancel_requested.is_set()

    def request_cancel(self) -> None:
        """Flag the run cancelled and stop what it registered (e.g. a running SQL statement)."""
        with self._lock:
            self._cancel_requested.set()
            callbacks, self._on_cancel = self._on_cancel, []
        for callback in callbacks:
            _call_quietly(callback)

    def on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` (from any thread) when the run is cancelled; returns an unregister.

        Connections use it so a timed-out or shut-down run stops its server-side work.
        """
        with self._lock:
            if not self._cancel_requested.is_set():
                self._on_cancel.append(callback)
                return partial(self._forget, callback)
        _call_quietly(callback)
        return _nothing

    def _forget(self, callback: Callable[[], object]) -> None:
        with self._lock, suppress(ValueError):
            self._on_cancel.remove(callback)

    def expire(self) -> None:
        """The run passed its timeout: flag it timed out and cancelled."""
        self.timed_out = True
        self.request_cancel()


class LazyRun(Protocol):
    """A run not built yet (a change event's: most handlers never ask for theirs); it is
    built, once, by whoever asks first."""

    def materialize(self) -> Run: ...


_current_run: ContextVar[Run | LazyRun] = ContextVar("dataflow_current_run")


def current_run() -> Run:
    """The run the calling handler belongs to (works in worker threads too)."""
    try:
        found = _current_run.get()
    except LookupError:
        raise RuntimeError("current_run() called outside a dataflow handler run") from None
    return found if isinstance(found, Run) else found.materialize()


def current_run_or_none() -> Run | None:
    found = _current_run.get(None)
    return found if found is None or isinstance(found, Run) else found.materialize()


def _call_quietly(callback: Callable[[], object]) -> None:
    # A cancel can race the end of the work it stops; then there is nothing left to do.
    with suppress(Exception):
        callback()


def _nothing() -> None:
    return None


def set_current_run(run: Run | LazyRun) -> object:
    return _current_run.set(run)


def reset_current_run(token: object) -> None:
    _current_run.reset(token)  # type: ignore[arg-type]


publish("dataflow", RunStatus, Run, current_run)
