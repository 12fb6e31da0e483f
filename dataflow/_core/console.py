"""Log lines for a person at a terminal: short, one run on one line, about 100 columns.

    02:01:30 info  run finished trigger=load_orders run=3f2a9c1e status=succeeded duration=0.012s

What makes them short, against the JSON lines (which keep every field as it was logged):
- the time of day (UTC, like `history`), no date; the level in five letters, no padding;
- `run_id` as `run=` and its first 8 hex digits, enough to find the run in `history --run`;
  `grace_left` as `left=`;
- no `workflow=`: the process runs one workflow, named on its `workflow starting` line;
- `run started` only at debug level: the `run finished` line carries the outcome;
- seconds as `0.012s`, `4.5s`, `3m05s`.
A traceback follows its line, whole, on the lines below.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from typing import Any

import structlog

SHORT_RUN_ID = 8  # hex digits of a run id shown on the console (and by `history`)
_LEVELS = {"warning": "warn", "critical": "crit", "exception": "error"}
_COLORS = {"debug": "\x1b[2m", "warn": "\x1b[33m", "error": "\x1b[31m", "crit": "\x1b[31;1m"}
_RESET = "\x1b[0m"
_SECONDS = frozenset({"duration", "delay", "grace_period", "timeout", "elapsed", "grace_left"})
_SHORT_KEYS = {"grace_left": "left"}  # on a `stopping:` line, what is left is the grace
_QUIET_AT_INFO = frozenset({"run started"})  # the run's end line says all it says
_BARE = re.compile(r"[^\s=\"'\\]+")  # a value written without quotes


class ConsoleLines:
    """structlog's last processor for the console: the event as one readable line."""

    def __init__(self, *, colors: bool, debug: bool) -> None:
        self.colors = colors
        self.debug = debug  # `run started` is shown (as a debug line) only at debug level

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> str:
        fields = dict(event)
        message = str(fields.pop("event", ""))
        raw = str(fields.pop("level", "info"))
        level = _LEVELS.get(raw, raw)
        if message in _QUIET_AT_INFO:
            if not self.debug:
                raise structlog.DropEvent
            level = "debug"
        stamp = str(fields.pop("timestamp", ""))[11:19]
        trace = _traceback(fields.pop("exc_info", None), fields.pop("exception", None))
        words = [stamp, self._level(level), message, *_pairs(fields, message)]
        line = " ".join(word for word in words if word)
        return f"{line}\n{trace}" if trace else line

    def _level(self, level: str) -> str:
        color = _COLORS.get(level) if self.colors else None
        return f"{color}{level:<5}{_RESET}" if color else f"{level:<5}"


def _pairs(fields: dict[str, Any], message: str) -> list[str]:
    """`key=value` words: the run's trigger and id first, the logger's name last."""
    if not message.startswith("workflow "):  # one workflow per process: named once, at start
        fields.pop("workflow", None)
    run_id = fields.pop("run_id", None)
    first = {"trigger": fields.pop("trigger", None), "run": _short(run_id)}
    last = {"logger": fields.pop("logger", None)}
    ordered = {**first, **fields, **last}
    return [
        f"{_SHORT_KEYS.get(key, key)}={_value(key, value)}"
        for key, value in ordered.items()
        if value is not None
    ]


def _short(run_id: Any) -> Any:
    return run_id[:SHORT_RUN_ID] if isinstance(run_id, str) else run_id


def _value(key: str, value: Any) -> str:
    if key in _SECONDS and isinstance(value, int | float) and not isinstance(value, bool):
        return seconds(value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, str):
        return value if _BARE.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return _value("", str(value))


def seconds(value: float) -> str:
    """`0.012s`, `4.5s`, `42s`, `3m05s`, `2h03m`."""
    if value < 10:
        return f"{value:.3f}s" if value < 1 else f"{value:.1f}s"
    whole = round(value)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _traceback(exc_info: Any, exception: Any) -> str:
    """The traceback text of `exc_info` (an exception, a `sys.exc_info()` tuple, or True)."""
    if isinstance(exception, str):
        return exception.rstrip()
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if not isinstance(error, BaseException):
        return ""
    return "".join(traceback.format_exception(error)).rstrip()
