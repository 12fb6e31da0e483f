"""Connections to a workflow's sources and destinations.

SQL Server and any ODBC source (pyodbc), SQLite as a local cache (sqlite3), MongoDB (pymongo).
Every connection is blocking and safe to call from the runtime's worker threads; `connect()`,
`disconnect()`, `ping()`, `with`, and a `repr` that never shows a password.

Names load on first use: a workflow that uses only SQLite never loads pyodbc or pymongo, and
pyodbc itself is imported when an ODBC connection first connects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataflow._core.exports import lazy_exports

if TYPE_CHECKING:
    from dataflow._core.errors import BulkUpsertError as BulkUpsertError
    from dataflow._core.errors import ConnectionLostError as ConnectionLostError
    from dataflow._core.errors import DataflowConnectionError as DataflowConnectionError
    from dataflow._core.errors import DataflowSQLError as DataflowSQLError
    from dataflow._core.errors import FrameWriteError as FrameWriteError
    from dataflow._core.errors import QueryCancelledError as QueryCancelledError
    from dataflow._core.errors import QueryTimeoutError as QueryTimeoutError
    from dataflow._core.errors import UpsertFailure as UpsertFailure
    from dataflow._core.errors import UpsertManyResult as UpsertManyResult
    from dataflow.connection._base import Connection as Connection
    from dataflow.connection._mongo import MongoDB as MongoDB
    from dataflow.connection._mongo_async import MongoDBAsync as MongoDBAsync
    from dataflow.connection._mssql import (
        MicrosoftSQLServerConnection as MicrosoftSQLServerConnection,
    )
    from dataflow.connection._odbc import OdbcConnection as OdbcConnection
    from dataflow.connection._sql_core import RetryPolicy as RetryPolicy
    from dataflow.connection._sqlite import SQLiteConnection as SQLiteConnection

_WHERE = {
    "dataflow._core.errors": (
        "BulkUpsertError",
        "ConnectionLostError",
        "DataflowConnectionError",
        "DataflowSQLError",
        "FrameWriteError",
        "QueryCancelledError",
        "QueryTimeoutError",
        "UpsertFailure",
        "UpsertManyResult",
    ),
    "dataflow.connection._base": ("Connection",),
    "dataflow.connection._mongo": ("MongoDB",),
    "dataflow.connection._mongo_async": ("MongoDBAsync",),
    "dataflow.connection._mssql": ("MicrosoftSQLServerConnection",),
    "dataflow.connection._odbc": ("OdbcConnection",),
    "dataflow.connection._sql_core": ("RetryPolicy",),
    "dataflow.connection._sqlite": ("SQLiteConnection",),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE)
