"""A late wake's batch (overload: fires due faster than they run) is accounted for before any of
it runs: the claim of the fire that runs writes the others' ledger rows and skipped records in
the same store call, so a stop landing once the claim is made cannot lose them. Under the fake
clock, on SQLite and PostgreSQL, asyncio and trio."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio
import pytest

from dataflow import Workflow, cronjob, current_run
from dataflow._core.clock import iso
from dataflow.state import FireOutcome, SqliteStore, Store
from dataflow.testing import FakeClock
from tests._runtime import START, captured_logs, until
from tests.state.conftest import IMPLEMENTATIONS
from tests.triggers.cron.test_fire_ledger import ledger, running, to

pytestmark = pytest.mark.anyio
P = ParamSpec("P")
T = TypeVar("T")
MINUTE = timedelta(minutes=1)
# The loop wakes at 09:03:30 (time passed: no clock step) with 09:01..09:03 due; the grace of
# 100 s keeps 09:02 (coalesced into 09:03, which runs) and not 09:01 (missed).
WAKE = START + timedelta(minutes=3, seconds=30)
NEWEST = START + 3 * MINUTE
LATE = [START + MINUTE, START + 2 * MINUTE]


@pytest.fixture(params=list(IMPLEMENTATIONS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with IMPLEMENTATIONS[request.param](tmp_path) as opened:
        yield opened


def late_flow(seen: dict[datetime, Any], store: Store) -> type[Workflow]:
    """Trigger "job" of "w", every minute; each run notes the ledger and the skipped records
    as they stand when it starts (a sync handler: read from its worker thread)."""

    class W(Workflow):
        workflow_name = "w"

        @cronjob("* * * * *", name="job", misfire_grace=100)
        def job(self) -> None:
            run = current_run()
            assert run.scheduled_at is not None
            skipped = [r for r in store.runs("w", "job") if r.status == "skipped"]
            seen[run.scheduled_at] = (run.run_id, ledger(store), skipped)

    return W


def accounted(store: Store) -> tuple[dict[datetime, str], list[tuple[datetime | None, str]]]:
    """The late fires' ledger outcomes, and the skipped records (fire, reason), oldest first."""
    rows = {at: entry.outcome.value for at, entry in ledger(store).items() if at in LATE}
    records = [r for r in store.runs("w", "job") if r.status == "skipped"]
    return rows, sorted((r.scheduled_at, r.error or "") for r in records)


REASON = "the trigger was late; not run by catchup/grace"
EXPECTED = (
    {LATE[0]: "missed", LATE[1]: "coalesced"},
    [(LATE[0], REASON), (LATE[1], REASON)],
)


async def test_a_late_batch_is_in_the_ledger_and_history_before_its_run_starts(
    store: Store,
) -> None:
    """When the 09:03 run starts, 09:01 (missed) and 09:02 (coalesced into 09:03) already have
    their ledger rows and skipped records; 09:03's row is its run's."""
    seen: dict[datetime, Any] = {}
    clock = FakeClock(START)
    with captured_logs() as logs:
        async with running(late_flow(seen, store)(), store, clock):
            await to(clock, WAKE)
            await until(lambda: NEWEST in seen)
    [said] = [e for e in logs if e["event"] == "run skipped"]  # one line for the batch
    assert (said["skipped"], said["oldest"], said["reason"]) == (2, iso(LATE[0]), REASON)
    run_id, rows, skipped = seen[NEWEST]
    assert {at: rows[at].outcome for at in LATE} == EXPECTED[0]
    assert rows[LATE[1]].related_at == NEWEST
    assert (rows[NEWEST].outcome, rows[NEWEST].run_id) == (FireOutcome.RAN, run_id)
    assert sorted((r.scheduled_at, r.error) for r in skipped) == EXPECTED[1]
    assert sorted(seen) == [NEWEST]  # the late fires did not run
    assert accounted(store) == EXPECTED  # and nothing was written twice


class HeldClaim(SqliteStore):
    """Holds the claim of `NEWEST` in its worker thread until released: a stop lands while
    the late batch's store call is under way."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered, self.release = threading.Event(), threading.Event()

    def claim_fire(
        self,
        workflow: str,
        trigger: str,
        fire_at: datetime,
        ledger: Any = (),
        **late: Any,
    ) -> bool:
        if fire_at == NEWEST:
            self.entered.set()
            self.release.wait(10)
        return super().claim_fire(workflow, trigger, fire_at, ledger, **late)


async def test_a_stop_during_a_late_batch_claim_loses_none_of_the_batch(
    tmp_path: Path,
) -> None:
    """The stop comes while 09:03's claim is being written: once the runtime has stopped,
    09:01 and 09:02 have their ledger rows and skipped records all the same."""
    store = HeldClaim(tmp_path / "state.db")
    try:
        clock = FakeClock(START)
        async with running(late_flow({}, store)(), store, clock) as runtime:
            await to(clock, WAKE)
            await until(store.entered.is_set)
            runtime.stop()
            await anyio.wait_all_tasks_blocked()  # the stop has cancelled the scheduler
            store.release.set()
        assert accounted(store) == EXPECTED
        rows = ledger(store)
        assert rows[NEWEST].outcome in (FireOutcome.CLAIMED, FireOutcome.RAN)
        assert store.last_fire("w", "job") == NEWEST
    finally:
        store.release.set()
        store.close()


class HeldCall(SqliteStore):
    """Once armed, holds the next claim's store call on the loop, as if it waited for a worker
    thread (under overload every trigger's claim waits so when the stop comes)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.armed, self.waiting, self.release = False, anyio.Event(), anyio.Event()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self.armed and "claim" in getattr(fn, "__qualname__", ""):
            self.armed = False
            self.waiting.set()
            await self.release.wait()
        return await super().call(fn, *args, **kwargs)


async def test_a_late_batch_the_stop_finds_unclaimed_is_caught_up_at_the_restart(
    tmp_path: Path,
) -> None:
    """09:01 runs; the loop wakes late at 09:04:30 and the stop comes while 09:04's claim waits
    for a thread: no claim is written once stopping (the stop waits for none), so the last
    fire stays 09:01 and nothing of 09:02..09:04 is half-written. The restart catches them up
    as after downtime: 09:02 missed, 09:03 coalesced into 09:04, which runs."""
    fires = [START + n * MINUTE for n in range(1, 5)]
    seen: dict[datetime, Any] = {}
    store = HeldCall(tmp_path / "state.db")
    try:
        clock = FakeClock(START)
        async with running(late_flow(seen, store)(), store, clock) as runtime:
            await to(clock, fires[0])
            await until(lambda: fires[0] in seen)
            store.armed = True
            await to(clock, fires[-1] + timedelta(seconds=30))
            with anyio.fail_after(10):
                await store.waiting.wait()
            runtime.stop()
            store.release.set()
        assert store.last_fire("w", "job") == fires[0] and list(seen) == [fires[0]]
        assert sorted(ledger(store)) == [fires[0]] and not accounted(store)[1]
    finally:
        store.close()
    restarted = SqliteStore(tmp_path / "state.db")
    try:
        async with running(late_flow(seen, restarted)(), restarted, FakeClock(clock.now())):
            await until(lambda: fires[-1] in seen)
        outcomes = {at: entry.outcome.value for at, entry in ledger(restarted).items()}
    finally:
        restarted.close()
    assert outcomes == {
        fires[0]: "ran",
        fires[1]: "missed",
        fires[2]: "coalesced",
        fires[3]: "caught_up",
    }
