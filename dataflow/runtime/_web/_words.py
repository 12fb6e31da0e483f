"""A cron expression in words for the status page: `every 5 seconds`, `at 02:30 on weekdays`.

Only the common shapes are put in words; anything else is shown as the expression itself,
which is never wrong.
"""

from __future__ import annotations

import re

_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_STEP = re.compile(r"^\*/(\d+)$")
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def cron_in_words(expression: str) -> str:
    fields = _ALIASES.get(expression.strip().lower(), expression).split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        return f"cron {expression}"
    second, minute, hour, dom, month, dow = fields
    when = _time_of_day(second, minute, hour)
    days = _days(dom, month, dow)
    if when is None or days is None:
        return f"cron {expression}"
    return " ".join(part for part in (when, days) if part)


def _time_of_day(second: str, minute: str, hour: str) -> str | None:
    if second != "0":
        if minute == hour == "*":
            return _every(second, "second")
        return None
    if hour == "*":
        if minute == "*" or _STEP.match(minute):
            return _every(minute, "minute")
        return f"every hour at :{int(minute):02d}" if minute.isdigit() else None
    if minute.isdigit() and hour.isdigit():
        return f"at {int(hour):02d}:{int(minute):02d}"
    step = _STEP.match(hour)
    if minute.isdigit() and step:
        return f"every {step[1]} hours at :{int(minute):02d}"
    return None


def _every(field: str, unit: str) -> str | None:
    if field == "*":
        return f"every {unit}"
    step = _STEP.match(field)
    return None if step is None else f"every {step[1]} {unit}s"


def _days(dom: str, month: str, dow: str) -> str | None:
    if dom == "*" and month == "*":
        if dow == "*":
            return ""
        if dow == "1-5":
            return "on weekdays"
        if re.fullmatch(r"[0-7](,[0-7])*", dow):
            return "on " + ", ".join(_DAYS[int(day)] for day in dow.split(","))
        return None
    if dow == "*" and dom.isdigit():
        if month == "*":
            return f"on day {int(dom)} of the month"
        if month.isdigit() and 1 <= int(month) <= 12:
            return f"on {_MONTHS[int(month)]} {int(dom)}"
    return None
