"""structlog set-up: JSON lines for machines, readable lines on a terminal (`console.py`).

Every line logged inside a run carries workflow, trigger and run_id through contextvars,
which AnyIO copies into worker threads, so sync handlers get them too.

Lines are written by a thread of their own (`LineWriter`), never by the caller: a reader that
stalls (a full pipe nobody drains) or goes away (a closed pipe) must not stop the runtime
from firing, nor a stop from finishing. Lines that cannot be written are dropped and counted.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, TextIO

import structlog

from dataflow._core.console import ConsoleLines
from dataflow._core.redact import redact_text

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_QUEUE_LINES = 10_000  # lines held for a slow reader before new ones are dropped
_EXIT_DRAIN_SECONDS = 1.0  # at exit, how long queued lines get to reach a slow reader


class LineWriter:
    """A file-like object whose `write` queues and returns at once; a daemon thread writes.

    An in-memory stream (no file descriptor: tests, `io.StringIO`) cannot stall; it is written
    at once, in order, by the caller.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._fd = _fileno(stream)
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self.dropped = 0  # lines lost to a full queue or a failing stream
        self._lines: queue.Queue[str] = queue.Queue(_QUEUE_LINES)
        self._pending = 0  # lines queued and not yet written
        self._count_lock = threading.Lock()
        self._memory_lock = threading.Lock()
        if self._fd is not None:
            _line_buffered(stream)
            threading.Thread(target=self._serve, name="dataflow-log", daemon=True).start()

    def write(self, text: str) -> int:
        if self._fd is None:
            with self._memory_lock:
                try:
                    self.stream.write(text)
                except (OSError, ValueError):  # closed: a log line must never stop a run
                    self.dropped += 1
            return len(text)
        with self._count_lock:
            self._pending += 1
        try:
            self._lines.put_nowait(text)
        except queue.Full:
            self._written(dropped=True)
        return len(text)

    def _written(self, *, dropped: bool = False) -> None:
        with self._count_lock:
            self._pending -= 1
            self.dropped += dropped

    def flush(self) -> None:
        """Lines are flushed by the writer thread; the caller never waits for the reader."""

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for queued lines to be written; True if they were."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _serve(self) -> None:
        while True:
            text = self._lines.get()
            try:
                self._write(text)
            except (OSError, ValueError):  # a closed pipe (EPIPE), a closed file
                self._written(dropped=True)
            else:
                self._written()

    def _write(self, text: str) -> None:
        assert self._fd is not None
        # Straight to the file descriptor, not through the stream's buffer: a write blocked on
        # a stalled reader then holds no lock that the interpreter needs at exit. A lone
        # surrogate (from a handler's message) is escaped rather than crash the line.
        data = text.encode(self._encoding, "backslashreplace")
        while data:
            data = data[os.write(self._fd, data) :]


def _line_buffered(stream: TextIO) -> None:
    """A handler's `print()` shares the file descriptor with the log: line buffering makes
    its output reach it line by line, so the two never mix inside one line. Write-through is
    turned off too: under `python -u` / PYTHONUNBUFFERED it passes `print`'s text and its
    newline down as two writes, and a log line written between them splices into the text."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(OSError, ValueError):  # detached or closed: nothing to mix
            reconfigure(line_buffering=True, write_through=False)


def _fileno(stream: TextIO) -> int | None:
    try:
        stream.flush()  # what was buffered before goes first
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


_writers: list[LineWriter] = []


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog. `fmt` is auto (JSON unless the stream is a TTY), json or console."""
    out = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    threshold = _LEVELS.get(level, logging.ERROR)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else ConsoleLines(colors=out.isatty(), debug=threshold <= logging.DEBUG)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if use_json else _keep_exc_info,
        _escape_values,
        renderer if use_json else _masked(renderer),
        _escape_line,  # the console lines add tracebacks themselves: escape what they made
    ]
    writer = LineWriter(out)
    _writers.append(writer)
    _route_stdlib_logging(threshold)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.WriteLoggerFactory(writer),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


class _ToStructlog(logging.Handler):
    """stdlib `logging` (a handler's `logging.getLogger(...)`, pymongo, urllib3) through the same
    pipeline: same format, same level, and the run's context (workflow, trigger, run_id), which
    contextvars carry to the thread that logs."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad %-format in someone's call: keep the raw text
            message = str(record.msg)
        structlog.get_logger(record.name).log(
            record.levelno, message, logger=record.name, exc_info=record.exc_info or None
        )


def _route_stdlib_logging(level: int) -> None:
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _ToStructlog)]
    root.addHandler(_ToStructlog())
    root.setLevel(level)


def dropped_log_lines() -> int:
    """Lines logging could not write (reader gone or too slow), since the process started."""
    return sum(writer.dropped for writer in _writers)


@atexit.register
def drain_logs(timeout: float = _EXIT_DRAIN_SECONDS) -> None:
    """Give queued lines a bounded moment to reach the reader; a stalled one is not waited for."""
    for writer in _writers:
        writer.drain(timeout)


def _masked(renderer: Any) -> Any:
    """The console line with every registered secret hidden: the console renderer formats a
    traceback (its source lines may hold a URI with a password) itself, after the values."""

    def render(logger: Any, method: str, event: Any) -> str:
        return redact_text(renderer(logger, method, event))

    return render


def _keep_exc_info(_: Any, __: str, event: Any) -> Any:
    return event  # the console lines print tracebacks themselves


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
    """Every string value escaped and masked before rendering: after JSON rendering a secret
    may no longer read as itself (`\u00e4`, `\"`), and masking there could break the JSON."""
    if isinstance(value, str):
        return redact_text(escape_surrogates(value))
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


def debug_enabled() -> bool:
    """Whether a debug line would be written: code that logs once per change event asks first
    (a call filtered out still binds a logger, some microseconds each). The answer is kept per
    wrapper class (a new configuration brings a new one)."""
    wrapper = structlog.get_config()["wrapper_class"]
    known = _debug_by_wrapper.get(wrapper)
    if known is None:
        check = getattr(wrapper, "is_enabled_for", None)
        known = _debug_by_wrapper[wrapper] = (
            True if check is None else bool(check(None, logging.DEBUG))
        )
    return known


_debug_by_wrapper: dict[Any, bool] = {}
