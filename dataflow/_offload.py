"""Offload blocking calls (state store, sync handlers) to worker threads, and count them.

The count lets `testing.FakeClock` hold virtual time still while real work runs in a thread,
so a run takes no virtual time and a test's timeline does not depend on thread speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")
_in_flight = {"bookkeeping": 0, "handler": 0}


async def run_sync(
    fn: Callable[[], T],
    *,
    limiter: anyio.CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
    kind: str = "bookkeeping",
) -> T:
    """Run `fn` in a worker thread; `kind` is "bookkeeping" (runtime I/O) or "handler"."""
    _in_flight[kind] += 1
    try:
        return await anyio.to_thread.run_sync(
            fn, limiter=limiter, abandon_on_cancel=abandon_on_cancel
        )
    finally:
        _in_flight[kind] -= 1


def threads_in_flight(*, include_handlers: bool) -> int:
    return _in_flight["bookkeeping"] + (_in_flight["handler"] if include_handlers else 0)
