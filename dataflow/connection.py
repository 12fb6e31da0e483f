"""Connections to a workflow's sources and destinations.

SQL Server and any ODBC source (pyodbc), SQLite as a local cache (sqlite3), MongoDB (pymongo).
Every connection is blocking and safe to call from the runtime's worker threads; `connect()`,
`disconnect()`, `ping()`, `with`, and a `repr` that never shows a password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataflow._connection_base import Connection, DataflowConnectionError
from dataflow._mssql import MicrosoftSQLServerConnection
from dataflow._odbc import OdbcConnection
from dataflow._sql_core import (
    ConnectionLostError,
    DataflowSQLError,
    QueryCancelledError,
    QueryTimeoutError,
    RetryPolicy,
)
from dataflow._sqlite import SQLiteConnection

if TYPE_CHECKING:
    from dataflow._mongo import (
        BulkUpsertError,
        MongoDB,
        MongoDBAsync,
        UpsertFailure,
        UpsertManyResult,
    )

__all__ = [
    "BulkUpsertError",
    "Connection",
    "ConnectionLostError",
    "DataflowConnectionError",
    "DataflowSQLError",
    "MicrosoftSQLServerConnection",
    "MongoDB",
    "MongoDBAsync",
    "OdbcConnection",
    "QueryCancelledError",
    "QueryTimeoutError",
    "RetryPolicy",
    "SQLiteConnection",
    "UpsertFailure",
    "UpsertManyResult",
]

_MONGO = frozenset(
    {"BulkUpsertError", "MongoDB", "MongoDBAsync", "UpsertFailure", "UpsertManyResult"}
)


def __getattr__(name: str) -> Any:
    # pymongo loads only for workflows that use MongoDB.
    if name in _MONGO:
        from dataflow import _mongo

        value = getattr(_mongo, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dataflow.connection' has no attribute {name!r}")
