"""How the dispatcher calls an async handler, and how it tells the loop's own cancellation from
what a handler raised."""

from __future__ import annotations

import asyncio
import sys
from typing import Protocol

import anyio

from dataflow.triggers.base import RunRequest


class Expiring(Protocol):
    def expire(self) -> None: ...


async def call_async(run: Expiring, request: RunRequest) -> BaseException | None:
    """Await an async handler within its timeout; return what it raised (anything at all).
    At the timeout, `run.expire()` (a `Run`, or a change event's `EventRun`)."""
    if request.policy.timeout is None:  # no scope to enter and leave (once per change event)
        try:
            await request.handler(*request.args)
        except anyio.get_cancelled_exc_class():
            raise  # the runtime's stop
        except BaseException as exc:  # SystemExit, GeneratorExit included: the run failed
            return exc
        return None
    with anyio.move_on_after(request.policy.timeout) as scope:
        try:
            await request.handler(*request.args)
        except anyio.get_cancelled_exc_class():
            raise  # the timeout (caught just above) or the runtime's stop
        except BaseException as exc:  # SystemExit, GeneratorExit included: the run failed
            return exc
    if scope.cancelled_caught:
        run.expire()
    return None


def is_cancellation(exc: BaseException) -> bool:
    """The loop's cancellation, as a call from a worker thread sees it (asyncio or trio):
    outside the loop there is no current backend to ask for its cancellation class."""
    trio = sys.modules.get("trio")
    return isinstance(exc, asyncio.CancelledError) or (
        trio is not None and isinstance(exc, trio.Cancelled)
    )
