"""Edges of the schedule: several fires inside one DST gap, and the ends of datetime's range."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from dataflow.triggers._cron.schedule import CronSchedule


def test_several_matches_in_one_forward_gap_run_once() -> None:
    """Berlin skips 02:00-02:59 on 2026-03-29: `0,15,30,45 2 * * *` runs once, at 03:00 CEST,
    not four times as cronie would (it runs a fixed-time job for each skipped minute that
    matches); the next day all four run again."""
    schedule = CronSchedule("0,15,30,45 2 * * *", "Europe/Berlin")
    start = datetime(2026, 3, 28, 23, tzinfo=UTC)  # 2026-03-29 00:00 CET
    fires = [fire.isoformat() for fire in itertools.islice(schedule.iter_after(start), 5)]
    assert fires == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
        "2026-03-30T02:15:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-30T02:45:00+02:00",
    ]
    after_catch_up = schedule.next_after(datetime(2026, 3, 29, 1, tzinfo=UTC))  # 03:00 CEST
    assert after_catch_up.isoformat() == "2026-03-30T02:00:00+02:00"
    back = schedule.previous_before(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    assert back == datetime(2026, 3, 29, 1, tzinfo=UTC)
