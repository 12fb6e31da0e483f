"""What the inspection commands and the status page show, gathered without starting or
connecting anything: the CLI's `--json` output and the HTTP API build the same shapes here.

`describe_triggers` builds each trigger from the workflow *class* (no instance, so a workflow
whose `__init__` opens connections is not run) and reads positions from the state file, if
there is one. Nothing here writes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataflow._core.redact import redact_text
from dataflow.state import DeadLetter, RunRecord, SqliteStore, Store
from dataflow.state._leases import Lease, Leases, Replica
from dataflow.triggers._changestream.policy import TOKEN_KEY
from dataflow.triggers._cron.trigger import LAST_FIRE
from dataflow.triggers.workflow import DeclaredTrigger, Workflow

STREAM_KIND = "mongodb_change_stream"  # the kind of trigger that has a lease
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
    owner: Lease | None = None  # a change stream's lease, on a store replicas share

    def to_json(self) -> dict[str, Any]:
        shown = {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "timezone": self.timezone,
            "policy": self.policy,
            "next": [{"local": t, "utc": t.astimezone(UTC)} for t in self.next_fires],
            "state": [dataclasses.asdict(entry) for entry in self.state],
        }
        if self.owner is not None:
            shown["owner"] = owner_json(self.owner)
        return shown


def owner_json(lease: Lease) -> dict[str, Any]:
    """Who reads a change stream: the lease's holder while it is live (`live`: false, it
    expired or was released, and the next replica to try takes it)."""
    return {
        "replica": lease.holder,
        "term": lease.term,
        "expires_at": lease.expires_at,
        "live": lease.live,
    }


def open_existing_store(path: Path) -> SqliteStore | None:
    """The state file if a run has created it; inspection never creates one. Anything at the
    path that is not a usable state file (a directory, an empty file) is refused, not shown
    as "no runs"."""
    return SqliteStore(path) if path.exists() else None


def describe_triggers(
    workflow_class: type[Workflow], store: Store | None, now: datetime, next_n: int
) -> list[TriggerInfo]:
    saved = _saved_state(workflow_class.workflow_name, store)
    infos = [
        describe_declared(workflow_class, declared, saved.get(declared.name, []), now, next_n)
        for declared in workflow_class.__triggers__
    ]
    if not isinstance(store, Leases):
        return infos
    return [dataclasses.replace(info, owner=_owner(store, workflow_class, info)) for info in infos]


def _owner(store: Leases, workflow_class: type[Workflow], info: TriggerInfo) -> Lease | None:
    if info.kind != STREAM_KIND:
        return None
    return store.lease(workflow_class.workflow_name, info.name)


def describe_declared(
    workflow_class: type[Workflow],
    declared: DeclaredTrigger,
    state: list[StateEntry],
    now: datetime,
    next_n: int,
) -> TriggerInfo:
    """Describe one trigger from the class's function: no workflow instance is created."""
    found = declared.spec.description(getattr(workflow_class, declared.attribute), now, next_n)
    return TriggerInfo(
        name=declared.name,
        kind=declared.spec.kind,
        source=found.source,
        timezone=found.timezone,
        policy=found.options,
        next_fires=found.next_fires,
        state=state,
    )


def _saved_state(workflow: str, store: Store | None) -> dict[str, list[StateEntry]]:
    by_trigger: dict[str, list[StateEntry]] = {}
    for trigger, key, value, updated_at in store.state_items(workflow) if store else []:
        entry = StateEntry(key, value, updated_at, token_time(value) if _is_token(key) else None)
        by_trigger.setdefault(trigger, []).append(entry)
    return by_trigger


def _is_token(key: str) -> bool:
    return key.split(":", 1)[0] == TOKEN_KEY


def token_time(value: str) -> datetime | None:
    """The cluster time a resume token starts with (`_data` "82" + seconds + increment, hex)."""
    try:
        data = json.loads(value).get("_data")
        if isinstance(data, str) and data.startswith("82") and len(data) >= 18:
            return datetime.fromtimestamp(int(data[2:10], 16), UTC)
    except (ValueError, AttributeError):
        pass
    return None


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


def run_elapsed(run: RunRecord, now: datetime) -> float | None:
    """Seconds a run still `running` has been going (None for a finished one)."""
    if run.ended_at is not None or run.status != "running":
        return None
    return max((now - run.started_at).total_seconds(), 0.0)


def run_json(run: RunRecord, now: datetime | None = None) -> dict[str, Any]:
    return {
        **dataclasses.asdict(run),
        "duration": run_duration(run),
        "elapsed": None if now is None else run_elapsed(run, now),
        "error_summary": error_summary(run.error) or None,
    }


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "trigger": letter.trigger,
        "created_at": letter.created_at,
        "error": letter.error,
        "error_summary": error_summary(letter.error),
        "payload": letter.payload,
        "retried_at": letter.retried_at,
        "retry_status": letter.retry_status,
    }


def masked(value: Any) -> Any:
    """`value` with every secret in its strings masked, value by value: in JSON text a secret
    may be escaped (`\\u00e4`, `\\"`), and masking the text could cut through its syntax."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


def json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def replicas_of(store: Store | None, workflow: str, ttl: float) -> list[tuple[Replica, bool]]:
    """On a store replicas share: each replica heard from, and whether it is live (heard
    within `ttl` seconds, by the database's clock)."""
    if not isinstance(store, Leases):
        return []
    return [(r, r.silent_for.total_seconds() < ttl) for r in store.replicas(workflow)]


def replica_json(replica: Replica, live: bool) -> dict[str, Any]:
    """One replica as `list --json` and the status page show it."""
    return {
        "replica": replica.replica_id,
        "started_at": replica.started_at,
        "last_heartbeat": replica.last_heartbeat,
        "silent_seconds": round(replica.silent_for.total_seconds(), 3),
        "live": live,
    }
