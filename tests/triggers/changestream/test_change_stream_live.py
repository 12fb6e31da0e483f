"""The change-stream trigger against a real replica set, when DATAFLOW_TEST_MONGODB_URL names one.

Each test watches its own collection in the `dataflow_test` database and drops it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from dataflow import Workflow, mongodb_change_stream
from tests._change_stream_peer import serving, wait_for

pytestmark = [pytest.mark.live, pytest.mark.anyio]
DATABASE = "dataflow_test"


@pytest.fixture
def live_url() -> str:
    url = os.environ.get("DATAFLOW_TEST_MONGODB_URL")
    if not url:
        pytest.skip("DATAFLOW_TEST_MONGODB_URL is not set: no live MongoDB replica set to test")
    return url


@pytest.fixture
def collection(live_url: str) -> Iterator[pymongo.collection.Collection[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(live_url)
    coll = client[DATABASE][f"changes_{uuid.uuid4().hex[:12]}"]
    try:
        yield coll
    finally:
        coll.drop()
        client.close()


def watcher(url: str, name: str, **options: Any) -> Any:
    class Live(Workflow):
        workflow_name = "live"

        def __init__(self) -> None:
            self.seen: list[Any] = []

        @mongodb_change_stream(url, DATABASE, name, name="sync", max_await_time=0.2, **options)
        def sync(self, change_event: dict[str, Any]) -> None:
            self.seen.append(change_event.get("documentKey", {}).get("_id"))

    return Live()


async def test_events_across_a_restart_and_a_drop_none_lost(
    live_url: str, collection: Any, tmp_path: Path
) -> None:
    """Inserts are handled; events while stopped are delivered after the restart; a drop
    invalidates the stream and the recreated collection's events still arrive."""
    state = tmp_path / "state.db"
    flow = watcher(live_url, collection.name, operation_types=["insert"])
    async with serving(flow, state):
        collection.insert_many([{"_id": n} for n in range(3)])
        await wait_for(lambda: flow.seen == [0, 1, 2], timeout=10)
    collection.insert_many([{"_id": n} for n in range(3, 6)])  # while no runtime runs
    async with serving(flow, state):
        await wait_for(lambda: flow.seen == list(range(6)), timeout=10)
        collection.drop()
        collection.insert_one({"_id": 6})
        await wait_for(lambda: flow.seen == list(range(7)), timeout=10)
