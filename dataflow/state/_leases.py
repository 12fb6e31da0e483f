"""What a store shared by replicas adds to `Store`: stream leases fenced by a term, and replica
heartbeats. Implemented by `PostgresStore`; the SQLite store (one process per file) has no use
for them.

A lease makes one replica the owner of a change stream: `acquire_lease` hands out a term that
grows with every new owner, `renew_lease` keeps it while the owner is alive, and every position
the owner saves is fenced by its term (`save_position(..., term=)`): once another replica took
the lease, the former owner's write is refused with `LeaseLost`, so a position never moves
back to where a stale owner was. Expiry is judged by the database's clock (`now()`), never a
replica's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ParamSpec, Protocol, TypeVar, runtime_checkable

from dataflow.state._interface import RunRecord
from dataflow.state._ledger import FireEntry

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Lease:
    workflow: str
    trigger: str
    holder: str
    term: int
    expires_at: datetime
    live: bool  # not expired, by the database's clock when read


@dataclass(frozen=True)
class Replica:
    workflow: str
    replica_id: str
    started_at: datetime
    last_heartbeat: datetime
    silent_for: timedelta  # since its last heartbeat, by the database's clock


@dataclass(frozen=True)
class Claim:
    """A fire claimed by a trigger whose overlap is `skip` (`claim_fire_alone`)."""

    won: bool  # this replica has the fire: it runs it, or records it skipped
    running_on: str | None = None  # won, but this live replica runs the trigger: skip it


@runtime_checkable
class Leases(Protocol):
    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """As `Store.call`: one of these blocking methods, in a worker thread."""
        ...

    def acquire_lease(self, workflow: str, trigger: str, holder: str, ttl: timedelta) -> int | None:
        """Take the stream's lease for `ttl` if it is free (never held, expired or released)
        or already `holder`'s; returns the new term (greater than any before), or None while
        another holder's lease is live. Durable before it returns."""
        ...

    def renew_lease(
        self, workflow: str, trigger: str, holder: str, term: int, ttl: timedelta
    ) -> bool:
        """Extend the lease to `ttl` from now if `holder` still has `term` (no one took it
        since, even if it had expired); False: the lease is lost, stop reading the stream."""
        ...

    def release_lease(self, workflow: str, trigger: str, holder: str, term: int) -> None:
        """Give the lease up at once (a clean stop), so another replica need not wait for it to
        expire; the term stays, so the next owner's is greater."""
        ...

    def lease(self, workflow: str, trigger: str) -> Lease | None:
        """The stream's lease as it stands, or None if it was never taken."""
        ...

    def save_position(
        self, workflow: str, trigger: str, key: str, position: str, *, term: int | None = None
    ) -> None:
        """As `Store.save_position`; with `term`, only while that term still holds the lease
        (LeaseLost otherwise), and never over a position a later term saved."""
        ...

    def heartbeat(self, workflow: str, replica_id: str) -> None:
        """Say that `replica_id` is alive (its first heartbeat registers it)."""
        ...

    def replicas(self, workflow: str) -> list[Replica]:
        """Every replica that sent a heartbeat, the most recently heard first."""
        ...

    def claim_fire_alone(
        self,
        workflow: str,
        trigger: str,
        fire_at: datetime,
        ledger: Sequence[FireEntry] = (),
        *,
        skipped: Sequence[RunRecord] = (),
    ) -> Claim:
        """`claim_fire` for a trigger whose overlap is `skip`: in the claim's transaction, a
        run of the trigger that another live replica is running is looked for; if there is
        one the fire is claimed (it is not run anywhere) and `running_on` names the replica.
        `ledger` and `skipped` as for `claim_fire`."""
        ...

    def recover_dead(self, workflow: str) -> list[RunRecord]:
        """While running: runs of replicas whose heartbeat went silent for the TTL become
        `interrupted` (each marked by one live replica only) and their fires can be claimed
        again once, by this replica; returns the runs it marked."""
        ...

    def leave(self, workflow: str) -> None:
        """A clean stop: this replica's heartbeat goes at once."""
        ...

    def claim_counts(self) -> dict[str, int]:
        """Fire claims this process made, by outcome (`won`, `lost`), for metrics."""
        ...
