"""Wall-clock time, injected: the runtime asks a `Clock`, so tests can use a fake one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import anyio

from dataflow._core.exports import publish

# Sleep in slices so a wall-clock step (NTP, suspend) is noticed within this many seconds.
_MAX_SLICE_SECONDS = 60.0


class Clock(Protocol):
    def now(self) -> datetime:
        """The current aware wall-clock time."""
        ...

    async def sleep_until(self, deadline: datetime) -> None:
        """Return once `now() >= deadline`."""
        ...

    def monotonic(self) -> float:
        """Seconds that only ever advance with real time: compared with `now()`, it tells a
        wall-clock step (NTP, an operator, a suspend) from a loop that was merely late."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds` of monotonic time; may return early (callers look again)."""
        ...


class SystemClock:
    """The real clock. Sleeps re-read the wall clock so clock jumps move deadlines with them."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime) -> None:
        while (remaining := (deadline - self.now()).total_seconds()) > 0:
            await anyio.sleep(min(remaining, _MAX_SLICE_SECONDS))
        await anyio.lowlevel.checkpoint()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(min(seconds, _MAX_SLICE_SECONDS))


def iso(value: datetime | None, *, utc: bool = False) -> str | None:
    """ISO 8601 text for logs and the state store (`utc`: converted first); None stays None."""
    if value is None:
        return None
    return (value.astimezone(UTC) if utc else value).isoformat()


publish("dataflow", Clock, SystemClock)
