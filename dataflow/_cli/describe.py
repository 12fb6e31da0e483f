"""What the inspection commands show, gathered without starting or connecting anything.

`describe_triggers` builds each trigger from the workflow *class* (no instance, so a workflow
whose `__init__` opens connections is not run) and reads positions from the state file, if
there is one. Nothing here writes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dataflow._core.redact import redact_url
from dataflow.state import RunRecord, StateStore
from dataflow.triggers._cron.trigger import LAST_FIRE, CronPolicy, CronTrigger
from dataflow.triggers.base import RunPolicy, Trigger
from dataflow.triggers.mongo_change_listener import ChangeStreamPolicy, ChangeStreamSpec
from dataflow.triggers.startup import StartupTrigger
from dataflow.triggers.workflow import DeclaredTrigger, Workflow

# A change stream's position is saved as `resume_token:<namespace>` (triggers/_checkpoint.py,
# not imported: it loads pymongo).
TOKEN_KEY = "resume_token"
_QUALIFIED = re.compile(r"^(?:\w+\.)+(?=\w+:)")  # `pkg.mod.` before an exception's class name


@dataclass(frozen=True)
class StateEntry:
    """One saved value of a trigger (last fire time, resume token) and when it was written."""

    key: str
    value: str
    updated_at: datetime
    position_time: datetime | None = None  # a resume token's cluster time, when it shows one


@dataclass(frozen=True, kw_only=True)
class TriggerInfo:
    name: str
    kind: str
    source: str  # the cron expression, the watched namespace, ...
    timezone: str | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    next_fires: list[datetime] = field(default_factory=list)  # aware, in the trigger's zone
    state: list[StateEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "timezone": self.timezone,
            "policy": self.policy,
            "next": [{"local": t, "utc": t.astimezone(UTC)} for t in self.next_fires],
            "state": [dataclasses.asdict(entry) for entry in self.state],
        }


def open_existing_store(path: Path) -> StateStore | None:
    """The state file if a run has created it; inspection never creates one."""
    return StateStore(path) if path.is_file() else None


def describe_triggers(
    workflow_class: type[Workflow], store: StateStore | None, now: datetime, next_n: int
) -> list[TriggerInfo]:
    saved = _saved_state(workflow_class.workflow_name, store)
    return [
        describe_declared(workflow_class, declared, saved.get(declared.name, []), now, next_n)
        for declared in workflow_class.__triggers__
    ]


def describe_declared(
    workflow_class: type[Workflow],
    declared: DeclaredTrigger,
    state: list[StateEntry],
    now: datetime,
    next_n: int,
) -> TriggerInfo:
    """Describe one trigger, built on the class's function: no workflow instance is created.

    A change stream is described from its spec: building it would load pymongo for nothing.
    """
    if isinstance(declared.spec, ChangeStreamSpec):
        return describe_stream(declared.name, declared.spec, state)
    trigger = declared.spec.build(getattr(workflow_class, declared.attribute))
    return describe(trigger, state, now, next_n)


def _saved_state(workflow: str, store: StateStore | None) -> dict[str, list[StateEntry]]:
    by_trigger: dict[str, list[StateEntry]] = {}
    for trigger, key, value, updated_at in store.state_items(workflow) if store else []:
        entry = StateEntry(key, value, updated_at, _token_time(value) if _is_token(key) else None)
        by_trigger.setdefault(trigger, []).append(entry)
    return by_trigger


def describe(trigger: Trigger, state: list[StateEntry], now: datetime, next_n: int) -> TriggerInfo:
    if isinstance(trigger, CronTrigger):
        schedule = trigger.schedule
        return TriggerInfo(
            name=trigger.name,
            kind="cron",
            source=schedule.expression,
            timezone=schedule.timezone.key,
            policy=cron_policy(trigger.policy),
            next_fires=list(islice(schedule.iter_after(now), next_n)),
            state=state,
        )
    if isinstance(trigger, StartupTrigger):
        return TriggerInfo(
            name=trigger.name,
            kind="startup",
            source="once, before other triggers",
            policy=run_policy(trigger.policy),
            state=state,
        )
    return _describe_other(trigger, state)


def _describe_other(trigger: Trigger, state: list[StateEntry]) -> TriggerInfo:
    """Any other kind of trigger: its own description, its policy dataclass, what it saved."""
    policy = getattr(trigger, "policy", None)
    return TriggerInfo(
        name=trigger.name,
        kind=trigger.kind,
        source=trigger.describe(),
        policy=flat_policy(policy) if dataclasses.is_dataclass(policy) else {},
        state=state,
    )


def describe_stream(name: str, spec: ChangeStreamSpec, state: list[StateEntry]) -> TriggerInfo:
    return TriggerInfo(
        name=name,
        kind=spec.kind,
        source=f"{spec.namespace}\n{source_label(spec.source)}",
        policy=stream_policy(spec.policy),
        state=state,
    )


def source_label(source: object) -> str:
    """A change stream's source without password or URI options; `$NAME` for a setting."""
    if isinstance(source, str):
        if "://" not in source:
            return f"${source}"
        return urlunsplit(urlsplit(redact_url(source))._replace(query="", fragment=""))
    target = getattr(getattr(source, "sync", source), "target", None)  # MongoDB(Async)
    return str(target) if target is not None else type(source).__name__


def stream_policy(policy: ChangeStreamPolicy) -> dict[str, Any]:
    types = policy.operation_types
    return {
        "operation_types": ",".join(types) if types else None,
        "full_document": policy.full_document,
        "on_error": policy.on_error,
        "on_history_lost": policy.on_history_lost,
        "checkpoint_interval": policy.checkpoint_interval,
        **run_policy(policy.run),
    }


def _is_token(key: str) -> bool:
    return key.split(":", 1)[0] == TOKEN_KEY


def _token_time(value: str) -> datetime | None:
    """The cluster time a resume token starts with (`_data` "82" + seconds + increment, hex)."""
    try:
        data = json.loads(value).get("_data")
        if isinstance(data, str) and data.startswith("82") and len(data) >= 18:
            return datetime.fromtimestamp(int(data[2:10], 16), UTC)
    except (ValueError, AttributeError):
        pass
    return None


def cron_policy(policy: CronPolicy) -> dict[str, Any]:
    return {
        "overlap": policy.overlap.value,
        "catchup": policy.catchup,
        "misfire_grace": policy.misfire_grace,
        "jitter": policy.jitter or None,
        **run_policy(policy.run),
    }


def run_policy(policy: RunPolicy) -> dict[str, Any]:
    values: dict[str, Any] = {"timeout": policy.timeout}
    if policy.retries:
        values |= {"retries": policy.retries, "retry_delay": policy.retry_delay}
    return values


def flat_policy(policy: Any) -> dict[str, Any]:
    """A policy dataclass as flat options, a nested `RunPolicy` folded in."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(policy):
        value = getattr(policy, item.name)
        if isinstance(value, RunPolicy):
            values |= run_policy(value)
        elif dataclasses.is_dataclass(value):
            values |= flat_policy(value)
        else:
            values[item.name] = getattr(value, "value", value)  # an enum shows its value
    return values


def last_fire(state: list[StateEntry]) -> datetime | None:
    entry = next((e for e in state if e.key == LAST_FIRE), None)
    return None if entry is None else datetime.fromisoformat(entry.value)


# -- history and dead letters -------------------------------------------------------------------
def error_summary(error: str | None) -> str:
    """The last line of a stored traceback (`ValueError: bad row`), or the reason of a skip."""
    if not error:
        return ""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return _QUALIFIED.sub("", lines[-1]) if lines else ""


def run_duration(run: RunRecord) -> float | None:
    return None if run.ended_at is None else (run.ended_at - run.started_at).total_seconds()


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        **dataclasses.asdict(run),
        "duration": run_duration(run),
        "error_summary": error_summary(run.error) or None,
    }
