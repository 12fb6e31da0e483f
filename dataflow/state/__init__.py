"""The state store: the `Store` interface; the SQLite store (`SqliteStore`, also reachable as
`StateStore`, its name before the interface) that implements it for one process; and the
PostgreSQL store (`PostgresStore`) that replicas share, with leases (`Leases`)."""

from dataflow._core.errors import LeaseLost, StateStoreError
from dataflow.state._interface import DeadLetter, Retention, RunRecord, Store
from dataflow.state._leases import Lease, Leases, Replica
from dataflow.state._postgres import PostgresStore, is_postgres_url
from dataflow.state._store import SqliteStore, StateStore

__all__ = [
    "DeadLetter",
    "Lease",
    "LeaseLost",
    "Leases",
    "PostgresStore",
    "Replica",
    "Retention",
    "RunRecord",
    "SqliteStore",
    "StateStore",
    "StateStoreError",
    "Store",
    "is_postgres_url",
]
