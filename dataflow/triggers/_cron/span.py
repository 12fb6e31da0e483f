"""The fire times of a span of the past: what a backfill (`trigger --from/--to`) runs again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from dataflow.triggers._cron.schedule import CronSchedule

_TICK: Final = timedelta(microseconds=1)


def fires_between(
    schedule: CronSchedule, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """Fire times in [`start`, `end`), oldest first, at most `limit` of them: aware, in the
    schedule's zone (`fold=1` on a repeated hour's second pass), found by the engine scheduled
    fires use, so DST gaps and folds give exactly the fires the schedule had. Bounds and
    fires are compared in UTC: same-zone datetimes compare by wall time, ignoring `fold`."""
    found: list[datetime] = []
    until = end.astimezone(UTC)
    for fire in schedule.iter_after(start.astimezone(UTC) - _TICK):
        if len(found) == limit or fire.astimezone(UTC) >= until:
            break
        found.append(fire)
    return found
