"""Test helpers for workflows: a fake clock that jumps straight to the next deadline.

`FakeClock` keeps virtual wall time. With `autojump()` running, whenever every task is blocked
and no handler or state-store call is running in a worker thread, the clock moves to the
earliest pending deadline, so a test of a 15-minute schedule takes milliseconds. Works on
asyncio and trio. `advance()` and `set()` move time by hand (clock steps, long runs).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import anyio
import sniffio

from dataflow._core.offload import threads_in_flight

_SETTLE_ROUNDS = 1000
_EPSILON = 1e-6  # a timedelta keeps microseconds: a monotonic deadline may round below itself


class FakeClock:
    """Virtual wall time (`now()`) and monotonic time (`monotonic()`).

    `advance()` and autojump are time passing: both move. `set()` is a wall-clock step (NTP,
    an operator): only the wall time moves, and monotonic sleepers wake to look again, as a
    trigger noticing the step would.
    """

    def __init__(self, start: datetime, *, hold_during_threads: bool = True) -> None:
        """`hold_during_threads`: autojump waits while a handler or store call runs in a thread
        (a run takes no virtual time). Set False to let time pass while a handler blocks."""
        self.hold_during_threads = hold_during_threads
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware start time")
        self._now = start
        self._mono = 0.0
        self._waiters: list[tuple[datetime, int, anyio.Event]] = []
        self._sleepers: list[tuple[float, int, anyio.Event]] = []  # by monotonic deadline
        self._seq = itertools.count()
        self._waiter_added = anyio.Event()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep_until(self, deadline: datetime) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        heapq.heappush(self._waiters, (deadline, next(self._seq), wake))
        self._waiter_added.set()
        await wake.wait()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        entry = (self._mono + seconds, next(self._seq), wake)
        heapq.heappush(self._sleepers, entry)
        self._waiter_added.set()
        try:
            await wake.wait()
        finally:
            if not wake.is_set():  # cancelled (the cron scheduler's nap): autojump must not
                self._sleepers.remove(entry)  # stop at a deadline nobody waits for
                heapq.heapify(self._sleepers)

    def next_deadline(self) -> datetime | None:
        """The wall time at which the next sleeper (wall or monotonic) is due."""
        due = [self._waiters[0][0]] if self._waiters else []
        if self._sleepers:
            # Rounded up to the microsecond: rounded to the nearest, a deadline less than half a
            # microsecond away is "now", and autojump would advance by nothing for ever.
            wait = math.ceil((self._sleepers[0][0] - self._mono) * 1e6)
            due.append(self._now + timedelta(microseconds=max(wait, 0)))
        return min(due, default=None)

    def advance(self, delta: timedelta | float) -> None:
        """Let `delta` pass: wall and monotonic time move; every sleeper now due wakes."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        self._mono += step.total_seconds()
        while self._sleepers and self._sleepers[0][0] <= self._mono + _EPSILON:
            heapq.heappop(self._sleepers)[2].set()
        self._set_wall(self._now + step)

    def set(self, when: datetime) -> None:
        """Step the wall clock to `when` (forward or back); monotonic time stays. Wall-time
        sleepers now due wake, and monotonic sleepers wake early to notice the step."""
        while self._sleepers:
            heapq.heappop(self._sleepers)[2].set()
        self._set_wall(when)

    def _set_wall(self, when: datetime) -> None:
        self._now = when
        while self._waiters and self._waiters[0][0] <= when:
            heapq.heappop(self._waiters)[2].set()

    @asynccontextmanager
    async def autojump(self) -> AsyncIterator[FakeClock]:
        """Run a background task that jumps to the next deadline whenever all tasks block."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._jump_forever)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _jump_forever(self) -> None:
        while True:
            if not (self._waiters or self._sleepers):
                self._waiter_added = anyio.Event()
                await self._waiter_added.wait()
            # Threads first: a cheap check, where an idle check costs a scheduling round or more
            # (with thousands of tasks, checking idleness while threads run starves them).
            if threads_in_flight(include_handlers=self.hold_during_threads):
                await anyio.sleep(0.0005)
                continue
            await wait_until_idle()
            if threads_in_flight(include_handlers=self.hold_during_threads):
                continue
            deadline = self.next_deadline()
            if deadline is not None:
                self.advance(max(deadline - self._now, timedelta(0)))


async def wait_until_idle() -> None:
    """Return once every other task is blocked (trio's precise check; a bounded poll on asyncio)."""
    if sniffio.current_async_library() == "trio":
        import trio.testing

        await trio.testing.wait_all_tasks_blocked()
        return
    await _asyncio_wait_until_idle()


async def _asyncio_wait_until_idle() -> None:
    import asyncio

    # After our sleep(0) every callback that was ready before it has run; if nothing new is
    # ready (a task step, a future's callback, a thread's result), every task is blocked. One
    # look at the loop's ready queue, where scanning every task made a round O(tasks).
    loop = asyncio.get_running_loop()
    for _ in range(_SETTLE_ROUNDS):
        await asyncio.sleep(0)
        if not loop._ready:  # type: ignore[attr-defined]
            return
