"""One cron scheduler per runtime: a single task over a heap of every cron trigger's next fire.

The task sleeps until the earliest fire (one wake per due fire time, however many triggers
share it) and is the one watcher of the wall clock: on every wake it compares the wall and
monotonic time passed (`StepWatch`), so a wall-clock step is logged once and applied to every
trigger, and a late wake (a blocked loop, an overloaded machine) is never taken for a step.
On the real clock its sleeps are sliced (60 s), so a step is noticed within a minute.

A due fire is handed to a short task of its own, which saves it, starts its run through the
trigger's overlap gate and puts the trigger's next fire back on the heap: a trigger is on the
heap or firing, never both, so its fires stay in order. Policy is the trigger's (`job.py`);
the scheduler decides only when. All last fires are read in one query, and the whole group is
serving (`task_status.started()`) once the heap is built.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from dataflow._core.clock import Clock, iso
from dataflow._core.errors import StateStoreError, TriggerFailed
from dataflow._core.logs import get_logger
from dataflow.state import RunRecord
from dataflow.triggers._cron.ahead import can_fire_ahead, claim_lead, fire_ahead, fire_when_due
from dataflow.triggers._cron.job import CronJob, last_fires
from dataflow.triggers._cron.overlap import OverlapGate
from dataflow.triggers._cron.rejoin import fire_due_or_rejoin
from dataflow.triggers._cron.steps import LateReport, StepWatch
from dataflow.triggers.base import TriggerContext

log = get_logger("dataflow.trigger")
_ZERO = timedelta(0)
Entry = tuple[datetime, int, "_Slot", datetime]  # (deadline, tie-breaker, trigger, fire time)


@dataclass(eq=False, slots=True)
class _Slot:
    """One trigger's place in the scheduler: its last fire, and whether a fire of it is in
    progress (then it is off the heap, and wall-clock steps wait in `steps` until it is done)."""

    job: CronJob
    after: datetime
    busy: bool = False
    steps: list[_Step] | None = None  # made when needed: most triggers never see a step
    gate: OverlapGate | None = None


@dataclass(frozen=True, slots=True)
class _Step:
    forward: bool
    since: datetime  # back: the last look before the step, read on the new wall clock
    size: timedelta


class CronScheduler:
    """Serves a runtime's cron triggers with one task (plus one per fire in progress)."""

    name = "cron"
    cancel_on_stop = True

    def __init__(self, jobs: Sequence[CronJob]) -> None:
        self.jobs = list(jobs)
        self._lead = _ZERO  # how early it wakes for a fire (`ahead.py`)
        self._slots: list[_Slot] = []
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._nap_scope: anyio.CancelScope | None = None
        self._nap_until: datetime | None = None
        self._tg: TaskGroup | None = None
        self._ctx: TriggerContext | None = None
        self._watch: StepWatch | None = None
        self._late: LateReport | None = None

    def failure(self, error: BaseException) -> BaseException:
        """The error the runtime raises when serving failed: a trigger's is already named."""
        if isinstance(error, TriggerFailed | StateStoreError) or len(self.jobs) != 1:
            return error
        return TriggerFailed(self.jobs[0].name, error)

    async def serve(
        self, ctx: TriggerContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        items = await ctx.state.call(ctx.state.state_items, ctx.workflow)
        self._ctx, self._watch, self._late = ctx, StepWatch(ctx.clock), LateReport(ctx.clock)
        self._lead = claim_lead(ctx.clock)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._build_heap(ctx, last_fires(items))
                if ctx.recovered is not None:
                    tg.start_soon(self._serve_recoveries, ctx.recovered)
                task_status.started()
                await self._serve_heap(ctx)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for slot in self._slots:
                    if slot.gate is not None:
                        await slot.gate.drop_pending("workflow stopping")

    def _build_heap(self, ctx: TriggerContext, lasts: dict[str, datetime]) -> None:
        now = ctx.clock.now()
        for job in self.jobs:
            last = lasts.get(job.name)
            resume = job.resume_point(ctx, last, now)
            if resume is None and last is not None:  # fires were missed: catch up first
                self._slots.append(slot := _Slot(job, last))
                self._fire_in_task(slot, job.catch_up, last)
            else:
                self._slots.append(slot := _Slot(job, resume or now))
                self._heap.append(self._entry(slot))
        heapq.heapify(self._heap)

    async def _serve_recoveries(
        self, recovered: MemoryObjectReceiveStream[list[RunRecord]]
    ) -> None:
        """Each trigger catches up the runs a dead replica left, beside its own fires."""
        assert self._ctx is not None and self._tg is not None
        slots = {slot.job.name: slot for slot in self._slots}
        async for runs in recovered:
            for name in sorted({run.trigger for run in runs} & slots.keys()):
                slot, mine = slots[name], [run for run in runs if run.trigger == name]
                self._tg.start_soon(slot.job.recover, self._ctx, self._gate(slot), mine)

    async def _serve_heap(self, ctx: TriggerContext) -> None:
        assert self._watch is not None
        while not ctx.stopping.is_set():
            await self._nap(ctx.clock)
            now, step = self._watch.look()
            if step > _ZERO:
                self._stepped_forward(now, step)
            elif step < _ZERO:
                self._stepped_back(min(now, self._watch.since), -step)
            self._start_due(now)

    async def _nap(self, clock: Clock) -> None:
        """Sleep until the earliest fire; a trigger done firing wakes it if its next is earlier."""
        with anyio.CancelScope() as self._nap_scope:
            if self._heap:
                self._nap_until = self._heap[0][0]
                wait = (self._nap_until - self._lead - clock.now()).total_seconds()
                await clock.sleep(max(wait, 0.0))  # the time taken since may have passed it
            else:  # every trigger is firing: each puts its next fire back when done
                self._nap_until = None
                await anyio.sleep_forever()
        self._nap_scope = None

    def _entry(self, slot: _Slot) -> Entry:
        fire_at = slot.job.next_fire(slot.after)
        return slot.job.deadline(fire_at), next(self._seq), slot, fire_at

    def _push(self, slot: _Slot) -> None:
        entry = self._entry(slot)
        heapq.heappush(self._heap, entry)
        scope, until = self._nap_scope, self._nap_until
        if scope is not None and (until is None or entry[0] < until):
            scope.cancel()

    def _start_due(self, now: datetime) -> None:
        """Hand every fire due at `now` to a task; fires that came due while the scheduler
        was late are reported together (`LateReport`)."""
        assert self._late is not None and self._ctx is not None
        while self._heap and self._heap[0][0] <= now + self._lead:
            deadline, _, slot, fire_at = heapq.heappop(self._heap)
            job, due = slot.job, slot.job.due_fires(fire_at, now)
            if len(due) > 1:
                self._late.add(job.name, len(due), now - due[0])
            elif can_fire_ahead(self._ctx, job, self._gate(slot)):
                self._fire_in_task(slot, partial(fire_ahead, job), fire_at, deadline)
                continue
            if deadline > now:  # woke early for a fire that goes the usual way: at its time
                self._fire_in_task(slot, partial(fire_when_due, job), fire_at, deadline)
            else:
                self._fire_in_task(slot, partial(fire_due_or_rejoin, job), due, now)
        if (fields := self._late.report()) is not None:
            log.warning("trigger woke late: fires came due meanwhile", **fields)

    def _fire_in_task(
        self, slot: _Slot, act: Callable[..., Awaitable[datetime]], *args: Any
    ) -> None:
        assert self._tg is not None
        slot.busy = True
        self._tg.start_soon(self._firing, slot, act, args, name=f"cron {slot.job.name}")

    async def _firing(
        self, slot: _Slot, act: Callable[..., Awaitable[datetime]], args: tuple[Any, ...]
    ) -> None:
        """Run one of the trigger's policy steps, apply steps seen meanwhile, then put its
        next fire on the heap. A failure ends the runtime, naming the trigger."""
        assert self._ctx is not None
        try:
            slot.after = await act(self._ctx, self._gate(slot), *args)
            while slot.steps:
                await self._apply_step(slot, slot.steps.pop(0))
            slot.steps = None
        except Exception as exc:
            raise TriggerFailed(slot.job.name, exc) from exc
        slot.busy = False
        self._push(slot)

    def _gate(self, slot: _Slot) -> OverlapGate:
        """The trigger's overlap gate, made on its first fire (an idle trigger holds none)."""
        assert self._ctx is not None and self._tg is not None
        if slot.gate is None:
            slot.gate = OverlapGate(slot.job.policy.overlap, self._ctx.runner, self._tg.start_soon)
        return slot.gate

    # -- wall-clock steps ----------------------------------------------------------------------

    def _stepped_forward(self, now: datetime, step: timedelta) -> None:
        """A forward step: each trigger's fires it skipped are coalesced into one run."""
        busy = self._note_step(_Step(True, now, step))
        coalesced, waiting = 0, []
        for entry in self._heap:
            slot = entry[2]
            fire_at = slot.job.coalesced_fire(slot.after, now)
            if fire_at is None:
                waiting.append(entry)
            else:
                coalesced += 1
                self._fire_in_task(slot, slot.job.fire_coalesced, fire_at, slot.after)
        self._heap = waiting
        heapq.heapify(self._heap)
        log.warning(
            "wall clock stepped forward: fires coalesced",
            step_from=iso(now - step),
            step_to=iso(now),
            coalesced=coalesced,
            firing=busy,
        )

    def _stepped_back(self, since: datetime, back: timedelta) -> None:
        """A backward step: every trigger on the heap resumes by its rule (`stepped_back`)."""
        for _, _, slot, _ in self._heap:
            slot.after = slot.job.stepped_back(slot.after, since, back)
        self._heap = [self._entry(entry[2]) for entry in self._heap]
        heapq.heapify(self._heap)
        self._note_step(_Step(False, since, back))
        log.warning(
            "wall clock stepped back",
            step_from=iso(since + back),
            step_to=iso(since),
            resumes=self._resumes(back),
        )

    def _resumes(self, back: timedelta) -> str:
        resuming = sum(slot.job.resumes_after_step_back(back) for slot in self._slots)
        if resuming == len(self._slots):
            return "on the new wall time"
        if len(self._slots) == 1:
            return f"after {iso(self._slots[0].after)}: no repeat"
        return (
            f"{resuming} wildcard jobs on the new wall time; {len(self._slots) - resuming} "
            "fixed-time jobs after their last fire: no repeat"
        )

    def _note_step(self, step: _Step) -> int:
        """Triggers busy firing apply `step` when done; how many there are."""
        busy = [slot for slot in self._slots if slot.busy]
        for slot in busy:
            slot.steps = [*(slot.steps or []), step]
        return len(busy)

    async def _apply_step(self, slot: _Slot, step: _Step) -> None:
        assert self._ctx is not None
        if not step.forward:
            slot.after = slot.job.stepped_back(slot.after, step.since, step.size)
            return
        fire_at = slot.job.coalesced_fire(slot.after, self._ctx.clock.now())
        if fire_at is not None:
            job, gate = slot.job, self._gate(slot)
            slot.after = await job.fire_coalesced(self._ctx, gate, fire_at, slot.after)
