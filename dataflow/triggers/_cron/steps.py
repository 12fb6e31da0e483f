"""Telling wall-clock steps from lateness.

A wall-clock step (NTP, an operator, a suspend) moves `now()` without monotonic time; a loop
that was merely late (a handler blocked it, the machine was busy) sees both advance alike.
The cron scheduler sleeps on monotonic time (in slices on the real clock) and compares the
two on every wake: it is the one watcher of the wall clock for all cron triggers.
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


LATE_REPORT_EVERY = 10.0  # seconds of monotonic time between two "woke late" warnings


@dataclass
class LateReport:
    """Late fires (no step: the loop was blocked or the machine overloaded), logged at once and
    then at most every `LATE_REPORT_EVERY` seconds, counting every late fire since the last
    line: an overloaded scheduler is late on each wake, and a line per wake would flood the log.
    Every late fire also has its run or its skipped record."""

    clock: Clock
    triggers: set[str] = field(default_factory=set)
    due: int = 0
    late: float = 0.0  # the latest any of them woke, in seconds
    said_at: float | None = None

    def add(self, trigger: str, due: int, late: timedelta) -> None:
        self.triggers.add(trigger)
        self.due += due
        self.late = max(self.late, late.total_seconds())

    def report(self) -> dict[str, object] | None:
        """The warning's fields when one is due (and start counting anew), else None."""
        mono = self.clock.monotonic()
        if not self.triggers or (
            self.said_at is not None and mono - self.said_at < LATE_REPORT_EVERY
        ):
            return None
        who = {"trigger": next(iter(self.triggers))} if len(self.triggers) == 1 else {}
        fields = {**who, "triggers": len(self.triggers), "due": self.due, "late": self.late}
        self.triggers, self.due, self.late, self.said_at = set(), 0, 0.0, mono
        return fields
