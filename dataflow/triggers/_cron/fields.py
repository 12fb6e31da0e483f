"""Parse a cron expression into the set of values each field allows.

The grammar follows cronie (Debian/Vixie cron): `*`, numbers, three-letter names, ranges
`a-b`, lists, steps `*/n` and `a-b/n` (cronie rejects `a/n`), 0 and 7 both Sunday, and the
day rule: when either day field starts with `*` a day must match both fields, otherwise
either.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from dataflow._core.errors import CronError

_MONTH_DAYS: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_NAMES: Final = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)
_DAY_NAMES: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_BAD_CHAR: Final = re.compile(r"[^0-9A-Za-z*/\-]")
_SEPARATOR: Final = re.compile(r"[ \t]+")  # as in cronie; str.split() takes any Unicode space
_ITEM: Final = re.compile(
    r"(?P<base>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9A-Za-z]+))?"
)


_Fail = Callable[[str], CronError]
# unicodedata has no names for control characters; these are the ones str.isspace() accepts
_CONTROL_NAMES: Final = {
    "\n": "LINE FEED",
    "\x0b": "LINE TABULATION",
    "\x0c": "FORM FEED",
    "\r": "CARRIAGE RETURN",
    "\x1c": "INFORMATION SEPARATOR FOUR",
    "\x1d": "INFORMATION SEPARATOR THREE",
    "\x1e": "INFORMATION SEPARATOR TWO",
    "\x1f": "INFORMATION SEPARATOR ONE",
    "\x85": "NEXT LINE",
}
# No field value needs more than two digits; longer numbers are never converted with int(),
# whose 4,300-digit limit would raise a bare ValueError instead of a CronError.
_MAX_DIGITS: Final = 6
_HUGE_STEP: Final = 10**_MAX_DIGITS  # beyond every field's span: selects the first value
_SHOWN: Final = 20  # longer items are shortened in messages, which stay one line


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] spells the value `i + name_base`
    name_base: int = 0


_FIELDS: Final = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    _Field("day-of-week", 0, 7, _DAY_NAMES, 0),
)


@dataclass(frozen=True)
class CronFields:
    """A parsed expression: the allowed values of each field and cron's flags."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday (7 is folded onto 0)
    day_and: bool  # a day field starts with `*`: both day fields must match
    fixed_time: bool  # no `*`-led second/minute/hour field: cron's DST catch-up applies
    has_seconds: bool

    def day_matches(self, day: date) -> bool:
        in_month = day.day in self.days
        in_week = day.isoweekday() % 7 in self.weekdays
        return (in_month and in_week) if self.day_and else (in_month or in_week)

    def matches(self, wall: datetime) -> bool:
        """Whether a naive wall-clock time (seconds resolution) matches every field."""
        return (
            wall.second in self.seconds
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.day_matches(wall.date())
        )


@functools.lru_cache(maxsize=4096)  # workflows repeat expressions; CronFields is immutable
def parse_expression(expression: str) -> CronFields:
    """Parse 5 fields (or 6 with a leading seconds field) or a macro; raise CronError."""
    _check_separators(expression)
    text = expression.strip(" \t")
    if text.startswith("@"):
        text = _expand_macro(expression, text)
    parts = _SEPARATOR.split(text) if text else []
    if len(parts) not in (5, 6):
        reason = f"expected 5 fields (or 6 with a leading seconds field), got {len(parts)}"
        raise CronError(expression, reason)
    has_seconds = len(parts) == 6
    if not has_seconds:
        parts.insert(0, "0")  # five fields run at second 0
    pairs = zip(_FIELDS, parts, strict=True)
    sets = [_parse_field(expression, field, part) for field, part in pairs]
    fields = _build(parts, sets, has_seconds)
    _check_days_exist(expression, fields)
    return fields


def _build(parts: list[str], sets: list[frozenset[int]], has_seconds: bool) -> CronFields:
    """Fields from the six parsed sets; the flags come from the text, as in cronie."""
    timed = parts[0:3] if has_seconds else parts[1:3]
    return CronFields(
        seconds=tuple(sorted(sets[0])),
        minutes=tuple(sorted(sets[1])),
        hours=tuple(sorted(sets[2])),
        days=sets[3],
        months=tuple(sorted(sets[4])),
        weekdays=frozenset(day % 7 for day in sets[5]),
        day_and=parts[3].startswith("*") or parts[5].startswith("*"),
        fixed_time=not any(part.startswith("*") for part in timed),
        has_seconds=has_seconds,
    )


def _check_separators(expression: str) -> None:
    """Only spaces and tabs separate fields: a look-alike space would merge or split them."""
    for position, char in enumerate(expression, 1):
        if char not in " \t" and _looks_like_space(char):
            reason = f"unexpected character {_describe(char)} at position {position}"
            raise CronError(expression, f"{reason}: separate fields with spaces or tabs")


def _looks_like_space(char: str) -> bool:
    # Z*: Unicode spaces and line/paragraph separators; Cf: zero-width ones (U+200B, U+FEFF)
    return (
        char.isspace() or unicodedata.category(char)[0] == "Z" or unicodedata.category(char) == "Cf"
    )


def _describe(char: str) -> str:
    """A character as a message shows it: `'$'`, or `U+00A0 NO-BREAK SPACE` if not plain ASCII."""
    if char.isascii() and char.isprintable():
        return repr(char)
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(char, "")
    return f"U+{ord(char):04X} {name}".rstrip()


def _expand_macro(expression: str, text: str) -> str:
    expanded = MACROS.get(text.lower())
    if expanded is None:
        known = ", ".join(MACROS)
        raise CronError(expression, f"unknown macro {text!r} (use one of {known})")
    return expanded


def _check_days_exist(expression: str, fields: CronFields) -> None:
    # With the AND rule a day-of-month missing from every chosen month never matches;
    # cron would accept it and stay silent forever, so fail at import time instead.
    longest = max(_MONTH_DAYS[month] for month in fields.months)
    if fields.day_and and min(fields.days) > longest:
        reason = f"day {min(fields.days)} never occurs in the selected months"
        raise CronError(expression, reason, "day-of-month")


def _parse_field(expression: str, field: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(expression, field, item))
    return frozenset(values)


def _parse_item(expression: str, field: _Field, item: str) -> range:
    def fail(reason: str) -> CronError:
        return CronError(expression, reason, field.name)

    if not item:
        raise fail("empty list item")
    if bad := _BAD_CHAR.search(item):
        raise fail(f"unexpected character {_describe(bad.group())} in {_quote(item)}")
    match = _ITEM.fullmatch(item)
    if match is None:
        raise fail(f"malformed item {_quote(item)}")
    base, step_text = match.group("base"), match.group("step")
    step = 1 if step_text is None else _parse_step(step_text, fail)
    if step_text is not None and base != "*" and "-" not in base:
        raise _single_value_step(field, item, base, step_text, fail)
    start, end = _bounds(field, base, step_text is not None, fail)
    return range(start, end + 1, step)


def _single_value_step(field: _Field, item: str, base: str, step: str, fail: _Fail) -> CronError:
    """`a/n`: cronie's parser takes `/` only after `*` or a range (cronsim reads a-max/n)."""
    value = _parse_value(field, base, fail)  # an invalid value is the first error
    a = base if not base.isdigit() else str(value)
    n = step if len(step) <= _MAX_DIGITS else "n"
    hint = f"write {f'{a}-{field.high}/{n}'!r} or {f'*/{n}'!r}"
    return fail(f"{_quote(item)} steps from a single value: {hint}")


def _bounds(field: _Field, base: str, stepped: bool, fail: _Fail) -> tuple[int, int]:
    """First and last value of `*`, `a` or `a-b`."""
    if base == "*":
        return field.low, field.high
    first, dash, last = base.partition("-")
    start = _parse_value(field, first, fail)
    if not dash:
        return start, start
    end = _parse_value(field, last, fail)
    if start <= end:
        return start, end
    if field.name == "day-of-week" and end == 0 and not stepped:
        return start, 7  # cronie reads `FRI-SUN` as FRI-7 (with a step it selects nothing)
    raise fail(f"range {base} is reversed (start after end)")


def _parse_step(text: str, fail: _Fail) -> int:
    if not text.isdigit():
        raise fail(f"step {_quote(text)} is not a number")
    step = _number(text)
    if step == 0:
        raise fail("step must be at least 1, got 0")
    return _HUGE_STEP if step is None else step  # a step beyond the range is allowed


def _parse_value(field: _Field, text: str, fail: _Fail) -> int:
    if text.isdigit():
        value = _number(text)
        if value is None or not field.low <= value <= field.high:
            shown = _digits(text) if value is None else str(value)
            raise fail(f"{shown} is out of range {field.low}-{field.high}")
        return value
    if not field.names:
        raise fail(f"{_quote(text)} is not a number")
    if text.upper() not in field.names:
        span = f"{field.names[0]}-{field.names[-1]}"
        raise fail(f"unknown name {_quote(text)} (use {span} or numbers)")
    return field.names.index(text.upper()) + field.name_base


def _number(digits: str) -> int | None:
    """The value of an ASCII digit string; None when it has too many digits to be useful."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else None


def _digits(digits: str) -> str:
    significant = digits.lstrip("0")
    return f"{significant[:8]}... ({len(significant)} digits)"


def _quote(text: str) -> str:
    """`text` quoted for a message, non-ASCII escaped (`'MON\\u2013FRI'`), shortened when long."""
    if len(text) <= _SHOWN:
        return ascii(text)
    return f"{text[:_SHOWN]!a}... ({len(text)} characters)"
