"""Hostile expressions: absurdly long numbers, look-alike spaces, spellings cronie rejects.

Each fails with one short CronError line naming the field (or the character) and the fix,
never with an exception from deeper down (int conversion limits, str.split on Unicode).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from dataflow._core.errors import CronError, WorkflowError
from dataflow.triggers._cron.schedule import CronSchedule
from dataflow.triggers.cronjob import cronjob

HUGE = "1" * 5000  # beyond Python's 4,300-digit int-from-string limit
LONG_MESSAGE = 200  # a message must stay one readable line even for a 5,000-digit number


def fails(expression: str) -> CronError:
    with pytest.raises(CronError) as caught:
        CronSchedule(expression, "UTC")
    return caught.value


# --- numbers too large for int() --------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        (f"{HUGE} * * * *", "minute"),
        (f"0 {HUGE} * * *", "hour"),
        (f"0 0 {HUGE} * *", "day-of-month"),
        (f"0 0 * {HUGE} *", "month"),
        (f"0 0 * * {HUGE}", "day-of-week"),
        (f"{HUGE} * * * * *", "second"),
        (f"1-{HUGE} * * * *", "minute"),
        (f"{HUGE}-1 * * * *", "minute"),
        (f"0 1,{HUGE} * * *", "hour"),
    ],
)
def test_a_huge_number_is_out_of_range_in_its_field(expression: str, field: str) -> None:
    """A 5,000-digit value is 'out of range' for its field, in a short one-line message."""
    error = fails(expression)
    assert error.field == field
    assert error.reason.startswith("11111111")
    assert "(5000 digits) is out of range" in error.reason
    assert len(str(error)) < LONG_MESSAGE and "\n" not in str(error)


def test_leading_zeros_do_not_count_towards_the_size() -> None:
    """`0…05` is 5, however many zeros lead it (cron allows leading zeros)."""
    schedule = CronSchedule("0" * 5000 + "5 * * * *", "UTC")
    start = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert schedule.next_after(start) == datetime(2024, 5, 1, 12, 5, tzinfo=UTC)


def test_a_huge_step_selects_the_first_value_like_any_step_beyond_the_range() -> None:
    """`*/<5,000 digits>` means what `*/90` means in minutes: minute 0 only."""
    huge, known = CronSchedule(f"*/{HUGE} * * * *", "UTC"), CronSchedule("*/90 * * * *", "UTC")
    start = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    first = list(itertools.islice(huge.iter_after(start), 3))
    assert first == list(itertools.islice(known.iter_after(start), 3))


def test_long_items_are_shortened_in_the_message() -> None:
    """A 5,000-character name or item is not echoed whole: the message stays one short line."""
    long_items = ("X" * 5000, "A" * 5000, f"1-2-{HUGE}", f"5/{HUGE}", f"{'0' * 5000}5/{HUGE}")
    for expression in (f"{item} * * * *" for item in long_items):
        assert len(str(fails(expression))) < LONG_MESSAGE


def test_cronjob_reports_a_huge_number_as_a_cron_error_not_a_time_zone() -> None:
    """`@cronjob` raises the CronError naming the field; only a bad zone says 'timezone'."""
    with pytest.raises(CronError) as caught:
        cronjob(f"{HUGE} * * * *", timezone="UTC")
    assert caught.value.field == "minute"
    assert "timezone" not in str(caught.value)
    with pytest.raises(WorkflowError, match=r"unknown timezone 'Mars/Base'"):
        cronjob("0 0 * * *", timezone="Mars/Base")


# --- only spaces and tabs separate fields ----------------------------------------------------

UNICODE_SPACES = [
    ("\xa0", "U+00A0 NO-BREAK SPACE"),
    ("\u3000", "U+3000 IDEOGRAPHIC SPACE"),
    ("\u2003", "U+2003 EM SPACE"),
    ("\u202f", "U+202F NARROW NO-BREAK SPACE"),
    ("\u2028", "U+2028 LINE SEPARATOR"),
    ("\x0b", "U+000B LINE TABULATION"),
    ("\n", "U+000A LINE FEED"),
    ("\u200b", "U+200B ZERO WIDTH SPACE"),  # not even whitespace to str.split()
]


@pytest.mark.parametrize(("char", "name"), UNICODE_SPACES)
@pytest.mark.parametrize("where", ["between", "leading", "trailing"])
def test_only_spaces_and_tabs_separate_fields(char: str, name: str, where: str) -> None:
    """A look-alike space anywhere is an error naming the character and the fix."""
    expression = {
        "between": f"0{char}0 * * *",
        "leading": f"{char}0 0 * * *",
        "trailing": f"0 0 * * *{char}",
    }[where]
    error = fails(expression)
    assert error.reason == (
        f"unexpected character {name} at position {expression.index(char) + 1}: "
        "separate fields with spaces or tabs"
    )


def test_spaces_and_tabs_in_any_number_separate_fields() -> None:
    """Runs of spaces and tabs, and surrounding ones, are plain separators."""
    spaced = CronSchedule(" \t30 \t 2\t\t* *  *\t ", "UTC")
    start = datetime(2024, 5, 1, tzinfo=UTC)
    assert spaced.next_after(start) == datetime(2024, 5, 1, 2, 30, tzinfo=UTC)


def test_other_non_ascii_characters_are_named() -> None:
    """A non-ASCII character inside a field is named by code point, not shown raw."""
    error = fails("0 0 * * MON\u2013FRI")  # an en dash, as word processors type it
    assert (error.field, error.reason) == (
        "day-of-week",
        "unexpected character U+2013 EN DASH in 'MON\\u2013FRI'",
    )
    assert str(error).startswith("invalid cron expression '0 0 * * MON\\u2013FRI': ")


# --- spellings cronie rejects or reads oddly ---------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "field", "reason"),
    [
        ("5/20 * * * *", "minute", "'5/20' steps from a single value: write '5-59/20' or '*/20'"),
        ("0 0 * * 5/2", "day-of-week", "'5/2' steps from a single value: write '5-7/2' or '*/2'"),
        ("0 0 1 JAN/3 *", "month", "'JAN/3' steps from a single value: write 'JAN-12/3' or '*/3'"),
        ("0/35 * * * * *", "second", "'0/35' steps from a single value: write '0-59/35' or '*/35'"),
    ],
)
def test_a_step_on_a_single_value_is_an_error_as_in_cronie(
    expression: str, field: str, reason: str
) -> None:
    """cronie rejects `a/n` (its parser allows `/` only after `*` or a range): so does dataflow,
    saying which range was probably meant; cronsim would read it as `a-max/n`."""
    error = fails(expression)
    assert (error.field, error.reason) == (field, reason)


@pytest.mark.parametrize(
    ("expression", "field", "reason"),
    [
        ("5-0 * * * *", "minute", "range 5-0 is reversed (start after end)"),
        ("0 5-0 * * *", "hour", "range 5-0 is reversed (start after end)"),
        ("5-0 * * * * *", "second", "range 5-0 is reversed (start after end)"),
        ("0 0 5-0 * *", "day-of-month", "0 is out of range 1-31"),
        ("0 0 * 5-0 *", "month", "0 is out of range 1-12"),
    ],
)
def test_x_to_0_outside_day_of_week_is_an_error(expression: str, field: str, reason: str) -> None:
    """cronie reads `x-0` as `x-7` in every field (minute `5-0` = minutes 5, 6, 7; month `5-0` =
    May to July); dataflow keeps that wrap to day-of-week, where 0 is Sunday, and rejects
    the item elsewhere: reversed, or 0 out of range where the field starts at 1."""
    error = fails(expression)
    assert (error.field, error.reason) == (field, reason)


def test_x_to_0_in_day_of_week_runs_to_sunday() -> None:
    """`5-0` and `FRI-SUN` in day-of-week mean Friday to Sunday, as in cronie."""
    start = datetime(2024, 5, 1, tzinfo=UTC)  # a Wednesday
    for spelling in ("5-0", "FRI-SUN", "5-7"):
        days = CronSchedule(f"0 0 * * {spelling}", "UTC").iter_after(start)
        assert [fire.day for fire in itertools.islice(days, 4)] == [3, 4, 5, 10], spelling
