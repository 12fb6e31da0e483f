"""The fire ledger rows a cron trigger writes for fires that did not simply run: what became of
each, and why (`dataflow.state._ledger`). Built here, written by the store call that decided
them (the claim of the fire that ran for them, or the skipped record)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from dataflow.state import FireEntry, FireOutcome
from dataflow.triggers.base import RunHandle, RunRequest

DOWNTIME = "after downtime"
STEPPED = "the wall clock stepped forward"
LATE = "the trigger woke late"


def coalesced(fires: Iterable[datetime], into: datetime, why: str) -> list[FireEntry]:
    """Fires one later fire (`into`) ran for."""
    return [
        FireEntry(fire_at=f, outcome=FireOutcome.COALESCED, reason=why, related_at=into)
        for f in fires
    ]


def missed(fires: Iterable[datetime], why: str) -> list[FireEntry]:
    return [FireEntry(fire_at=f, outcome=FireOutcome.MISSED, reason=why) for f in fires]


def late(
    skipped: list[datetime],
    recent: list[datetime],
    into: datetime,
    grace: float | None,
    why: str,
    catchup: str,
) -> list[FireEntry]:
    """Late fires not run: past the grace they were missed, within it coalesced into `into`."""
    notes = missed([f for f in skipped if f not in recent], past_grace(grace, why))
    notes += coalesced([f for f in skipped if f in recent], into, f"{LATE} (catchup={catchup})")
    return notes


def caught_up(fire_at: datetime, missed_count: int) -> FireEntry:
    why = f"{DOWNTIME}: {missed_count} fire(s) were due while the workflow was down"
    return FireEntry(fire_at=fire_at, outcome=FireOutcome.CAUGHT_UP, reason=why)


def past_grace(grace: float | None, why: str) -> str:
    return f"{why}; past the misfire grace of {grace:g} s" if grace is not None else why


def skipped_for(request: RunRequest, running: list[RunHandle]) -> list[FireEntry]:
    """overlap=skip: the fire's row names the run still running (its id and fire time)."""
    if request.scheduled_at is None:
        return []
    first = running[0] if running else None
    run = None if first is None else first.run
    return [
        FireEntry(
            fire_at=request.scheduled_at,
            outcome=FireOutcome.SKIPPED,
            reason="overlap=skip: the previous run was still running",
            run_id=None if run is None else run.run_id,
            related_at=None if first is None else first.request.scheduled_at,
        )
    ]


def replaced(old: RunRequest, new: RunRequest) -> list[FireEntry]:
    """overlap=queue_one: a waiting fire replaced by a newer one, which runs for it."""
    if old.scheduled_at is None or new.scheduled_at is None:
        return []
    why = "overlap=queue_one: replaced while waiting by a newer fire"
    return coalesced([old.scheduled_at], new.scheduled_at, why)
