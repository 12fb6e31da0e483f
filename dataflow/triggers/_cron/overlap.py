"""What a trigger does when a fire comes while its previous run is still going."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any

import anyio

from dataflow._core.logs import get_logger
from dataflow._core.run import Run
from dataflow.triggers._cron import ledger
from dataflow.triggers.base import RunHandle, Runner, RunRequest

log = get_logger("dataflow.trigger")


class Overlap(StrEnum):
    SKIP = "skip"  # drop the new fire (recorded as skipped)
    QUEUE_ONE = "queue_one"  # keep only the newest waiting fire, run it after the current one
    QUEUE_ALL = "queue_all"  # run every waiting fire in order
    CANCEL_RUNNING = "cancel_running"  # cancel the running one, then start the new one
    ALLOW = "allow"  # run concurrently


Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], object]


class OverlapGate:
    """Starts runs for one trigger under its overlap policy. Queued fires are drained by a task
    that `spawn` starts when the first one is queued and that ends once none is left, so an
    idle trigger holds no task."""

    def __init__(self, policy: Overlap, runner: Runner, spawn: Spawn) -> None:
        self.policy = policy
        self.runner = runner
        self.active: list[RunHandle] = []
        self.pending: deque[RunRequest] = deque()
        self._spawn = spawn
        self._draining = False

    def busy(self) -> bool:
        self.active = [h for h in self.active if not h.finished.is_set()]
        return bool(self.active)

    async def submit(self, request: RunRequest) -> None:
        if self.policy is Overlap.ALLOW or not (self.busy() or self.pending):
            self._start(request)
        elif self.policy is Overlap.SKIP:
            note = ledger.skipped_for(request, self.active)
            await self.runner.record_skipped(request, "previous run still in progress", note)
        elif self.policy is Overlap.CANCEL_RUNNING:
            await self._cancel_active()
            self._start(request)
        else:
            if self.policy is Overlap.QUEUE_ONE and self.pending:
                old = self.pending.pop()
                note = ledger.replaced(old, request)
                await self.runner.record_skipped(old, "replaced by a newer fire", note)
            self.pending.append(request)
            if not self._draining:
                self._draining = True
                self._spawn(self._drain)

    def idle(self) -> bool:
        return not (self.busy() or self.pending)

    def start_written(self, request: RunRequest, run: Run) -> None:
        """Start a run whose start record is written (`ahead.py`: only while `idle()`)."""
        self._start(request, run)

    def _start(self, request: RunRequest, run: Run | None = None) -> None:
        self.busy()  # drops finished handles: `allow` never asks, and would keep them all
        self.active.append(self.runner.spawn(request, run))

    async def _cancel_active(self) -> None:
        for handle in self.active:
            log.warning("cancelling running run for a new fire", trigger=handle.request.trigger)
            handle.cancel()
        for handle in self.active:
            await handle.finished.wait()

    async def wait_idle(self) -> None:
        """Wait until no run of this trigger is running or queued."""
        while self.busy() or self.pending:
            for handle in self.active:
                await handle.finished.wait()
            await anyio.lowlevel.checkpoint()

    async def _drain(self) -> None:
        """Start queued fires one after another, each once the runs before it finished."""
        try:
            while self.pending:
                for handle in self.active:
                    await handle.finished.wait()
                if self.pending:  # a newer fire may have replaced it (queue_one) meanwhile
                    self._start(self.pending.popleft())
        finally:
            self._draining = False

    async def drop_pending(self, reason: str) -> None:
        while self.pending:
            await self.runner.record_skipped(self.pending.popleft(), reason)
