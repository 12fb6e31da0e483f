"""Run a workflow under the fake clock inside a test, and wait for conditions safely."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog
from structlog.contextvars import merge_contextvars

from dataflow import Runtime, Settings, Workflow
from dataflow.testing import FakeClock


def captured_logs() -> AbstractContextManager[list[structlog.typing.EventDict]]:
    """structlog's capture_logs, with the run context (workflow, trigger, run_id) merged in."""
    return structlog.testing.capture_logs(processors=[merge_contextvars])


START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC


@asynccontextmanager
async def running(
    workflow: Workflow,
    tmp_path: Path,
    *,
    clock: FakeClock | None = None,
    grace: float = 5.0,
    autojump: bool = True,
) -> AsyncIterator[Runtime]:
    """Run `workflow` in the background on a fake clock; stop it (gracefully) on exit.

    With `autojump=False` time moves only when the test calls `clock.set()`/`advance()`.
    """
    clock = clock or FakeClock(START)
    settings = Settings(state_path=tmp_path / "state.db", grace_period=grace)
    runtime = Runtime(workflow, settings=settings, clock=clock)
    async with AsyncExitStack() as stack:
        if autojump:
            await stack.enter_async_context(clock.autojump())
        tg = await stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(runtime.run)
        await until(runtime.started.is_set)
        yield runtime
        runtime.stop()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (in real time, bounded) until `condition()` holds. The bound is generous: a busy
    2-core machine (CI running other suites) can take seconds to get a thread to run."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.001)
