"""Waiting for a fire time while telling wall-clock steps from lateness.

A wall-clock step (NTP, an operator, a suspend) moves `now()` without monotonic time; a loop
that was merely late (a handler blocked it, the machine was busy) sees both advance alike.
The cron trigger sleeps on monotonic time, in slices, and compares the two on every wake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dataflow._core.clock import Clock

STEP_TOLERANCE = timedelta(seconds=1)  # wall/monotonic disagreement below this is no step


@dataclass
class StepWatch:
    """Remembers wall and monotonic time at the last look; `look()` says how far the wall
    clock stepped since (positive: forward)."""

    clock: Clock
    wall: datetime = field(init=False)
    mono: float = field(init=False)

    since: datetime = field(init=False)  # the previous look, read on today's wall clock

    def __post_init__(self) -> None:
        self.wall, self.mono = self.clock.now(), self.clock.monotonic()
        self.since = self.wall

    def look(self) -> tuple[datetime, timedelta]:
        """(now, step): the wall time, and how much of its move since the last look was a step."""
        wall, mono = self.clock.now(), self.clock.monotonic()
        passed = timedelta(seconds=mono - self.mono)
        step = (wall - self.wall) - passed
        self.wall, self.mono, self.since = wall, mono, wall - passed
        return wall, step if abs(step) > STEP_TOLERANCE else timedelta(0)

    async def wait_until(self, deadline: datetime) -> tuple[datetime, timedelta]:
        """Sleep until `deadline` on the wall clock, or until the wall clock steps; returns
        (now, step), step zero when the deadline came without one."""
        while True:
            now, step = self.look()
            if step or now >= deadline:
                return now, step
            await self.clock.sleep((deadline - now).total_seconds())
