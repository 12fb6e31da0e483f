"""Bounded run history: the runtime prunes the state store at start and then every hour.

Rows go in batches of `BATCH`, each its own short write in a worker thread, so a run's own
bookkeeping waits at most one batch (about a millisecond on SQLite) however much history there
is to drop. What is kept: runs younger than `DATAFLOW_HISTORY_DAYS`, at most
`DATAFLOW_HISTORY_MAX_RUNS_PER_TRIGGER` per trigger, every running run, and every dead letter
not yet retried successfully (`Retention`); the fire ledger keeps the fire times within the
same age and count (by fire time), so `explain` covers what the history does.
"""

from __future__ import annotations

from datetime import timedelta

from dataflow._core.clock import Clock, iso
from dataflow._core.logs import get_logger
from dataflow._core.settings import Settings
from dataflow.state import Retention, Store

log = get_logger("dataflow.runtime")
PRUNE_INTERVAL = timedelta(hours=1)
BATCH = 500  # rows per write: 1,000,000 old runs go in 2,000 writes of ~1 ms each


async def serve_history_pruning(
    state: Store, workflow: str, settings: Settings, clock: Clock
) -> None:
    """Prune now, then every `PRUNE_INTERVAL` (wall time), until cancelled."""
    while True:
        await prune_history(state, workflow, settings, clock)
        await clock.sleep_until(clock.now() + PRUNE_INTERVAL)


async def prune_history(state: Store, workflow: str, settings: Settings, clock: Clock) -> int:
    """One pass: batches until one comes back short; returns how many rows went."""
    retention = Retention(
        older_than=clock.now() - timedelta(days=settings.history_days),
        max_runs_per_trigger=settings.history_max_runs_per_trigger,
    )
    total = 0
    while True:
        gone = await state.call(state.prune_history, workflow, retention, batch=BATCH)
        total += gone
        if gone < BATCH:
            break
    if total:
        log.info(
            "run history pruned",
            rows=total,
            older_than=iso(retention.older_than),
            max_runs_per_trigger=retention.max_runs_per_trigger,
        )
    return total
