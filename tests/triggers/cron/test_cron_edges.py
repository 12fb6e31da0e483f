"""Edges of the schedule: several fires inside one DST gap, and the ends of datetime's range."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- the ends of datetime's range ----------------------------------------------------------------

EDGE_ZONES = ("UTC", "Asia/Tokyo", "America/New_York")  # +09:00 and -05:00 at both ends (LMT)
EDGE = settings(max_examples=150, derandomize=True, database=None, deadline=None)
NO_FIRE = r"has no fire time (after|before) .* within datetime's range \(years 1-9999"


@pytest.mark.parametrize("zone", EDGE_ZONES)
@pytest.mark.parametrize("given_in", ["UTC", "schedule zone"])
def test_no_fire_past_the_end_of_datetime_is_a_value_error(zone: str, given_in: str) -> None:
    """Past the last (first) representable minute there is no fire: a ValueError saying so,
    never an OverflowError, however the instant's zone pushes it past the range in UTC."""
    schedule = CronSchedule("* * * * *", zone)
    tz = UTC if given_in == "UTC" else ZoneInfo(zone)
    with pytest.raises(ValueError, match=NO_FIRE):
        schedule.next_after(datetime(9999, 12, 31, 23, 59, tzinfo=tz))
    with pytest.raises(ValueError, match=NO_FIRE):
        schedule.previous_before(datetime(1, 1, 1, 0, 0, tzinfo=tz))


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", "9999-12-31T23:59:00+00:00"),
        ("Asia/Tokyo", "9999-12-31T23:59:00+09:00"),
        ("America/New_York", "9999-12-31T18:59:00-05:00"),  # 23:59 would be year 10000 in UTC
    ],
)
def test_the_last_representable_fire_is_found_and_iteration_ends_after_it(
    zone: str, expected: str
) -> None:
    """`iter_after` yields fires up to the last representable one and then simply ends."""
    schedule = CronSchedule("* * * * *", zone)
    start = datetime.fromisoformat(expected) - timedelta(minutes=3)
    fires = [fire.isoformat() for fire in schedule.iter_after(start)]
    assert len(fires) == 3 and fires[-1] == expected
    last_instant = datetime.max.replace(tzinfo=ZoneInfo(zone))  # past the range in UTC for NY
    assert schedule.previous_before(last_instant).isoformat() == expected


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", "0001-01-01T00:00:00+00:00"),
        ("Asia/Tokyo", "0001-01-01T09:19:00+09:18:59"),  # LMT: earlier walls are year 0 in UTC
        ("America/New_York", "0001-01-01T00:00:00-04:56:02"),
    ],
)
def test_the_first_representable_fire_is_found(zone: str, expected: str) -> None:
    """`next_after` an instant before year 1 in UTC finds the first fire; nothing precedes it."""
    schedule = CronSchedule("* * * * *", zone)
    first = schedule.next_after(datetime(1, 1, 1, tzinfo=ZoneInfo("Etc/GMT-14")))  # year 0 in UTC
    assert first.isoformat() == expected
    with pytest.raises(ValueError, match=NO_FIRE):
        schedule.previous_before(first)


EXPRESSIONS = st.sampled_from(
    ["* * * * *", "*/7 * * * *", "0 0 * * *", "30 2 * * *", "0 0 29 2 *", "*/10 * * * * *"]
)


@EDGE
@given(
    expression=EXPRESSIONS,
    zone=st.sampled_from(EDGE_ZONES),
    given_in=st.sampled_from(["UTC", "Etc/GMT-14", "Etc/GMT+12", "schedule"]),
    late=st.booleans(),
    seconds=st.integers(0, 3 * 24 * 3600),
)
def test_near_the_ends_of_datetime_the_api_never_overflows(
    expression: str, zone: str, given_in: str, late: bool, seconds: int
) -> None:
    """Within three days of datetime's ends, in any zone: a fire or the documented ValueError,
    each fire on the right side of the start; `iter_after` ends instead of raising."""
    tz = ZoneInfo(zone if given_in == "schedule" else given_in)
    edge = datetime.max.replace(microsecond=0) if late else datetime.min  # float-exact stamps
    wall = edge - timedelta(seconds=seconds) if late else edge + timedelta(seconds=seconds)
    start = wall.replace(tzinfo=tz)
    schedule = CronSchedule(expression, zone)
    fires = list(itertools.islice(schedule.iter_after(start), 3))
    stamps = [start.timestamp(), *(fire.timestamp() for fire in fires)]
    assert stamps == sorted(set(stamps))
    for method, after in ((schedule.next_after, True), (schedule.previous_before, False)):
        try:
            found, message = method(start), ""
        except ValueError as error:
            found, message = None, str(error)
        if found is None:
            assert re.search(NO_FIRE, message)
        else:
            assert (found.timestamp() > start.timestamp()) is after


def test_an_instant_past_the_range_in_utc_still_has_fires_on_the_other_side() -> None:
    """9999-12-31 23:59:59-12:00 is in year 10000 in UTC: a seconds schedule's last fire
    before it is 23:59:59 UTC, and there is none after it (not that same 23:59:59)."""
    schedule = CronSchedule("* * * * * *", "Asia/Tokyo")
    beyond = datetime(9999, 12, 31, 23, 59, 59, tzinfo=ZoneInfo("Etc/GMT+12"))
    assert schedule.previous_before(beyond).isoformat() == "9999-12-31T23:59:59+09:00"
    with pytest.raises(ValueError, match=NO_FIRE):
        schedule.next_after(beyond)
    utc = CronSchedule("* * * * * *", "UTC")
    assert utc.previous_before(beyond).isoformat() == "9999-12-31T23:59:59+00:00"
    with pytest.raises(ValueError, match=NO_FIRE):
        utc.next_after(beyond)
