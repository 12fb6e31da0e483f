"""Examples for CronSchedule: syntax, errors, DST behaviour and time-zone resolution."""

from __future__ import annotations

import itertools
import pickle
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dataflow._core.errors import CronError
from dataflow.triggers._cron.schedule import CronSchedule, resolve_timezone
from dataflow.triggers._cron.zone import machine_zone


def fires(expression: str, zone: str, start: str, count: int = 4) -> list[str]:
    """The first `count` fire times after the local wall time `start`, as ISO strings."""
    schedule = CronSchedule(expression, zone)
    begin = datetime.fromisoformat(start)
    if begin.tzinfo is None:
        begin = begin.replace(tzinfo=ZoneInfo(zone))
    return [fire.isoformat() for fire in itertools.islice(schedule.iter_after(begin), count)]


# --- syntax --------------------------------------------------------------------------------

SYNTAX = [
    ("* * * * *", "2024-05-01T12:00:30", ["12:01", "12:02", "12:03"]),
    ("*/15 * * * *", "2024-05-01T12:00", ["12:15", "12:30", "12:45"]),
    ("7 * * * *", "2024-05-01T12:00", ["12:07", "13:07", "14:07"]),
    ("0,20,40 * * * *", "2024-05-01T12:00", ["12:20", "12:40", "13:00"]),
    ("10-12 * * * *", "2024-05-01T12:00", ["12:10", "12:11", "12:12"]),
    ("10-40/15 * * * *", "2024-05-01T12:00", ["12:10", "12:25", "12:40"]),
    ("5-59/20 * * * *", "2024-05-01T12:00", ["12:05", "12:25", "12:45"]),  # `5/20` in cronsim
    ("*/90 * * * *", "2024-05-01T12:00", ["13:00", "14:00", "15:00"]),  # step beyond range
    ("0 9-17/4 * * *", "2024-05-01T08:00", ["09:00", "13:00", "17:00"]),
    ("01 002 * * *", "2024-05-01T00:00", ["02:01", "02:01", "02:01"]),  # leading zeros
]


@pytest.mark.parametrize(("expression", "start", "times"), SYNTAX)
def test_time_field_syntax(expression: str, start: str, times: list[str]) -> None:
    """Stars, values, lists, ranges and steps select the expected minutes and hours."""
    got = fires(expression, "UTC", start, 3)
    assert [fire[11:16] for fire in got] == times


DAY_SYNTAX = [
    # names, either case, and both spellings of Sunday
    ("0 0 * * SUN", ["2024-05-05", "2024-05-12"]),
    ("0 0 * * sun", ["2024-05-05", "2024-05-12"]),
    ("0 0 * * 0", ["2024-05-05", "2024-05-12"]),
    ("0 0 * * 7", ["2024-05-05", "2024-05-12"]),
    ("0 0 * * Mon-Wed", ["2024-05-06", "2024-05-07"]),
    ("0 0 * * FRI-SUN", ["2024-05-03", "2024-05-04", "2024-05-05", "2024-05-10"]),  # cronie
    ("0 0 * * 5-7/2", ["2024-05-03", "2024-05-05", "2024-05-10"]),  # FRI and SUN
    ("0 0 1 jun,Aug *", ["2024-06-01", "2024-08-01", "2025-06-01"]),
    ("0 0 1 JAN-MAR/2 *", ["2025-01-01", "2025-03-01", "2026-01-01"]),
    ("0 0 29 2 *", ["2028-02-29", "2032-02-29"]),
    # both day fields restricted: a day matching either runs
    ("0 0 13 * FRI", ["2024-05-03", "2024-05-10", "2024-05-13", "2024-05-17"]),
    # a day field starting with `*` (even `*/2`): a day must match both
    ("0 0 */2 * FRI", ["2024-05-03", "2024-05-17", "2024-05-31", "2024-06-07"]),
    ("0 0 13 * */5", ["2024-09-13", "2024-10-13", "2024-12-13"]),  # */5 = SUN, FRI
    # `1-31` is not `*`: with a restricted weekday it means every day
    ("0 0 1-31 * MON", ["2024-05-02", "2024-05-03", "2024-05-04", "2024-05-05"]),
    ("0 0 * * MON", ["2024-05-06", "2024-05-13", "2024-05-20", "2024-05-27"]),
]


@pytest.mark.parametrize(("expression", "days"), DAY_SYNTAX)
def test_day_field_syntax(expression: str, days: list[str]) -> None:
    """Names, Sunday as 0 or 7, and cronie's day-of-month/day-of-week OR/AND rule."""
    got = fires(expression, "UTC", "2024-05-01T12:00", len(days))
    assert [fire[:10] for fire in got] == days


MACROS = [
    ("@yearly", ["2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]),
    ("@annually", ["2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]),
    ("@monthly", ["2024-06-01T00:00:00+00:00", "2024-07-01T00:00:00+00:00"]),
    ("@weekly", ["2024-05-05T00:00:00+00:00", "2024-05-12T00:00:00+00:00"]),
    ("@daily", ["2024-05-02T00:00:00+00:00", "2024-05-03T00:00:00+00:00"]),
    ("@midnight", ["2024-05-02T00:00:00+00:00", "2024-05-03T00:00:00+00:00"]),
    ("@hourly", ["2024-05-01T13:00:00+00:00", "2024-05-01T14:00:00+00:00"]),
    ("@DAILY", ["2024-05-02T00:00:00+00:00", "2024-05-03T00:00:00+00:00"]),
]


@pytest.mark.parametrize(("macro", "times"), MACROS)
def test_macros(macro: str, times: list[str]) -> None:
    """Each macro fires like its five-field form (case does not matter)."""
    assert fires(macro, "UTC", "2024-05-01T12:00", 2) == times


def test_seconds_field() -> None:
    """Six fields: the first is seconds, for sub-minute schedules."""
    schedule = CronSchedule("*/20 * * * * *", "UTC")
    assert schedule.has_seconds
    assert fires("*/20 * * * * *", "UTC", "2024-05-01T12:00:00.5", 3) == [
        "2024-05-01T12:00:20+00:00",
        "2024-05-01T12:00:40+00:00",
        "2024-05-01T12:01:00+00:00",
    ]
    assert fires("30 15 10 * * *", "UTC", "2024-05-01T12:00", 2) == [
        "2024-05-02T10:15:30+00:00",
        "2024-05-03T10:15:30+00:00",
    ]


@pytest.mark.parametrize(
    ("expression", "fixed"),
    [
        ("0 3 * * *", True),
        ("0 0-23 * * *", True),  # cron only looks at the leading character
        ("*/5 3 * * *", False),
        ("0 */2 * * *", False),
        ("0 * * * *", False),
        ("@hourly", False),
        ("@daily", True),
        ("0 30 2 * * *", True),
        ("* 30 2 * * *", False),
    ],
)
def test_is_fixed_time(expression: str, fixed: bool) -> None:
    """Fixed-time = no `*`-led minute, hour (or seconds) field, as cron decides it."""
    assert CronSchedule(expression, "UTC").is_fixed_time is fixed


# --- errors --------------------------------------------------------------------------------

ERRORS = [
    ("61 * * * *", "minute: 61 is out of range 0-59"),
    ("* 24 * * *", "hour: 24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
    ("* * 32 * *", "day-of-month: 32 is out of range 1-31"),
    ("* * * 13 *", "month: 13 is out of range 1-12"),
    ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
    ("60 * * * * *", "second: 60 is out of range 0-59"),
    ("0 10-70 * * *", "hour: 70 is out of range 0-23"),
    ("5-1 * * * *", "minute: range 5-1 is reversed (start after end)"),
    ("* * * DEC-JAN *", "month: range DEC-JAN is reversed (start after end)"),
    ("* * * * MON-SUN/2", "day-of-week: range MON-SUN is reversed (start after end)"),
    ("* * * FOO *", "month: unknown name 'FOO' (use JAN-DEC or numbers)"),
    ("* * * * Sunday", "day-of-week: unknown name 'Sunday' (use SUN-SAT or numbers)"),
    ("MON * * * *", "minute: 'MON' is not a number"),
    ("0 0 L * *", "day-of-month: 'L' is not a number"),
    ("*/0 * * * *", "minute: step must be at least 1, got 0"),
    ("*/x * * * *", "minute: step 'x' is not a number"),
    ("5$ * * * *", "minute: unexpected character '$' in '5$'"),
    ("0 0 * * 5#3", "day-of-week: unexpected character '#' in '5#3'"),
    ("1,,2 * * * *", "minute: empty list item"),
    ("1, * * * *", "minute: empty list item"),
    ("1-2-3 * * * *", "minute: malformed item '1-2-3'"),
    ("*-5 * * * *", "minute: malformed item '*-5'"),
    ("*/ * * * *", "minute: malformed item '*/'"),
    ("0 0 30 2 *", "day-of-month: day 30 never occurs in the selected months"),
    ("* * * *", "expected 5 fields (or 6 with a leading seconds field), got 4"),
    ("* * * * * * *", "expected 5 fields (or 6 with a leading seconds field), got 7"),
    ("", "expected 5 fields (or 6 with a leading seconds field), got 0"),
    (
        "@reboot",
        "unknown macro '@reboot' "
        "(use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)",
    ),
]


@pytest.mark.parametrize(("expression", "reason"), ERRORS)
def test_invalid_expressions_name_the_field_and_reason(expression: str, reason: str) -> None:
    """Each invalid expression fails in the constructor with one exact, one-line message."""
    with pytest.raises(CronError) as caught:
        CronSchedule(expression, "UTC")
    assert str(caught.value) == f"invalid cron expression {expression!r}: {reason}"
    assert isinstance(caught.value, ValueError)


def test_cron_error_keeps_its_parts_and_pickles() -> None:
    """CronError carries expression, field and reason, and survives pickling."""
    with pytest.raises(CronError) as caught:
        CronSchedule("61 * * * *", "UTC")
    error = caught.value
    assert (error.expression, error.field, error.reason) == (
        "61 * * * *",
        "minute",
        "61 is out of range 0-59",
    )
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_expression_must_be_a_string() -> None:
    """A non-string expression is a TypeError, not a confusing parse error."""
    with pytest.raises(TypeError, match="a cron expression is a str, got int"):
        CronSchedule(5, "UTC")  # type: ignore[arg-type]


# --- DST -----------------------------------------------------------------------------------

DST = [
    # New York, spring forward 2024-03-10 02:00 EST -> 03:00 EDT
    (
        "30 2 * * *",
        "America/New_York",
        "2024-03-09T12:00",
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
    ),
    (
        "0,30 2 * * *",
        "America/New_York",
        "2024-03-10T00:00",
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:00:00-04:00"],
    ),  # one catch-up run
    (
        "30 2,3 * * *",
        "America/New_York",
        "2024-03-10T00:00",
        ["2024-03-10T03:00:00-04:00", "2024-03-10T03:30:00-04:00"],
    ),
    (
        "*/30 * * * *",
        "America/New_York",
        "2024-03-10T01:00",
        ["2024-03-10T01:30:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T03:30:00-04:00"],
    ),
    (
        "15 30 2 * * *",
        "America/New_York",
        "2024-03-10T00:00",
        ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:15-04:00"],
    ),  # seconds: same rule
    (
        "*/30 30 2 * * *",
        "America/New_York",
        "2024-03-10T00:00",
        ["2024-03-11T02:30:00-04:00", "2024-03-11T02:30:30-04:00"],
    ),  # `*` seconds: wildcard
    # New York, fall back 2024-11-03 02:00 EDT -> 01:00 EST
    (
        "30 1 * * *",
        "America/New_York",
        "2024-11-03T00:00",
        ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
    ),
    (
        "*/30 1 * * *",
        "America/New_York",
        "2024-11-03T00:00",
        [
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:00:00-05:00",
            "2024-11-03T01:30:00-05:00",
        ],
    ),
    (
        "*/30 30 1 * * *",
        "America/New_York",
        "2024-11-03T00:00",
        [
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:30:30-04:00",
            "2024-11-03T01:30:00-05:00",
            "2024-11-03T01:30:30-05:00",
        ],
    ),
    (
        "0 30 1 * * *",
        "America/New_York",
        "2024-11-03T00:00",
        ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
    ),
    (
        "0 * * * *",
        "America/New_York",
        "2024-11-03T00:30",
        ["2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00"],
    ),
    # Berlin, spring forward 2024-03-31 02:00 CET -> 03:00 CEST
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2024-03-30T12:00",
        ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
    ),
    (
        "*/20 2 * * *",
        "Europe/Berlin",
        "2024-03-30T12:00",
        ["2024-04-01T02:00:00+02:00", "2024-04-01T02:20:00+02:00"],
    ),  # wildcard: nothing
    # Berlin, fall back 2024-10-27 03:00 CEST -> 02:00 CET
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2024-10-26T12:00",
        ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"],
    ),
    (
        "15 * * * *",
        "Europe/Berlin",
        "2024-10-27T01:00",
        [
            "2024-10-27T01:15:00+02:00",
            "2024-10-27T02:15:00+02:00",
            "2024-10-27T02:15:00+01:00",
            "2024-10-27T03:15:00+01:00",
        ],
    ),
    # Sao Paulo, DST began at midnight 2018-11-04: 00:00-00:59 never happened
    (
        "0 0 * * *",
        "America/Sao_Paulo",
        "2018-11-03T12:00",
        ["2018-11-04T01:00:00-02:00", "2018-11-05T00:00:00-02:00"],
    ),
    (
        "30 0 4 11 *",
        "America/Sao_Paulo",
        "2018-11-03T12:00",
        ["2018-11-04T01:00:00-02:00", "2019-11-04T00:30:00-03:00"],
    ),
    # Sao Paulo, DST ended 2019-02-17 00:00 -> 2019-02-16 23:00: 23:xx twice
    (
        "30 23 * * *",
        "America/Sao_Paulo",
        "2019-02-16T12:00",
        ["2019-02-16T23:30:00-02:00", "2019-02-17T23:30:00-03:00"],
    ),
    (
        "30 * * * *",
        "America/Sao_Paulo",
        "2019-02-16T22:00",
        [
            "2019-02-16T22:30:00-02:00",
            "2019-02-16T23:30:00-02:00",
            "2019-02-16T23:30:00-03:00",
            "2019-02-17T00:30:00-03:00",
        ],
    ),
    # Lord Howe: a 30-minute shift, 2024-10-06 02:00 -> 02:30 and 2024-04-07 02:00 -> 01:30
    (
        "0 2 * * *",
        "Australia/Lord_Howe",
        "2024-10-05T12:00",
        ["2024-10-06T02:30:00+11:00", "2024-10-07T02:00:00+11:00"],
    ),
    (
        "*/15 * * * *",
        "Australia/Lord_Howe",
        "2024-10-06T01:30",
        ["2024-10-06T01:45:00+10:30", "2024-10-06T02:30:00+11:00", "2024-10-06T02:45:00+11:00"],
    ),
    (
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2024-04-06T12:00",
        ["2024-04-07T01:45:00+11:00", "2024-04-08T01:45:00+10:30"],
    ),
    (
        "*/15 1 * * *",
        "Australia/Lord_Howe",
        "2024-04-07T01:20",
        [
            "2024-04-07T01:30:00+11:00",
            "2024-04-07T01:45:00+11:00",
            "2024-04-07T01:30:00+10:30",
            "2024-04-07T01:45:00+10:30",
        ],
    ),
    # Dublin: negative DST in tzdata (winter is the "daylight" period) changes nothing
    (
        "30 1 * * *",
        "Europe/Dublin",
        "2024-03-30T12:00",
        ["2024-03-31T02:00:00+01:00", "2024-04-01T01:30:00+01:00"],
    ),
    (
        "30 1 * * *",
        "Europe/Dublin",
        "2024-10-26T12:00",
        ["2024-10-27T01:30:00+01:00", "2024-10-28T01:30:00+00:00"],
    ),
    # Apia skipped 2011-12-30 (a 24 h jump): like cron, a clock reset, nothing caught up
    (
        "0 9 * * *",
        "Pacific/Apia",
        "2011-12-29T00:00",
        ["2011-12-29T09:00:00-10:00", "2011-12-31T09:00:00+14:00"],
    ),
    ("0 0 30 12 *", "Pacific/Apia", "2011-12-01T00:00", ["2012-12-30T00:00:00+14:00"]),
]


@pytest.mark.parametrize(("expression", "zone", "start", "times"), DST)
def test_dst_behaviour(expression: str, zone: str, start: str, times: list[str]) -> None:
    """Fixed-time jobs catch up once after a gap and run once in a repeated hour;
    wildcard jobs follow real time."""
    assert fires(expression, zone, start, len(times)) == times


def test_repeated_hour_second_pass_is_a_distinct_instant() -> None:
    """The second 01:30 in New York is an hour after the first, with fold=1."""
    schedule = CronSchedule("30 1 * * *", "America/New_York")
    inside = datetime(2024, 11, 3, 6, 10, tzinfo=UTC)  # 01:10 EST, second pass
    assert schedule.next_after(inside).isoformat() == "2024-11-04T01:30:00-05:00"
    wildcard = CronSchedule("*/30 1 * * *", "America/New_York")
    second = wildcard.next_after(inside)
    assert (second.isoformat(), second.fold) == ("2024-11-03T01:30:00-05:00", 1)


# --- the API -------------------------------------------------------------------------------


def test_next_after_is_strict_and_returns_the_schedule_zone() -> None:
    """The result is strictly later, in the schedule's zone, whatever zone the input has."""
    schedule = CronSchedule("0 12 * * *", "Europe/Berlin")
    noon = datetime(2024, 5, 1, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    assert schedule.next_after(noon).isoformat() == "2024-05-02T12:00:00+02:00"
    in_utc = datetime(2024, 5, 1, 9, 59, 59, 999999, tzinfo=UTC)
    result = schedule.next_after(in_utc)
    assert result.isoformat() == "2024-05-01T12:00:00+02:00"
    assert result.tzinfo is ZoneInfo("Europe/Berlin")


def test_previous_before_is_strict() -> None:
    """previous_before returns the last fire strictly before, including a gap catch-up."""
    schedule = CronSchedule("30 2 * * *", "America/New_York")
    catch_up = datetime(2024, 3, 10, 7, tzinfo=UTC)  # 03:00 EDT
    assert schedule.previous_before(catch_up).isoformat() == "2024-03-09T02:30:00-05:00"
    after = datetime(2024, 3, 10, 7, 0, 1, tzinfo=UTC)
    assert schedule.previous_before(after).isoformat() == "2024-03-10T03:00:00-04:00"


@pytest.mark.parametrize("method", ["next_after", "previous_before", "iter_after"])
def test_naive_datetimes_are_rejected(method: str) -> None:
    """A naive datetime has no instant: ValueError instead of guessing a zone."""
    schedule = CronSchedule("* * * * *", "UTC")
    with pytest.raises(ValueError, match="need an aware datetime, got naive 2024-05-01T12:00"):
        getattr(schedule, method)(datetime(2024, 5, 1, 12))


def test_value_semantics() -> None:
    """Schedules compare and hash by expression and zone, and show both in repr."""
    first = CronSchedule("0 3 * * *", "Europe/Berlin")
    assert first == CronSchedule("0 3 * * *", ZoneInfo("Europe/Berlin"))
    assert first != CronSchedule("0 3 * * *", "UTC")
    assert len({first, CronSchedule("0 3 * * *", "Europe/Berlin")}) == 1
    assert repr(first) == "CronSchedule('0 3 * * *', 'Europe/Berlin')"
    assert (first.expression, first.timezone, first.has_seconds) == (
        "0 3 * * *",
        ZoneInfo("Europe/Berlin"),
        False,
    )


# --- time zones ----------------------------------------------------------------------------


def test_resolve_timezone_prefers_the_explicit_name() -> None:
    """An explicit name or ZoneInfo wins over the environment."""
    env = {"DATAFLOW_TIMEZONE": "Asia/Tokyo", "TZ": "America/Chicago"}
    assert resolve_timezone("Europe/Berlin", env) == ZoneInfo("Europe/Berlin")
    zone = ZoneInfo("Africa/Lagos")
    assert resolve_timezone(zone, env) is zone


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATAFLOW_TIMEZONE": "Asia/Tokyo", "TZ": "America/Chicago"}, "Asia/Tokyo"),
        ({"DATAFLOW_TIMEZONE": "", "TZ": "America/Chicago"}, "America/Chicago"),
        ({"TZ": ":Europe/Paris"}, "Europe/Paris"),
        ({"TZ": "/usr/share/zoneinfo/Asia/Kolkata"}, "Asia/Kolkata"),
    ],
)
def test_resolve_timezone_from_the_environment(env: dict[str, str], expected: str) -> None:
    """$DATAFLOW_TIMEZONE, then $TZ (plain, `:`-prefixed or a zoneinfo path)."""
    assert resolve_timezone(None, env) == ZoneInfo(expected)


def test_schedule_uses_dataflow_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a zone argument the schedule reads $DATAFLOW_TIMEZONE."""
    monkeypatch.setenv("DATAFLOW_TIMEZONE", "America/Denver")
    assert CronSchedule("0 0 * * *").timezone == ZoneInfo("America/Denver")


@pytest.mark.parametrize("name", ["Mars/Base", "", "Europe", "/etc/localtime", "../x"])
def test_unknown_timezone_is_a_one_line_value_error(name: str) -> None:
    """An unknown zone fails with a one-line hint, from an argument or the environment."""
    message = f"unknown timezone {name!r}: use an IANA name such as 'Europe/Berlin'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CronSchedule("0 0 * * *", name)
    if name:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            resolve_timezone(None, {"DATAFLOW_TIMEZONE": name})


def test_machine_zone_sources(tmp_path: Path) -> None:
    """$TZ, then /etc/timezone, then the /etc/localtime link target, then UTC."""
    etc_timezone, localtime = tmp_path / "timezone", tmp_path / "localtime"
    assert machine_zone({}, etc_timezone, localtime) == ZoneInfo("UTC")
    localtime.symlink_to("/usr/share/zoneinfo/posix/Asia/Tokyo")
    assert machine_zone({}, etc_timezone, localtime) == ZoneInfo("Asia/Tokyo")
    etc_timezone.write_text("Europe/Oslo\n", encoding="utf-8")
    assert machine_zone({}, etc_timezone, localtime) == ZoneInfo("Europe/Oslo")
    assert machine_zone({"TZ": "America/Lima"}, etc_timezone, localtime) == ZoneInfo("America/Lima")
    # a POSIX rule string is no IANA name: fall through to the next source
    assert machine_zone({"TZ": "CET-1CEST"}, etc_timezone, localtime) == ZoneInfo("Europe/Oslo")


def test_zones_taken_as_fixed_never_change_offset() -> None:
    """The zones whose offset-change search is skipped (UTC, Etc/GMT±N, ...) have one offset
    from 1900 to 2100; a zone with DST is not among them."""
    from zoneinfo import ZoneInfo, available_timezones

    from dataflow.triggers._cron.zone import is_fixed, offset_at

    fixed = [ZoneInfo(key) for key in sorted(available_timezones()) if is_fixed(ZoneInfo(key))]
    assert {"UTC", "Etc/GMT+5", "Etc/GMT-14"} <= {zone.key for zone in fixed}
    for zone in fixed:
        offsets = {
            offset_at(zone, datetime(year, month, 1, tzinfo=UTC))
            for year in range(1900, 2101, 3)
            for month in (1, 4, 7, 10)
        }
        assert len(offsets) == 1, zone.key
    assert not is_fixed(ZoneInfo("Europe/Berlin")) and not is_fixed(ZoneInfo("Asia/Kolkata"))
