"""conrad: SQL Server orders → MongoDB every 15 minutes, and MongoDB edits back to SQL Server.

- `initial_setup` (startup): connects both sides and creates what is missing (the MongoDB
  unique index on the key; the SQL table must exist, it is the system of record).
- `etl_job` (cron, every 15 minutes): rows changed since the watermark kept in dataflow's
  state store, typed with pandas, bulk-upserted into MongoDB by `order_id` (`write_frame`).
- `realtime_sync` (change stream on the collection, updates and replaces): writes the
  document back to SQL Server with one parameterized UPDATE. Idempotent and loop-free: it
  changes nothing when the row already holds those values, so a replayed event (delivery
  is at-least-once) or the ETL's own write does not bounce back.

Settings (environment variables; a missing one stops the start with one line naming it):
CONRAD_MSSQL_URL (an `mssql://` URL or an ODBC connection string), CONRAD_MONGODB_URL,
and optionally CONRAD_SQL_TABLE (default `orders`), CONRAD_MONGODB_DATABASE (`dest_db`),
CONRAD_MONGODB_COLLECTION (`orders`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from dataflow import (
    MicrosoftSQLServerConnection,
    MongoDB,
    Workflow,
    cronjob,
    current_run,
    require_env,
    startup,
)
from dataflow.triggers.mongo_change_listener import mongodb_change_stream
from dataflow.utils import get_logger

log = get_logger("conrad")
DATABASE = os.environ.get("CONRAD_MONGODB_DATABASE", "dest_db")
COLLECTION = os.environ.get("CONRAD_MONGODB_COLLECTION", "orders")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = ["order_id", "customer", "amount", "quantity", "updated_at"]


class Conrad(Workflow):
    def __init__(self) -> None:
        self.table = os.environ.get("CONRAD_SQL_TABLE", "orders")
        self.source = MicrosoftSQLServerConnection(require_env("CONRAD_MSSQL_URL"))
        self.dest = MongoDB(require_env("CONRAD_MONGODB_URL"), database=DATABASE)

    @startup
    def initial_setup(self) -> None:
        self.source.connect()
        self.dest.connect()
        self.source.fetch(f"SELECT {', '.join(COLUMNS)} FROM {self.table} WHERE 1 = 0")
        self.dest.collection(COLLECTION).create_index("order_id", unique=True)
        log.info("connections ready", table=self.table, collection=f"{DATABASE}.{COLLECTION}")

    @cronjob("*/15 * * * *")
    def etl_job(self) -> None:
        state = current_run().state
        assert state is not None
        watermark: datetime = state.get("watermark", EPOCH)
        rows = self.source.fetch(
            f"SELECT {', '.join(COLUMNS)} FROM {self.table}"
            " WHERE updated_at > ? ORDER BY updated_at",
            (watermark.replace(tzinfo=None),),  # SQL Server datetime2 columns hold UTC, naive
        )
        if not rows:
            log.info("etl: nothing changed", watermark=watermark.isoformat())
            return
        frame = transform(pd.DataFrame(rows, columns=COLUMNS))
        # frame_to_documents + upsert_many by order_id, 1,000 documents per bulk write
        loaded = self.dest.write_frame(COLLECTION, frame, mode="upsert", keys="order_id")
        state.set("watermark", frame["updated_at"].max().to_pydatetime())
        log.info("etl: orders loaded", extracted=len(rows), loaded=loaded)

    @mongodb_change_stream(
        "CONRAD_MONGODB_URL",
        DATABASE,
        COLLECTION,
        name="realtime_sync",
        operation_types=["update", "replace"],
        full_document="updateLookup",
    )
    def realtime_sync(self, change_event: dict[str, Any]) -> None:
        document = change_event.get("fullDocument")
        if document is None:  # deleted since the update: nothing to write back
            return
        changed = self.source.execute(
            f"UPDATE {self.table} SET customer = ?, amount = ?, quantity = ?"
            " WHERE order_id = ? AND (customer <> ? OR amount <> ? OR quantity <> ?)",
            _row_values(document),
        )
        log.info("realtime_sync: written back", order_id=document["order_id"], rows=changed)


def transform(frame: pd.DataFrame) -> pd.DataFrame:
    """Types the extract: integer keys and quantities, decimal amounts as floats, UTC times."""
    return frame.assign(
        order_id=pd.to_numeric(frame["order_id"], downcast="integer"),
        customer=frame["customer"].astype("string").str.strip(),
        amount=pd.to_numeric(frame["amount"], errors="coerce").astype("float64").round(2),
        quantity=pd.to_numeric(frame["quantity"], errors="coerce").astype("Int64"),
        updated_at=pd.to_datetime(frame["updated_at"], utc=True),
    )


def _row_values(document: dict[str, Any]) -> tuple[Any, ...]:
    customer, amount, quantity = document["customer"], document["amount"], document["quantity"]
    return (customer, amount, quantity, document["order_id"], customer, amount, quantity)
