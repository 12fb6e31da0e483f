"""`MongoDBAsync`: the blocking `MongoDB` offloaded to worker threads, on asyncio and on trio.

pymongo's own AsyncMongoClient is asyncio-only and motor is deprecated, so each call runs the sync
driver in a worker thread. The caller's AnyIO deadline (`fail_after`, `move_on_after`) becomes the
call's `pymongo.timeout()`: when the scope expires the driver stops too, and the thread returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
from anyio import CapacityLimiter, to_thread
from pymongo.errors import PyMongoError

from dataflow._core.errors import DataflowConnectionError
from dataflow._core.exports import publish

if TYPE_CHECKING:
    import pandas as pd
    from pymongo.results import UpdateResult

    from dataflow._core.errors import UpsertManyResult
    from dataflow.connection._frame_write import Mode
    from dataflow.connection._mongo import Document, MongoDB

T = TypeVar("T")

_MIN_TIMEOUT = 0.001  # seconds; pymongo needs a positive deadline, a spent one still fails fast
# seconds; a server-side maxTimeMS (the deadline less a round trip) can fail this much early
_DEADLINE_SLACK = 0.25


class MongoDBAsync:
    """`MongoDB` with the same methods as coroutines, opened and closed by `async with`.

    Takes `MongoDB`'s arguments, plus `limiter` to bound the worker threads it uses. A call's
    deadline is the caller's cancel scope (`with anyio.fail_after(5): await db.find(...)`), capped
    by the connection's default `timeout`; both reach pymongo as `pymongo.timeout()`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        hostname: str | None = None,
        port: int = 27017,
        database: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = None,
        limiter: CapacityLimiter | None = None,
        **client_options: Any,
    ) -> None:
        # Imported here, not at the top: dataflow.connection._mongo re-exports this class.
        from dataflow.connection._mongo import MongoDB

        self.sync: MongoDB = MongoDB(
            url,
            hostname=hostname,
            port=port,
            database=database,
            username=username,
            password=password,
            timeout=timeout,
            **client_options,
        )
        self._limiter = limiter

    def __repr__(self) -> str:
        return f"MongoDBAsync({self.sync.target!r})"

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        await self._offload(lambda timeout: self.sync.connect(timeout=timeout))

    async def disconnect(self) -> None:
        """Close the client, even while the caller is being cancelled (the close is bounded)."""
        with anyio.CancelScope(shield=True):
            # No limiter: closing must not queue behind calls that hold every token.
            await to_thread.run_sync(self.sync.disconnect)

    async def ping(self) -> None:
        await self._offload(lambda timeout: self.sync.ping(timeout=timeout))

    async def find(
        self,
        collection: str,
        filters: Mapping[str, Any] | None = None,
        *,
        projection: Mapping[str, Any] | Sequence[str] | None = None,
        sort: Sequence[tuple[str, int]] | None = None,
        limit: int = 0,
    ) -> list[Document]:
        find = partial(self.sync.find, collection, filters, projection=projection, sort=sort)
        return await self._offload(lambda timeout: find(limit=limit, timeout=timeout))

    async def insert_many(self, collection: str, records: Iterable[Mapping[str, Any]]) -> list[Any]:
        return await self._offload(
            lambda timeout: self.sync.insert_many(collection, records, timeout=timeout)
        )

    async def upsert(
        self,
        collection: str,
        filters: Mapping[str, Any],
        data: Mapping[str, Any],
    ) -> UpdateResult:
        return await self._offload(
            lambda timeout: self.sync.upsert(collection, filters, data, timeout=timeout)
        )

    async def upsert_many(
        self,
        collection: str,
        records: Iterable[Mapping[str, Any]],
        *,
        key: str | Sequence[str],
        batch_size: int = 1000,
    ) -> UpsertManyResult:
        upsert_many = partial(self.sync.upsert_many, collection, records, key=key)
        return await self._offload(
            lambda timeout: upsert_many(batch_size=batch_size, timeout=timeout)
        )

    async def write_frame(
        self,
        collection: str,
        frame: pd.DataFrame,
        *,
        mode: Mode = "insert",
        keys: str | Sequence[str] = (),
        batch_size: int = 1000,
    ) -> int:
        """`MongoDB.write_frame` in a worker thread (conversion included)."""
        write = partial(self.sync.write_frame, collection, frame, mode=mode, keys=keys)
        return await self._offload(lambda timeout: write(batch_size=batch_size, timeout=timeout))

    async def delete_many(self, collection: str, filters: Mapping[str, Any]) -> int:
        return await self._offload(
            lambda timeout: self.sync.delete_many(collection, filters, timeout=timeout)
        )

    async def aggregate(
        self,
        collection: str,
        pipeline: Sequence[Mapping[str, Any]],
    ) -> list[Document]:
        return await self._offload(
            lambda timeout: self.sync.aggregate(collection, pipeline, timeout=timeout)
        )

    async def _offload(self, call: Callable[[float | None], T]) -> T:
        """Run `call(timeout)` in a worker thread, its timeout cut to the caller's deadline."""
        own = math.inf if self.sync.timeout is None else self.sync.timeout
        deadline = anyio.current_effective_deadline()
        left = max(deadline - anyio.current_time(), _MIN_TIMEOUT)
        timeout = min(own, left)
        try:
            # Not abandoned on cancel: the driver itself stops at the deadline, so the thread
            # comes back (and nothing keeps running behind the caller's back).
            return await to_thread.run_sync(
                call, None if timeout == math.inf else timeout, limiter=self._limiter
            )
        except DataflowConnectionError as exc:
            if _timed_out(exc) and deadline - anyio.current_time() < _DEADLINE_SLACK:
                # The driver stopped at the caller's deadline: the caller's cancel scope reports
                # it (a `fail_after` raises TimeoutError), not the driver error that raced it.
                await anyio.sleep_until(deadline)
            raise


def _timed_out(exc: DataflowConnectionError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, PyMongoError) and cause.timeout


publish("dataflow.connection", MongoDBAsync)
