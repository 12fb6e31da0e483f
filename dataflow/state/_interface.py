"""The one state store interface the runtime, triggers and CLI know: `Store`.

Operations are named by what the caller means (claim a fire, save a stream position, record a
run), not by how a store keeps them, so a store shared by several replicas (PostgreSQL: a fire
ledger with a unique key, change-stream leases fenced by a term) can implement the same calls.

Durability: each method says which writes must be durable when it returns (a fire's claim: a
crash after the return must not run the fire again) and which a store may batch into a later
commit (run records, stream positions: a crash loses at most the last moments of them, which
the at-least-once promise already allows). Writes reach the store in the order they are made
(a durable write makes every write before it durable too), and reads see every write made
before them. The SQLite store group-commits the writes that may wait. Methods block: async
callers go through `call()`, which runs them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import ParamSpec, Protocol, TypeVar

from dataflow.state._ledger import FireEntry

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    workflow: str
    trigger: str
    scheduled_at: datetime | None
    started_at: datetime
    ended_at: datetime | None
    status: str
    attempt: int
    error: str | None
    backfill: bool = False  # a past fire run again by `trigger --from/--to` (schema 3)
    replica: str | None = None  # the replica that ran it (schema 5; PostgreSQL schema 2)
    # A batch of change events handled (schema 7; PostgreSQL schema 4): one row for them all,
    # not one per event.
    events: int | None = None  # how many events; None: a run of its own
    first_position: str | None = None  # the first event's resume token (Extended JSON)
    last_position: str | None = None  # the position saved after the last one


@dataclass(frozen=True)
class DeadLetter:
    id: int
    workflow: str
    trigger: str
    payload: str
    error: str
    created_at: datetime
    retried_at: datetime | None
    retry_status: str | None
    raw: bytes | None = None  # the change event's BSON (schema 2); a retry decodes it again


@dataclass(frozen=True, kw_only=True)
class Retention:
    """How much run history a store keeps: runs that started before `older_than` go, and so do
    a trigger's runs beyond its newest `max_runs_per_trigger`. A running run is never pruned;
    a dead letter goes only once retried successfully before `older_than`."""

    older_than: datetime
    max_runs_per_trigger: int


# A call holding the store longer than this is stuck (a frozen disk, a server gone silent), not
# slow: a busy store's calls take milliseconds each, however many there are.
STUCK_AFTER = 0.5


class Store(Protocol):
    """What dataflow keeps between runs of one workflow: last fires, stream positions, trigger
    values, run history and dead letters. Implementations: `SqliteStore` (one process per file).
    """

    # -- the store itself -----------------------------------------------------------------
    def hold(self) -> AbstractContextManager[None]:
        """Held while a runtime runs on this store. A store one process owns (SQLite) refuses
        a second runtime with StateStoreError; a shared one admits replicas, which then rely
        on `claim_fire` and leases instead."""
        ...

    def check(self) -> None:
        """Raise StateStoreError if writes would no longer reach the store readers use (a
        deleted or replaced SQLite file); called about once a second."""
        ...

    def busy(self) -> bool:
        """One call has held the store past `STUCK_AFTER`: tells a stop held by a state write
        (a frozen disk) from one that is merely slow or busy (never to be cut short)."""
        ...

    def close(self) -> None:
        """Write out anything batched and release the store."""
        ...

    def flush(self) -> None:
        """Make every write made so far durable now (cheap when nothing is batched)."""
        ...

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one of this store's blocking methods (or a function using them) in a thread."""
        ...

    # -- cron fires -----------------------------------------------------------------------
    def claim_fire(
        self,
        workflow: str,
        trigger: str,
        fire_at: datetime,
        ledger: Sequence[FireEntry] = (),
        *,
        skipped: Sequence[RunRecord] = (),
    ) -> bool:
        """Claim the fire of `trigger` at `fire_at` and make it the trigger's last fire; its
        ledger row says `claimed`, and `ledger` (the fires it runs for: coalesced, missed) is
        written with it, and so are `skipped`: finished run records (a late batch's fires
        that do not run), kept as given, which take no ledger row for a run. All in one
        transaction: a stop cannot part a late batch's records from the claim that moves the
        last fire past them. True: this process runs (or records skipped) the fire; False:
        another replica has it, and nothing is written. Durable before it returns: a restart
        never runs a claimed fire time again."""
        ...

    def record_fires(self, workflow: str, trigger: str, entries: Sequence[FireEntry]) -> None:
        """Write fire ledger rows (the newest `MAX_ENTRIES`); a row that already holds an
        outcome other than `claimed` keeps it. A run's start record (`record_run_start` with
        `scheduled_at`) completes its fire's row itself: `ran` (or `backfilled`) and its id."""
        ...

    def fires(
        self,
        workflow: str,
        trigger: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[FireEntry]:
        """The trigger's ledger rows with `since <= fire_at <= until`, newest first, at most
        `limit`; fire times read back aware (UTC)."""
        ...

    def last_fire(self, workflow: str, trigger: str) -> datetime | None:
        """The last fire claimed for `trigger` (aware), or None if it never fired."""
        ...

    # -- stream positions -----------------------------------------------------------------
    def save_position(self, workflow: str, trigger: str, key: str, position: str) -> None:
        """Where a stream is (a resume token as text), saved only once the events before it
        were handled. May be batched into a later commit: after a crash the stream resumes
        from an earlier saved position (events are redelivered, never lost)."""
        ...

    def load_position(self, workflow: str, trigger: str, key: str) -> str | None:
        """The position `save_position` saved last, or None."""
        ...

    # -- trigger values (`current_run().state`) -------------------------------------------
    def get_state(self, workflow: str, trigger: str, key: str) -> str | None:
        """A value a handler saved (JSON text), or None; values of another workflow or
        trigger are never seen."""
        ...

    def set_state(self, workflow: str, trigger: str, key: str, value: str) -> None:
        """Save a handler's value: durable when it returns, as a handler may act on it at once
        (a watermark it moves before writing downstream)."""
        ...

    def state_items(self, workflow: str) -> list[tuple[str, str, str, datetime]]:
        """Every saved value of the workflow, for inspection: (trigger, key, value, updated
        at), ordered by trigger and key; last fires and positions included."""
        ...

    # -- run history ----------------------------------------------------------------------
    def record_run_start(
        self,
        run_id: str,
        workflow: str,
        trigger: str,
        scheduled_at: datetime | None,
        started_at: datetime,
        attempt: int = 1,
        *,
        backfill: bool = False,
    ) -> None:
        """A run began (status `running`). May be batched: a crash before the commit loses the
        record, not the run's effects; a fire's claim, not this record, prevents a re-run."""
        ...

    def record_run_end(
        self, run_id: str, status: str, ended_at: datetime, error: str | None = None
    ) -> None:
        """A run ended with `status`. May be batched, like `record_run_start`; a record lost
        in a crash shows as `interrupted` after the restart."""
        ...

    def record_batch_end(
        self,
        run_id: str,
        ended_at: datetime,
        events: int,
        first_position: str | None,
        last_position: str | None,
    ) -> None:
        """A batch of change events ended, all `events` handled: the run `record_run_start`
        began for it becomes one `succeeded` history row with its count and first and last
        positions. May be batched, like `record_run_end` (a batch cut by a crash shows as
        `interrupted`)."""
        ...

    def runs(
        self,
        workflow: str,
        trigger: str | None = None,
        *,
        failed_only: bool = False,
        limit: int = 50,
        run_id: str | None = None,
        status: str | None = None,
        before: datetime | None = None,
    ) -> list[RunRecord]:
        """Newest first (by start, then by recording order), at most `limit`; `failed_only`:
        failed, timed out, cancelled and interrupted runs only; `run_id`: the runs whose id
        starts with it (the console shows the first 8 hex digits); `status`: runs with that
        status only; `before`: runs started before it only (a page read from the start-time
        index, however long the history)."""
        ...

    def runs_by_id(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """The runs with these ids, in the order given (an id not recorded is left out)."""
        ...

    def mark_interrupted(self, workflow: str) -> list[RunRecord]:
        """At start: runs a previous process left `running` (it died) become `interrupted`;
        returns them as marked. Durable before the triggers start, which act on them."""
        ...

    def prune_history(self, workflow: str, retention: Retention, *, batch: int) -> int:
        """Delete at most `batch` rows that `retention` no longer keeps: runs, retried dead
        letters, fire ledger rows whose fire time is past the age or the trigger's cap (one
        short write, so the store is never held long); returns how many went. Call again
        until it returns fewer than `batch`."""
        ...

    # -- dead letters ---------------------------------------------------------------------
    def add_dead_letter(
        self, workflow: str, trigger: str, payload: str, error: str, raw: bytes | None = None
    ) -> int:
        """Keep an event no run could handle; returns its id. Durable before the stream's
        position moves past the event (else the event would be lost)."""
        ...

    def dead_letters(self, workflow: str, *, include_retried: bool = False) -> list[DeadLetter]:
        """Oldest first; without `include_retried`, letters retried successfully are left out."""
        ...

    def mark_dead_letter_retried(self, letter_id: int, status: str) -> None:
        """Record a retry's outcome (`succeeded` takes the letter off the default list)."""
        ...
