"""The state store: the `Store` interface, and the SQLite store (`SqliteStore`, also reachable
as `StateStore`, its name before the interface) that implements it."""

from dataflow._core.errors import StateStoreError
from dataflow.state._interface import DeadLetter, Retention, RunRecord, Store
from dataflow.state._store import SqliteStore, StateStore

__all__ = [
    "DeadLetter",
    "Retention",
    "RunRecord",
    "SqliteStore",
    "StateStore",
    "StateStoreError",
    "Store",
]
