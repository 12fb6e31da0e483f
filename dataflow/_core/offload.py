"""Offload blocking calls (state store, sync handlers) to worker threads, and count them.

The count lets `testing.FakeClock` hold virtual time still while real work runs in a thread,
so a run takes no virtual time and a test's timeline does not depend on thread speed.

Calls the loop may abandon (a cancelled handler, a hanging disconnect) are also tracked by
thread: once the event loop has ended, `abandoned_threads()` names those still running, so the
CLI can exit without them (AnyIO's asyncio worker threads are not daemons: one stuck handler
would otherwise keep the process alive for ever after a clean stop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")
_in_flight = {"bookkeeping": 0, "handler": 0}
_abandonable: set[threading.Thread] = set()  # threads now inside a call the loop may abandon
_abandonable_lock = threading.Lock()


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
            tracked(fn) if abandon_on_cancel else fn,
            limiter=limiter,
            abandon_on_cancel=abandon_on_cancel,
        )
    finally:
        _in_flight[kind] -= 1


def threads_in_flight(*, include_handlers: bool) -> int:
    return _in_flight["bookkeeping"] + (_in_flight["handler"] if include_handlers else 0)


def tracked(fn: Callable[[], T]) -> Callable[[], T]:
    """`fn`, noting its thread while it runs: for calls offloaded with `abandon_on_cancel`."""

    def call() -> T:
        thread = threading.current_thread()
        with _abandonable_lock:
            _abandonable.add(thread)
        try:
            return fn()
        finally:
            with _abandonable_lock:
                _abandonable.discard(thread)

    return call


def abandoned_threads(wait: float) -> list[threading.Thread]:
    """After the event loop ended: threads still in an abandonable call, given `wait` seconds
    to return (a handler may be about to notice it was cancelled)."""
    deadline = time.monotonic() + wait
    while True:
        with _abandonable_lock:
            stuck = list(_abandonable)
        if not stuck or time.monotonic() >= deadline:
            return stuck
        time.sleep(0.01)
