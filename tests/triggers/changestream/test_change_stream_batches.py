"""Change-event bookkeeping per batch (issue 16): successes are one history row per batch with
its event count and first and last position, and one position save; every failure, retry and
dead letter is still recorded on its own, with its traceback; per-event log lines are at debug,
with a periodic info line of counts."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from dataflow import Workflow, mongodb_change_stream
from dataflow.state import RunRecord, StateStore
from dataflow.testing import FakeClock
from dataflow.triggers._changestream.batch import Progress
from dataflow.triggers._changestream.checkpoint import loads
from dataflow.triggers.base import StreamStats
from tests._change_stream_peer import open_oplog, position_of, serving, token, wait_for
from tests._runtime import START, captured_logs

pytestmark = pytest.mark.anyio
QUIET = {"max_await_time": 0.05, "checkpoint_interval": 30.0}  # batches end by count or stop


def shop(url: str, *, fail_on: frozenset[int] | set[int] = frozenset(), **options: Any) -> Any:
    class Shop(Workflow):
        workflow_name = "shop"

        def __init__(self) -> None:
            self.seen: list[int] = []

        @mongodb_change_stream(url, "shop", "orders", name="sync", **(QUIET | options))
        def sync(self, change_event: dict[str, Any]) -> None:
            n = change_event["documentKey"]["_id"]
            self.seen.append(n)
            if n in fail_on:
                raise ValueError(f"cannot sync order {n}")

    return Shop()


def history(state: Path) -> list[RunRecord]:
    store = StateStore(state)
    try:
        return list(reversed(store.runs("shop", "sync", limit=1000)))
    finally:
        store.close()


def span(row: RunRecord) -> tuple[int, int]:
    assert row.first_position is not None and row.last_position is not None
    return position_of(loads(row.first_position)), position_of(loads(row.last_position))


async def test_successes_are_one_row_per_batch_with_count_and_positions(tmp_path: Path) -> None:
    """25 events, batches of 10: rows of at most 10 events each, in order, covering 1..25
    without a gap (first and last positions); the saved position is the last event's."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"), batch_events=10)
        with captured_logs() as logs:
            async with serving(flow, state):
                oplog.updates(25)
                await wait_for(lambda: len(flow.seen) == 25)
    rows = history(state)
    assert {r.status for r in rows} == {"succeeded"} and all(r.ended_at for r in rows)
    counts = [r.events or 0 for r in rows]
    assert sum(counts) == 25 and max(counts) <= 10 and len(rows) >= 3
    spans = [span(r) for r in rows]
    assert spans[0][0] == 1 and spans[-1][1] == 25
    assert all(last - first + 1 == n for (first, last), n in zip(spans, counts, strict=True))
    assert all(b[0] == a[1] + 1 for a, b in pairwise(spans))
    store = StateStore(state)
    assert loads(store.get_state("shop", "sync", "resume_token:shop.orders") or "") == token(25)
    store.close()
    per_event = [e for e in logs if e["event"] in ("run started", "run finished")]
    assert all(e["log_level"] == "debug" for e in per_event)


async def test_failures_retries_and_dead_letters_stay_individual(tmp_path: Path) -> None:
    """Event 12 fails twice (one retry) and is dead-lettered: its two attempts are rows of
    their own with the traceback; the events around it are batch rows (11 before, 13 after)."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        url = oplog.mongo.url("shop")
        flow = shop(url, fail_on={12}, batch_events=10, retries=1, retry_delay=0.01)
        async with serving(flow, state):
            oplog.updates(25)
            await wait_for(lambda: len(flow.seen) == 26, timeout=15)
        letters = StateStore(state)
        [letter] = letters.dead_letters("shop")
        letters.close()
    rows = history(state)
    failed = [r for r in rows if r.status == "failed"]
    assert [(r.attempt, r.events) for r in failed] == [(1, None), (2, None)]
    assert all("ValueError: cannot sync order 12" in (r.error or "") for r in failed)
    assert all("Traceback" in (r.error or "") for r in failed)
    batches = [r for r in rows if r.events is not None]
    assert sum(r.events or 0 for r in batches) == 24
    before = [r for r in batches if r.started_at <= failed[0].started_at]
    assert sum(r.events or 0 for r in before) == 11 and span(before[-1])[1] == 11
    assert "cannot sync order 12" in letter.error


def test_progress_line_counts_handled_and_failed_events_and_position_age() -> None:
    """Every interval one info line: events handled and failed since the last line, and the
    saved position's age."""
    clock = FakeClock(START)
    stats = StreamStats(events_handled=120, token_saved_at=START)
    progress = Progress(stats, clock, interval=0.0)
    with captured_logs() as logs:
        progress.tick(failed=2)
        stats.events_handled += 30
        clock.advance(4)
        progress.tick(failed=3)
    lines = [e for e in logs if e["event"] == "change stream progress"]
    assert [(e["events_handled"], e["events_failed"], e["position_age"]) for e in lines] == [
        (120, 2, 0.0),
        (30, 1, 4.0),
    ]
    assert {e["log_level"] for e in lines} == {"info"}
