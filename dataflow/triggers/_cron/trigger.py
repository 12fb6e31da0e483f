"""The cron trigger: what the runtime and the inspection commands see of a `@cronjob`.

Its policies are a `CronJob` (`job.py`); all of a runtime's cron triggers are served together
by one `CronScheduler` (`scheduler.py`), which `serve_together` hands the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import anyio
from anyio.abc import TaskStatus

from dataflow.triggers._cron.job import LAST_FIRE, Catchup, CronJob, CronPolicy
from dataflow.triggers._cron.schedule import CronSchedule
from dataflow.triggers._cron.scheduler import CronScheduler
from dataflow.triggers.base import (
    Description,
    RunPolicy,
    RunRequest,
    Server,
    Trigger,
    TriggerContext,
)

__all__ = ["LAST_FIRE", "Catchup", "CronPolicy", "CronTrigger"]


class CronTrigger(Trigger):
    kind = "cronjob"

    def __init__(
        self, name: str, handler: Callable[..., Any], schedule: CronSchedule, policy: CronPolicy
    ) -> None:
        super().__init__(name, handler)
        self.job = CronJob(name, handler, schedule, policy)

    @property
    def schedule(self) -> CronSchedule:
        return self.job.schedule

    @property
    def policy(self) -> CronPolicy:
        return self.job.policy

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

    @classmethod
    def serve_together(cls, triggers: Sequence[Trigger]) -> Server | None:
        """One scheduler for all of a runtime's cron triggers."""
        return CronScheduler([t.job for t in triggers if isinstance(t, CronTrigger)])

    def backfill_request(self, fire_at: datetime) -> RunRequest:
        return replace(self.job.request(fire_at.astimezone(UTC)), backfill=True)

    async def serve(
        self, ctx: TriggerContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """This trigger alone, on a scheduler of its own (the runtime serves them together)."""
        await CronScheduler([self.job]).serve(ctx, task_status=task_status)
