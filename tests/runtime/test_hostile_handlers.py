"""Handlers that misbehave (BaseException, lone surrogates, coroutines from sync handlers):
the run is recorded failed, the trigger and every other trigger go on."""

from __future__ import annotations

import functools
import io
import json
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from dataflow import Workflow, cronjob
from dataflow._core.handlers import is_async_handler
from dataflow._core.logs import configure_logging, get_logger
from dataflow.state import RunRecord, StateStore
from tests._runtime import captured_logs, running, until

pytestmark = pytest.mark.anyio


class Hostile(BaseException):
    """A BaseException subclass no handler should raise, and one will."""


RAISED: list[BaseException] = [
    SystemExit(3),
    KeyboardInterrupt(),
    Hostile("hostile"),
    GeneratorExit(),
    ValueError("bad byte \udcff in a row"),
]


def records(tmp_path: Path, trigger: str) -> list[RunRecord]:
    store = StateStore(tmp_path / "state.db")
    try:
        return list(reversed(store.runs("w", trigger, limit=1000)))
    finally:
        store.close()


def two_triggers(bad: Callable[..., Any], good: Callable[..., Any]) -> Workflow:
    """Workflow "w": trigger "bad" and trigger "good", both every minute."""
    attrs = {
        "workflow_name": "w",
        "bad": staticmethod(cronjob("* * * * *", name="bad")(bad)),
        "good": staticmethod(cronjob("* * * * *", name="good")(good)),
    }
    return type("W", (Workflow,), attrs)()  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("error", RAISED, ids=lambda e: type(e).__name__)
async def test_a_handler_raising_anything_fails_its_run_and_nothing_else(
    tmp_path: Path, kind: str, error: BaseException
) -> None:
    """SystemExit, KeyboardInterrupt, GeneratorExit, any BaseException, a lone surrogate:
    the run is failed with the type, the trigger fires again, the other trigger goes on."""
    good: list[int] = []

    def raise_sync() -> None:
        raise error

    async def raise_async() -> None:
        raise error

    def tick() -> None:
        good.append(1)

    wf = two_triggers(raise_sync if kind == "sync" else raise_async, tick)
    with captured_logs() as logs:
        async with running(wf, tmp_path):
            await until(lambda: len(good) >= 3 and len(records(tmp_path, "bad")) >= 3)
    bad = records(tmp_path, "bad")
    assert [r.status for r in bad[:3]] == ["failed"] * 3
    assert all(type(error).__name__ in (r.error or "") for r in bad[:3])
    assert {r.status for r in records(tmp_path, "good")} == {"succeeded"}
    assert any(e["event"] == "run failed" and e["trigger"] == "bad" for e in logs)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_logged_value_can_break_logging(fmt: str) -> None:
    """A lone surrogate in any value or traceback is written escaped, as valid UTF-8."""
    out = io.StringIO()
    configure_logging(fmt, stream=out)
    try:
        try:
            raise ValueError("bad byte \udcff")
        except ValueError as exc:
            get_logger().error("run failed", exc_info=exc, error=str(exc), rows=["\udcfe"])
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    text.encode("utf-8")  # strict: raises on a lone surrogate
    if fmt == "console":
        assert "bad byte \\udcff" in text
    else:
        line = json.loads(text)
        assert line["error"] == "bad byte \\udcff" and line["rows"] == ["\\udcfe"]


def sync_wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An ordinary decorator: a sync wrapper that hides an async function."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


async def test_an_async_handler_behind_a_wraps_decorator_is_awaited(tmp_path: Path) -> None:
    """`functools.wraps` over an async handler: it is awaited on the loop, so it really runs."""
    ran: list[int] = []

    @sync_wrapper
    async def bad() -> None:
        ran.append(1)

    async with running(two_triggers(bad, lambda: None), tmp_path):
        await until(lambda: len(records(tmp_path, "bad")) >= 2)
    assert len(ran) >= 2
    assert {r.status for r in records(tmp_path, "bad")} == {"succeeded"}


async def test_a_sync_handler_returning_a_coroutine_fails_its_run(tmp_path: Path) -> None:
    """Nothing ran: the run is failed with a TypeError that says what to do, and the coroutine
    is closed (no "never awaited" warning)."""
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    def bad() -> Awaitable[None]:
        return work()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with running(two_triggers(bad, lambda: None), tmp_path):
            await until(lambda: len(records(tmp_path, "bad")) >= 2)
    bad_runs = records(tmp_path, "bad")
    assert ran == [] and {r.status for r in bad_runs} == {"failed"}
    assert "returned a coroutine: declare it `async def`" in (bad_runs[0].error or "")
    assert not [w for w in caught if "never awaited" in str(w.message)]


class AsyncCall:
    async def __call__(self) -> None:
        return None


def test_async_handlers_are_recognised_through_wrappers() -> None:
    """One helper decides for the dispatcher and the change-stream pump."""

    async def handler() -> None:
        return None

    def plain() -> None:
        return None

    assert is_async_handler(handler) and is_async_handler(sync_wrapper(handler))
    assert is_async_handler(functools.partial(sync_wrapper(handler)))
    assert is_async_handler(AsyncCall()) and not is_async_handler(AsyncCall)
    assert not is_async_handler(plain) and not is_async_handler(sync_wrapper(plain))


def test_a_closed_log_stream_costs_lines_not_the_caller() -> None:
    """Logging into a stream someone closed drops (and counts) the line instead of raising
    into the run or the runtime that logged it."""
    from dataflow._core.logs import dropped_log_lines

    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        out.close()
        before = dropped_log_lines()
        get_logger().info("nobody reads this")
        assert dropped_log_lines() == before + 1
    finally:
        structlog.reset_defaults()


def test_stdlib_logging_goes_through_the_same_pipeline_with_the_run_context() -> None:
    """`logging.getLogger(...)` in a handler or a library: same format, the configured level,
    and the run's workflow, trigger and run id on the line."""
    import logging

    from structlog.contextvars import bound_contextvars

    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        with bound_contextvars(workflow="w", trigger="t", run_id="r1"):
            logging.getLogger("etl").warning("rows %d skipped", 3)
            logging.getLogger("etl").debug("below the level")
    finally:
        structlog.reset_defaults()
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["event"] == "rows 3 skipped" and line["logger"] == "etl"
    assert (line["level"], line["workflow"], line["trigger"], line["run_id"]) == (
        "warning",
        "w",
        "t",
        "r1",
    )
