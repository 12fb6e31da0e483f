"""Dead letters are exact: `dead-letters --retry` hands the handler the very document it was
first given, decoded again from the event's BSON, whatever shapes the document holds; a letter
from before (schema 1, JSON only) still lists and retries."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Decimal128, Int64, ObjectId, Timestamp
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS

from dataflow import MongoDB, Workflow, mongodb_change_stream
from dataflow._core.errors import ChangeEventUndecodable
from dataflow.runtime._manual import retry_dead_letter
from dataflow.state._migrate import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from dataflow.triggers._changestream.checkpoint import dumps
from tests._change_stream_peer import new_runtime, open_oplog, serving, token, wait_for

pytestmark = pytest.mark.anyio
FAST: dict[str, Any] = {"max_await_time": 0.05, "checkpoint_interval": 0.05, "retries": 0}

# Documents whose Extended JSON reads back as something else, or not at all.
LOOKS_LIKE_INT64 = {"_id": 1, "n": {"$numberLong": "5"}}  # a plain sub-document, not an Int64
LOOKS_LIKE_OID = {"_id": 1, "ref": {"$oid": "nothex"}}  # Extended JSON refuses it outright
EVERY_TYPE = {
    "_id": ObjectId("65a1b2c3d4e5f60718293a4b"),
    "price": Decimal128("1.10"),
    "big": Int64(5),
    "small": 5,
    "at": datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    "blob": Binary(b"\x00\x01\xff", 0),
    "uuid": Binary(uuid.UUID(int=7).bytes, 4),
    "nested": [[1, Int64(2)], [{"a": [Decimal128("3"), None]}], []],
    "dollar": {"$date": "not a date", "$binary": 1},
}


def shop(source: object) -> Any:
    """A workflow whose handler keeps every event it is given and fails while `failing`."""

    class Shop(Workflow):
        workflow_name = "shop"

        def __init__(self) -> None:
            self.given: list[dict[str, Any]] = []
            self.failing = True

        @mongodb_change_stream(source, "shop", "orders", name="sync", **FAST)
        def sync(self, change_event: dict[str, Any]) -> None:
            self.given.append(change_event)
            if self.failing:
                raise ValueError("cannot sync")

    return Shop()


def typed(value: Any) -> Any:
    """`value` with every item's exact type (and time zone) beside it, keys in order: so
    `Int64(5)` and `5`, or a naive and an aware datetime, compare unequal."""
    if isinstance(value, Mapping):
        return ("document", [(key, typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("array", [typed(item) for item in value])
    zone = value.utcoffset() if isinstance(value, datetime) else None
    return (type(value).__qualname__, value, zone)


@pytest.mark.parametrize(
    "document", [LOOKS_LIKE_INT64, LOOKS_LIKE_OID, EVERY_TYPE], ids=["int64", "oid", "every"]
)
async def test_a_retried_dead_letter_hands_the_handler_the_document_first_delivered(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    """Was: the letter was Extended JSON only, so `{"$numberLong": "5"}` came back an Int64
    and `{"$oid": "nothex"}` could not be retried at all. The connection decodes datetimes as
    aware: the retry, not connected, decodes with the same options."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = shop(MongoDB(oplog.mongo.url("shop"), tz_aware=True))
        async with serving(flow, state):
            oplog.append("insert", fullDocument=document)
            await wait_for(lambda: _letters(state) == 1)
    first = flow.given[0]
    flow.failing = False
    runtime = new_runtime(flow, state)
    try:
        [letter] = runtime.state.dead_letters("shop")
        handle = await retry_dead_letter(runtime, letter.id, startup=False)
    finally:
        runtime.state.close()
    assert handle.outcome is not None and handle.outcome.status == "succeeded"
    retried = flow.given[1]
    assert typed(retried) == typed(first)
    assert retried["fullDocument"]["_id"] == document["_id"]
    assert isinstance(first["wallTime"], datetime) and first["wallTime"].tzinfo is not None
    assert letter.raw == bson.encode(oplog.entries[0])
    assert "ValueError: cannot sync" in letter.error and dumps(first) == letter.payload


def _letters(state: Path) -> int:
    with sqlite3.connect(state) as db:
        return int(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])


async def test_an_undecodable_letter_retries_once_the_connection_can_decode_it(
    tmp_path: Path,
) -> None:
    """A year-10000 datetime: the retry says in one line why it cannot decode the letter;
    with the connection set to `datetime_conversion="DATETIME_AUTO"` it hands the handler
    the event, the datetime as `DatetimeMS`."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        url = oplog.mongo.url("shop")
        flow = shop(url)
        async with serving(flow, state):
            event = oplog.next_event("insert", fullDocument={"due": DatetimeMS(2**48)})
            oplog.append_raw(bson.encode(event))
            await wait_for(lambda: _letters(state) == 1)
    runtime = new_runtime(flow, state)
    try:
        [letter] = runtime.state.dead_letters("shop")
        with pytest.raises(ChangeEventUndecodable, match=r"year \d+ is out of range"):
            await retry_dead_letter(runtime, letter.id, startup=False)
    finally:
        runtime.state.close()
    assert flow.given == []
    fixed = shop(MongoDB(url, datetime_conversion="DATETIME_AUTO"))
    fixed.failing = False
    runtime = new_runtime(fixed, state)
    try:
        handle = await retry_dead_letter(runtime, letter.id, startup=False)
    finally:
        runtime.state.close()
    assert handle.outcome is not None and handle.outcome.status == "succeeded"
    assert fixed.given[0]["fullDocument"]["due"] == DatetimeMS(2**48)


def version_1_file(state: Path, payload: str) -> None:
    """A state file as dataflow wrote it at schema 1: a dead letter with its JSON only."""
    with sqlite3.connect(state) as db:
        db.executescript(files("dataflow.state").joinpath("_schema.sql").read_text())
        db.executescript(MIGRATIONS[0])
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO dead_letters (workflow, trigger, payload, error, created_at)"
            " VALUES ('shop', 'sync', ?, 'ValueError: old', '2026-01-01T00:00:00+00:00')",
            (payload,),
        )
    db.close()


async def test_a_schema_1_letter_with_json_only_still_lists_and_retries(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    event = {
        "_id": token(1),
        "operationType": "update",
        "clusterTime": Timestamp(1_770_000_001, 1),
        "documentKey": {"_id": Int64(1)},
    }
    version_1_file(state, dumps(event))
    flow = shop("mongodb://127.0.0.1:1/shop")  # never reached: a retry does not connect
    flow.failing = False
    runtime = new_runtime(flow, state)
    try:
        [letter] = runtime.state.dead_letters("shop")
        handle = await retry_dead_letter(runtime, letter.id, startup=False)
    finally:
        runtime.state.close()
    assert letter.raw is None and letter.error == "ValueError: old"
    assert handle.outcome is not None and handle.outcome.status == "succeeded"
    assert typed(flow.given[0]) == typed(event)
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    db.close()
