"""structlog set-up: JSON lines for machines, readable lines on a terminal.

Every line logged inside a run carries workflow, trigger and run_id through contextvars,
which AnyIO copies into worker threads, so sync handlers get them too.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog. `fmt` is auto (JSON unless the stream is a TTY), json or console."""
    out = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if use_json else _keep_exc_info,
        _escape_values,
        renderer,
        _escape_line,  # the console renderer adds tracebacks itself: escape what it made
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.ERROR)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def _keep_exc_info(_: Any, __: str, event: Any) -> Any:
    return event  # the console renderer prints tracebacks itself


def escape_surrogates(text: str) -> str:
    """`text` with lone surrogates (undecodable bytes a driver or a file name let through)
    written as `\\udcff`: SQLite, a UTF-8 stream and JSON readers all refuse them as they are."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def error_text(error: BaseException) -> str:
    """The traceback of `error` as text that can be stored and logged whatever it holds."""
    return escape_surrogates("".join(traceback.format_exception(error)).strip())


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {_escape(k): _escape(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_escape(v) for v in value)
    return value


def _escape_values(_: Any, __: str, event: Any) -> Any:
    """No value may break logging: one run's odd text must not take the runtime down."""
    return {key: _escape(value) for key, value in event.items()}


def _escape_line(_: Any, __: str, line: Any) -> Any:
    return escape_surrogates(line) if isinstance(line, str) else line


def get_logger(name: str = "dataflow") -> Any:
    return structlog.get_logger(name)
