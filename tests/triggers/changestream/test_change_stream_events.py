"""Change events the world sends that this Python cannot hold, and replies the driver cannot
parse: an undecodable event is dead-lettered as its exact bytes and the stream moves on; a
malformed reply is an interruption, reopened from the saved position."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.datetime_ms import DatetimeMS

from dataflow import Workflow, mongodb_change_stream
from dataflow.state import Store
from dataflow.triggers._changestream.checkpoint import loads
from tests._change_stream_peer import (
    FakeOplog,
    change_streams,
    open_oplog,
    serving,
    token,
    wait_for,
)
from tests._mockupdb_peer import Command, Verbatim
from tests._runtime import captured_logs

pytestmark = pytest.mark.anyio
FAST: dict[str, Any] = {
    "max_await_time": 0.05,
    "checkpoint_interval": 0.05,
    "reconnect_delay": 0.05,
}
KEY = "resume_token:shop.orders"
YEAR_10000_MS = 253_402_300_800_000 + 86_400_000  # 10000-01-02T00:00:00Z in milliseconds


def shop(source: object, **options: Any) -> Any:
    """A workflow whose handler records the document id of each event, in order."""
    options = FAST | options

    class Shop(Workflow):
        workflow_name = "shop"

        def __init__(self) -> None:
            self.seen: list[int] = []

        @mongodb_change_stream(source, "shop", "orders", name="sync", **options)
        def sync(self, change_event: dict[str, Any]) -> None:
            self.seen.append(change_event["documentKey"]["_id"])

    return Shop()


def past_year_9999(oplog: FakeOplog) -> bytes:
    """An insert whose document holds a datetime of year 10000 (valid BSON: int64 millis)."""
    event = oplog.next_event("insert", fullDocument={"_id": 2, "due": DatetimeMS(YEAR_10000_MS)})
    return bson.encode(event)


def not_utf8(oplog: FakeOplog) -> bytes:
    """An insert whose document holds a string with bytes that are not UTF-8."""
    event = oplog.next_event("insert", fullDocument={"_id": 2, "name": "@@@@"})
    encoded = bson.encode(event)
    assert encoded.count(b"@@@@") == 1
    return encoded.replace(b"@@@@", b"ab\xff\xfe")  # same length: the BSON stays well-formed


@pytest.mark.parametrize("bad_event", [past_year_9999, not_utf8])
async def test_an_undecodable_event_is_dead_lettered_as_its_bytes_and_the_stream_moves_on(
    tmp_path: Path, bad_event: Any
) -> None:
    """Was: pymongo raised InvalidBSON in the reader, the runtime exited 1, and every restart
    failed on the same event. Now the events around it are handled in order, it is a dead
    letter holding exactly the bytes sent, the position moves past it, and a restart goes on."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"))
        async with serving(flow, state) as runtime:
            oplog.updates(1)
            sent = bad_event(oplog)
            with pytest.raises(bson.errors.InvalidBSON):
                bson.decode(sent)  # the event is one no strict decoder accepts
            oplog.append_raw(sent)
            oplog.updates(1)
            await wait_for(lambda: flow.seen == [1, 3])
            await wait_for(lambda: saved(runtime.state) == token(3))
            letters = runtime.state.dead_letters("shop")
        async with serving(flow, state):  # a failing trigger would raise out of this block
            oplog.updates(1)
            await wait_for(lambda: flow.seen == [1, 3, 4])
        assert change_streams(oplog.mongo)[-1] == {"startAfter": token(3)}
    [letter] = letters
    assert letter.raw == sent and letter.trigger == "sync"
    assert "InvalidBSON" in letter.error
    shown = json.loads(letter.payload)
    assert "InvalidBSON" in shown["undecodable"]
    assert shown["lenient"]["_id"] == token(2)  # readable: the lenient decode


async def test_an_undecodable_event_is_dead_lettered_under_on_error_stop_too(
    tmp_path: Path,
) -> None:
    """`on_error="stop"` is about failing handlers: stopping on an event no restart can decode
    would stop the stream for good."""
    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"), on_error="stop")
        async with serving(flow, tmp_path / "state.db") as runtime:
            oplog.updates(1)
            sent = past_year_9999(oplog)
            oplog.append_raw(sent)
            oplog.updates(1)
            await wait_for(lambda: flow.seen == [1, 3])
            [letter] = runtime.state.dead_letters("shop")
    assert letter.raw == sent


async def test_an_unparsable_reply_reopens_the_stream_from_the_saved_position(
    tmp_path: Path,
) -> None:
    """A getMore reply with OP_MSG flag bits pymongo refuses (ProtocolError "Unsupported OP_MSG
    flags") was a trigger failure, exit 1. Now it is an interruption: the stream reopens with
    `startAfter` the last saved token, and the event that was in the lost reply comes again."""

    def unparsable(command: Command) -> Any:
        oplog.updates(1)  # event 4 arrives, in this reply, which pymongo cannot read
        reply = oplog.get_more(command)
        assert isinstance(reply, Verbatim) and reply.document["cursor"]["nextBatch"]
        return Verbatim(reply.document, flags=1 << 4)  # a bit OP_MSG does not define

    with open_oplog() as oplog:
        flow = shop(oplog.mongo.url("shop"))
        with captured_logs() as logs:
            async with serving(flow, tmp_path / "state.db"):
                oplog.updates(3)
                await wait_for(lambda: flow.seen == [1, 2, 3])
                oplog.mongo.script("getMore", unparsable)
                await wait_for(lambda: len(oplog.mongo.commands("aggregate")) == 2)
                oplog.updates(1)
                await wait_for(lambda: flow.seen == [1, 2, 3, 4, 5])
    assert change_streams(oplog.mongo) == [{}, {"startAfter": token(3)}]
    warning = next(e for e in logs if e["event"].startswith("change stream interrupted"))
    assert "ProtocolError" in warning["error"]


def saved(store: Store) -> Any:
    value = store.get_state("shop", "sync", KEY)
    return None if value is None else loads(value)
