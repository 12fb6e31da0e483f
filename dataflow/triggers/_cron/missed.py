"""Fires that came due while the trigger could not run them on time: after downtime, while the
loop was late, or across a wall-clock step. Bounded whatever the gap: fire times are found
backward from now with `previous_before`, never by walking millions of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from dataflow._core.clock import iso
from dataflow.state import FireEntry
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


async def record_skipped(
    ctx: TriggerContext,
    request: Callable[[datetime], RunRequest],
    fires: list[datetime],
    why: str,
    entries: Sequence[FireEntry] = (),
) -> None:
    """A skipped run record per fire when they are few, else ONE summary record for them all
    (a long gap must not write a million rows); the fire ledger's `entries` for them go with
    the first record (the store keeps the newest `MAX_ENTRIES`)."""
    fires = sorted(fires)
    if len(fires) <= _RECORDED_ONE_BY_ONE:
        for n, fire in enumerate(fires):
            await ctx.runner.record_skipped(request(fire), why, () if n else entries)
        return
    count = f"at least {len(fires)}" if len(fires) >= COUNT_LIMIT else str(len(fires))
    summary = f"{count} fires from {iso(fires[0])} to {iso(fires[-1])}: {why}"
    await ctx.runner.record_skipped(request(fires[-1]), summary, entries)
