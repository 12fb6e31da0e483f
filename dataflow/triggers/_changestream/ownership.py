"""Which replica reads a change stream: the holder of its lease, on a store replicas share.

One replica owns each change-stream trigger through its lease row (`Leases`: holder, term,
expiry by the database's `now()`). The others are on standby: they try to take the lease every
`STANDBY_POLL` seconds and get it once it expired or was released. The owner renews it every
third of the TTL and stops trusting it two thirds of a TTL after the last renewal it *sent*
(the database's expiry is at least a full TTL after that): the third left over is for the
stream to stop (one `max_await_time`) before another replica may take over. Every position the
owner saves is fenced by its term, so an owner that was frozen past its lease (SIGSTOP, a long
GC, a VM pause) has its late write refused (`LeaseLost`): it stops reading and goes back to
standby, and the saved position never moves back. A clean stop releases the lease at once.

A store error (the database went away) is a lost lease too: the stream stops, and the trigger
tries to take the lease again until the database answers; said once each way. A store of its
own (SQLite, held by one process through its file lock) has no leases: `Ownership.of` is None
and the stream is read as it always was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol, TypeVar

import anyio
from anyio.abc import TaskStatus

from dataflow._core.clock import Clock
from dataflow._core.errors import LeaseLost, StateStoreError, one_line
from dataflow._core.logs import get_logger
from dataflow.state._leases import Leases
from dataflow.triggers._changestream.bridge import set_when
from dataflow.triggers.base import StreamStats, TriggerContext

log = get_logger("dataflow.trigger")
T = TypeVar("T")

STANDBY_POLL = 1.0  # seconds between a standby's tries: failover after a clean stop
OPEN_RETRY_MAX = 30.0  # seconds: the longest wait after a takeover whose stream did not open
RELEASE_WAIT = 2.0  # seconds a release may take on the way out
TRUST = 2 / 3  # of the TTL after a renewal was sent: the owner reads the stream until then


class ReadStream(Protocol):
    """Reads the stream until `leaving` is set, its saves fenced by `term`; says it is ready
    (the stream open) through `task_status`."""

    def __call__(
        self, leaving: anyio.Event, term: int, *, task_status: TaskStatus[None]
    ) -> Awaitable[None]: ...


class Ownership:
    """The lease of one change-stream trigger, as seen by this replica."""

    def __init__(
        self,
        store: Leases,
        workflow: str,
        trigger: str,
        *,
        holder: str,
        ttl: float,
        clock: Clock,
        stats: StreamStats,
    ) -> None:
        self.store, self.workflow, self.trigger = store, workflow, trigger
        self.holder, self.clock, self.stats = holder, clock, stats
        stats.leased = False  # from now on the stream is read only while leased
        self.ttl, self.renew_every = timedelta(seconds=ttl), ttl / 3
        self.trust = ttl * TRUST
        self.term: int | None = None  # held now
        self.trusted_until = 0.0  # monotonic: stop reading by then unless renewed
        self.reachable = True
        self.lost_said: int | None = None  # the term whose loss was logged (once)

    @classmethod
    def of(cls, ctx: TriggerContext, trigger: str, stats: StreamStats) -> Ownership | None:
        """The trigger's lease on a store replicas share; None on a store of its own."""
        if not isinstance(ctx.state, Leases):
            return None
        return cls(
            ctx.state,
            ctx.workflow,
            trigger,
            holder=ctx.replica_id,
            ttl=ctx.replica_ttl,
            clock=ctx.clock,
            stats=stats,
        )

    # -- the trigger's life: own, or stand by, until stopping ---------------------------------
    async def serve(
        self,
        read: ReadStream,
        stopping: anyio.Event,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """The first owner opens the stream before it is ready (a bad source fails the start);
        a standby is ready at once. Then: take the lease, read, leave; until stopping."""
        ready = _Ready(task_status)
        if await self.try_take():
            await self.own(read, stopping, task_status=ready)
        else:
            await self._say_standby()
        ready.started()  # once only: the stream may have said so already
        delay = 0.0
        while await self.take(stopping):
            delay = await self._own_taken(read, stopping, delay)
            await _nap(self.clock, delay, stopping)

    async def _own_taken(self, read: ReadStream, stopping: anyio.Event, delay: float) -> float:
        """Own a lease taken over; the wait before the next try. A stream that does not open
        (MongoDB unreachable as the owner died with it) must not end this replica, and then
        the next standby, and the next: the lease is released, said once per try, tried again
        after a growing wait. An error once the stream was open is the trigger's, as ever."""
        opened = _Ready(anyio.TASK_STATUS_IGNORED)
        try:
            await self.own(read, stopping, task_status=opened)
        except Exception as exc:
            if opened.said:
                raise
            delay = min(max(delay * 2, STANDBY_POLL), OPEN_RETRY_MAX)
            log.error(
                "change stream not opened after taking its lease: released, trying again",
                error=one_line(_first(exc)),
                retry_in=delay,
            )
            return delay
        return 0.0

    async def take(self, stopping: anyio.Event) -> bool:
        """Wait until this replica holds the lease (True), or the runtime stops (False)."""
        while not stopping.is_set():
            if await self.try_take():
                return True
            await _nap(self.clock, STANDBY_POLL, stopping)
        return False

    async def try_take(self) -> bool:
        sent = self.clock.monotonic()
        try:
            term = await self._call(self.store.acquire_lease, self.holder, self.ttl)
        except StateStoreError:
            return False
        if term is None:
            return False
        self.term, self.trusted_until = term, sent + self.trust
        self.stats.leased = True
        log.info("change stream lease taken", term=term, replica=self.holder)
        return True

    async def own(
        self,
        read: ReadStream,
        stopping: anyio.Event,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read the stream while the lease holds: renewed meanwhile; `leaving` is set on a stop,
        or once the lease is lost or no longer trusted. A clean stop releases it."""
        assert self.term is not None
        term, leaving = self.term, anyio.Event()
        failed: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(set_when, stopping, leaving.set)
                tg.start_soon(self._keep, term, leaving)
                tg.start_soon(self._distrust, term, leaving)
                try:
                    await read(leaving, term, task_status=task_status)
                except* (LeaseLost, StateStoreError) as group:
                    failed = group.exceptions[0]
                tg.cancel_scope.cancel()
            if failed is not None:
                self._left(term, failed)
        finally:
            self.term, self.stats.leased = None, False
            with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_WAIT):
                await self._release(term)

    # -- while owning -------------------------------------------------------------------------
    async def _keep(self, term: int, leaving: anyio.Event) -> None:
        """Renew every third of the TTL; set `leaving` once the lease is lost or untrusted."""
        while True:
            left = self.trusted_until - self.clock.monotonic()
            await self.clock.sleep(min(self.renew_every, max(left, 0.0)))
            if self.clock.monotonic() >= self.trusted_until:
                self._say_lost(term, "not renewed in time: another replica may take it")
                break
            if await self._renewed(term) is False:
                self._say_lost(term, "another replica took it")
                break
        leaving.set()

    async def _distrust(self, term: int, leaving: anyio.Event) -> None:
        """Leave once the lease is no longer trusted, even while a renewal hangs (a black-holed
        connection, a frozen server): `_keep` looks only once its call returns."""
        while (left := self.trusted_until - self.clock.monotonic()) > 0:
            await self.clock.sleep(left)
        self._say_lost(term, "not renewed in time: another replica may take it")
        leaving.set()

    async def _renewed(self, term: int) -> bool | None:
        """True: renewed (trusted for another `trust`); False: lost; None: no answer."""
        sent = self.clock.monotonic()
        try:
            kept = await self._call(self.store.renew_lease, self.holder, term, self.ttl)
        except StateStoreError:
            return None
        if kept:
            self.trusted_until = sent + self.trust
        return kept

    async def _release(self, term: int) -> None:
        """Give the lease up, so a standby need not wait for it to expire. Not held any more
        (another replica took it) or no database: nothing to do, it expires."""
        try:
            await self._call(self.store.release_lease, self.holder, term)
        except StateStoreError:
            return

    # -- what is said, once -------------------------------------------------------------------
    def _left(self, term: int, error: BaseException) -> None:
        if isinstance(error, LeaseLost):
            self._say_lost(term, "another replica took it: its position write was refused")
        else:
            self._unreachable(error)

    def _say_lost(self, term: int, why: str) -> None:
        if self.lost_said == term or not self.reachable:
            return
        self.lost_said = term
        log.warning("change stream lease lost: stopped reading", term=term, why=why)

    async def _say_standby(self) -> None:
        try:
            lease = await self.store.call(self.store.lease, self.workflow, self.trigger)
        except StateStoreError:
            return  # said as unreachable already
        owner = None if lease is None else lease.holder
        log.info("change stream on standby: another replica owns it", owner=owner)

    async def _call(self, method: Callable[..., T], *args: object) -> T:
        """A lease call of this trigger; a store error is said once, and its end once."""
        try:
            result = await self.store.call(method, self.workflow, self.trigger, *args)
        except StateStoreError as exc:
            self._unreachable(exc)
            raise
        if not self.reachable:
            self.reachable = True
            log.warning("state store reachable again: taking the change stream lease")
        return result

    def _unreachable(self, error: BaseException) -> None:
        if self.reachable:
            self.reachable = False
            log.error(
                "state store unreachable: left the change stream",
                error=one_line(error),
                replica=self.holder,
            )


class _Ready:
    """A task status said once, whoever says it first."""

    def __init__(self, status: TaskStatus[None]) -> None:
        self.status, self.said = status, False

    def started(self, value: None = None) -> None:
        if not self.said:
            self.said = True
            self.status.started()


def _first(error: BaseException) -> BaseException:
    """The first error in a (nested) exception group: the one to name."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


async def _nap(clock: Clock, seconds: float, stopping: anyio.Event) -> None:
    if not seconds:
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(set_when, stopping, tg.cancel_scope.cancel)
        await clock.sleep(seconds)
        tg.cancel_scope.cancel()
