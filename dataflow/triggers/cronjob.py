"""`@cronjob("*/15 * * * *")`: run a handler on a cron schedule (Debian cron semantics)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, get_args

from dataflow._core.errors import CronError, WorkflowError
from dataflow.triggers._cron.overlap import Overlap
from dataflow.triggers._cron.schedule import CronSchedule, resolve_timezone
from dataflow.triggers._cron.trigger import Catchup, CronPolicy, CronTrigger
from dataflow.triggers.base import RunPolicy, Trigger, TriggerSpec, attach_spec

__all__ = ["CronError", "CronSchedule", "CronSpec", "CronTrigger", "cronjob"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True)
class CronSpec(TriggerSpec):
    kind: ClassVar[str] = "cronjob"
    schedule: CronSchedule
    policy: CronPolicy

    def build(self, handler: Callable[..., Any]) -> Trigger:
        return CronTrigger(self.trigger_name, handler, self.schedule, self.policy)


def cronjob(
    expression: str,
    *,
    name: str | None = None,
    timezone: str | None = None,
    overlap: str = "skip",
    misfire_grace: float | None = 60.0,
    catchup: Catchup = "coalesce",
    jitter: float = 0.0,
    timeout: float | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
) -> Callable[[F], F]:
    """Run the handler at each time matching `expression` (5 fields, or 6 with seconds first).

    `overlap`: skip | queue_one | queue_all | cancel_running | allow. After downtime, fires
    missed within `misfire_grace` seconds run once (`catchup="coalesce"`), all, or none.
    `jitter` delays each fire by up to that many seconds; `timeout` and `retries` bound runs.
    """
    if not isinstance(expression, str):
        raise WorkflowError("@cronjob needs a cron expression: write @cronjob('*/15 * * * *')")
    try:
        zone = resolve_timezone(timezone)
    except ValueError as exc:  # an unknown timezone; kept apart so no parser error lands here
        raise WorkflowError(f"@cronjob({expression!r}): {exc}") from None
    schedule = CronSchedule(expression, zone)  # a bad expression: CronError naming the field
    policy = CronPolicy(
        overlap=_choice("overlap", overlap, [o.value for o in Overlap], Overlap),
        misfire_grace=_non_negative("misfire_grace", misfire_grace),
        catchup=_choice("catchup", catchup, list(get_args(Catchup)), str),  # type: ignore[arg-type]
        jitter=_non_negative("jitter", jitter) or 0.0,
        run=RunPolicy(
            timeout=_non_negative("timeout", timeout),
            retries=int(_non_negative("retries", retries) or 0),
            retry_delay=_non_negative("retry_delay", retry_delay) or 0.0,
        ),
    )
    spec = CronSpec(name=name, schedule=schedule, policy=policy)

    def decorator(func: F) -> F:
        return attach_spec(func, spec)

    return decorator


T = TypeVar("T")


def _choice(option: str, value: str, allowed: list[str], kind: Callable[[str], T]) -> T:
    if value not in allowed:
        raise WorkflowError(f"@cronjob {option}={value!r} is not valid: use one of {allowed}")
    return kind(value)


def _non_negative(option: str, value: float | None) -> float | None:
    if value is not None and value < 0:
        raise WorkflowError(f"@cronjob {option}={value!r} must not be negative")
    return value
