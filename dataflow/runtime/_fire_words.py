"""One line per fire time: what the fire ledger says became of it, in the trigger's zone."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from dataflow.state import FireEntry, FireOutcome, RunRecord
from dataflow.triggers._cron.schedule import CronSchedule

_NO_ENTRY = (
    "no ledger entry: before the ledger was kept, pruned by the history retention, or "
    "claimed by another replica"
)


class FireWords:
    """Words for one cron trigger's fires: times in its zone, to the second if it has seconds.

    `replicas`: several replicas run the trigger, so a run says which replica ran it, unless
    it is `here` (the replica asking: the status page names only the others' runs).
    """

    def __init__(self, schedule: CronSchedule, *, here: str | None = None) -> None:
        self.schedule = schedule
        self.zone = schedule.timezone
        self._clock = "%H:%M:%S" if schedule.has_seconds else "%H:%M"
        self.replicas, self.here = False, here

    def when(self, instant: datetime) -> str:
        """`2026-03-29 03:00 CEST`"""
        return instant.astimezone(self.zone).strftime(f"%Y-%m-%d {self._clock} %Z")

    def clock(self, instant: datetime, day: datetime) -> str:
        """The time of day, with the date when it is not `day`'s."""
        local, other = instant.astimezone(self.zone), day.astimezone(self.zone)
        return local.strftime(self._clock) if local.date() == other.date() else self.when(local)

    def line(
        self, fire_at: datetime, entry: FireEntry | None, run: RunRecord | None, now: datetime
    ) -> str:
        """The fire's line: its time, then its outcome (a DST gap says which wall time it
        stands for, as cron runs it)."""
        what = self.outcome(fire_at, entry, run, now)
        wall = self.schedule.gap_wall(fire_at)
        if wall is None:
            return f"{self.when(fire_at)}: {what}"
        gone = f"{wall.strftime(self._clock)} {self.zone.key} on {wall.date()} did not exist"
        moved = self.when(fire_at).split(" ", 1)[1]
        if entry is not None and entry.outcome is FireOutcome.RAN:
            return f"{gone}; ran at {moved} as cron does: {self.run(entry.run_id, run, now)}"
        return f"{gone}; cron fires it at {moved}: {what}"

    def outcome(
        self, fire_at: datetime, entry: FireEntry | None, run: RunRecord | None, now: datetime
    ) -> str:
        if entry is None:
            return "not due yet" if fire_at > now else _NO_ENTRY
        ran = self.run(entry.run_id, run, now)
        reason = entry.reason or ""
        match entry.outcome:
            case FireOutcome.RAN:
                return f"ran: {ran}"
            case FireOutcome.CAUGHT_UP:
                return f"caught up: {ran} ({reason})"
            case FireOutcome.BACKFILLED:
                return f"backfilled: {ran}" + (f" ({reason})" if reason else "")
            case FireOutcome.SKIPPED if reason.startswith("overlap=skip"):
                return f"skipped: {self._running(entry, fire_at)} was still running (overlap=skip)"
            case FireOutcome.COALESCED if entry.related_at is not None:
                return f"coalesced into the {self.clock(entry.related_at, fire_at)} fire: {reason}"
            case FireOutcome.CLAIMED:
                return (
                    "claimed; no run started for it yet (queued behind a running one, or the "
                    "process stopped first)"
                )
        return f"{entry.outcome.value}: {reason}"

    def _running(self, entry: FireEntry, fire_at: datetime) -> str:
        at = "" if entry.related_at is None else f" {self.clock(entry.related_at, fire_at)}"
        run = "" if entry.run_id is None else f" (run {entry.run_id[:8]})"
        return f"the{at} run{run}"

    def run(self, run_id: str | None, run: RunRecord | None, now: datetime) -> str:
        if run_id is None:
            return "no run recorded"
        short = f"run {run_id[:8]}"
        if run is None:
            return f"{short} (its record was pruned)"
        if self.replicas and run.replica is not None and run.replica != self.here:
            short += f" by replica {run.replica}"
        if run.status == "running":
            return f"{short}, running for {_seconds((now - run.started_at).total_seconds())}"
        if run.ended_at is None:  # interrupted: the process that ran it stopped
            return f"{short}, {run.status}"
        took = _seconds((run.ended_at - run.started_at).total_seconds())
        return f"{short}, {run.status} in {took}"

    def not_a_fire_time(self, instant: datetime) -> str:
        """Names the schedule's fire times either side of `instant`."""
        near = []
        instant = instant.astimezone(UTC)  # wall arithmetic in a zone would land in a gap
        tick = timedelta(microseconds=1)  # `instant` itself may fire, for another wall time
        for find, at in (
            (self.schedule.previous_before, instant),
            (self.schedule.next_after, instant - tick),
        ):
            with contextlib.suppress(ValueError):  # none before year 1 or after 9999
                near.append(self.when(find(at)))
        return (
            f"{self.when(instant)} is not a fire time of `{self.schedule.expression}`; "
            f"the nearest are {' and '.join(near)}"
        )


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.1f} min"
