"""Find matching wall-clock times by skipping whole fields: month, day, hour, minute, second.

Works on naive wall times at whole seconds; mapping them to real instants (time zones,
DST) is `_cron_schedule`'s job.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import MAXYEAR, MINYEAR, datetime, timedelta
from typing import Final

from dataflow.triggers._cron.fields import CronFields

_SECOND: Final = timedelta(seconds=1)


def next_match(fields: CronFields, start: datetime) -> datetime | None:
    """The earliest matching wall time at or after `start` (whole seconds), or None."""
    wall: datetime | None = start
    while wall is not None:
        later = _advance(fields, wall)
        if later == wall:
            return wall
        wall = later
    return None


def previous_match(fields: CronFields, limit: datetime) -> datetime | None:
    """The latest matching wall time at or before `limit` (whole seconds), or None."""
    wall: datetime | None = limit
    while wall is not None:
        earlier = _retreat(fields, wall)
        if earlier == wall:
            return wall
        wall = earlier
    return None


def _advance(fields: CronFields, t: datetime) -> datetime | None:
    """`t` if it matches, else a later time such that no match lies in between."""
    month = _at_or_after(fields.months, t.month)
    if month != t.month:
        if month is None:
            return _month_start(t.year + 1, fields.months[0])
        return _month_start(t.year, month)
    if not fields.day_matches(t.date()):
        return _shift(_day_start(t), timedelta(days=1))
    for unit, values, value in _time_parts(fields, t):
        found = _at_or_after(values, value)
        if found is None:
            return _shift(_truncate(t, unit), _UNIT_SPAN[unit])
        if found != value:
            return _with(_truncate(t, unit), _UNIT_FIELD[unit], found)
    return t


def _retreat(fields: CronFields, t: datetime) -> datetime | None:
    """`t` if it matches, else an earlier time such that no match lies in between."""
    month = _at_or_before(fields.months, t.month)
    if month != t.month:
        if month is None:
            return _month_end(t.year - 1, fields.months[-1])
        return _month_end(t.year, month)
    if not fields.day_matches(t.date()):
        return _shift(_day_start(t), -_SECOND)
    for unit, values, value in _time_parts(fields, t):
        found = _at_or_before(values, value)
        if found is None:
            return _shift(_truncate(t, unit), -_SECOND)
        if found != value:
            end = _with(_truncate(t, unit), _UNIT_FIELD[unit], found)
            return end + _UNIT_SPAN[_UNIT_FIELD[unit]] - _SECOND
    return t


def _time_parts(fields: CronFields, t: datetime) -> tuple[tuple[str, tuple[int, ...], int], ...]:
    # each unit is searched inside the enclosing one: the hour inside its day, ...
    return (
        ("day", fields.hours, t.hour),
        ("hour", fields.minutes, t.minute),
        ("minute", fields.seconds, t.second),
    )


_UNIT_SPAN: Final = {
    "day": timedelta(days=1),
    "hour": timedelta(hours=1),
    "minute": timedelta(minutes=1),
    "second": _SECOND,
}
_UNIT_FIELD: Final = {"day": "hour", "hour": "minute", "minute": "second"}


def _truncate(t: datetime, unit: str) -> datetime:
    if unit == "day":
        return _day_start(t)
    if unit == "hour":
        return t.replace(minute=0, second=0)
    return t.replace(second=0)


def _with(t: datetime, unit: str, value: int) -> datetime:
    if unit == "hour":
        return t.replace(hour=value)
    if unit == "minute":
        return t.replace(minute=value)
    return t.replace(second=value)


def _day_start(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0)


def _shift(t: datetime, delta: timedelta) -> datetime | None:
    try:
        return t + delta
    except OverflowError:  # the search ran off datetime's calendar: no match
        return None


def _month_start(year: int, month: int) -> datetime | None:
    return datetime(year, month, 1) if year <= MAXYEAR else None


def _month_end(year: int, month: int) -> datetime | None:
    if year < MINYEAR:
        return None
    following = _month_start(year + (month == 12), month % 12 + 1)
    return datetime(MAXYEAR, 12, 31, 23, 59, 59) if following is None else following - _SECOND


def _at_or_after(values: tuple[int, ...], value: int) -> int | None:
    index = bisect_left(values, value)
    return values[index] if index < len(values) else None


def _at_or_before(values: tuple[int, ...], value: int) -> int | None:
    index = bisect_right(values, value)
    return values[index - 1] if index else None
