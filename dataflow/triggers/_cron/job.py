"""One cron trigger's policies, as plain methods the runtime's one cron scheduler calls.

Each next fire time is computed from the wall clock, never by adding intervals, so a long
run or a slow loop cannot shift later fires. The last fire time is stored before the run
starts, so no fire time runs twice across a restart. A forward wall-clock step coalesces the
fires it skipped into one run; after a backward step a wildcard job runs on the new wall time,
a fixed-time job does not repeat (a step of 3 h or more is a reset: both resume); fires a late
loop missed run late within the grace or get a skipped record. Whether a wake was a step or a
late loop is the scheduler's call (`steps.py`); what each does to a trigger is decided here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio

from dataflow._core.clock import iso
from dataflow._core.logs import get_logger
from dataflow.state import FireEntry
from dataflow.state._interface import RunRecord
from dataflow.state._ledger import MAX_ENTRIES
from dataflow.state._store import LAST_FIRE as LAST_FIRE  # where a store keeps last fires
from dataflow.triggers._cron import ledger
from dataflow.triggers._cron.claim import FireClaim, claim_fire
from dataflow.triggers._cron.ledger import STEPPED, past_grace
from dataflow.triggers._cron.missed import (
    COUNT_LIMIT,
    MAX_CATCHUP_RUNS,
    fires_back,
    in_grace,
    late_batch,
    latest_due,
    record_skipped,
)
from dataflow.triggers._cron.overlap import Overlap, OverlapGate
from dataflow.triggers._cron.schedule import CronSchedule
from dataflow.triggers._cron.steps import STEP_TOLERANCE
from dataflow.triggers.base import RunPolicy, RunRequest, TriggerContext

log = get_logger("dataflow.trigger")
Catchup = Literal["coalesce", "all", "none"]
_RESET = timedelta(hours=3)  # cronie: a backward step this big is a reset, not a correction
_TICK = timedelta(microseconds=1)
_ZERO = timedelta(0)


@dataclass(frozen=True, kw_only=True)
class CronPolicy:
    overlap: Overlap = Overlap.SKIP
    misfire_grace: float | None = 60.0  # seconds; None = no limit
    catchup: Catchup = "coalesce"
    jitter: float = 0.0
    run: RunPolicy = field(default_factory=RunPolicy)


class CronJob:
    """A cron trigger as the scheduler sees it. Methods named `*_fire(s)` without `async` only
    compute; the async ones save, start or record runs and return the new last fire."""

    __slots__ = ("cut_off", "handler", "name", "policy", "schedule")

    def __init__(
        self, name: str, handler: Callable[..., Any], schedule: CronSchedule, policy: CronPolicy
    ) -> None:
        self.name = name
        self.handler = handler
        self.schedule = schedule
        self.policy = policy
        self.cut_off = False  # a claim found the shared store unreachable (see `rejoin.py`)

    # -- when ----------------------------------------------------------------------------------

    def next_fire(self, after: datetime) -> datetime:
        """The next fire time, in UTC: aware datetimes sharing a zone compare by wall time,
        ignoring `fold`, which would misorder the two passes of a repeated hour."""
        return self.schedule.next_after(after).astimezone(UTC)

    def deadline(self, fire_at: datetime) -> datetime:
        """When to start `fire_at`: the fire time plus this trigger's jitter, drawn anew."""
        if not self.policy.jitter:
            return fire_at
        return fire_at + timedelta(seconds=random.uniform(0, self.policy.jitter))

    # -- start ---------------------------------------------------------------------------------

    def resume_point(
        self, ctx: TriggerContext, last: datetime | None, now: datetime
    ) -> datetime | None:
        """Where the schedule resumes at start without catching anything up: from now when
        there is no saved last fire, or when it lies in the future; after it when nothing was
        missed. None: fires were missed or interrupted, `catch_up` decides."""
        if last is None:
            return now
        if last - now > STEP_TOLERANCE:  # a clock that was (or is) wrong: trust neither
            log.error(
                "saved last fire is in the future: resuming from the current time",
                trigger=self.name,
                last_fire=iso(last),
                now=iso(now),
            )
            return now
        if self._interrupted(ctx) or fires_back(self.schedule, last, now, 1):
            return None
        return last

    async def catch_up(self, ctx: TriggerContext, gate: OverlapGate, last: datetime) -> datetime:
        """Missed fires after downtime, by the catch-up policy, however long it was: fires
        within the grace are found backward from now (at most `MAX_CATCHUP_RUNS` + 1)."""
        interrupted = self._interrupted(ctx)
        now, grace = ctx.clock.now(), self.policy.misfire_grace
        oldest = last if grace is None else max(last, now - timedelta(seconds=grace))
        recent = fires_back(self.schedule, oldest, now, MAX_CATCHUP_RUNS + 1)
        fresh = in_grace(grace, now)
        chosen = sorted(set(recent) | {t for t in interrupted if fresh(t)})
        missed = len(fires_back(self.schedule, last, now, MAX_CATCHUP_RUNS + 1))
        if missed or interrupted:
            log.info(
                "missed fires after downtime",
                trigger=self.name,
                missed=len(set(interrupted)) + missed,
                within_grace=len(chosen),
                catchup=self.policy.catchup,
                more=missed > MAX_CATCHUP_RUNS,  # counted up to the bound
            )
        due = sorted(set(chosen) | set(fires_back(self.schedule, last, now, MAX_ENTRIES)))
        chosen = chosen[-MAX_CATCHUP_RUNS:]
        chosen = {"all": chosen, "coalesce": chosen[-1:], "none": []}[self.policy.catchup]
        notes = self._downtime_notes([f for f in due if f not in chosen], chosen, fresh)
        for fire_at in chosen:
            await gate.wait_idle()  # catch-up runs go one after another, whatever `overlap` says
            entries = [ledger.caught_up(fire_at, len(due))]
            await self.fire(ctx, gate, fire_at, entries + (notes if fire_at == chosen[-1] else []))
        if not chosen and notes:
            await ctx.state.call(ctx.state.record_fires, ctx.workflow, self.name, notes)
        if len(recent) > MAX_CATCHUP_RUNS and self.policy.catchup == "all":
            older = fires_back(self.schedule, oldest, chosen[0] - _TICK, COUNT_LIMIT)
            why = f"past the catch-up bound of {MAX_CATCHUP_RUNS} runs"
            await record_skipped(ctx, self.request, older, why, ledger.missed(older, why))
        return max(last, latest_due(self.schedule, now), *interrupted)

    def _downtime_notes(
        self, left: list[datetime], chosen: list[datetime], fresh: Callable[[datetime], bool]
    ) -> list[FireEntry]:
        """Ledger rows of the fires missed during downtime that do not run: coalesced into
        the one that runs for them when within the grace, else missed, saying why."""
        grace, policy = self.policy.misfire_grace, self.policy.catchup
        gone = [f for f in left if not fresh(f) or not chosen]
        why = past_grace(grace, ledger.DOWNTIME) if chosen else ledger.DOWNTIME
        if not chosen:
            why += f" (catchup={policy})" if policy == "none" else "; past the misfire grace"
        kept = [f for f in left if f not in gone]
        into = f"{ledger.DOWNTIME} (catchup={policy})"
        return ledger.missed(gone, why) + (ledger.coalesced(kept, chosen[-1], into) if kept else [])

    def _interrupted(self, ctx: TriggerContext) -> list[datetime]:
        """Fire times whose run the previous process did not finish: they count as missed
        (a backfill's run re-ran a past fire; its own process says what is left of it)."""
        records = ctx.interrupted.get(self.name, [])
        return sorted({r.scheduled_at for r in records if r.scheduled_at and not r.backfill})

    # -- due -----------------------------------------------------------------------------------

    def due_fires(self, fire_at: datetime, now: datetime) -> list[datetime]:
        """The fires due at `now` from `fire_at` on, oldest first: more than one when the loop
        woke late (no clock step: a blocked loop, a busy machine)."""
        return fires_back(self.schedule, fire_at - _TICK, now, MAX_CATCHUP_RUNS)[::-1] or [fire_at]

    async def fire_due(
        self, ctx: TriggerContext, gate: OverlapGate, due: list[datetime], now: datetime
    ) -> datetime:
        """Fire the one due fire; late fires run within the grace or are recorded skipped."""
        if len(due) == 1:
            await self.fire(ctx, gate, due[0])
        else:
            await self._run_or_skip(ctx, gate, due, now, "the trigger was late")
        return due[-1]

    async def _run_or_skip(
        self, ctx: TriggerContext, gate: OverlapGate, due: list[datetime], now: datetime, why: str
    ) -> None:
        """Late fires (oldest first): some run, the others are recorded by the first claim,
        before any run starts (`LateBatch`)."""
        policy = self.policy
        batch = late_batch(ctx, self.request, due, now, policy.misfire_grace, policy.catchup, why)
        if batch.run:
            await self.fire(ctx, gate, batch.run[0], batch.notes, batch.skipped)
        else:
            with anyio.CancelScope(shield=True):  # see `fire`
                await self._claim(ctx, batch.claim_at, batch.notes, batch.skipped)
        for fire in batch.run[1:]:
            await self.fire(ctx, gate, fire)

    # -- wall-clock steps ----------------------------------------------------------------------

    async def fire_coalesced(
        self, ctx: TriggerContext, gate: OverlapGate, fire_at: datetime, after: datetime
    ) -> datetime:
        """After a forward step: `fire_at` runs for the fires the step skipped since `after`."""
        skipped = fires_back(self.schedule, after, fire_at - _TICK, MAX_ENTRIES)
        return await self.fire(ctx, gate, fire_at, ledger.coalesced(skipped, fire_at, STEPPED))

    def coalesced_fire(self, after: datetime, now: datetime) -> datetime | None:
        """After a forward step: the one fire that runs for all it skipped (None: none due)."""
        latest = latest_due(self.schedule, now)
        return latest if latest > after else None

    def resumes_after_step_back(self, back: timedelta) -> bool:
        """cronie's rule: a wildcard job runs on the new wall time; a fixed-time job does not
        repeat fire times it ran, unless the step is 3 h or more (a reset: both resume)."""
        return back >= _RESET or not self.schedule.is_fixed_time

    def stepped_back(self, after: datetime, since: datetime, back: timedelta) -> datetime:
        """The last fire to go on from after a backward step; `since` is the scheduler's last
        look before the step, read on the new wall clock."""
        return min(after, since) if self.resumes_after_step_back(back) else after

    # -- firing --------------------------------------------------------------------------------

    def request(self, fire_at: datetime) -> RunRequest:
        return RunRequest(
            trigger=self.name, handler=self.handler, scheduled_at=fire_at, policy=self.policy.run
        )

    async def fire(
        self,
        ctx: TriggerContext,
        gate: OverlapGate,
        fire_at: datetime,
        notes: Sequence[FireEntry] = (),
        skipped: Sequence[RunRecord] = (),
    ) -> datetime:
        """Claim and start `fire_at`; `notes`: ledger rows of fires it runs for, `skipped`:
        records of late fires not run, written with its claim (the same store call)."""
        request = self.request(fire_at)
        # Shielded: once the fire time is saved as the last fire, its run must be started (or
        # recorded skipped). A stop landing in between would lose the fire for good: neither
        # run nor recorded, and a restart catches up only after the last fire.
        with anyio.CancelScope(shield=True):
            claim = await self._claim(ctx, fire_at, notes, skipped)
            if claim.running_on is not None:
                why = f"previous run still in progress on replica {claim.running_on}"
                await ctx.runner.record_skipped(request, why)
            elif claim.won:
                await gate.submit(request)
        return fire_at

    async def _claim(
        self,
        ctx: TriggerContext,
        fire_at: datetime,
        notes: Sequence[FireEntry] = (),
        skipped: Sequence[RunRecord] = (),
    ) -> FireClaim:
        claim = await claim_fire(ctx, self.name, self.policy.overlap, fire_at, notes, skipped)
        if claim.unreachable:
            self.cut_off = True  # nor can any replica that lost it: caught up on its return
        return claim

    async def recover(self, ctx: TriggerContext, gate: OverlapGate, runs: list[RunRecord]) -> None:
        """Runs a dead replica left unfinished, found while running: their fires run again by
        the catch-up policy (within the grace; `coalesce`: the newest one), one after another;
        the others are recorded skipped. Only this replica may claim them again."""
        fires = sorted({r.scheduled_at for r in runs if r.scheduled_at and not r.backfill})
        fresh = in_grace(self.policy.misfire_grace, ctx.clock.now())
        chosen = [fire for fire in fires if fresh(fire)]
        chosen = {"all": chosen, "coalesce": chosen[-1:], "none": []}[self.policy.catchup]
        for fire_at in chosen:
            await gate.wait_idle()
            await self.fire(ctx, gate, fire_at)
        if skipped := [fire for fire in fires if fire not in chosen]:
            why = "its replica stopped during the run; not run again by catchup/grace"
            await record_skipped(ctx, self.request, skipped, why)


def last_fires(items: list[tuple[str, str, str, datetime]]) -> dict[str, datetime]:
    """Every trigger's saved last fire, from the workflow's state items (one query at start)."""
    return {trigger: datetime.fromisoformat(v) for trigger, key, v, _ in items if key == LAST_FIRE}
