"""A change stream served by mockupdb: an oplog in miniature behind the shared mock server.

`FakeOplog` answers `aggregate` with a `$changeStream` stage and `getMore` the way a replica-set
primary does: it reads an append-only log of change events from the requested position
(`resumeAfter`/`startAfter` token, `startAtOperationTime`, or now), applies a `$match` on
`operationType`, waits up to `maxTimeMS` for new events, returns `postBatchResumeToken`, ends the
cursor at an `invalidate`, refuses to resume before `floor` (error 286) and refuses
`resumeAfter` an invalidate (error 260). Scripted replies (`mongo.script("getMore", ...)`) still
come first, so a test injects failures between the oplog's answers.

Tokens are ordered: `token(n)` is the position after the n-th entry (entries count from 1).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from bson import Timestamp
from bson.raw_bson import RawBSONDocument

from dataflow import Runtime, Settings, Workflow
from tests._mockupdb_peer import (
    Command,
    MockMongo,
    Verbatim,
    command_error,
    cursor_reply,
    open_mock_mongo,
)

EPOCH = 1_770_000_000  # cluster time (seconds) of the first entry
HISTORY_LOST_MESSAGE = (
    "Resume of change stream was not possible, as the resume point may no longer be in the oplog."
)


def token(position: int) -> dict[str, str]:
    return {"_data": f"82{position:014X}"}


def position_of(resume_token: Mapping[str, Any]) -> int:
    return int(str(resume_token["_data"])[2:], 16)


@dataclass
class _Cursor:
    namespace: str
    position: int
    types: frozenset[str] | None


class FakeOplog:
    def __init__(self, mongo: MockMongo, *, batch_size: int = 50) -> None:
        self.mongo = mongo
        self.batch_size = batch_size
        self.entries: list[Mapping[str, Any]] = []  # dicts, or RawBSONDocuments
        self.floor = 0  # positions below this have left the oplog
        self._cursors: dict[int, _Cursor] = {}
        self._ids = itertools.count(1001)
        self._changed = threading.Condition()
        self._closed = False
        mongo.always("aggregate", self.aggregate)
        mongo.always("getMore", self.get_more)

    # -- writing, as the test's "application" ---------------------------------------------------
    def append(
        self, operation: str = "update", doc_id: Any = None, **fields: Any
    ) -> dict[str, str]:
        """Add one change event; return its resume token."""
        with self._changed:
            entry = self.next_event(operation, doc_id, **fields)
            self.entries.append(entry)
            self._changed.notify_all()
            return token(len(self.entries))

    def next_event(
        self, operation: str = "update", doc_id: Any = None, **fields: Any
    ) -> dict[str, Any]:
        """The event `append` would add next (to encode by hand for `append_raw`)."""
        n = len(self.entries) + 1
        entry: dict[str, Any] = {
            "_id": token(n),
            "operationType": operation,
            "clusterTime": Timestamp(EPOCH + n, 1),
            "wallTime": datetime.fromtimestamp(EPOCH + n, UTC).replace(tzinfo=None),
        }
        if operation != "invalidate":
            entry["ns"] = {"db": "shop", "coll": "orders"}
            entry["documentKey"] = {"_id": n if doc_id is None else doc_id}
        return entry | fields

    def append_raw(self, event: bytes) -> dict[str, str]:
        """Add one change event given as its BSON bytes, sent as they are (they may hold
        values no decoder accepts); return its resume token."""
        with self._changed:
            self.entries.append(RawBSONDocument(event))
            self._changed.notify_all()
            return token(len(self.entries))

    def updates(self, count: int) -> list[dict[str, str]]:
        return [self.append("update") for _ in range(count)]

    def drop(self) -> dict[str, str]:
        """The collection is dropped: `drop`, then `invalidate` (whose token is returned)."""
        self.append("drop")
        return self.append("invalidate")

    def close(self) -> None:
        """Answer waiting getMores at once (the server is shutting down)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    # -- the server side -------------------------------------------------------------------------
    def aggregate(self, command: Command) -> Any:
        stage = command["pipeline"][0]["$changeStream"]
        resume = stage.get("startAfter") or stage.get("resumeAfter")
        with self._changed:
            if resume is not None:
                position = position_of(resume)
                if position < self.floor:
                    return command_error(286, HISTORY_LOST_MESSAGE)
                if "resumeAfter" in stage and self._is_invalidate(position):
                    return command_error(260, "cannot resume after an invalidate: use startAfter")
            elif "startAtOperationTime" in stage:
                at = stage["startAtOperationTime"].time
                position = sum(1 for e in self.entries if e["clusterTime"].time < at)
            else:
                position = len(self.entries)
            cursor_id = next(self._ids)
            namespace = _namespace(command)
            self._cursors[cursor_id] = _Cursor(namespace, position, _types(command["pipeline"]))
        return cursor_reply(
            namespace, [], cursor_id=cursor_id, postBatchResumeToken=token(position)
        )

    def get_more(self, command: Command) -> Any:
        cursor = self._cursors.get(command["getMore"])
        if cursor is None:
            return command_error(43, "cursor id not found")
        deadline = time.monotonic() + command.get("maxTimeMS", 1000) / 1000
        with self._changed:
            while cursor.position >= len(self.entries) and not self._closed:
                if not self._changed.wait(max(deadline - time.monotonic(), 0)):
                    break
            batch, ended = self._read(cursor)
        cursor_id = 0 if ended else command["getMore"]
        reply = cursor_reply(
            cursor.namespace,
            batch,
            cursor_id=cursor_id,
            first=False,
            postBatchResumeToken=token(cursor.position),
        )
        return Verbatim(reply)  # entries may be raw events no decoder accepts

    def _read(self, cursor: _Cursor) -> tuple[list[Mapping[str, Any]], bool]:
        batch: list[Mapping[str, Any]] = []
        while cursor.position < len(self.entries) and len(batch) < self.batch_size:
            entry = self.entries[cursor.position]
            cursor.position += 1
            if cursor.types is None or entry["operationType"] in cursor.types:
                batch.append(entry)
            if entry["operationType"] == "invalidate":
                return batch, True  # the server closes the cursor after an invalidate
        return batch, False

    def _is_invalidate(self, position: int) -> bool:
        return 0 < position <= len(self.entries) and (
            self.entries[position - 1]["operationType"] == "invalidate"
        )


def _namespace(command: Command) -> str:
    target = command["aggregate"]
    return f"{command['$db']}.{'$cmd.aggregate' if target == 1 else target}"


def _types(pipeline: list[Command]) -> frozenset[str] | None:
    for stage in pipeline[1:]:
        wanted = stage.get("$match", {}).get("operationType", {}).get("$in")
        if wanted is not None:
            return frozenset(wanted)
    return None


@contextlib.contextmanager
def open_oplog(*, batch_size: int = 50, replica_set: str = "rs0") -> Iterator[FakeOplog]:
    with open_mock_mongo(replica_set=replica_set) as mongo:
        oplog = FakeOplog(mongo, batch_size=batch_size)
        try:
            yield oplog
        finally:
            oplog.close()


def change_streams(mongo: MockMongo) -> list[Command]:
    """The `$changeStream` stage of every aggregate received, in order."""
    return [c["pipeline"][0]["$changeStream"] for c in mongo.commands("aggregate")]


# -- running a workflow on the real clock -------------------------------------------------------
def new_runtime(workflow: Workflow, state: Path, *, grace: float = 5.0) -> Runtime:
    return Runtime(workflow, settings=Settings(state_path=state, grace_period=grace))


@asynccontextmanager
async def serving(workflow: Workflow, state: Path, *, grace: float = 5.0) -> AsyncIterator[Runtime]:
    """Run `workflow` in the background until the block ends, then stop it gracefully."""
    runtime = new_runtime(workflow, state, grace=grace)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.run)
            await wait_for(runtime.started.is_set)
            yield runtime
            runtime.stop()
    finally:
        runtime.state.close()


async def run_to_end(
    runtime: Runtime, feed: Callable[[], object] | None = None, timeout: float = 5.0
) -> BaseException | None:
    """Run until the runtime ends by itself; call `feed()` once it is running; return its error
    (a TriggerFailed, or the group holding a simulated crash)."""
    failures: list[BaseException] = []

    async def run() -> None:
        try:
            await runtime.run()
        except Exception as exc:
            failures.append(exc)
        except BaseExceptionGroup as group:  # a BaseException (simulated crash) inside
            failures.append(group)

    try:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await wait_for(lambda: runtime.started.is_set() or bool(failures), timeout)
                if feed is not None and not failures:
                    feed()
    finally:
        runtime.state.close()
    return failures[0] if failures else None


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
