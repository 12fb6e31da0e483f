"""The fire ledger: what became of every fire time of every cron trigger, one row per fire.

A row is written with the fire's claim (`claimed`), and its outcome lands in the same store
call as what decided it: the run's start record (`ran`, `caught_up` keeps its word and gains
the run id, `backfilled`), or the skipped record (`skipped`, `coalesced`, `missed`). Fires that
never got a claim (coalesced by a wall-clock step, missed past the grace) are written with the
claim of the fire that ran for them. Rows go with the run history they explain (`Retention`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class FireOutcome(StrEnum):
    CLAIMED = "claimed"  # this process has the fire; its run has not started (queued, or died)
    RAN = "ran"  # run_id: the fire's run (its last attempt)
    CAUGHT_UP = "caught_up"  # ran after downtime, for the fires missed meanwhile
    SKIPPED = "skipped"  # overlap: run_id / related_at name the run still running
    COALESCED = "coalesced"  # related_at: the later fire that ran for it
    MISSED = "missed"  # not run: past the misfire grace, or by the catch-up policy
    BACKFILLED = "backfilled"  # run again by `trigger --from/--to`; run_id: that run


# Outcomes whose row a run's start record completes with its run id.
RUN_OUTCOMES = (FireOutcome.CLAIMED, FireOutcome.RAN, FireOutcome.CAUGHT_UP)


@dataclass(frozen=True, kw_only=True)
class FireEntry:
    """One fire time's ledger row. `fire_at` is the instant (aware, UTC when read back)."""

    fire_at: datetime
    outcome: FireOutcome
    reason: str | None = None
    run_id: str | None = None
    related_at: datetime | None = None  # the fire it was coalesced into, or the running one's
    recorded_at: datetime | None = None  # set by the store when read back


MAX_ENTRIES = 1000  # fires written per call at most (the newest): a long gap writes no flood
