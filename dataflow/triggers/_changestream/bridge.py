"""The pump thread's way back to the event loop: async handler runs, and clock sleeps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import anyio

from dataflow._core.clock import Clock

T = TypeVar("T")


class LoopBridge:
    """The pump thread's way back to the loop: async handler runs, and sleeps on the clock.

    Each call runs in a cancel scope that `cancel()` cancels: a hard stop ends it on both
    backends (on trio a call from an abandoned thread would otherwise run until the loop ends).
    """

    def __init__(self, clock: Clock, stopping: anyio.Event) -> None:
        self.clock, self.stopping = clock, stopping
        self.scopes: set[anyio.CancelScope] = set()
        self.cancelled = False
        self._cancelled_exc = anyio.get_cancelled_exc_class()

    def call(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        """From the pump thread: `await fn()` on the loop; None if cancelled or the loop is gone."""
        try:
            return anyio.from_thread.run(self._scoped, fn)
        except (anyio.RunFinishedError, self._cancelled_exc):
            return None

    def sleep(self, seconds: float) -> bool:
        """From the pump thread: wait on the clock, or until stopping; False on a hard stop."""
        return self.call(lambda: self._nap(seconds)) is not None

    def cancel(self) -> None:
        self.cancelled = True
        for scope in list(self.scopes):
            scope.cancel()

    async def _scoped(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        with anyio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                if self.cancelled:
                    scope.cancel()
                return await fn()
            finally:
                self.scopes.discard(scope)
        return None

    async def _nap(self, seconds: float) -> bool:
        deadline = self.clock.now() + timedelta(seconds=seconds)
        async with anyio.create_task_group() as tg:
            tg.start_soon(set_when, self.stopping, tg.cancel_scope.cancel)
            await self.clock.sleep_until(deadline)
            tg.cancel_scope.cancel()
        return True


async def set_when(event: anyio.Event, action: Callable[[], object]) -> None:
    await event.wait()
    action()
