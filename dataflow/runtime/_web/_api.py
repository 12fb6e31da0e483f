"""The status page's JSON API (docs/api.md): what the workflow is, its triggers, its runs and
its dead letters, read through the `Store` interface with the shapes the CLI's `--json` prints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

import sniffio

from dataflow._core.clock import Clock
from dataflow._core.errors import HttpRequestRefused, SettingsError
from dataflow._core.run import RunStatus
from dataflow._core.settings import Settings
from dataflow.runtime._describe import (
    describe_triggers,
    json_default,
    letter_json,
    masked,
    replica_json,
    replicas_of,
    run_json,
)
from dataflow.runtime._dispatcher import Dispatcher
from dataflow.runtime._explain import cron_schedule_of, ledger_accounts
from dataflow.runtime._metrics import RunMetrics
from dataflow.runtime._web._server import Request, Response
from dataflow.runtime._web._words import cron_in_words
from dataflow.state import Leases, RunRecord, Store
from dataflow.triggers.workflow import Workflow

NEXT_FIRES = 5  # next fire times shown per trigger
MAX_PAGE = 500  # runs in one page of /api/runs at most
STATUSES = frozenset(status.value for status in RunStatus)
FAILED_STATUSES = frozenset({"failed", "timed_out", "cancelled", "interrupted"})  # failed_only


class Served(Protocol):
    """What the page reads of the running runtime (`Runtime` has all of it)."""

    name: str
    workflow: Workflow
    state: Store
    clock: Clock
    settings: Settings
    dispatcher: Dispatcher
    metrics: RunMetrics  # its stream triggers' counters
    began_at: datetime | None

    @property
    def phase(self) -> str: ...

    @property
    def standby(self) -> bool: ...


def json_response(value: Any, status: int = 200) -> Response:
    text = json.dumps(masked(value), default=json_default)  # no secret in any answer
    return Response(status, text.encode() + b"\n", "application/json")


def error_response(error: HttpRequestRefused) -> Response:
    return json_response({"error": error.message}, error.status)


async def workflow_info(served: Served) -> dict[str, Any]:
    now = served.clock.now()
    began = served.began_at
    return {
        "name": served.name,
        "phase": served.phase,
        "backend": sniffio.current_async_library(),
        "started_at": began,
        "uptime": None if began is None else max((now - began).total_seconds(), 0.0),
        "now": now,
        "state": served.settings.state_location(served.name),
        "actions": served.settings.http_token is not None,
        **await _replicas_info(served),
    }


async def _replicas_info(served: Served) -> dict[str, Any]:
    """On a store replicas share: this replica, whether it stands by, every replica heard
    from (which stream each owns is in /api/triggers); nothing on a store of its own."""
    state, settings = served.state, served.settings
    if not isinstance(state, Leases):
        return {}
    found = await state.call(replicas_of, state, served.name, settings.replica_ttl)
    return {
        "replica": settings.replica_id,
        "standby": served.standby,
        "replicas": [replica_json(replica, live) for replica, live in found],
    }


async def triggers_info(served: Served) -> list[dict[str, Any]]:
    now = served.clock.now()
    infos = await served.state.call(
        describe_triggers, type(served.workflow), served.state, now, NEXT_FIRES
    )
    found = []
    for info in infos:
        last = await served.state.call(served.state.runs, served.name, info.name, limit=1)
        shape = info.to_json()
        shape["schedule"] = cron_in_words(info.source) if info.kind == "cronjob" else info.source
        shape["next"] = [{**fire, "text": _zone_text(fire["local"])} for fire in shape["next"]]
        shape["last_run"] = run_json(last[0], now) if last else None
        found.append(shape)
    return found


async def runs_page(served: Served, request: Request) -> dict[str, Any]:
    """Newest first; `next_before` asks for the page after this one."""
    query = request.query
    trigger = query.get("trigger") or None
    if trigger is not None:
        known_trigger(served, trigger)
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise HttpRequestRefused(
            400, f"status={status!r} is not valid: use one of {_sorted(STATUSES)}"
        )
    limit = int_param(query, "limit", 50, 1, MAX_PAGE)
    before = _time(query, "before")
    # A failed status also names the failed runs' index (what `failed_only` reads): a status
    # no run has then costs an index probe, not a scan of the whole history.
    failed = status in FAILED_STATUSES
    runs: list[RunRecord] = await served.state.call(
        served.state.runs,
        served.name,
        trigger,
        failed_only=failed,
        limit=limit,
        status=status,
        before=before,
    )
    now = served.clock.now()
    last = runs[-1].started_at if len(runs) == limit else None
    return {"runs": [run_json(run, now) for run in runs], "next_before": last}


async def one_run(served: Served, run_id: str) -> dict[str, Any]:
    found = await served.state.call(served.state.runs_by_id, [run_id])
    if not found or found[0].workflow != served.name:
        raise HttpRequestRefused(404, f"no run {run_id!r} in workflow {served.name!r}")
    return run_json(found[0], served.clock.now())


async def dead_letters(served: Served, request: Request) -> list[dict[str, Any]]:
    every = request.query.get("all", "") in ("1", "true")
    letters = await served.state.call(served.state.dead_letters, served.name, include_retried=every)
    return [letter_json(letter) for letter in letters]


async def trigger_fires(served: Served, name: str, request: Request) -> dict[str, Any]:
    """The trigger's fire ledger, newest first: each fire's outcome, reason and line."""
    known_trigger(served, name)
    try:
        schedule = cron_schedule_of(type(served.workflow).declared_trigger(name))
    except SettingsError as error:
        raise HttpRequestRefused(400, str(error)) from None
    since, limit = _time(request.query, "since"), int_param(request.query, "limit", 50, 1, MAX_PAGE)
    now, state = served.clock.now(), served.state
    asked = (state, served.name, name, schedule, since, limit, now, served.settings.replica_id)
    accounts = await state.call(ledger_accounts, *asked)
    fires = [account.to_json(now) for account in accounts]
    return {"trigger": name, "timezone": schedule.timezone.key, "fires": fires}


def known_trigger(served: Served, name: str) -> None:
    if name not in {declared.name for declared in served.workflow.__triggers__}:
        raise HttpRequestRefused(404, f"workflow {served.name!r} has no trigger {name!r}")


def _zone_text(local: datetime) -> str:
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def _sorted(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpRequestRefused(400, f"{name}={raw!r} is not valid: use a whole number") from None
    if not low <= value <= high:
        raise HttpRequestRefused(400, f"{name}={raw!r} is not valid: use {low} to {high}")
    return value


def _time(query: dict[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace(" ", "+"))  # a `+` in a query is a space
    except ValueError:
        raise HttpRequestRefused(
            400, f"{name}={raw!r} is not valid: use an ISO 8601 time"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
