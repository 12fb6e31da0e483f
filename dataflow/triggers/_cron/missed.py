"""Fires that came due while the trigger could not run them on time: after downtime, while the
loop was late, or across a wall-clock step. Bounded whatever the gap: fire times are found
backward from now with `previous_before`, never by walking millions of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dataflow._core.clock import iso
from dataflow.state import FireEntry, RunRecord
from dataflow.triggers._cron import ledger
from dataflow.triggers._cron.schedule import CronSchedule
from dataflow.triggers.base import RunRequest, TriggerContext

MAX_CATCHUP_RUNS = 1000  # bound "all" so a year of downtime cannot start a flood
COUNT_LIMIT = 100_000  # fires counted one by one for a summary record; beyond, "at least"
_RECORDED_ONE_BY_ONE = 10  # up to this many skipped fires get a record each; more, one summary
_TICK = timedelta(microseconds=1)


def latest_due(schedule: CronSchedule, now: datetime) -> datetime:
    """The last fire time at or before `now`, in UTC."""
    return schedule.previous_before(now + _TICK).astimezone(UTC)


def fires_back(
    schedule: CronSchedule, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Fire times in (`after`, `until`], newest first, at most `limit` of them (UTC)."""
    found: list[datetime] = []
    fire = until + _TICK
    while len(found) < limit:
        fire = schedule.previous_before(fire).astimezone(UTC)
        if fire <= after:
            break
        found.append(fire)
    return found


def in_grace(grace: float | None, now: datetime) -> Callable[[datetime], bool]:
    """Whether a fire time is recent enough to run now under `misfire_grace`."""
    return lambda fire: grace is None or (now - fire).total_seconds() <= grace


@dataclass(frozen=True)
class LateBatch:
    """What a late wake does with the fires it found due (oldest first): `run` runs (oldest
    first), the others are accounted for by `notes` (their ledger rows) and `skipped` (their
    skipped records), all written by ONE store call before any of the batch runs: the claim of
    the first fire that runs, or, when none does, of the newest, `claim_at` (the last fire
    moves past them in the same transaction, so a stop cannot lose them)."""

    run: list[datetime]
    claim_at: datetime
    notes: list[FireEntry]
    skipped: list[RunRecord]


def late_batch(
    ctx: TriggerContext,
    request: Callable[[datetime], RunRequest],
    due: list[datetime],
    now: datetime,
    grace: float | None,
    catchup: str,
    why: str,
) -> LateBatch:
    """`all` runs each fire within the grace, otherwise the newest within it runs; every other
    one gets a skipped record saying why (a summary record when they are many)."""
    recent = [fire for fire in due if in_grace(grace, now)(fire)]
    run = recent if catchup == "all" else recent[-1:]
    left = [fire for fire in due if fire not in run]
    notes = ledger.late(left, recent, due[-1], grace, why, catchup)
    skips = skipped_requests(request, left, f"{why}; not run by catchup/grace")
    records = [ctx.runner.skipped_run(skip, reason) for skip, reason in skips]
    return LateBatch(run, run[0] if run else due[-1], notes, records)


def skipped_requests(
    request: Callable[[datetime], RunRequest], fires: list[datetime], why: str
) -> list[tuple[RunRequest, str]]:
    """A skipped run record per fire when they are few, else ONE summary record for them all
    on the newest (a long gap must not write a million rows): each its request and reason."""
    fires = sorted(fires)
    if len(fires) <= _RECORDED_ONE_BY_ONE:
        return [(request(fire), why) for fire in fires]
    count = f"at least {len(fires)}" if len(fires) >= COUNT_LIMIT else str(len(fires))
    return [(request(fires[-1]), f"{count} fires from {iso(fires[0])} to {iso(fires[-1])}: {why}")]


async def record_skipped(
    ctx: TriggerContext,
    request: Callable[[datetime], RunRequest],
    fires: list[datetime],
    why: str,
    entries: Sequence[FireEntry] = (),
) -> None:
    """The skipped records of `skipped_requests`, one store call each; the fire ledger's
    `entries` for them go with the first record (the store keeps the newest `MAX_ENTRIES`)."""
    for n, (skip, reason) in enumerate(skipped_requests(request, fires, why)):
        await ctx.runner.record_skipped(skip, reason, () if n else entries)
