"""A cron trigger's first due fire after its replica lost the shared store (PostgreSQL).

While the database is away no replica can claim a fire (a claim is its ledger row), so none
runs; a replica notes it (`CronJob.cut_off`) and goes on claiming nothing. The first fire due
once the store answers again catches up the fires missed meanwhile by the trigger's policy, as
after downtime (`coalesce`: one run, the others coalesced into it in the ledger), counted
from the last fire the store has: another replica may have run some, or caught them up first
(then its claim wins and this one's loses: they run once).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dataflow._core.errors import StateStoreError
from dataflow.triggers._cron.job import CronJob
from dataflow.triggers._cron.missed import fires_back
from dataflow.triggers._cron.overlap import OverlapGate
from dataflow.triggers.base import TriggerContext

_TICK = timedelta(microseconds=1)


async def fire_due_or_rejoin(
    job: CronJob, ctx: TriggerContext, gate: OverlapGate, due: list[datetime], now: datetime
) -> datetime:
    """`job.fire_due`, or, after the store was unreachable, the catch-up of what it missed;
    still unreachable: nothing is claimed (and the new last fire is the last one due)."""
    if not job.cut_off:
        return await job.fire_due(ctx, gate, due, now)
    try:
        last = await ctx.state.call(ctx.state.last_fire, ctx.workflow, job.name)
    except StateStoreError:
        return due[-1]
    job.cut_off = False
    if last is not None and fires_back(job.schedule, last, due[0] - _TICK, 1):
        return await job.catch_up(ctx, gate, last)
    return await job.fire_due(ctx, gate, due, now)
