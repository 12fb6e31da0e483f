"""`GET /api/charts`: each trigger's recent runs as chart points, its run durations and fire lag
(run start minus scheduled fire time), over the last hours. The page draws them as inline SVG.

Bounded both ways: the last `hours` hours, and at most `limit` runs per trigger (its newest),
each read from the store's (workflow, trigger, start time) index; at most `MAX_TRIGGERS`
triggers per answer (`trigger=` asks for one), so a workflow of thousands of triggers costs a
page no more than twenty index reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from dataflow._core.run import RunStatus
from dataflow.runtime._describe import run_duration
from dataflow.runtime._web._api import Served, int_param, known_trigger
from dataflow.runtime._web._server import Request
from dataflow.state import RunRecord, Store

HOURS, MAX_HOURS = 6, 168  # the window, by default and at most (a week)
RUNS, MAX_RUNS = 100, 1000  # a trigger's newest runs, by default and at most
MAX_TRIGGERS = 20  # triggers per answer (declaration order)


async def run_charts(served: Served, request: Request) -> dict[str, Any]:
    query = request.query
    hours = int_param(query, "hours", HOURS, 1, MAX_HOURS)
    limit = int_param(query, "limit", RUNS, 1, MAX_RUNS)
    names = [declared.name for declared in served.workflow.__triggers__]
    asked = query.get("trigger") or None
    if asked is not None:
        known_trigger(served, asked)
        names = [asked]
    shown = names[:MAX_TRIGGERS]
    now = served.clock.now()
    since = now - timedelta(hours=hours)
    state = served.state
    series = await state.call(_series, state, served.name, shown, since, limit)
    return {
        "since": since,
        "now": now,
        "hours": hours,
        "limit": limit,
        "more": len(names) > len(shown),
        "triggers": [{"trigger": name, "points": points} for name, points in series],
    }


def _series(
    store: Store, workflow: str, triggers: Sequence[str], since: datetime, limit: int
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Oldest first per trigger: its runs that started at or after `since`, skipped ones left
    out (no work was done; the fire strip shows them)."""
    found = []
    for trigger in triggers:
        runs = store.runs(workflow, trigger, limit=limit)
        kept = [run for run in reversed(runs) if run.started_at >= since]
        found.append((trigger, [point(run) for run in kept if run.status != RunStatus.SKIPPED]))
    return found


def point(run: RunRecord) -> dict[str, Any]:
    duration = run_duration(run)
    lag = fire_lag(run)
    return {
        "run_id": run.run_id,
        "started_at": run.started_at,
        "status": run.status,
        "duration": None if duration is None else round(duration, 6),
        "lag": None if lag is None else round(lag, 6),
    }


def fire_lag(run: RunRecord) -> float | None:
    """Seconds from the scheduled fire time to the run's start, as the `dataflow_fire_lag`
    metric measures it: first attempts only (a retry's start says nothing about the schedule),
    never a backfill (a past fire run on purpose), never below 0. Runs with no scheduled time
    (a change stream's batches, start-up and manual runs) have none."""
    if run.scheduled_at is None or run.attempt != 1 or run.backfill:
        return None
    return max((run.started_at - run.scheduled_at).total_seconds(), 0.0)
