"""MongoDB through pymongo: one thread-safe `MongoClient` per connection object.

`MongoDB` is the blocking connection; `MongoDBAsync` (in `_mongo_async`) offloads it to worker
threads. Every call runs under `pymongo.timeout()` when a deadline is given, so a timeout stops the
driver instead of leaving it running in a thread. Connection-level failures (unreachable host, bad
credentials, timeouts) become one-line `DataflowConnectionError`s that never carry a password.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import pymongo
from bson.codec_options import CodecOptions
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
)
from pymongo.results import UpdateResult

from dataflow._core.errors import DataflowConnectionError, UpsertManyResult
from dataflow._core.exports import publish
from dataflow._core.redact import redact_text, redact_url, register_secret, register_url
from dataflow.connection import _mongo_text as text
from dataflow.connection._base import Connection
from dataflow.connection._mongo_bulk import upsert_in_batches

if TYPE_CHECKING:
    import pandas as pd

    from dataflow.connection._frame_write import Mode

__all__ = ["Document", "MongoDB"]

T = TypeVar("T")
Document = dict[str, Any]

_CLOSE_TIMEOUT = 5.0  # seconds; closing sends endSessions, which must not hang a shutdown


class MongoDB(Connection):
    """A MongoDB database, reached by URL or by the seed's keyword arguments.

    `MongoDB("mongodb://user:pw@host/db")` or `MongoDB(hostname=..., database=..., username=...,
    password=...)`. `timeout` is the default deadline in seconds for each call; every method also
    takes its own `timeout=`. Extra keyword arguments go to `pymongo.MongoClient`.
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
        **client_options: Any,
    ) -> None:
        if url is None and hostname is not None and "://" in hostname:
            url, hostname = hostname, None  # a URL passed as hostname must not reach the repr
        if (url is None) == (hostname is None):
            raise ValueError("MongoDB needs either a URL or hostname=, not both")
        self._url, self._hostname, self._port = url, hostname, port
        self._username, self._password = username, password
        register_url(url)
        register_secret(password)
        self._options = client_options
        name = database or text.database_in(url)
        if not name:
            raise ValueError("MongoDB needs a database: pass database= or put it in the URL path")
        self.database_name: str = name
        self.timeout = timeout
        self.target = self._describe()
        self._client: MongoClient[Document] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MongoDB({self.target!r})"

    def connect(self, *, timeout: float | None = None) -> None:
        """Open the client and ping the server, so a bad host or bad credentials fail here."""
        with self._lock:
            if self._client is not None:
                return
            with self._translated("connect"):
                client = self._new_client()
            # Under pymongo.timeout() server selection waits out the whole deadline, ignoring
            # serverSelectionTimeoutMS: cap it, so a bad host fails fast with its reason.
            seconds = self.timeout if timeout is None else timeout
            selection = client.options.server_selection_timeout
            cap = selection if seconds is None else min(seconds, selection)
            try:
                self._call("connect", cap, lambda: client[self.database_name].command("ping"))
            except BaseException:
                client.close()
                raise
            self._client = client

    def disconnect(self) -> None:
        """Close the client; calling it again, or before `connect()`, does nothing."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with pymongo.timeout(_CLOSE_TIMEOUT):
                client.close()

    def codec_options(self) -> CodecOptions[Document]:
        """How this connection decodes documents (URL and keyword options), even unconnected."""
        with self._translated("read its options"):
            probe = self._client or self._new_client(connect=False)  # never connects
        if probe is not self._client:
            probe.close()
        return probe.codec_options

    def ping(self, *, timeout: float | None = None) -> None:
        database = self.database
        self._call("ping", timeout, lambda: database.command("ping"))

    @property
    def client(self) -> MongoClient[Document]:
        """The open `MongoClient`; raises `DataflowConnectionError` before `connect()`."""
        client = self._client
        if client is None:
            raise DataflowConnectionError(f"MongoDB {self.target}: not connected, call connect()")
        return client

    @property
    def database(self) -> Database[Document]:
        return self.client[self.database_name]

    def collection(self, name: str) -> Collection[Document]:
        return self.database[name]

    def find(
        self,
        collection: str,
        filters: Mapping[str, Any] | None = None,
        *,
        projection: Mapping[str, Any] | Sequence[str] | None = None,
        sort: Sequence[tuple[str, int]] | None = None,
        limit: int = 0,
        timeout: float | None = None,
    ) -> list[Document]:
        """Return every matching document (the cursor is drained within the deadline)."""
        coll = self.collection(collection)
        query = dict(filters or {})
        return self._call(
            f"find in {collection!r}",
            timeout,
            lambda: list(coll.find(query, projection, sort=sort, limit=limit)),
        )

    def insert_many(
        self, collection: str, records: Iterable[Mapping[str, Any]], *, timeout: float | None = None
    ) -> list[Any]:
        """Insert copies of `records` (the caller's dicts gain no `_id`); return the new ids."""
        coll = self.collection(collection)
        documents = [dict(record) for record in records]
        if not documents:
            return []
        action = f"insert_many into {collection!r}"
        return self._call(action, timeout, lambda: coll.insert_many(documents).inserted_ids)

    def upsert(
        self,
        collection: str,
        filters: Mapping[str, Any],
        data: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> UpdateResult:
        """The seed's upsert: one `update` with `upsert: true` that `$set`s `data`."""
        coll = self.collection(collection)
        query, update = dict(filters), {"$set": dict(data)}
        action = f"upsert into {collection!r}"
        return self._call(action, timeout, lambda: coll.update_one(query, update, upsert=True))

    def upsert_many(
        self,
        collection: str,
        records: Iterable[Mapping[str, Any]],
        *,
        key: str | Sequence[str],
        batch_size: int = 1000,
        timeout: float | None = None,
    ) -> UpsertManyResult:
        """Upsert each record by `key` (a field or list of fields), `batch_size` per bulk write.

        Batches are unordered bulk writes: a failing record does not stop the others. Raises
        `BulkUpsertError` with the failing records' keys after every batch was sent.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        rows = [dict(record) for record in records]
        coll = self.collection(collection)
        action = f"upsert_many into {collection!r}"
        return self._call(action, timeout, lambda: upsert_in_batches(coll, rows, key, batch_size))

    def write_frame(
        self,
        collection: str,
        frame: pd.DataFrame,
        *,
        mode: Mode = "insert",
        keys: str | Sequence[str] = (),
        batch_size: int = 1000,
        timeout: float | None = None,
    ) -> int:
        """Insert (or upsert on `keys`) the rows of `frame` as documents; returns the count.

        Rows convert by `frame_to_documents`; `insert_many` (or `upsert_many`) per batch.
        """
        from dataflow.connection._mongo_frames import write_frame

        return write_frame(
            collection,
            frame,
            mode,
            keys,
            batch_size,
            lambda batch: self.insert_many(collection, batch, timeout=timeout),
            lambda rows, key: self.upsert_many(
                collection, rows, key=key, batch_size=batch_size, timeout=timeout
            ),
        )

    def delete_many(
        self, collection: str, filters: Mapping[str, Any], *, timeout: float | None = None
    ) -> int:
        """Delete every match of `filters` (pass `{}` explicitly to empty the collection)."""
        coll = self.collection(collection)
        query = dict(filters)
        action = f"delete_many in {collection!r}"
        return self._call(action, timeout, lambda: coll.delete_many(query).deleted_count)

    def aggregate(
        self,
        collection: str,
        pipeline: Sequence[Mapping[str, Any]],
        *,
        timeout: float | None = None,
    ) -> list[Document]:
        coll = self.collection(collection)
        stages = [dict(stage) for stage in pipeline]
        action = f"aggregate on {collection!r}"
        return self._call(action, timeout, lambda: list(coll.aggregate(stages)))

    def _call(self, action: str, timeout: float | None, call: Callable[[], T]) -> T:
        """Run one driver call under the deadline, with driver errors translated."""
        seconds = self.timeout if timeout is None else timeout
        deadline: AbstractContextManager[None] = (
            nullcontext() if seconds is None else pymongo.timeout(seconds)
        )
        with self._translated(action), deadline:
            return call()

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn connection-level driver errors into one line that names the target."""
        try:
            yield
        except BulkWriteError:
            raise
        except (ConnectionFailure, ConfigurationError, OperationFailure) as exc:
            if isinstance(exc, OperationFailure) and not text.is_connection_level(exc):
                raise
            reason = redact_text(text.reason(exc))
            raise DataflowConnectionError(f"MongoDB {self.target}: {action}: {reason}") from exc

    def _new_client(self, **more: Any) -> MongoClient[Document]:
        # pymongo lets these keywords override the URL's credentials, as the caller meant them to.
        given = {"username": self._username, "password": self._password}
        options: dict[str, Any] = {name: value for name, value in given.items() if value}
        options |= self._options | more
        if self._url is not None:
            return MongoClient(self._url, **options)
        return MongoClient(host=self._hostname, port=self._port, **options)

    def _describe(self) -> str:
        """The target as a URL without password or query (options may hold secrets too)."""
        if self._url is not None:
            return text.without_options(redact_url(self._url))
        user = f"{self._username}:***@" if self._username else ""
        return f"mongodb://{user}{self._hostname}:{self._port}/{self.database_name}"


publish("dataflow.connection", MongoDB)
