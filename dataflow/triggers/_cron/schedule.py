"""`CronSchedule`: the real instants a cron expression fires at, with cron's DST rules.

Matching happens on the local wall clock (see `_cron_fields`); this module maps wall
times to instants the way cronie does across UTC-offset changes:

- a wildcard job (minute or hour field, or seconds field when present, starts with `*`)
  follows real time: nothing runs in a skipped gap, a repeated hour runs on both passes;
- a fixed-time job runs once in a repeated hour (first pass), and wall times skipped by
  a forward jump run once at the first instant after the jump;
- jumps of three hours or more (Pacific/Apia skipping 2011-12-30) are clock resets to
  cron: nothing is caught up and a repeated span runs again.

The search walks the zone's constant-offset stretches from the start instant: find the
next matching wall time, map it with the current offset, and if an offset change comes
first, handle the change and carry on from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import MAXYEAR, UTC, datetime, timedelta
from typing import Final, final
from zoneinfo import ZoneInfo

from dataflow._core.errors import CronError
from dataflow._core.exports import publish
from dataflow.triggers._cron.fields import parse_expression
from dataflow.triggers._cron.search import next_match, previous_match
from dataflow.triggers._cron.zone import first_change, last_change, offset_at, resolve_timezone

__all__ = ["CronError", "CronSchedule", "resolve_timezone"]

_SECOND: Final = timedelta(seconds=1)
_TICK: Final = timedelta(microseconds=1)
_NO_SHIFT: Final = timedelta(0)
# cronie catches up after a forward jump of less than 3 h and runs fixed-time jobs once
# in a repeated span of up to 3 h; a bigger jump counts as someone resetting the clock.
_MAX_GAP: Final = timedelta(hours=3)
_MAX_FOLD: Final = timedelta(hours=3)
_RANGE: Final = "within datetime's range (years 1-9999, in UTC and in the schedule's zone)"


@final
class CronSchedule:
    """A validated cron expression in a time zone; computes fire times, never sleeps."""

    __slots__ = ("_expression", "_fields", "_timezone")

    def __init__(self, expression: str, timezone: str | ZoneInfo | None = None) -> None:
        if not isinstance(expression, str):
            raise TypeError(f"a cron expression is a str, got {type(expression).__name__}")
        self._fields = parse_expression(expression)
        self._timezone = resolve_timezone(timezone)
        self._expression = expression

    @property
    def expression(self) -> str:
        return self._expression

    @property
    def timezone(self) -> ZoneInfo:
        return self._timezone

    @property
    def has_seconds(self) -> bool:
        """Whether the expression has a leading seconds field (6 fields)."""
        return self._fields.has_seconds

    @property
    def is_fixed_time(self) -> bool:
        """No time field starts with `*`: cron's DST catch-up and run-once rules apply."""
        return self._fields.fixed_time

    def __repr__(self) -> str:
        return f"CronSchedule({self._expression!r}, {self._timezone.key!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self._expression, self._timezone) == (other._expression, other._timezone)

    def __hash__(self) -> int:
        return hash((self._expression, self._timezone))

    def next_after(self, dt: datetime) -> datetime:
        """The first fire time strictly after the aware `dt`, in the schedule's zone.

        Raises ValueError when no fire time after `dt` is representable: datetime ends in
        year 9999, and a fire must exist both in UTC and in the schedule's zone.
        """
        found = self._next_fire(dt)
        if found is None:
            raise ValueError(f"cron {self._expression!r} has no fire time after {dt} {_RANGE}")
        return found

    def iter_after(self, dt: datetime) -> Iterator[datetime]:
        """Fire times strictly after the aware `dt`, in order; ends where datetime's range does."""
        _check_aware(dt)  # fail now, not at the first next()
        return self._iterate(dt)

    def _iterate(self, dt: datetime) -> Iterator[datetime]:
        while (found := self._next_fire(dt)) is not None:
            yield found
            dt = found

    def previous_before(self, dt: datetime) -> datetime:
        """The last fire time strictly before the aware `dt`, in the schedule's zone.

        Raises ValueError when no fire time before `dt` is representable (datetime starts
        in year 1, in UTC and in the schedule's zone).
        """
        _check_aware(dt)
        try:
            end, _ = _to_utc(dt, self._timezone)
            found = self._walk_backward(end, self._last_wall_before(end))
            found = None if found is None else found.astimezone(self._timezone)
        except OverflowError:  # the search ran off datetime's range: no earlier fire
            found = None
        if found is None:
            raise ValueError(f"cron {self._expression!r} has no fire time before {dt} {_RANGE}")
        return found

    def is_fire_time(self, instant: datetime) -> bool:
        """Whether the aware `instant` is one of this schedule's fire times."""
        try:
            return self.previous_before(instant + _TICK) == instant
        except ValueError:
            return False

    def gap_wall(self, instant: datetime) -> datetime | None:
        """The wall time (naive) a skipped DST gap held that the fire at `instant` runs for:
        a fixed-time job fires once at the first instant after the jump; else None."""
        utc = instant.astimezone(UTC)
        if not self._catches_up_at(utc):
            return None
        gap_start = (utc + offset_at(self._timezone, utc - _TICK)).replace(tzinfo=None)
        return next_match(self._fields, gap_start)

    def _next_fire(self, dt: datetime) -> datetime | None:
        """The first fire strictly after `dt`, or None when none is representable."""
        _check_aware(dt)
        try:
            start, before_range = _to_utc(dt, self._timezone)
            wall = self._wall(start).replace(microsecond=0)
            # `dt` before datetime's range was clamped to its first instant, which may fire
            found = self._walk_forward(start, wall if before_range else wall + _SECOND)
            return None if found is None else found.astimezone(self._timezone)
        except OverflowError:  # the search ran off datetime's range: no later fire
            return None

    def _walk_forward(self, start: datetime, wall: datetime) -> datetime | None:
        """The first fire in (start, ...) whose wall time is at least `wall`."""
        while True:
            offset = offset_at(self._timezone, start)
            found = self._next_wall(wall, offset)
            if found is None:
                return None
            candidate = (found - offset).replace(tzinfo=UTC)
            change = first_change(self._timezone, start, candidate)
            if change is None:
                return candidate
            if self._catches_up_at(change):
                return change
            start, wall = change, self._wall(change)

    def _walk_backward(self, end: datetime, wall: datetime) -> datetime | None:
        """The last fire in (..., end) whose wall time is at most `wall`."""
        while True:
            offset = offset_at(self._timezone, end - _TICK)
            found = self._previous_wall(wall, offset)
            if found is None:
                return None
            candidate = (found - offset).replace(tzinfo=UTC)
            change = last_change(self._timezone, candidate, end)
            if change is None:
                return candidate
            if self._catches_up_at(change):
                return change
            end, wall = change, self._last_wall_before(change)

    def _next_wall(self, wall: datetime, offset: timedelta) -> datetime | None:
        found = next_match(self._fields, wall)
        while found is not None and self._is_repeat(found, offset):
            found = next_match(self._fields, found + _SECOND)
        return found

    def _previous_wall(self, wall: datetime, offset: timedelta) -> datetime | None:
        found = previous_match(self._fields, wall)
        while found is not None and self._is_repeat(found, offset):
            found = previous_match(self._fields, found - _SECOND)
        return found

    def _is_repeat(self, wall: datetime, offset: timedelta) -> bool:
        """Whether a fixed-time job skips `wall` read at `offset`: its second pass."""
        if not self._fields.fixed_time:
            return False
        first, second = self._wall_offset(wall, 0), self._wall_offset(wall, 1)
        return offset == second and _NO_SHIFT < first - second <= _MAX_FOLD

    def _catches_up_at(self, change: datetime) -> bool:
        """Whether a fixed-time job fires at `change` for wall times its jump skipped."""
        if not self._fields.fixed_time:
            return False
        before = offset_at(self._timezone, change - _TICK)
        gap = offset_at(self._timezone, change) - before
        if not _NO_SHIFT < gap < _MAX_GAP:
            return False
        gap_start = (change + before).replace(tzinfo=None)
        found = next_match(self._fields, gap_start)
        return found is not None and found < gap_start + gap

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self._timezone).replace(tzinfo=None, fold=0)

    def _last_wall_before(self, end: datetime) -> datetime:
        """The last whole-second wall time strictly before the instant `end`."""
        wall = (end + offset_at(self._timezone, end - _TICK)).replace(tzinfo=None)
        whole = wall.replace(microsecond=0)
        return whole if whole < wall else whole - _SECOND

    def _wall_offset(self, wall: datetime, fold: int) -> timedelta:
        offset = wall.replace(tzinfo=self._timezone, fold=fold).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        return offset


def _check_aware(dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"need an aware datetime, got naive {dt.isoformat()}")


def _to_utc(dt: datetime, zone: ZoneInfo) -> tuple[datetime, bool]:
    """`dt` in UTC, clamped to the first or last instant datetime can show both in UTC and
    in `zone` (9999-12-31 23:00-05:00 is in year 10000 in UTC); True if before the first."""
    first, last = (_edge(datetime.min, zone, max), _edge(datetime.max, zone, min))
    try:
        instant = dt.astimezone(UTC)
    except OverflowError:
        return (last, False) if dt.year == MAXYEAR else (first, True)
    return (first, True) if instant < first else (min(instant, last), False)


def _edge(
    wall: datetime, zone: ZoneInfo, pick: Callable[[datetime, datetime], datetime]
) -> datetime:
    """The UTC instant of datetime's first (last) wall time in UTC or in `zone`, the later
    (earlier) of the two; a zone whose end is beyond UTC's has UTC's."""
    in_utc = wall.replace(tzinfo=UTC)
    try:
        return pick(in_utc, wall.replace(tzinfo=zone).astimezone(UTC))
    except OverflowError:
        return in_utc


publish("dataflow.triggers.cronjob", CronSchedule)
