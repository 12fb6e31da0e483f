"""`MongoDB` and `MongoDBAsync` against a real server, when DATAFLOW_TEST_MONGODB_URL names one.

The same behaviours as the mockupdb tests, checked on a real server: commands are observed with
pymongo's command monitoring, and data is read back. Each test uses its own collection in the
`dataflow_test` database and drops it afterwards.
"""

from __future__ import annotations

import math
import os
import traceback
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
from pymongo import monitoring

from dataflow._core.errors import BulkUpsertError, DataflowConnectionError
from dataflow.connection import MongoDB, MongoDBAsync

pytestmark = pytest.mark.live

DATABASE = "dataflow_test"
WRONG_PASSWORD = "not-the-password-4711"


class _Recorder(monitoring.CommandListener):
    """Every command the client sends, in order (pymongo's command monitoring)."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        return [command for command in self.commands if next(iter(command)) == name]


@pytest.fixture
def live_url() -> str:
    url = os.environ.get("DATAFLOW_TEST_MONGODB_URL")
    if not url:
        pytest.skip("DATAFLOW_TEST_MONGODB_URL is not set: no live MongoDB to test against")
    return url


@pytest.fixture
def recorder() -> _Recorder:
    return _Recorder()


@pytest.fixture
def db(live_url: str, recorder: _Recorder) -> Iterator[MongoDB]:
    with MongoDB(live_url, database=DATABASE, timeout=30, event_listeners=[recorder]) as conn:
        yield conn


@pytest.fixture
def collection(db: MongoDB) -> Iterator[str]:
    name = f"live_{uuid.uuid4().hex[:12]}"
    yield name
    db.database.drop_collection(name)


def _records(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": number, "name": f"item {number}", **extra} for number in range(count)]


def test_seed_upsert_inserts_then_updates(
    db: MongoDB, collection: str, recorder: _Recorder
) -> None:
    first = db.upsert(collection, filters={"id": 1}, data={"id": 1, "name": "one"})
    second = db.upsert(collection, filters={"id": 1}, data={"id": 1, "name": "uno"})
    assert first.upserted_id is not None
    assert (second.matched_count, second.modified_count) == (1, 1)
    assert [d["name"] for d in db.find(collection, {"id": 1})] == ["uno"]
    updates = recorder.named("update")
    assert [u["updates"][0]["upsert"] for u in updates] == [True, True]


def test_upsert_many_batches_and_counts(db: MongoDB, collection: str, recorder: _Recorder) -> None:
    """2,500 records in batches of 1000: three unordered updates; a rerun modifies them all."""
    created = db.upsert_many(collection, _records(2500), key="id", batch_size=1000)
    updates = recorder.named("update")
    assert len(updates) == math.ceil(2500 / 1000) == created.batches
    assert all(u["ordered"] is False for u in updates)
    assert created.upserted_count == 2500

    changed = db.upsert_many(collection, _records(2500, tag="v2"), key="id", batch_size=1000)
    assert (changed.matched_count, changed.modified_count, changed.upserted_count) == (
        2500,
        2500,
        0,
    )
    assert len(db.find(collection, {"tag": "v2"})) == 2500


def test_upsert_many_with_a_compound_key(db: MongoDB, collection: str) -> None:
    records = [{"region": r, "id": 1, "v": n} for n, r in enumerate(["eu", "us"])]
    assert db.upsert_many(collection, records, key=["region", "id"]).upserted_count == 2
    assert db.upsert_many(collection, records, key=["region", "id"]).matched_count == 2


def test_bulk_errors_name_the_failed_keys_and_the_rest_land(db: MongoDB, collection: str) -> None:
    """A unique index refuses two records; their keys are reported and the others are written."""
    db.collection(collection).create_index("email", unique=True)
    records = [{"id": n, "email": f"{n}@example.org"} for n in range(1500)]
    records[1100]["email"] = records[3]["email"]
    records[1200]["email"] = records[4]["email"]
    with pytest.raises(BulkUpsertError) as caught:
        db.upsert_many(collection, records, key="id", batch_size=1000)
    assert caught.value.failed_keys == [1100, 1200]
    assert caught.value.upserted_count == 1498
    assert all(f.code == 11000 for f in caught.value.failures)
    assert len(db.find(collection)) == 1498


def test_insert_find_aggregate_delete(db: MongoDB, collection: str) -> None:
    db.insert_many(collection, [{"id": n, "region": "eu" if n % 2 else "us"} for n in range(10)])
    found = db.find(collection, {"region": "eu"}, projection={"_id": 0}, sort=[("id", 1)], limit=2)
    assert found == [{"id": 1, "region": "eu"}, {"id": 3, "region": "eu"}]
    pipeline: list[dict[str, Any]] = [
        {"$group": {"_id": "$region", "n": {"$sum": 1}}},
        {"$sort": {"_id": 1}},
    ]
    assert db.aggregate(collection, pipeline) == [{"_id": "eu", "n": 5}, {"_id": "us", "n": 5}]
    assert db.delete_many(collection, {"region": "eu"}) == 5


def test_an_expired_deadline_is_a_timeout(db: MongoDB, collection: str) -> None:
    with pytest.raises(DataflowConnectionError, match="timed out"):
        db.find(collection, timeout=1e-6)


def test_bad_credentials_give_one_line_without_the_password(live_url: str) -> None:
    parts = urlsplit(live_url)
    if parts.username is None:
        pytest.skip("DATAFLOW_TEST_MONGODB_URL has no credentials to get wrong")
    host = parts.netloc.rpartition("@")[2]
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:{WRONG_PASSWORD}@{host}"))
    with pytest.raises(DataflowConnectionError) as caught:
        MongoDB(wrong, database=DATABASE, serverSelectionTimeoutMS=5000).connect()
    text = "".join(traceback.format_exception(caught.value))
    assert "\n" not in str(caught.value)
    assert WRONG_PASSWORD not in text
    assert WRONG_PASSWORD not in repr(caught.value)
    assert "Authentication failed" in str(caught.value)


@pytest.mark.anyio
async def test_async_on_both_backends(live_url: str) -> None:
    name = f"live_{uuid.uuid4().hex[:12]}"
    with anyio.fail_after(30):
        async with MongoDBAsync(live_url, database=DATABASE) as db:
            try:
                result = await db.upsert_many(name, _records(1200), key="id", batch_size=500)
                await db.upsert(name, filters={"id": 0}, data={"id": 0, "name": "zero"})
                assert result.upserted_count == 1200
                assert (await db.find(name, {"id": 0}))[0]["name"] == "zero"
            finally:
                await anyio.to_thread.run_sync(db.sync.database.drop_collection, name)
