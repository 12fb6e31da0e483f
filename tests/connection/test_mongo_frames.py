"""`write_frame` on `MongoDB` and `MongoDBAsync`: the insert and update commands observed by a
mockupdb server, for a frame holding every column type."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np
import pandas as pd
import pytest
from bson.decimal128 import Decimal128

from dataflow.connection import MongoDB, MongoDBAsync
from tests._mockupdb_peer import Command, MockMongo, body, open_mock_mongo, update_reply


@pytest.fixture
def mongo() -> Iterator[MockMongo]:
    with open_mock_mongo() as server:
        server.always("insert", lambda command: {"n": len(command["documents"])})
        server.always("update", _upserted)
        yield server


@pytest.fixture
def db(mongo: MockMongo) -> Iterator[MongoDB]:
    with MongoDB(mongo.url("shop", socketTimeoutMS=5000)) as connection:
        yield connection


def _upserted(command: Command) -> Command:
    count = len(command["updates"])
    return update_reply(count, upserted={index: index for index in range(count)})


def every_type() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.array([1, 2], dtype="int64"),
            "qty": pd.array([5, None], dtype="Int64"),
            "price": [1.5, np.nan],
            "flag": pd.array([True, None], dtype="boolean"),
            "name": ["a", None],
            "amount": [decimal.Decimal("1.10"), None],
            "at": pd.to_datetime(pd.Series(["2024-06-01T12:00:00.5+02:00", None]), utc=True),
            "day": [dt.date(2024, 1, 2), None],
        }
    )


FIRST = {"id": 1, "qty": 5, "price": 1.5, "flag": True, "name": "a"}
FIRST |= {"amount": Decimal128("1.10"), "at": dt.datetime(2024, 6, 1, 10, 0, 0, 500000)}
FIRST |= {"day": dt.datetime(2024, 1, 2)}
SECOND = {"id": 2, **dict.fromkeys(["qty", "price", "flag", "name", "amount", "at", "day"])}


def _without_ids(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in document.items() if k != "_id"} for document in documents]


def test_insert_sends_the_converted_rows_in_one_insert(db: MongoDB, mongo: MockMongo) -> None:
    assert db.write_frame("orders", every_type()) == 2
    (insert,) = mongo.commands("insert")
    assert {k: v for k, v in body(insert).items() if k != "documents"} == {
        "insert": "orders",
        "ordered": True,
    }
    assert _without_ids(insert["documents"]) == [FIRST, SECOND]


def test_upsert_sends_one_unordered_update_per_batch_by_key(db: MongoDB, mongo: MockMongo) -> None:
    frame = pd.DataFrame({"region": ["eu", "us", "eu"], "id": [1, 1, 2], "v": [1.0, 2.0, 3.0]})
    assert db.write_frame("items", frame, mode="upsert", keys=["region", "id"], batch_size=2) == 3
    updates = [body(command) for command in mongo.commands("update")]
    assert [u["ordered"] for u in updates] == [False, False]
    rows = frame.to_dict("records")
    assert [s for u in updates for s in u["updates"]] == [
        {
            "q": {"region": r["region"], "id": r["id"]},
            "u": {"$set": r},
            "multi": False,
            "upsert": True,
        }
        for r in rows
    ]


def test_insert_batches_and_empty_frames(db: MongoDB, mongo: MockMongo) -> None:
    frame = pd.DataFrame({"id": range(5)})
    assert db.write_frame("items", frame, batch_size=2) == 5
    assert [[d["id"] for d in c["documents"]] for c in mongo.commands("insert")] == [
        [0, 1],
        [2, 3],
        [4],
    ]
    assert db.write_frame("items", frame.iloc[:0]) == 0
    assert db.write_frame("items", frame.iloc[:0], mode="upsert", keys="id") == 0
    assert len(mongo.commands("insert", "update")) == 3  # nothing more was sent


def test_bad_arguments_are_refused_before_anything_is_sent(db: MongoDB, mongo: MockMongo) -> None:
    frame = pd.DataFrame({"id": [1]})
    with pytest.raises(ValueError, match=r"upsert keys \['sku'\] are not columns"):
        db.write_frame("items", frame, mode="upsert", keys="sku")
    with pytest.raises(ValueError, match="mode='upsert' with keys="):
        db.write_frame("items", frame, mode="upsert")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        db.write_frame("items", frame, batch_size=0)
    assert mongo.commands("insert", "update") == []


@pytest.mark.anyio
async def test_async_write_frame_sends_the_same_commands(mongo: MockMongo) -> None:
    with anyio.fail_after(10):
        async with MongoDBAsync(mongo.url("shop")) as db:
            assert await db.write_frame("orders", every_type()) == 2
            assert await db.write_frame("orders", every_type(), mode="upsert", keys="id") == 2
    (insert,) = mongo.commands("insert")
    assert _without_ids(insert["documents"]) == [FIRST, SECOND]
    (update,) = mongo.commands("update")
    assert [s["q"] for s in update["updates"]] == [{"id": 1}, {"id": 2}]
    assert [s["u"]["$set"] for s in update["updates"]] == [FIRST, SECOND]
