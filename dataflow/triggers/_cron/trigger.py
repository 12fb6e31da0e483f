"""The cron trigger's loop: fire on schedule, catch up after downtime, apply run policies.

Each next fire time is computed from the wall clock, never by adding intervals, so a long
run or a slow loop cannot shift later fires. The last fire time is stored before the run
starts, so no fire time runs twice across a restart. Wall-clock steps are told from a late
loop by monotonic time: a forward step coalesces the fires it skipped into one run; after a
backward step a wildcard job runs on the new wall time, a fixed-time job does not repeat (a
step of 3 h or more is a reset: both resume); fires a late loop missed run late within the
grace or get a skipped record.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal

import anyio
from anyio.abc import TaskStatus

from dataflow._core.clock import iso
from dataflow._core.logs import get_logger
from dataflow.triggers._cron.missed import (
    COUNT_LIMIT,
    MAX_CATCHUP_RUNS,
    fires_back,
    in_grace,
    latest_due,
    record_skipped,
)
from dataflow.triggers._cron.overlap import Overlap, OverlapGate
from dataflow.triggers._cron.schedule import CronSchedule
from dataflow.triggers._cron.steps import STEP_TOLERANCE, StepWatch
from dataflow.triggers.base import Description, RunPolicy, RunRequest, Trigger, TriggerContext

log = get_logger("dataflow.trigger")
Catchup = Literal["coalesce", "all", "none"]
LAST_FIRE = "last_fire"
_RESET = timedelta(hours=3)  # cronie: a backward step this big is a reset, not a correction
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, kw_only=True)
class CronPolicy:
    overlap: Overlap = Overlap.SKIP
    misfire_grace: float | None = 60.0  # seconds; None = no limit
    catchup: Catchup = "coalesce"
    jitter: float = 0.0
    run: RunPolicy = field(default_factory=RunPolicy)


class CronTrigger(Trigger):
    kind = "cronjob"

    def __init__(
        self, name: str, handler: Callable[..., Any], schedule: CronSchedule, policy: CronPolicy
    ) -> None:
        super().__init__(name, handler)
        self.schedule = schedule
        self.policy = policy

    @property
    def run_policy(self) -> RunPolicy:
        return self.policy.run

    def description(self, now: datetime, count: int) -> Description:
        policy = self.policy
        options = {
            "overlap": policy.overlap.value,
            "catchup": policy.catchup,
            "misfire_grace": policy.misfire_grace,
            "jitter": policy.jitter or None,
            **policy.run.options(),
        }
        return Description(
            source=self.schedule.expression,
            timezone=self.schedule.timezone.key,
            options=options,
            next_fires=list(islice(self.schedule.iter_after(now), count)),
        )

    def describe(self) -> str:
        return f"cron {self.schedule.expression} ({self.schedule.timezone.key})"

    async def serve(
        self, ctx: TriggerContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        gate = OverlapGate(self.policy.overlap, ctx.runner)
        last_fire = await self._load_last_fire(ctx)
        try:
            async with gate.draining():
                task_status.started()
                after = await self._start_from(ctx, gate, last_fire)
                await self._fire_on_schedule(ctx, gate, after)
        finally:
            with anyio.CancelScope(shield=True):
                await gate.drop_pending("workflow stopping")

    async def _start_from(
        self, ctx: TriggerContext, gate: OverlapGate, last: datetime | None
    ) -> datetime:
        """Where the schedule resumes: after the saved last fire, once missed fires are
        caught up; from the current time if there is none, or if it lies in the future."""
        now = ctx.clock.now()
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
        return await self._catch_up(ctx, gate, last, self._interrupted(ctx))

    async def _fire_on_schedule(
        self, ctx: TriggerContext, gate: OverlapGate, after: datetime
    ) -> None:
        watch = StepWatch(ctx.clock)
        while not ctx.stopping.is_set():
            fire_at = self._next(after)  # `after` is the last fire: never repeat
            now, step = await watch.wait_until(fire_at + self._jitter())
            if step > _ZERO:
                after = await self._stepped_forward(ctx, gate, after, now, step)
            elif step < _ZERO:  # resume from the last look, on the new wall time
                after = self._stepped_back(after, min(now, watch.since), -step)
            else:
                after = await self._fire_due(ctx, gate, fire_at, now)

    async def _stepped_forward(
        self,
        ctx: TriggerContext,
        gate: OverlapGate,
        after: datetime,
        now: datetime,
        step: timedelta,
    ) -> datetime:
        """A forward step: the fires it skipped over are coalesced into one run."""
        latest = latest_due(self.schedule, now)
        missed = len(fires_back(self.schedule, after, now, MAX_CATCHUP_RUNS))
        log.warning(
            "wall clock stepped forward: fires coalesced",
            trigger=self.name,
            step_from=iso(now - step),
            step_to=iso(now),
            missed=max(missed - 1, 0),
        )
        if latest <= after:
            return after
        await self._fire(ctx, gate, latest)
        return latest

    def _stepped_back(self, after: datetime, now: datetime, back: timedelta) -> datetime:
        """cronie's rule: a wildcard job runs on the new wall time; a fixed-time job does not
        repeat fire times it ran, unless the step is 3 h or more (a reset: both resume).
        `now` is when the trigger last looked, read on the new wall clock."""
        resume = back >= _RESET or not self.schedule.is_fixed_time
        log.warning(
            "wall clock stepped back",
            trigger=self.name,
            step_from=iso(now + back),
            step_to=iso(now),
            resumes="on the new wall time" if resume else f"after {iso(after)}: no repeat",
        )
        return min(after, now) if resume else after

    async def _fire_due(
        self, ctx: TriggerContext, gate: OverlapGate, fire_at: datetime, now: datetime
    ) -> datetime:
        """Fire `fire_at`; if the loop woke late and later fires came due meanwhile (no clock
        step: a blocked loop, a busy machine), they run late or are recorded skipped."""
        due = fires_back(self.schedule, fire_at - _TICK, now, MAX_CATCHUP_RUNS)[::-1]
        if len(due) <= 1:
            await self._fire(ctx, gate, fire_at)
            return fire_at
        log.warning(
            "trigger woke late: fires came due meanwhile",
            trigger=self.name,
            due=len(due),
            late=(now - fire_at).total_seconds(),
        )
        await self._run_or_skip(ctx, gate, due, now, "the trigger was late")
        return due[-1]

    async def _run_or_skip(
        self, ctx: TriggerContext, gate: OverlapGate, due: list[datetime], now: datetime, why: str
    ) -> None:
        """Late fires (oldest first): `all` runs each within the grace, otherwise the newest
        within the grace runs; every other one gets a skipped record saying why."""
        recent = [fire for fire in due if in_grace(self.policy.misfire_grace, now)(fire)]
        run = recent if self.policy.catchup == "all" else recent[-1:]
        skipped = [fire for fire in due if fire not in run]
        for fire in run:
            await self._fire(ctx, gate, fire)
        if skipped:
            await self._save_last_fire(ctx, due[-1])
            await record_skipped(ctx, self._request, skipped, f"{why}; not run by catchup/grace")

    def _interrupted(self, ctx: TriggerContext) -> list[datetime]:
        """Fire times whose run the previous process did not finish: they count as missed
        (a backfill's run re-ran a past fire; its own process says what is left of it)."""
        records = ctx.interrupted.get(self.name, [])
        return sorted({r.scheduled_at for r in records if r.scheduled_at and not r.backfill})

    async def _catch_up(
        self, ctx: TriggerContext, gate: OverlapGate, last: datetime, interrupted: list[datetime]
    ) -> datetime:
        """Missed fires after downtime, by the catch-up policy, however long it was: fires
        within the grace are found backward from now (at most `MAX_CATCHUP_RUNS` + 1)."""
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
        chosen = chosen[-MAX_CATCHUP_RUNS:]
        chosen = {"all": chosen, "coalesce": chosen[-1:], "none": []}[self.policy.catchup]
        for fire_at in chosen:
            await gate.wait_idle()  # catch-up runs go one after another, whatever `overlap` says
            await self._fire(ctx, gate, fire_at)
        if len(recent) > MAX_CATCHUP_RUNS and self.policy.catchup == "all":
            older = fires_back(self.schedule, oldest, chosen[0] - _TICK, COUNT_LIMIT)
            why = f"past the catch-up bound of {MAX_CATCHUP_RUNS} runs"
            await record_skipped(ctx, self._request, older, why)
        return max(last, latest_due(self.schedule, now), *interrupted)

    def _next(self, after: datetime) -> datetime:
        """The next fire time, in UTC: aware datetimes sharing a zone compare by wall time,
        ignoring `fold`, which would misorder the two passes of a repeated hour."""
        return self.schedule.next_after(after).astimezone(UTC)

    def backfill_request(self, fire_at: datetime) -> RunRequest:
        return replace(self._request(fire_at.astimezone(UTC)), backfill=True)

    def _request(self, fire_at: datetime) -> RunRequest:
        return RunRequest(
            trigger=self.name, handler=self.handler, scheduled_at=fire_at, policy=self.policy.run
        )

    async def _fire(self, ctx: TriggerContext, gate: OverlapGate, fire_at: datetime) -> None:
        request = self._request(fire_at)
        # Shielded: once the fire time is saved as the last fire, its run must be started (or
        # recorded skipped). A stop landing in between would lose the fire for good: neither
        # run nor recorded, and a restart catches up only after the last fire.
        with anyio.CancelScope(shield=True):
            await self._save_last_fire(ctx, fire_at)
            await gate.submit(request)

    async def _save_last_fire(self, ctx: TriggerContext, fire_at: datetime) -> None:
        await ctx.state.call(
            ctx.state.set_state, ctx.workflow, self.name, LAST_FIRE, fire_at.isoformat()
        )

    async def _load_last_fire(self, ctx: TriggerContext) -> datetime | None:
        raw = await ctx.state.call(ctx.state.get_state, ctx.workflow, self.name, LAST_FIRE)
        return None if raw is None else datetime.fromisoformat(raw)

    def _jitter(self) -> timedelta:
        if not self.policy.jitter:
            return _ZERO
        return timedelta(seconds=random.uniform(0, self.policy.jitter))


_ZERO = timedelta(0)
