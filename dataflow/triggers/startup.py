"""`@startup`: handlers that all run, concurrently, before any other trigger starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar, overload

import anyio
from anyio.abc import TaskStatus

from dataflow._core.errors import StartupFailed
from dataflow._core.run import RunStatus
from dataflow.triggers._decorate import decorate
from dataflow.triggers.base import (
    Description,
    RunPolicy,
    RunRequest,
    Trigger,
    TriggerContext,
    TriggerSpec,
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True)
class StartupSpec(TriggerSpec):
    kind: ClassVar[str] = "startup"
    timeout: float | None = None

    def build(self, handler: Callable[..., Any]) -> Trigger:
        return StartupTrigger(self.trigger_name, handler, timeout=self.timeout)


class StartupTrigger(Trigger):
    """Runs its handler once; a failure raises `StartupFailed` so the runtime stops."""

    kind = "startup"
    runs_before_others = True

    def __init__(
        self, name: str, handler: Callable[..., Any], *, timeout: float | None = None
    ) -> None:
        super().__init__(name, handler)
        self.policy = RunPolicy(timeout=timeout)

    @property
    def run_policy(self) -> RunPolicy:
        return self.policy

    def description(self, now: datetime, count: int) -> Description:
        return Description(source="once, before other triggers", options=self.policy.options())

    async def serve(
        self, ctx: TriggerContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        request = RunRequest(trigger=self.name, handler=self.handler, policy=self.policy)
        outcome = await ctx.runner.execute(request)
        if outcome.status is not RunStatus.SUCCEEDED:
            error = outcome.error or RuntimeError(f"run {outcome.status.value}")
            raise StartupFailed(self.name, error)


@overload
def startup(func: F, /) -> F: ...
@overload
def startup(
    func: None = None, /, *, name: str | None = None, timeout: float | None = None
) -> Callable[[F], F]: ...
def startup(
    func: F | None = None, /, *, name: str | None = None, timeout: float | None = None
) -> F | Callable[[F], F]:
    """Mark a handler to run once at start. All startup handlers must succeed."""
    return decorate(func, StartupSpec(name=name, timeout=timeout))
