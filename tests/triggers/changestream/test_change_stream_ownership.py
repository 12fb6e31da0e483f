"""The ownership loop of a change stream on a store replicas share, on the fake clock: one owner
renews, standbys wait; a released lease is taken within a poll; an owner that cannot renew stops
reading before its lease expires; a refused renewal or position save sends the owner back to
standby with one log line; a lost database is said once each way.

The store here is an in-memory stand-in whose "database clock" is the fake clock's monotonic
time: this tests the loop's logic; the PostgreSQL statements are tested in tests/state, the
whole path with real processes in tests/reliability/test_replicas_streams.py.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, TypeVar, cast

import anyio
import pytest
from anyio.abc import TaskStatus
from structlog.testing import capture_logs

from dataflow._core.errors import DataflowError, LeaseLost, StateStoreError
from dataflow.state import Leases
from dataflow.testing import FakeClock
from dataflow.triggers._changestream.ownership import OPEN_RETRY_MAX, STANDBY_POLL, Ownership
from dataflow.triggers.base import StreamStats

pytestmark = pytest.mark.anyio
T = TypeVar("T")
T0 = datetime(2026, 3, 1, tzinfo=UTC)
TTL = 3.0
W, TRIGGER = "feed", "orders"


class Database:
    """Lease rows as the PostgreSQL statements keep them, timed by the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.holder, self.term, self.expires = "", 0, 0.0
        self.renewals: dict[str, int] = {}

    def now(self) -> float:
        return self.clock.monotonic()

    def acquire(self, holder: str, ttl: timedelta) -> int | None:
        if self.term and self.expires > self.now() and self.holder != holder:
            return None
        self.holder, self.term = holder, self.term + 1
        self.expires = self.now() + ttl.total_seconds()
        return self.term

    def renew(self, holder: str, term: int, ttl: timedelta) -> bool:
        if (self.holder, self.term) != (holder, term):
            return False
        self.renewals[holder] = self.renewals.get(holder, 0) + 1
        self.expires = self.now() + ttl.total_seconds()
        return True

    def release(self, holder: str, term: int) -> None:
        if (self.holder, self.term) == (holder, term):
            self.expires = self.now()


class Replica:
    """One replica's connection to the database; `down`: every call fails."""

    def __init__(self, db: Database) -> None:
        self.db, self.down, self.hang = db, False, False

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        await anyio.lowlevel.checkpoint()
        if self.hang:  # a black-holed connection: the call never returns
            await anyio.sleep_forever()
        if self.down:
            raise StateStoreError("state store postgresql://db: connection refused")
        return fn(*args, **kwargs)

    def acquire_lease(self, workflow: str, trigger: str, holder: str, ttl: timedelta) -> int | None:
        return self.db.acquire(holder, ttl)

    def renew_lease(
        self, workflow: str, trigger: str, holder: str, term: int, ttl: timedelta
    ) -> bool:
        return self.db.renew(holder, term, ttl)

    def release_lease(self, workflow: str, trigger: str, holder: str, term: int) -> None:
        self.db.release(holder, term)

    def lease(self, workflow: str, trigger: str) -> None:
        return None


class Reader:
    """A stream reader that records each term it read under, and when it left."""

    def __init__(self, clock: FakeClock, name: str) -> None:
        self.clock, self.name = clock, name
        self.reads: list[tuple[int, float]] = []  # term, monotonic time it began
        self.left: list[float] = []
        self.refuse_save = False  # the next read ends with a refused position save
        self.unopenable = 0  # reads that fail before the stream is open (MongoDB unreachable)

    async def __call__(
        self, leaving: anyio.Event, term: int, *, task_status: TaskStatus[None]
    ) -> None:
        self.reads.append((term, self.clock.monotonic()))
        if self.unopenable:
            self.unopenable -= 1
            raise DataflowError("MongoDB at mongodb://db:27017 not reached: connection refused")
        task_status.started()
        if self.refuse_save:
            self.refuse_save = False
            raise LeaseLost(f"position not saved: term {term} is over")
        await leaving.wait()
        self.left.append(self.clock.monotonic())


def owner(replica: Replica, name: str, clock: FakeClock) -> Ownership:
    store = cast(Leases, replica)
    return Ownership(store, W, TRIGGER, holder=name, ttl=TTL, clock=clock, stats=StreamStats())


async def until(condition: Callable[[], bool], clock: FakeClock, step: float = 0.01) -> None:
    with anyio.fail_after(3):
        while not condition():
            await clock.sleep(step)


def events(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == event]


async def test_the_owner_renews_every_third_of_the_ttl_while_a_standby_waits() -> None:
    """a takes the lease first and reads under term 1 for nearly 10 TTLs, renewing every TTL/3; b,
    started after it, never reads; both say what they are."""
    clock = FakeClock(T0)
    db = Database(clock)
    read_a, read_b = Reader(clock, "a"), Reader(clock, "b")
    a, b = owner(Replica(db), "a", clock), owner(Replica(db), "b", clock)
    stopping = anyio.Event()
    with capture_logs() as logs:
        async with clock.autojump(), anyio.create_task_group() as tg:
            await tg.start(a.serve, read_a, stopping)
            await tg.start(b.serve, read_b, stopping)
            await clock.sleep(10 * TTL - 0.5)
            assert (a.stats.leased, b.stats.leased) == (True, False)
            stopping.set()
    assert read_a.reads == [(1, 0.0)] and read_b.reads == []
    assert db.renewals == {"a": 29}  # at 1, 2, ... 29 s
    assert db.expires == 29.5  # released at the stop: b need not wait for it
    assert len(events(logs, "change stream lease taken")) == 1
    assert len(events(logs, "change stream on standby: another replica owns it")) == 1


async def test_a_released_lease_is_taken_by_a_standby_within_a_poll() -> None:
    """a stops cleanly (its lease released at once); b, polling every second, reads within a
    poll of the release, under term 2, long before the lease would have expired."""
    clock = FakeClock(T0)
    db = Database(clock)
    read_a, read_b = Reader(clock, "a"), Reader(clock, "b")
    a, b = owner(Replica(db), "a", clock), owner(Replica(db), "b", clock)
    stop_a, stop_b = anyio.Event(), anyio.Event()
    async with clock.autojump(), anyio.create_task_group() as tg:
        await tg.start(a.serve, read_a, stop_a)
        await tg.start(b.serve, read_b, stop_b)
        await clock.sleep(4.5)
        stop_a.set()
        await until(lambda: bool(read_b.reads), clock)
        stop_b.set()
    assert read_a.left == [pytest.approx(4.5, abs=1e-3)]
    [(term, began)] = read_b.reads
    assert term == 2 and 4.5 < began <= 4.5 + STANDBY_POLL


async def test_an_owner_that_cannot_renew_stops_reading_before_its_lease_expires() -> None:
    """a's database goes away right after its renewal at 1 s (lease valid until 4 s by the
    database's clock): a stops reading at 3 s (two thirds of the TTL after the renewal it
    sent), before the expiry; b takes over only once the lease expired. The database comes
    back: a says so once, and stays on standby (b owns the stream now)."""
    clock = FakeClock(T0)
    db = Database(clock)
    read_a, read_b = Reader(clock, "a"), Reader(clock, "b")
    replica_a = Replica(db)
    a, b = owner(replica_a, "a", clock), owner(Replica(db), "b", clock)
    stopping = anyio.Event()
    with capture_logs() as logs:
        async with clock.autojump(), anyio.create_task_group() as tg:
            await tg.start(a.serve, read_a, stopping)
            await tg.start(b.serve, read_b, stopping)
            await clock.sleep(1.5)
            replica_a.down = True
            await until(lambda: bool(read_b.reads), clock)
            await clock.sleep(2 * TTL)
            replica_a.down = False
            await clock.sleep(2 * TTL)
            stopping.set()
    assert read_a.left == [
        pytest.approx(3.0, abs=1e-3)
    ]  # trusted until 1 + 2, the lease lasting until 1 + 3
    [(term, began)] = read_b.reads
    assert term == 2 and 4.0 <= began <= 4.0 + STANDBY_POLL
    assert read_a.reads == [(1, 0.0)]  # back, it found b's live lease: no second read
    assert len(events(logs, "state store unreachable: left the change stream")) == 1
    assert len(events(logs, "state store reachable again: taking the change stream lease")) == 1
    assert events(logs, "change stream lease lost: stopped reading") == []  # said as unreachable


async def test_a_renewal_refused_sends_the_owner_back_to_standby_with_one_line() -> None:
    """Another replica took the lease (the owner was frozen past its expiry): the owner's next
    renewal is refused, it stops reading at once, says so once, and stands by; when the other
    replica's lease expires unrenewed, it takes the stream again under a greater term."""
    clock = FakeClock(T0)
    db = Database(clock)
    read_a = Reader(clock, "a")
    a = owner(Replica(db), "a", clock)
    stopping = anyio.Event()
    with capture_logs() as logs:
        async with clock.autojump(), anyio.create_task_group() as tg:
            await tg.start(a.serve, read_a, stopping)
            await clock.sleep(1.5)
            db.holder, db.term, db.expires = "z", 2, clock.monotonic() + TTL  # z took it
            await until(lambda: len(read_a.reads) == 2, clock)
            stopping.set()
    assert read_a.left[0] == pytest.approx(2.0, abs=1e-3)  # the renewal due at 2 s was refused
    assert read_a.reads[1][0] == 3 and 4.5 <= read_a.reads[1][1] <= 4.5 + STANDBY_POLL
    [lost] = events(logs, "change stream lease lost: stopped reading")
    assert lost["term"] == 1 and lost["why"] == "another replica took it"


async def test_a_refused_position_save_ends_the_read_with_one_line() -> None:
    """The reader's fenced save is refused (LeaseLost): the owner leaves that term, says so
    once (not again when its renewal is refused too), and stands by while the other replica
    holds the lease."""
    clock = FakeClock(T0)
    db = Database(clock)
    read_a = Reader(clock, "a")
    read_a.refuse_save = True
    a = owner(Replica(db), "a", clock)
    stopping = anyio.Event()
    with capture_logs() as logs:
        async with clock.autojump(), anyio.create_task_group() as tg:
            db.holder, db.term, db.expires = "z", 0, 0.0
            await tg.start(a.serve, read_a, stopping)
            db.holder, db.term, db.expires = "z", 2, TTL  # z holds term 2 until 3 s
            await clock.sleep(2.0)
            assert a.stats.leased is False
            stopping.set()
    assert read_a.reads == [(1, 0.0)]
    [lost] = events(logs, "change stream lease lost: stopped reading")
    assert lost["term"] == 1 and "position write was refused" in lost["why"]


async def test_a_stream_that_does_not_open_after_a_takeover_releases_and_retries() -> None:
    """a stops; b takes over but its stream does not open (MongoDB went with a): b releases the
    lease, says so each try, waits 1, 2, 4 s before the next, and reads once it opens. Nothing
    raises out of b: a replica must not die, and the next standby after it, on a takeover."""
    clock = FakeClock(T0)
    db = Database(clock)
    read_a, read_b = Reader(clock, "a"), Reader(clock, "b")
    read_b.unopenable = 3
    a, b = owner(Replica(db), "a", clock), owner(Replica(db), "b", clock)
    stop_a, stop_b = anyio.Event(), anyio.Event()
    with capture_logs() as logs:
        async with clock.autojump(), anyio.create_task_group() as tg:
            await tg.start(a.serve, read_a, stop_a)
            await tg.start(b.serve, read_b, stop_b)
            stop_a.set()
            await until(lambda: bool(b.stats.leased) and len(read_b.reads) == 4, clock)
            stop_b.set()
    terms, began = zip(*read_b.reads, strict=True)
    assert terms == (2, 3, 4, 5)  # each try a new lease: released between them
    waits = [round(later - earlier, 1) for earlier, later in pairwise(began)]
    assert waits == [1.0, 2.0, 4.0] and max(waits) <= OPEN_RETRY_MAX
    failed = events(logs, "change stream not opened after taking its lease: released, trying again")
    assert [line["retry_in"] for line in failed] == [1.0, 2.0, 4.0]
    assert "connection refused" in failed[0]["error"]
    assert read_b.left  # it read, and left at the stop


async def test_an_owner_whose_renewal_hangs_stops_reading_at_its_trust_deadline() -> None:
    """The renewal due at 2 s never returns (a black-holed connection): the owner still stops
    reading at 3 s, two thirds of a TTL after the renewal it sent at 1 s, before the lease
    expires at 4 s; it looked at the deadline only after a renewal returned, so it read on."""
    clock = FakeClock(T0)
    db = Database(clock)
    read_a = Reader(clock, "a")
    replica_a = Replica(db)
    a = owner(replica_a, "a", clock)
    stopping = anyio.Event()
    with capture_logs() as logs:
        async with clock.autojump(), anyio.create_task_group() as tg:
            await tg.start(a.serve, read_a, stopping)
            await clock.sleep(1.5)
            replica_a.hang = True
            await until(lambda: bool(read_a.left), clock)
            stopping.set()
    assert read_a.left == [pytest.approx(3.0, abs=1e-3)]
    [lost] = events(logs, "change stream lease lost: stopped reading")
    assert lost["why"] == "not renewed in time: another replica may take it"
