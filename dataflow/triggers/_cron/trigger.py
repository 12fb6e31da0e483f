"""The cron trigger's loop: fire on schedule, catch up after downtime, apply run policies.

Each next fire time is computed from the wall clock, never by adding intervals, so a long
run or a slow loop cannot shift later fires. The last fire time is stored before the run
starts, so no fire time runs twice across a restart or a backward clock step.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal

import anyio
from anyio.abc import TaskStatus

from dataflow._core.logs import get_logger
from dataflow.triggers._cron.overlap import Overlap, OverlapGate
from dataflow.triggers._cron.schedule import CronSchedule
from dataflow.triggers.base import Description, RunPolicy, RunRequest, Trigger, TriggerContext

log = get_logger("dataflow.trigger")
Catchup = Literal["coalesce", "all", "none"]
LAST_FIRE = "last_fire"
_MAX_CATCHUP_RUNS = 1000  # bound "all" so a year of downtime cannot start a flood


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
                if last_fire is not None:
                    last_fire = await self._catch_up(ctx, gate, last_fire, self._interrupted(ctx))
                await self._fire_on_schedule(ctx, gate, last_fire or ctx.clock.now())
        finally:
            with anyio.CancelScope(shield=True):
                await gate.drop_pending("workflow stopping")

    async def _fire_on_schedule(
        self, ctx: TriggerContext, gate: OverlapGate, after: datetime
    ) -> None:
        while not ctx.stopping.is_set():
            fire_at = self._next(after)  # `after` is the last fire: never repeat
            await ctx.clock.sleep_until(fire_at + self._jitter())
            now = ctx.clock.now()
            if now < fire_at:  # the wall clock stepped back while we slept: recompute
                continue
            due = list(self._fires_between(fire_at, now))
            fire_at = due[-1]  # a forward step: coalesce everything missed into one fire
            if len(due) > 1:
                log.warning(
                    "clock jumped forward: fires coalesced", trigger=self.name, missed=len(due) - 1
                )
            await self._fire(ctx, gate, fire_at)
            after = fire_at

    def _interrupted(self, ctx: TriggerContext) -> list[datetime]:
        """Fire times whose run the previous process did not finish: they count as missed."""
        records = ctx.interrupted.get(self.name, [])
        return sorted({r.scheduled_at for r in records if r.scheduled_at is not None})

    async def _catch_up(
        self, ctx: TriggerContext, gate: OverlapGate, last: datetime, interrupted: list[datetime]
    ) -> datetime:
        now = ctx.clock.now()
        due = list(self._fires_between(self._next(last), now))
        missed = sorted(set(interrupted) | set(due))
        grace = self.policy.misfire_grace
        in_grace = [t for t in missed if grace is None or (now - t).total_seconds() <= grace]
        if missed:
            log.info(
                "missed fires after downtime",
                trigger=self.name,
                missed=len(missed),
                within_grace=len(in_grace),
                catchup=self.policy.catchup,
            )
        chosen = {"all": in_grace, "coalesce": in_grace[-1:], "none": []}[self.policy.catchup]
        for fire_at in chosen:
            await gate.wait_idle()  # catch-up runs go one after another, whatever `overlap` says
            await self._fire(ctx, gate, fire_at)
        return max([last, *missed])

    def _next(self, after: datetime) -> datetime:
        """The next fire time, in UTC: aware datetimes sharing a zone compare by wall time,
        ignoring `fold`, which would misorder the two passes of a repeated hour."""
        return self.schedule.next_after(after).astimezone(UTC)

    def _fires_between(self, first: datetime, until: datetime) -> Iterator[datetime]:
        """Fire times from `first` (a fire time) up to and including `until`."""
        fire_at = first
        for _ in range(_MAX_CATCHUP_RUNS):
            if fire_at > until:
                return
            yield fire_at
            fire_at = self._next(fire_at)

    async def _fire(self, ctx: TriggerContext, gate: OverlapGate, fire_at: datetime) -> None:
        request = RunRequest(
            trigger=self.name, handler=self.handler, scheduled_at=fire_at, policy=self.policy.run
        )
        # Shielded: once the fire time is saved as the last fire, its run must be started (or
        # recorded skipped). A stop landing in between would lose the fire for good: neither
        # run nor recorded, and a restart catches up only after the last fire.
        with anyio.CancelScope(shield=True):
            await ctx.state.call(
                ctx.state.set_state, ctx.workflow, self.name, LAST_FIRE, fire_at.isoformat()
            )
            await gate.submit(request)

    async def _load_last_fire(self, ctx: TriggerContext) -> datetime | None:
        raw = await ctx.state.call(ctx.state.get_state, ctx.workflow, self.name, LAST_FIRE)
        return None if raw is None else datetime.fromisoformat(raw)

    def _jitter(self) -> timedelta:
        if not self.policy.jitter:
            return _ZERO
        return timedelta(seconds=random.uniform(0, self.policy.jitter))


_ZERO = timedelta(0)
