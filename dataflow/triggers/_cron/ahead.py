"""The fast fire path: a cron fire claimed shortly before its time, its handler started at it.

The scheduler wakes `CLAIM_LEAD` before a fire. When the trigger's previous run is over and
nothing else stands in the way (`can_fire_ahead`), one store call in a worker thread claims
the fire (it becomes the last fire, its ledger row `claimed`) and writes its run's start record
(`running`, started at the fire time), durably, in one commit; the task then sleeps to the
fire time and starts the handler at once, with no store call or thread hop left in between.

The crash rule: a claim written ahead always has its run's start record with it, so a process
that dies between the claim and the fire time leaves that run `running`; the restart marks it
`interrupted` and its catch-up runs the fire by the trigger's policy (within the misfire
grace), like a run cut off mid-handler: never lost, never run twice. A stop between the claim
and the fire time waits for the fire time (at most the lead) and starts the run, as a stop
right after a claim does. Any other case (a run of
the trigger still going or queued, a shared store, a store that was unreachable) waits for
the fire time and takes the usual path (`CronJob.fire_due`), overlap policy and all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import anyio

from dataflow._core.clock import Clock, SystemClock
from dataflow._core.run import Run
from dataflow.state._store import SqliteStore
from dataflow.triggers._cron.job import CronJob
from dataflow.triggers._cron.overlap import OverlapGate
from dataflow.triggers._cron.rejoin import fire_due_or_rejoin
from dataflow.triggers.base import RunRequest, TriggerContext

# Room for the claim's store call (a thread hop and one commit: under a millisecond when
# quiet) on a busy machine; a claim that returns later still starts its run at once.
CLAIM_LEAD = timedelta(milliseconds=20)
_ZERO = timedelta(0)


def claim_lead(clock: Clock) -> timedelta:
    """How early the scheduler wakes for a fire: `CLAIM_LEAD` on the real clock. A clock may
    say otherwise (a `claim_lead` attribute); a fake one jumps from deadline to deadline, where
    a claim ahead buys nothing and would cost a wake per fire: none there unless it asks."""
    lead = getattr(clock, "claim_lead", None)
    if isinstance(lead, timedelta):
        return lead
    return CLAIM_LEAD if isinstance(clock, SystemClock) else _ZERO


def can_fire_ahead(ctx: TriggerContext, job: CronJob, gate: OverlapGate) -> bool:
    """The fire can be claimed ahead: a store of this process's own (SQLite, whose claim is
    always won; not a subclass that decides claims itself), no run of the trigger running or
    queued (no overlap policy to apply: this task is the only one that starts its runs until
    the fire is started), and no store outage to catch up from."""
    state = ctx.state
    own = isinstance(state, SqliteStore) and type(state).claim_fire is SqliteStore.claim_fire
    return own and not job.cut_off and gate.idle()


async def fire_ahead(
    job: CronJob, ctx: TriggerContext, gate: OverlapGate, fire_at: datetime, deadline: datetime
) -> datetime:
    """Claim `fire_at` and write its run's start now, start the run at `deadline` (its fire
    time plus jitter). Shielded as `CronJob.fire`: a fire claimed must be started, and never
    before its time (a stop meanwhile waits for it: at most the lead)."""
    request = job.request(fire_at)
    with anyio.CancelScope(shield=True):
        run = await ctx.state.call(_claiming(ctx, request, max(deadline, ctx.clock.now())))
        if run is None:  # the workflow is stopping: not claimed (`claim.py`)
            return fire_at
        # One monotonic sleep, not `sleep_until`: a backward wall-clock step meanwhile must
        # not hold a claimed fire back by the size of the step.
        if (wait := (deadline - ctx.clock.now()).total_seconds()) > 0:
            await ctx.clock.sleep(wait)
        gate.start_written(request, run)
    return fire_at


def _claiming(
    ctx: TriggerContext, request: RunRequest, started_at: datetime
) -> Callable[[], Run | None]:
    state = ctx.state
    assert isinstance(state, SqliteStore)
    run, fire_at = ctx.runner.new_run(request, started_at), request.scheduled_at
    assert fire_at is not None

    def claim() -> Run | None:
        if ctx.stopping.is_set():  # read when the claim would be written, as `claim.py` does
            return None
        state.claim_fire_started(ctx.workflow, request.trigger, fire_at, run.run_id, started_at)
        ctx.runner.run_written(run)
        return run

    return claim


async def fire_when_due(
    job: CronJob, ctx: TriggerContext, gate: OverlapGate, fire_at: datetime, deadline: datetime
) -> datetime:
    """A fire the scheduler woke early for that takes the usual path: at its time."""
    if (wait := (deadline - ctx.clock.now()).total_seconds()) > 0:  # it may be over already
        await ctx.clock.sleep(wait)
    now = ctx.clock.now()
    return await fire_due_or_rejoin(job, ctx, gate, job.due_fires(fire_at, now), now)
