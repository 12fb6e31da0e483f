"""What the PostgreSQL store adds for replicas (`Leases`): stream leases and fenced positions,
heartbeats, fire claims that look at other replicas' runs, and the catching up of dead replicas'
runs. A mixin of `PostgresStore`, whose `_transaction()` each method runs in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from dataflow._core.logs import get_logger
from dataflow.state import _postgres_fires as fires
from dataflow.state import _postgres_history as history
from dataflow.state import _postgres_leases as leases
from dataflow.state import _postgres_replicas as replicas
from dataflow.state._interface import RunRecord
from dataflow.state._leases import Claim, Lease, Replica
from dataflow.state._ledger import FireEntry

log = get_logger("dataflow.state")


class SharedMethods:
    replica_id: str
    replica_ttl: timedelta
    claims: Counter[str]
    clock_ahead = False  # the last claim was refused as ahead of the database's clock

    _transaction: Callable[[], AbstractContextManager[Any]]  # PostgresStore's

    # -- fires ---------------------------------------------------------------------------
    def claim_fire(
        self,
        workflow: str,
        trigger: str,
        fire_at: datetime,
        ledger: Sequence[FireEntry] = (),
        *,
        skipped: Sequence[RunRecord] = (),
    ) -> bool:
        """The ledger row and the last fire in one transaction: only the replica whose insert
        went in (or to which a dead replica's fire was handed) runs the fire. The last fire
        only moves forward: a slow replica claiming an earlier fire leaves a later one.
        Claimed: the fires it stands for (`ledger`, `skipped`) are written too; lost: nothing
        is, the winner records them."""
        with self._counted() as outcome, self._transaction() as cur:
            outcome["won"] = self._claim(cur, workflow, trigger, fire_at)
            if outcome["won"]:
                fires.write(cur, workflow, trigger, ledger)
                history.insert_runs(cur, skipped, self.replica_id)
        return outcome["won"]

    def claim_fire_alone(
        self,
        workflow: str,
        trigger: str,
        fire_at: datetime,
        ledger: Sequence[FireEntry] = (),
        *,
        skipped: Sequence[RunRecord] = (),
    ) -> Claim:
        with self._counted() as outcome, self._transaction() as cur:
            won = outcome["won"] = self._claim(cur, workflow, trigger, fire_at)
            if not won:
                return Claim(False)
            fires.write(cur, workflow, trigger, ledger)
            history.insert_runs(cur, skipped, self.replica_id)
            ttl, me = self.replica_ttl, self.replica_id
            return Claim(True, replicas.running_elsewhere(cur, workflow, trigger, me, ttl))

    def _claim(self, cur: Any, workflow: str, trigger: str, fire_at: datetime) -> bool:
        """Says once when this replica's clock runs ahead of the database's, and once when it
        no longer does."""
        outcome = replicas.claim(cur, workflow, trigger, fire_at, self.replica_id)
        if (outcome.early_by is not None) != self.clock_ahead:
            self.clock_ahead = outcome.early_by is not None
            if self.clock_ahead:
                log.error(
                    "fire time ahead of the database's clock: this replica's clock runs fast; "
                    "it claims no fire before its time",
                    trigger=trigger,
                    fire_at=fire_at.isoformat(),
                    ahead_by=str(outcome.early_by),
                    replica=self.replica_id,
                )
            else:
                log.info(
                    "fire times no longer ahead of the database's clock", replica=self.replica_id
                )
        return outcome.won

    def _counted(self) -> AbstractContextManager[dict[str, bool]]:
        return _count_into(self.claims)

    def claim_counts(self) -> dict[str, int]:
        return {"won": self.claims["won"], "lost": self.claims["lost"]}

    # -- dead replicas -------------------------------------------------------------------
    def mark_interrupted(self, workflow: str) -> list[RunRecord]:
        """At start: runs of replicas that are not live (and this replica's own earlier
        runs) become `interrupted`; their fires are this replica's to catch up."""
        with self._transaction() as cur:
            ttl, me = self.replica_ttl, self.replica_id
            return replicas.mark_interrupted(cur, workflow, me, ttl, starting=True)

    def recover_dead(self, workflow: str) -> list[RunRecord]:
        with self._transaction() as cur:
            ttl, me = self.replica_ttl, self.replica_id
            return replicas.mark_interrupted(cur, workflow, me, ttl, starting=False)

    def leave(self, workflow: str) -> None:
        with self._transaction() as cur:
            replicas.leave(cur, workflow, self.replica_id)

    # -- stream leases, heartbeats -----------------------------------------------------
    def acquire_lease(self, workflow: str, trigger: str, holder: str, ttl: timedelta) -> int | None:
        with self._transaction() as cur:
            return leases.acquire(cur, workflow, trigger, holder, ttl)

    def renew_lease(
        self, workflow: str, trigger: str, holder: str, term: int, ttl: timedelta
    ) -> bool:
        with self._transaction() as cur:
            return leases.renew(cur, workflow, trigger, holder, term, ttl)

    def release_lease(self, workflow: str, trigger: str, holder: str, term: int) -> None:
        with self._transaction() as cur:
            leases.release(cur, workflow, trigger, holder, term)

    def lease(self, workflow: str, trigger: str) -> Lease | None:
        with self._transaction() as cur:
            return leases.read(cur, workflow, trigger)

    def heartbeat(self, workflow: str, replica_id: str) -> None:
        with self._transaction() as cur:
            leases.heartbeat(cur, workflow, replica_id)

    def replicas(self, workflow: str) -> list[Replica]:
        with self._transaction() as cur:
            return leases.replicas(cur, workflow)


class _count_into:
    """Counts a claim as `won` or `lost` once it committed (a failed claim is not counted)."""

    def __init__(self, counter: Counter[str]) -> None:
        self.counter = counter
        self.outcome: dict[str, bool] = {"won": False}

    def __enter__(self) -> dict[str, bool]:
        return self.outcome

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.counter["won" if self.outcome["won"] else "lost"] += 1
