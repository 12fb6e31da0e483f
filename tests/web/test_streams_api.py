"""GET /api/streams over real HTTP against a change stream served by mockupdb: events handled,
where the position is, and the oplog headroom read from the oldest entry of local.oplog.rs
(once a minute at most), or why it is unknown (a user without access to `local`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from bson import Timestamp

from dataflow import Runtime, Settings, Workflow, cronjob, mongodb_change_stream
from tests._change_stream_peer import EPOCH, FakeOplog, open_oplog, wait_for
from tests._mockupdb_peer import Command, command_error, cursor_reply
from tests.web._status import fetch, serving

pytestmark = pytest.mark.anyio
WINDOW = 3600  # seconds of oplog before the first event


def sync_workflow(url: str) -> Workflow:
    class Shop(Workflow):
        workflow_name = "shop"

        @mongodb_change_stream(
            url, "shop", "orders", name="sync", max_await_time=0.05, checkpoint_interval=0.05
        )
        def sync(self, change_event: dict[str, Any]) -> None:
            pass

    return Shop()


@asynccontextmanager
async def page_of(oplog: FakeOplog, state: Path) -> AsyncIterator[Runtime]:
    """The workflow runs on the real clock and serves its page; stopped when the block ends."""
    settings = Settings(state_path=state, metrics_port=0, grace_period=5)
    runtime = Runtime(sync_workflow(oplog.mongo.url("shop")), settings=settings)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            await wait_for(runtime.started.is_set)
            yield runtime
            runtime.stop()
    finally:
        runtime.state.close()


def oldest_entry(command: Command) -> Command:
    return cursor_reply("local.oplog.rs", [{"ts": Timestamp(EPOCH - WINDOW, 1)}])


async def _handled(runtime: Runtime, count: int) -> None:
    (trigger,) = runtime.metrics.streams.triggers
    stats = trigger.stream_stats()
    assert stats is not None
    await wait_for(lambda: stats.events_handled == count)


async def test_events_position_and_oplog_headroom(tmp_path: Path) -> None:
    with open_oplog() as oplog:
        oplog.mongo.always("find", oldest_entry)
        async with page_of(oplog, tmp_path / "s.db") as runtime:
            oplog.updates(3)
            await _handled(runtime, 3)
            answer = await fetch(runtime, "/api/streams")
            again = await fetch(runtime, "/api/streams")
        finds = oplog.mongo.commands("find")
    assert answer.status == 200
    (stream,) = answer.json()
    assert stream["trigger"] == "sync" and stream["source"].endswith("shop.orders")
    assert stream["events_handled"] == 3 and stream["dead_letters"] == 0
    third = datetime.fromtimestamp(EPOCH + 3, UTC).isoformat()
    assert stream["last_event_at"] == third and stream["position_time"] == third
    assert stream["position_age"] >= 0
    oplog_start = datetime.fromtimestamp(EPOCH - WINDOW, UTC).isoformat()
    assert stream["oplog"] == {"first_entry": oplog_start, "headroom": WINDOW + 3, "unknown": None}
    assert again.json()[0]["oplog"] == stream["oplog"]
    (find,) = finds  # read once: the second answer comes from what the first read
    assert (find["find"], find["$db"], find["sort"]) == ("oplog.rs", "local", {"$natural": 1})


async def test_headroom_is_unknown_with_the_reason_when_local_is_off_limits(
    tmp_path: Path,
) -> None:
    refused = command_error(13, "not authorized on local to execute command { find: ... }")
    with open_oplog() as oplog:
        oplog.mongo.always("find", refused)
        async with page_of(oplog, tmp_path / "s.db") as runtime:
            oplog.updates(2)
            await _handled(runtime, 2)
            answer = await fetch(runtime, "/api/streams")
    (stream,) = answer.json()
    assert stream["events_handled"] == 2
    assert stream["oplog"]["first_entry"] is None and stream["oplog"]["headroom"] is None
    assert "clusterMonitor" in stream["oplog"]["unknown"]


async def test_a_workflow_without_streams_has_none(tmp_path: Path) -> None:
    class Quiet(Workflow):
        workflow_name = "quiet"

        @cronjob("0 3 * * *")
        async def nightly(self) -> None:
            pass

    async with serving(Quiet(), tmp_path) as (runtime, _):
        answer = await fetch(runtime, "/api/streams")
    assert (answer.status, answer.json()) == (200, [])
