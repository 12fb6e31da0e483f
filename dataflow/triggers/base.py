"""The one interface the runtime knows: a `Trigger` serves fires until it is told to stop.

Decorators attach a frozen `TriggerSpec` to the handler function and return it unchanged;
`Workflow` collects the specs and, per workflow instance, builds the triggers.
"""

from __future__ import annotations

import inspect
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Protocol, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from dataflow._core.clock import Clock
from dataflow._core.errors import SettingsError, TriggerFailed, WorkflowError
from dataflow._core.run import Run
from dataflow.state import FireEntry, RunRecord, Store
from dataflow.triggers._runs import RunHandle as RunHandle
from dataflow.triggers._runs import RunOutcome as RunOutcome
from dataflow.triggers._runs import RunPolicy as RunPolicy
from dataflow.triggers._runs import RunRequest as RunRequest

F = TypeVar("F", bound=Callable[..., Any])
SPEC_ATTRIBUTE = "__dataflow_trigger__"


class Runner(Protocol):
    """Executes runs; implemented by the runtime's dispatcher."""

    async def execute(self, request: RunRequest, handle: RunHandle | None = None) -> RunOutcome: ...

    async def record_skipped(
        self, request: RunRequest, reason: str, ledger: Sequence[FireEntry] | None = None
    ) -> None:
        """A skipped run record; `ledger`: the fire ledger rows to write with it (None: the
        request's fire, `skipped` for `reason`)."""
        ...

    def skipped_run(self, request: RunRequest, reason: str) -> RunRecord:
        """A skipped run record for a trigger to write in its own store call (a late batch's,
        with its claim: `Store.claim_fire(skipped=)`); `skipped_written` once it is written."""
        ...

    def skipped_written(self, records: Sequence[RunRecord]) -> None:
        """Skipped records a trigger's store call wrote: each counted as `record_skipped`
        counts its own, all logged in one line. Called in the store call's thread."""
        ...

    def spawn(self, request: RunRequest, run: Run | None = None) -> RunHandle:
        """Start a run in the runtime's run group (it survives the trigger's stop for grace);
        `run`: its first attempt, from `new_run`, its start written (`run_written`)."""
        ...

    def new_run(self, request: RunRequest, started_at: datetime) -> Run:
        """A first attempt whose start a trigger writes in its own store call (a cron fire
        claimed ahead of its time), then `run_written` in that call's thread, then `spawn`."""
        ...

    def run_written(self, run: Run) -> None:
        """`run`'s start record was written: logged and told to observers (in the thread)."""
        ...

    def execute_in_thread(
        self, request: RunRequest, cancel: threading.Event | None = None
    ) -> RunOutcome:
        """Run a sync handler inline in the calling worker thread (a trigger's own), with
        retries; `cancel` (the trigger's hard stop) flags the run cancelled, ends retries."""
        ...

    def fold_counts(self, trigger: str) -> None:
        """A batch of the trigger's `batched` runs ended: count its successes (metrics), which
        are not counted one by one."""
        ...


@dataclass(eq=False, kw_only=True)
class TriggerContext:
    workflow: str
    clock: Clock
    state: Store
    runner: Runner
    stopping: anyio.Event  # set on the first SIGINT/SIGTERM: stop firing, let runs finish
    # runs the previous process left unfinished (it died), by trigger name
    interrupted: Mapping[str, list[RunRecord]] = field(default_factory=dict)
    # while running (replicas): runs a dead replica left unfinished, handed to this one to
    # catch up; the cron scheduler reads them
    recovered: MemoryObjectReceiveStream[list[RunRecord]] | None = None
    # on a store replicas share: this replica's id (a stream lease's holder) and its TTL
    replica_id: str = ""
    replica_ttl: float = 15.0


@dataclass
class StreamStats:
    """What a streaming trigger reports about itself (metrics, inspection); the trigger keeps
    one and updates it as it goes."""

    events_handled: int = 0
    dead_letters: int = 0
    last_cluster_time: datetime | None = None  # of the last event handled or dead-lettered
    token_saved_at: datetime | None = None  # when the resume token was last saved
    reopens: int = 0
    invalidations: int = 0
    history_gaps: int = 0
    # on a store replicas share: whether this replica holds the stream's lease (reads it);
    # None: no lease (a store of its own, read by its one process)
    leased: bool | None = None

    def token_age(self, now: datetime) -> float | None:
        """Seconds since the position was last saved (None: not saved by this process)."""
        saved = self.token_saved_at
        return None if saved is None else max((now - saved).total_seconds(), 0.0)


@dataclass(frozen=True, kw_only=True)
class Description:
    """What the inspection commands show of a trigger, found without running anything."""

    source: str  # the cron expression, the watched namespace, ...
    timezone: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    next_fires: list[datetime] = field(default_factory=list)  # aware, in the trigger's zone


class Server(Protocol):
    """What the runtime starts: one trigger, or all of a runtime's triggers of a kind that
    serve together (the cron scheduler)."""

    @property
    def name(self) -> str: ...

    @property
    def cancel_on_stop(self) -> bool: ...

    async def serve(
        self, ctx: TriggerContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None: ...

    def failure(self, error: BaseException) -> BaseException:
        """The error to end the runtime with when `serve` raised `error`."""
        ...


class Trigger(ABC):
    kind: ClassVar[str]
    # True: the runtime cancels `serve` on the first stop signal (its runs keep their grace).
    # False: `serve` watches `ctx.stopping` itself, e.g. to finish an event it is handling.
    cancel_on_stop: ClassVar[bool] = True

    def __init__(self, name: str, handler: Callable[..., Any]) -> None:
        self.name = name
        self.handler = handler

    @abstractmethod
    async def serve(
        self, ctx: TriggerContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Call `task_status.started()` once ready; fire until `ctx.stopping` is set."""

    # True: runs in the startup phase, before any other trigger starts (`@startup`).
    runs_before_others: ClassVar[bool] = False

    @classmethod
    def serve_together(cls, triggers: Sequence[Trigger]) -> Server | None:
        """One server for all of a runtime's `triggers` of this kind; None: each serves itself."""
        return None

    def failure(self, error: BaseException) -> BaseException:
        return TriggerFailed(self.name, error)

    def describe(self) -> str:
        return self.kind

    @property
    def run_policy(self) -> RunPolicy:
        """The timeout and retries of each run this trigger starts."""
        return RunPolicy()

    def manual_request(self, payload: Any) -> RunRequest:
        """The run `python -m dataflow trigger` starts: the handler with what this trigger
        passes it, built from `payload` (recorded with the run)."""
        return RunRequest(
            trigger=self.name, handler=self.handler, policy=self.run_policy, payload=payload
        )

    def backfill_request(self, fire_at: datetime) -> RunRequest:
        """The run a backfill starts for the past fire `fire_at`: what the schedule's own fire
        would have started, marked as a backfill. Only scheduled triggers have fires."""
        raise SettingsError(
            f"trigger {self.name!r} is a {self.kind} trigger; a backfill needs a cron trigger"
        )

    def retry_request(self, payload: str, raw: bytes | None, letter: int) -> RunRequest:
        """The run that retries dead letter `letter`: its JSON `payload` (and the exact BSON
        `raw`, which only a change stream's letters hold) through `manual_request` here."""
        return self.manual_request(json.loads(payload))

    def description(self, now: datetime, count: int) -> Description:
        """What `list` shows: the source, options, and the next `count` fires after `now`."""
        return Description(source=self.describe(), options=self.run_policy.options())

    def stream_stats(self) -> StreamStats | None:
        """Streaming triggers report their counters here; others have none."""
        return None


def servers(triggers: Sequence[Trigger]) -> list[Server]:
    """What the runtime starts, in order: kinds that serve together get one server, where
    their first trigger stands; every other trigger serves itself."""
    kinds: dict[type[Trigger], list[Trigger]] = {}
    for trigger in triggers:
        kinds.setdefault(type(trigger), []).append(trigger)
    together = {kind: kind.serve_together(group) for kind, group in kinds.items()}
    found: list[Server] = []
    for trigger in triggers:
        server = together[type(trigger)]
        if server is None:
            found.append(trigger)
        elif kinds.pop(type(trigger), None) is not None:  # its kind's first trigger
            found.append(server)
    return found


@dataclass(frozen=True, kw_only=True)
class TriggerSpec(ABC):
    """What a decorator records: the trigger kind, its options and the handler's name."""

    kind: ClassVar[str]
    handler_args: ClassVar[tuple[str, ...]] = ()  # what the trigger passes to the handler
    name: str | None = None
    func_name: str = ""

    def with_name(self, name: str) -> TriggerSpec:
        return replace(self, name=name)

    @abstractmethod
    def build(self, handler: Callable[..., Any]) -> Trigger: ...

    def description(self, handler: Callable[..., Any], now: datetime, count: int) -> Description:
        """The trigger's description, for inspection; a spec whose trigger loads a driver when
        built describes itself instead."""
        return self.build(handler).description(now, count)

    @property
    def trigger_name(self) -> str:
        return self.name or self.func_name


def attach_spec(func: F, spec: TriggerSpec) -> F:
    """Record `spec` on `func`; a second trigger decorator on one function is an error."""
    target = func.__func__ if isinstance(func, staticmethod | classmethod) else func
    existing = getattr(target, SPEC_ATTRIBUTE, None)
    if existing is not None:
        where = target.__qualname__.rpartition("<locals>.")[2]
        raise WorkflowError(
            f"{where}: already decorated with @{existing.kind}; a handler takes one "
            f"trigger decorator (write a second method for @{spec.kind})"
        )
    if not callable(target):
        raise WorkflowError(f"@{spec.kind} decorates a function, not {target!r}")
    setattr(target, SPEC_ATTRIBUTE, replace(spec, func_name=target.__name__))
    return func


def spec_of(obj: object) -> TriggerSpec | None:
    target = obj.__func__ if isinstance(obj, staticmethod | classmethod) else obj
    spec = getattr(target, SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, TriggerSpec) else None


def check_signature(owner: str, func: Callable[..., Any], spec: TriggerSpec, bound: bool) -> None:
    """Raise WorkflowError unless `func` accepts exactly what its trigger passes."""
    sig = inspect.signature(func)
    leading = (None,) if bound else ()
    try:
        sig.bind(*leading, *spec.handler_args)
    except TypeError as exc:
        passes = ", ".join(spec.handler_args) or "no arguments"
        raise WorkflowError(
            f"{owner}.{func.__name__}: @{spec.kind} handler must accept {passes} ({exc})"
        ) from None
