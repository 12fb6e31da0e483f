"""Console log lines a person reads: a run on one line, short run id, no `workflow=`, about 100
columns; the JSON lines keep every field as before."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import structlog
from structlog.contextvars import bound_contextvars

from dataflow._core.logs import configure_logging, get_logger
from dataflow._core.redact import register_secret
from dataflow.runtime._stopping import say_waiting

RUN_ID = uuid.UUID(int=0x3F2A9C1E_0000_4000_8000_000000000001).hex
TRIGGER = "load_orders_hourly"  # 18 characters: the longest that keeps a run in 100 columns


@contextmanager
def logging_to(fmt: str, level: str = "info") -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(fmt, level, stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()


def log_a_run(*, fail: bool = False) -> None:
    """What the run book logs for one run (the same calls, the same fields)."""
    log = get_logger("dataflow.run")
    with bound_contextvars(workflow="conrad", trigger=TRIGGER, run_id=RUN_ID):
        log.info("run started", scheduled_at="2026-03-02T09:15:00+00:00", attempt=1)
        if fail:
            try:
                raise ValueError("bad row 42")
            except ValueError as exc:
                log.error("run failed", exc_info=exc, error=f"ValueError: {exc}")
        log.info("run finished", status="failed" if fail else "succeeded", duration=0.01234)


def test_a_run_is_one_console_line_with_a_short_id_and_no_workflow() -> None:
    with logging_to("console") as out:
        log_a_run()
    [line] = out.getvalue().splitlines()
    words = line.split(" ")
    assert words[1:] == [
        "info",
        "",
        "run",
        "finished",
        f"trigger={TRIGGER}",
        "run=3f2a9c1e",
        "status=succeeded",
        "duration=0.012s",
    ]
    assert len(words[0]) == 8 and words[0].count(":") == 2  # the time of day
    assert len(line) <= 100 and "workflow" not in line


def test_at_debug_the_console_shows_the_run_start_as_a_debug_line() -> None:
    with logging_to("console", "debug") as out:
        log_a_run()
    start, end = out.getvalue().splitlines()
    assert start.split()[1:4] == ["debug", "run", "started"]
    assert "run=3f2a9c1e" in start and "attempt=1" in start
    assert "run finished" in end


def test_a_failed_run_shows_its_traceback_below_its_line() -> None:
    with logging_to("console") as out:
        log_a_run(fail=True)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[1:4] == ["error", "run", "failed"]
    assert 'error="ValueError: bad row 42"' in lines[0] and "run=3f2a9c1e" in lines[0]
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-2] == "ValueError: bad row 42"
    assert "status=failed" in lines[-1] and "duration=0.012s" in lines[-1]


def test_json_lines_keep_every_field_and_the_run_start() -> None:
    with logging_to("json") as out:
        log_a_run()
    started, finished = (json.loads(line) for line in out.getvalue().splitlines())
    assert started["event"] == "run started" and started["level"] == "info"
    assert started["scheduled_at"] == "2026-03-02T09:15:00+00:00" and started["attempt"] == 1
    for line in (started, finished):
        assert (line["workflow"], line["trigger"], line["run_id"]) == ("conrad", TRIGGER, RUN_ID)
    assert finished["duration"] == 0.01234 and finished["status"] == "succeeded"


def test_workflow_lines_still_name_the_workflow_on_the_console() -> None:
    with logging_to("console") as out:
        get_logger().info("workflow starting", workflow="conrad", triggers=3)
    assert out.getvalue().split()[1:] == [
        "info",
        "workflow",
        "starting",
        "workflow=conrad",
        "triggers=3",
    ]


def test_console_values_are_quoted_escaped_and_masked() -> None:
    """A value with spaces or a newline stays one quoted word; a secret is masked, in the
    line and in the traceback below it."""
    register_secret("s3cr3t-console-pw")
    with logging_to("console") as out:
        try:
            raise ConnectionError("login with s3cr3t-console-pw refused")
        except ConnectionError as exc:
            get_logger().error("connect failed", exc_info=exc, detail="two\nlines", rows=[1, 2])
    text = out.getvalue()
    first = text.splitlines()[0]
    assert 'detail="two\\nlines"' in first and "rows=[1, 2]" in first
    assert "s3cr3t-console-pw" not in text and "login with *** refused" in text


def test_a_stop_progress_line_names_the_run_within_100_columns() -> None:
    """The stop's line, as `say_waiting` logs it: `left=` on the console, `grace_left` in JSON."""

    class Running:
        trigger, run_id = "load_orders", RUN_ID
        started_at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    now = Running.started_at + timedelta(seconds=7.84)
    for fmt in ("console", "json"):
        with logging_to(fmt) as out:
            say_waiting([Running()], 25.0, now)  # type: ignore[list-item]
        text = out.getvalue()
        if fmt == "json":
            line = json.loads(text)
            assert (line["run_id"], line["elapsed"], line["grace_left"]) == (RUN_ID, 7.8, 25.0)
        else:
            assert text.split()[1:] == [
                "info",
                "stopping:",
                "waiting",
                "for",
                "run",
                "trigger=load_orders",
                "run=3f2a9c1e",
                "elapsed=7.8s",
                "left=25s",
            ]
            assert len(text.rstrip("\n")) <= 100
