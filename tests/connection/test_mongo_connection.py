"""`MongoDB` and `MongoDBAsync`: pymongo over a socket against mockupdb, exact commands asserted."""

from __future__ import annotations

import math
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow._core.errors import BulkUpsertError, DataflowConnectionError, UpsertManyResult
from dataflow.connection import MongoDB, MongoDBAsync
from tests._mockupdb_peer import (
    HANGUP,
    NO_REPLY,
    Command,
    MockMongo,
    body,
    command_error,
    cursor_reply,
    open_mock_mongo,
    update_reply,
    write_error,
)

SECRET = "s3cr3t-pa55"


@pytest.fixture
def mongo() -> Iterator[MockMongo]:
    with open_mock_mongo() as server:
        server.always("update", _upsert_all)
        yield server


@pytest.fixture
def db(mongo: MockMongo) -> Iterator[MongoDB]:
    # A socket timeout (not a deadline, which would add maxTimeMS to every command), so that no
    # test hangs on a command the mock leaves unanswered.
    with MongoDB(mongo.url("shop", socketTimeoutMS=5000)) as connection:
        yield connection


def _upsert_all(command: Command) -> Command:
    """Answer an `update` as if every statement inserted a new document."""
    count = len(command["updates"])
    return update_reply(count, upserted={index: index for index in range(count)})


def _statements(mongo: MockMongo) -> list[Command]:
    return [statement for command in mongo.commands("update") for statement in command["updates"]]


def _records(count: int) -> list[dict[str, Any]]:
    return [{"id": number, "name": f"item {number}"} for number in range(count)]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _assert_one_line_without_secret(error: BaseException) -> None:
    text = str(error)
    assert "\n" not in text
    assert SECRET not in text
    assert SECRET not in repr(error)
    assert SECRET not in "".join(traceback.format_exception(error))


# --- the seed's upsert and upsert_many ---------------------------------------------------------


def test_seed_upsert_sends_one_update_with_upsert_true(db: MongoDB, mongo: MockMongo) -> None:
    """`upsert("collection", filters=..., data=record)` is one update: `$set` of the record."""
    record = {"id": 7, "name": "seven"}
    result = db.upsert("collection", filters={"id": 7}, data=record)

    (update,) = mongo.commands("update")
    assert body(update) == {
        "update": "collection",
        "ordered": True,
        "updates": [{"q": {"id": 7}, "u": {"$set": record}, "multi": False, "upsert": True}],
    }
    assert result.upserted_id == 0


@pytest.mark.parametrize("batch_size", [1000, 3000, 10_000, 999])
def test_upsert_many_sends_one_unordered_update_per_batch(
    db: MongoDB, mongo: MockMongo, batch_size: int
) -> None:
    """10,000 records go out as ceil(10,000 / batch) `update` commands, `ordered: false`."""
    records = _records(10_000)
    result = db.upsert_many("items", records, key="id", batch_size=batch_size)

    updates = mongo.commands("update")
    assert len(updates) == math.ceil(10_000 / batch_size)
    assert all(body(u).keys() == {"update", "ordered", "updates"} for u in updates)
    assert all(u["update"] == "items" and u["ordered"] is False for u in updates)
    assert [len(u["updates"]) for u in updates[:-1]] == [batch_size] * (len(updates) - 1)
    assert _statements(mongo) == [
        {"q": {"id": r["id"]}, "u": {"$set": r}, "multi": False, "upsert": True} for r in records
    ]
    assert result == UpsertManyResult(upserted_count=10_000, batches=len(updates))


def test_upsert_many_default_batch_is_1000(db: MongoDB, mongo: MockMongo) -> None:
    db.upsert_many("items", _records(2500), key="id")
    assert [len(u["updates"]) for u in mongo.commands("update")] == [1000, 1000, 500]


def test_upsert_many_with_a_compound_key(db: MongoDB, mongo: MockMongo) -> None:
    """A list of fields filters on all of them, in the order given."""
    records = [{"region": "eu", "id": 1, "v": 1}, {"region": "us", "id": 1, "v": 2}]
    db.upsert_many("items", records, key=["region", "id"])
    assert [s["q"] for s in _statements(mongo)] == [
        {"region": "eu", "id": 1},
        {"region": "us", "id": 1},
    ]


@settings(max_examples=25, deadline=None)
@given(count=st.integers(0, 1200), batch_size=st.integers(1, 1500))
def test_upsert_many_batches_cover_every_record_once(count: int, batch_size: int) -> None:
    """For any size and batch size: ceil(n / batch) commands whose statements are the records."""
    with open_mock_mongo() as mongo, MongoDB(mongo.url("shop"), timeout=5) as db:
        mongo.always("update", _upsert_all)
        result = db.upsert_many("items", _records(count), key="id", batch_size=batch_size)
        assert len(mongo.commands("update")) == math.ceil(count / batch_size) == result.batches
        assert [s["q"]["id"] for s in _statements(mongo)] == list(range(count))


def test_bulk_errors_name_the_failed_keys_and_the_rest_land(db: MongoDB, mongo: MockMongo) -> None:
    """Write errors in batch 2 give their records' keys; batches 1 and 3 are still sent."""
    failing = update_reply(
        998,
        upserted={i: i for i in range(1000) if i not in (3, 7)},
        errors=[write_error(3), write_error(7, code=121, errmsg="Document failed\nvalidation")],
    )
    mongo.script("update", _upsert_all(_update_of(1000)), failing)

    with pytest.raises(BulkUpsertError) as caught:
        db.upsert_many("items", _records(2500), key="id")

    error = caught.value
    assert len(mongo.commands("update")) == 3
    assert error.failed_keys == [1003, 1007]
    assert [(f.code, f.message) for f in error.failures] == [
        (11000, "E11000 duplicate key"),
        (121, "Document failed validation"),
    ]
    assert (error.upserted_count, error.modified_count, error.result.batches) == (2498, 0, 3)
    assert "2 records failed (keys 1003, 1007)" in str(error)
    assert "\n" not in str(error)
    assert not isinstance(error, DataflowConnectionError)


def test_bulk_errors_with_a_compound_key_report_tuples(db: MongoDB, mongo: MockMongo) -> None:
    mongo.script("update", update_reply(1, upserted={0: 0}, errors=[write_error(1)]))
    records = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(BulkUpsertError) as caught:
        db.upsert_many("items", records, key=["a", "b"])
    assert caught.value.failed_keys == [(2, "y")]


def test_write_concern_error_is_raised_not_swallowed(db: MongoDB, mongo: MockMongo) -> None:
    concern = {"code": 64, "errmsg": "waiting for replication timed out"}
    mongo.script("update", {**_upsert_all(_update_of(2)), "writeConcernError": concern})
    with pytest.raises(BulkUpsertError, match="write concern not satisfied") as caught:
        db.upsert_many("items", _records(2), key="id")
    assert caught.value.failed_keys == []
    assert caught.value.upserted_count == 2


def test_upsert_many_checks_every_key_before_sending(db: MongoDB, mongo: MockMongo) -> None:
    records = [*_records(1500), {"name": "no id"}]
    with pytest.raises(ValueError, match="record 1500 has no key field 'id'"):
        db.upsert_many("items", records, key="id")
    with pytest.raises(ValueError, match="key must name"):
        db.upsert_many("items", records, key=[])
    with pytest.raises(ValueError, match="batch_size"):
        db.upsert_many("items", records, key="id", batch_size=0)
    assert mongo.commands("update") == []


def test_upsert_many_of_nothing_sends_nothing(db: MongoDB, mongo: MockMongo) -> None:
    assert db.upsert_many("items", [], key="id") == UpsertManyResult()
    assert mongo.commands("update") == []


def _update_of(count: int) -> Command:
    return {"update": "items", "updates": [{}] * count}


# --- the other operations -----------------------------------------------------------------------


def test_find_sends_the_query_and_returns_the_documents(db: MongoDB, mongo: MockMongo) -> None:
    mongo.script("find", cursor_reply("shop.items", [{"_id": 1, "id": 1}, {"_id": 2, "id": 2}]))
    found = db.find("items", {"id": {"$gt": 0}}, projection={"id": 1}, sort=[("id", 1)], limit=5)
    assert found == [{"_id": 1, "id": 1}, {"_id": 2, "id": 2}]
    (command,) = mongo.commands("find")
    assert body(command) == {
        "find": "items",
        "filter": {"id": {"$gt": 0}},
        "projection": {"id": 1},
        "sort": {"id": 1},
        "limit": 5,
    }


def test_insert_many_does_not_touch_the_callers_records(db: MongoDB, mongo: MockMongo) -> None:
    records = _records(3)
    mongo.script("insert", {"n": 3})
    ids = db.insert_many("items", records)
    (command,) = mongo.commands("insert")
    assert [doc["_id"] for doc in command["documents"]] == ids
    assert all("_id" not in record for record in records)


def test_delete_many_and_aggregate(db: MongoDB, mongo: MockMongo) -> None:
    mongo.script("delete", {"n": 4})
    mongo.script("aggregate", cursor_reply("shop.items", [{"_id": "eu", "n": 2}]))
    assert db.delete_many("items", {"region": "eu"}) == 4
    pipeline = [{"$group": {"_id": "$region", "n": {"$sum": 1}}}]
    assert db.aggregate("items", pipeline) == [{"_id": "eu", "n": 2}]
    (delete,) = mongo.commands("delete")
    assert delete["deletes"] == [{"q": {"region": "eu"}, "limit": 0}]
    (aggregate,) = mongo.commands("aggregate")
    assert (aggregate["aggregate"], aggregate["pipeline"]) == ("items", pipeline)


def test_a_timeout_stops_the_driver_call(db: MongoDB, mongo: MockMongo) -> None:
    """`timeout=` runs the call under `pymongo.timeout()`: maxTimeMS is sent, the wait ends."""
    mongo.script("find", NO_REPLY)
    started = time.monotonic()
    with pytest.raises(DataflowConnectionError, match=r"find in 'items': .*timed out"):
        db.find("items", {"id": 1}, timeout=0.3)
    assert time.monotonic() - started < 2
    (command,) = mongo.commands("find")
    assert 0 < command["maxTimeMS"] <= 300


def test_an_expired_deadline_says_timed_out(db: MongoDB, mongo: MockMongo) -> None:
    """pymongo refuses to send with no time left ("would exceed time limit"): still a timeout."""
    with pytest.raises(DataflowConnectionError, match=r"find in 'items': timed out: operation"):
        db.find("items", timeout=1e-6)
    assert mongo.commands("find") == []


def test_the_connection_default_timeout_applies(mongo: MockMongo) -> None:
    with MongoDB(mongo.url("shop"), timeout=0.3) as db:
        mongo.script("aggregate", NO_REPLY)
        with pytest.raises(DataflowConnectionError, match="timed out"):
            db.aggregate("items", [])
    assert mongo.commands("aggregate")[0]["maxTimeMS"] <= 300


def test_a_dropped_connection_is_a_connection_error(db: MongoDB, mongo: MockMongo) -> None:
    mongo.script("update", HANGUP)  # a standalone server: writes are not retried
    with pytest.raises(DataflowConnectionError, match="upsert into 'items'"):
        db.upsert("items", {"id": 1}, {"id": 1})


def test_server_errors_other_than_auth_and_timeouts_pass_through(
    db: MongoDB, mongo: MockMongo
) -> None:
    from pymongo.errors import OperationFailure

    mongo.script("delete", command_error(2, "bad query"))
    with pytest.raises(OperationFailure, match="bad query"):
        db.delete_many("items", {"$bad": 1})


# --- connecting, closing, errors without secrets ----------------------------------------------


def test_calls_before_connect_say_so(mongo: MockMongo) -> None:
    db = MongoDB(mongo.url("shop"))
    with pytest.raises(DataflowConnectionError, match="not connected"):
        db.find("items")


def test_connect_twice_and_disconnect_twice(mongo: MockMongo) -> None:
    db = MongoDB(mongo.url("shop"))
    db.connect()
    client = db.client
    db.connect()
    assert db.client is client
    db.disconnect()
    db.disconnect()
    with pytest.raises(DataflowConnectionError, match="not connected"):
        db.ping()
    assert len(mongo.commands("ping")) == 1


def test_disconnect_is_bounded_when_the_server_never_answers(
    mongo: MockMongo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pymongo's own close waits forever for an `endSessions` reply; ours gives up."""
    monkeypatch.setattr("dataflow.connection._mongo._CLOSE_TIMEOUT", 0.3)
    db = MongoDB(mongo.url("shop"))
    db.connect()
    db.upsert("items", {"id": 1}, {"id": 1})
    mongo.script("endSessions", NO_REPLY)
    started = time.monotonic()
    db.disconnect()
    assert time.monotonic() - started < 2
    assert mongo.commands("endSessions")


@pytest.mark.parametrize("form", ["url", "keywords"])
def test_a_closed_port_gives_one_line_without_the_password(form: str) -> None:
    port = _closed_port()
    db = (
        MongoDB(f"mongodb://bob:{SECRET}@127.0.0.1:{port}/shop?serverSelectionTimeoutMS=200")
        if form == "url"
        else MongoDB(
            hostname="127.0.0.1",
            port=port,
            database="shop",
            username="bob",
            password=SECRET,
            serverSelectionTimeoutMS=200,
        )
    )
    started = time.monotonic()
    with pytest.raises(DataflowConnectionError) as caught:
        db.connect()
    assert time.monotonic() - started < 3
    _assert_one_line_without_secret(caught.value)
    assert str(caught.value) == (
        f"MongoDB mongodb://bob:***@127.0.0.1:{port}/shop: connect: "
        f"127.0.0.1:{port}: [Errno 111] Connection refused"
    )


def test_bad_credentials_give_one_line_without_the_password(mongo: MockMongo) -> None:
    mongo.always("saslStart", command_error(18, "Authentication failed."))
    db = MongoDB(mongo.url("shop", userinfo=f"bob:{SECRET}"))
    with pytest.raises(DataflowConnectionError) as caught:
        db.connect()
    _assert_one_line_without_secret(caught.value)
    assert str(caught.value).endswith("/shop: connect: Authentication failed.")
    assert mongo.commands("saslStart")


def test_repr_shows_the_target_without_secrets() -> None:
    url = f"mongodb://bob:{SECRET}@db1:27017,db2:27017/shop?tlsCertificateKeyFilePassword={SECRET}"
    assert repr(MongoDB(url)) == "MongoDB('mongodb://bob:***@db1:27017,db2:27017/shop')"
    keywords = MongoDB(hostname="db1", database="shop", username="bob", password=SECRET)
    assert repr(keywords) == "MongoDB('mongodb://bob:***@db1:27017/shop')"
    as_hostname = MongoDB(hostname=f"mongodb+srv://bob:{SECRET}@cluster.example/shop")
    assert repr(as_hostname) == "MongoDB('mongodb+srv://bob:***@cluster.example/shop')"
    assert SECRET not in repr(MongoDBAsync(url))


def test_keyword_credentials_apply_to_a_url_too(mongo: MockMongo) -> None:
    """`username=`/`password=` next to a URL authenticate (they are not silently dropped)."""
    mongo.always("saslStart", command_error(18, "Authentication failed."))
    db = MongoDB(mongo.url("shop"), username="bob", password=SECRET)
    with pytest.raises(DataflowConnectionError, match="Authentication failed") as caught:
        db.connect()
    _assert_one_line_without_secret(caught.value)
    assert mongo.commands("saslStart")


def test_constructor_needs_one_target_and_a_database() -> None:
    with pytest.raises(ValueError, match="needs a database"):
        MongoDB("mongodb://localhost")
    with pytest.raises(ValueError, match="either a URL or hostname"):
        MongoDB("mongodb://localhost/shop", hostname="localhost")
    with pytest.raises(ValueError, match="either a URL or hostname"):
        MongoDB(database="shop")
    assert MongoDB("mongodb://localhost/", database="shop").database_name == "shop"


def test_threads_share_one_client(db: MongoDB, mongo: MockMongo) -> None:
    client = db.client
    threads = [
        threading.Thread(target=db.upsert, args=("items", {"id": n}, {"id": n})) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(s["q"]["id"] for s in _statements(mongo)) == list(range(8))
    assert db.client is client


def test_replica_set_primary_harness_gets_retryable_writes() -> None:
    """As a replica-set primary the mock makes pymongo add `txnNumber` (retryable writes)."""
    with open_mock_mongo(replica_set="rs0") as mongo, MongoDB(mongo.url("shop")) as db:
        mongo.always("update", _upsert_all)
        db.upsert("items", {"id": 1}, {"id": 1})
        (update,) = mongo.commands("update")
        assert "txnNumber" in update
        assert mongo.commands("hello", "ismaster")


# --- MongoDBAsync on asyncio and trio -----------------------------------------------------------


@pytest.mark.anyio
async def test_async_upsert_many_and_upsert(mongo: MockMongo) -> None:
    """The same commands as the sync class, from a worker thread, on both backends."""
    with anyio.fail_after(10):
        async with MongoDBAsync(mongo.url("shop")) as db:
            result = await db.upsert_many("items", _records(10_000), key="id", batch_size=1000)
            await db.upsert("collection", filters={"id": 1}, data={"id": 1})
            await db.ping()
    updates = mongo.commands("update")
    assert [len(u["updates"]) for u in updates] == [1000] * 10 + [1]
    assert all(u["ordered"] is False for u in updates[:10])
    assert updates[10]["updates"][0]["upsert"] is True
    assert result.upserted_count == 10_000


@pytest.mark.anyio
async def test_async_reads_and_deletes(mongo: MockMongo) -> None:
    mongo.script("find", cursor_reply("shop.items", [{"id": 1}]))
    mongo.script("aggregate", cursor_reply("shop.items", [{"n": 1}]))
    mongo.script("insert", {"n": 1})
    mongo.script("delete", {"n": 1})
    with anyio.fail_after(5):
        async with MongoDBAsync(hostname="127.0.0.1", port=mongo.port, database="shop") as db:
            assert await db.find("items", {"id": 1}) == [{"id": 1}]
            assert await db.aggregate("items", [{"$count": "n"}]) == [{"n": 1}]
            assert len(await db.insert_many("items", [{"id": 1}])) == 1
            assert await db.delete_many("items", {"id": 1}) == 1


@pytest.mark.anyio
async def test_async_cancel_scope_deadline_becomes_the_pymongo_timeout(mongo: MockMongo) -> None:
    """`move_on_after` bounds the driver too: maxTimeMS is sent and the thread comes back."""
    mongo.script("find", NO_REPLY)
    with anyio.fail_after(5):
        async with MongoDBAsync(mongo.url("shop")) as db:
            started = time.monotonic()
            with anyio.move_on_after(0.3) as scope:
                await db.find("items")
            assert scope.cancelled_caught
            assert time.monotonic() - started < 2
    assert 0 < mongo.commands("find")[0]["maxTimeMS"] <= 300


@pytest.mark.anyio
async def test_async_fail_after_raises_timeout_error_not_the_drivers(mongo: MockMongo) -> None:
    """The driver's timeout error races the scope back; the caller's `fail_after` wins."""
    mongo.script("update", NO_REPLY)
    with anyio.fail_after(5):
        async with MongoDBAsync(mongo.url("shop")) as db:
            with pytest.raises(TimeoutError), anyio.fail_after(0.2):
                await db.upsert("items", {"id": 1}, {"id": 1})


@pytest.mark.anyio
async def test_async_connection_default_timeout(mongo: MockMongo) -> None:
    mongo.script("find", NO_REPLY)
    with anyio.fail_after(5):
        async with MongoDBAsync(mongo.url("shop"), timeout=0.3) as db:
            with pytest.raises(DataflowConnectionError, match="timed out"):
                await db.find("items")


@pytest.mark.anyio
async def test_async_limiter_bounds_the_worker_threads(mongo: MockMongo) -> None:
    """With a limiter of one token, a second call waits until the first one is answered."""
    limiter = anyio.CapacityLimiter(1)
    with anyio.fail_after(5):
        async with (
            MongoDBAsync(mongo.url("shop"), limiter=limiter) as db,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(db.find, "items", {"n": 1})
            first = await anyio.to_thread.run_sync(mongo.receives, "find")
            tg.start_soon(db.find, "items", {"n": 2})
            await anyio.wait_all_tasks_blocked()
            assert limiter.statistics().tasks_waiting == 1
            assert len(mongo.commands("find")) == 1
            mongo.answer(first, cursor_reply("shop.items", []))
            second = await anyio.to_thread.run_sync(mongo.receives, "find")
            mongo.answer(second, cursor_reply("shop.items", []))
    assert [c["filter"] for c in mongo.commands("find")] == [{"n": 1}, {"n": 2}]


@pytest.mark.anyio
async def test_async_with_closes_even_when_cancelled(mongo: MockMongo) -> None:
    db = MongoDBAsync(mongo.url("shop"))
    with anyio.fail_after(5), anyio.CancelScope() as scope:
        async with db:
            scope.cancel()
            await anyio.sleep(10)
    with pytest.raises(DataflowConnectionError, match="not connected"):
        db.sync.ping()


@pytest.mark.anyio
async def test_async_closed_port_gives_one_line_without_the_password() -> None:
    url = f"mongodb://bob:{SECRET}@127.0.0.1:{_closed_port()}/shop?serverSelectionTimeoutMS=200"
    with anyio.fail_after(5), pytest.raises(DataflowConnectionError) as caught:
        async with MongoDBAsync(url):
            pass
    _assert_one_line_without_secret(caught.value)
    assert "Connection refused" in str(caught.value)


def test_harness_serves_a_change_stream_with_a_resume() -> None:
    """The mock scripts a change stream: aggregate, getMore, a resumable error, the resume."""
    change = {"_id": {"_data": "02"}, "operationType": "insert", "documentKey": {"_id": 1}}
    after = {"_data": "02"}
    with open_mock_mongo(replica_set="rs0") as mongo, MongoDB(mongo.url("shop")) as db:
        mongo.script(
            "aggregate",
            cursor_reply("shop.items", [], cursor_id=42, postBatchResumeToken={"_data": "01"}),
            cursor_reply("shop.items", [], cursor_id=43, postBatchResumeToken=after),
        )
        mongo.script(
            "getMore",
            cursor_reply(
                "shop.items", [change], cursor_id=42, first=False, postBatchResumeToken=after
            ),
            command_error(91, "shutting down", labels=("ResumableChangeStreamError",)),
        )
        with db.collection("items").watch(max_await_time_ms=50) as stream:
            assert stream.try_next() == change
            assert stream.try_next() is None  # the error, the resume, an empty first batch
        names = [next(iter(command)) for command in mongo.commands()]
        assert names == ["ping", "aggregate", "getMore", "getMore", "aggregate", "killCursors"]
        resumed = mongo.commands("aggregate")[1]["pipeline"][0]["$changeStream"]
        assert resumed == {"resumeAfter": after}
        assert mongo.commands("killCursors")[0]["cursors"] == [43]
