"""This process as one replica of a workflow on a shared store (PostgreSQL): its heartbeat,
and the runs of replicas that died, which it finds and hands to its triggers to catch up.

The heartbeat is the database's `now()` written every third of DATAFLOW_REPLICA_TTL; a replica
silent for the TTL is dead. While beating, a replica also looks for runs dead replicas left
`running`: the store marks each one interrupted for exactly one live replica, which catches its
fire up by the trigger's policy. A store of its own (SQLite) has no replicas: nothing here runs.
A lost database is said once, and its return once; meanwhile claims fail, so this replica runs
no fire (another one does) until it is back. Back, it sweeps only once it has heard the database
for a TTL: the other replicas went silent in the same outage, and are not dead for it (taking
their runs for dead ones would run a fire twice).
"""

from __future__ import annotations

import math

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dataflow._core.clock import iso
from dataflow._core.errors import StateStoreError
from dataflow._core.logs import get_logger
from dataflow._core.settings import Settings
from dataflow.state import RunRecord, Store
from dataflow.state._leases import Leases

log = get_logger("dataflow.runtime")


class Presence:
    """Heartbeat and dead-replica sweep of one runtime (does nothing on a store of its own)."""

    def __init__(self, store: Store, workflow: str, settings: Settings) -> None:
        self.shared: Leases | None = store if isinstance(store, Leases) else None
        self.workflow = workflow
        self.replica_id = settings.replica_id
        self.interval = settings.replica_ttl / 3
        self.reachable = True
        self.sweep_from = 0.0  # event-loop time: no sweep before (a TTL after an outage)
        self.ttl = settings.replica_ttl
        self.recovered: MemoryObjectReceiveStream[list[RunRecord]] | None = None
        self._send: MemoryObjectSendStream[list[RunRecord]] | None = None
        if self.shared is not None:
            self._send, self.recovered = anyio.create_memory_object_stream[list[RunRecord]](
                math.inf
            )

    async def join(self) -> None:
        """The first heartbeat, before anything else is written: from now on this replica is
        live, so no other replica takes its runs for a dead one's."""
        if self.shared is not None:
            await self.shared.call(self.shared.heartbeat, self.workflow, self.replica_id)
            log.info("replica joined", replica=self.replica_id, workflow=self.workflow)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self.shared is None or self._send is None:
            return
        async with self._send:
            while True:
                await anyio.sleep(self.interval)  # real time: liveness is not the wall clock
                await self._beat(self.shared, self._send)

    async def _beat(self, store: Leases, send: MemoryObjectSendStream[list[RunRecord]]) -> None:
        try:
            await store.call(store.heartbeat, self.workflow, self.replica_id)
            found = await self._sweep(store)
        except StateStoreError as exc:
            if self.reachable:
                self.reachable = False
                log.error("state store unreachable: claiming no fires", error=str(exc))
            return
        if not self.reachable:
            self.reachable = True
            log.warning("state store reachable again: claiming fires", replica=self.replica_id)
        if found:
            report(found, "run of a dead replica interrupted: catching it up")
            send.send_nowait(found)

    async def _sweep(self, store: Leases) -> list[RunRecord]:
        """Runs of dead replicas, marked interrupted for this one to catch up; none until this
        replica has heard the database for a TTL since it lost it."""
        if not self.reachable:  # the first heartbeat since the outage went in
            self.sweep_from = anyio.current_time() + self.ttl
        if anyio.current_time() < self.sweep_from:
            return []
        return await store.call(store.recover_dead, self.workflow)

    async def leave(self) -> None:
        """A clean stop: the heartbeat goes at once (a failure leaves it to expire)."""
        if self.shared is None:
            return
        try:
            await self.shared.call(self.shared.leave, self.workflow)
        except StateStoreError as exc:
            log.warning("replica heartbeat not removed: it expires", error=str(exc))


async def interrupted_runs(store: Store, workflow: str) -> dict[str, list[RunRecord]]:
    """At start: runs a previous process (or a dead replica) left unfinished, by trigger; their
    triggers decide what to do."""
    found = await store.call(store.mark_interrupted, workflow)
    report(found, "run interrupted by a previous stop")
    by_trigger: dict[str, list[RunRecord]] = {}
    for record in found:
        by_trigger.setdefault(record.trigger, []).append(record)
    return by_trigger


def report(found: list[RunRecord], message: str) -> None:
    for record in found:
        log.warning(
            message,
            trigger=record.trigger,
            run_id=record.run_id,
            scheduled_at=iso(record.scheduled_at),
            replica=record.replica,
        )
