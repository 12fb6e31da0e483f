"""What a trigger asks the runtime for, and what it gets back: a run's policy (timeout and
retries), the request to run a handler once, its outcome, and the handle of a run started in
the background. Plain values, shared by triggers, the runtime and the CLI (`base.py`
re-exports them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from dataflow._core.run import Run, RunStatus


@dataclass(frozen=True, kw_only=True)
class RunPolicy:
    """How one run is executed: time limit and retries with exponential backoff."""

    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 1.0
    retry_max_delay: float = 300.0

    def options(self) -> dict[str, Any]:
        """The policy as `list` shows it: the timeout, and the retries when there are any."""
        values: dict[str, Any] = {"timeout": self.timeout}
        if self.retries:
            values |= {"retries": self.retries, "retry_delay": self.retry_delay}
        return values


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    trigger: str
    handler: Callable[..., Any]
    args: tuple[Any, ...] = ()
    scheduled_at: datetime | None = None
    policy: RunPolicy = field(default_factory=RunPolicy)
    payload: Any = None
    backfill: bool = False  # a past fire run again by `trigger --from/--to`
    # A change stream's event: a success is counted (metrics, the trigger's batch row) but not
    # recorded on its own, and logged at debug; a failure is recorded as a run, as any run is.
    batched: bool = False


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    error: BaseException | None = None


@dataclass(eq=False)
class RunHandle:
    """A run started in the background: `finished` is set when its outcome is recorded."""

    request: RunRequest
    cancel_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    finished: anyio.Event = field(default_factory=anyio.Event)
    run: Run | None = None
    outcome: RunOutcome | None = None

    def cancel(self) -> None:
        if self.run is not None:
            self.run.request_cancel()
        self.cancel_scope.cancel()
