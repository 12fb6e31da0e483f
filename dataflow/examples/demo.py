"""The demo: an incremental ETL between two SQLite databases, runnable on any machine.

- `seed_source` (startup) creates a small "shop" database with orders, and the warehouse table;
- `place_orders` (every 5 s) plays the shop: it adds orders and updates a few old ones;
- `sync_orders` (every 3 s) extracts rows changed since its watermark (kept in dataflow's
  state store), cleans them with pandas and upserts them into the warehouse (`write_frame`).

Run it with `python -m dataflow demo`; its databases live in `DEMO_DATA_DIR`
(default `.dataflow/demo/`).
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from dataflow import SQLiteConnection, Workflow, cronjob, current_run, startup
from dataflow.utils import get_logger

log = get_logger("demo")
CUSTOMERS = [" ada ", "Grace", "linus", "Barbara ", "ken"]
EPOCH = "1970-01-01T00:00:00+00:00"


class Demo(Workflow):
    def __init__(self) -> None:
        data_dir = Path(os.environ.get("DEMO_DATA_DIR", ".dataflow/demo"))
        data_dir.mkdir(parents=True, exist_ok=True)
        self.shop = SQLiteConnection(data_dir / "shop.db")
        self.warehouse = SQLiteConnection(data_dir / "warehouse.db")

    @startup
    def seed_source(self) -> None:
        self.shop.connect()
        self.warehouse.connect()
        self.shop.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT,"
            " amount TEXT, ordered_at TEXT, updated_at TEXT NOT NULL)"
        )
        self.warehouse.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL,"
            " amount REAL NOT NULL, ordered_at TEXT NOT NULL, loaded_at TEXT NOT NULL)"
        )
        if not self.shop.fetch("SELECT 1 FROM orders LIMIT 1"):
            self._insert_orders(20)
            log.info("shop seeded", orders=20)

    @cronjob("*/5 * * * * *")
    def place_orders(self) -> None:
        new = random.randint(1, 4)
        self._insert_orders(new)
        changed = self.shop.execute(
            "UPDATE orders SET amount = CAST(amount AS REAL) + 1, updated_at = ?"
            " WHERE id IN (SELECT id FROM orders ORDER BY random() LIMIT 2)",
            (_now(),),
        )
        log.info("shop activity", new_orders=new, updated_orders=changed)

    @cronjob("*/3 * * * * *")
    def sync_orders(self) -> None:
        state = current_run().state
        assert state is not None
        watermark = state.get("watermark", EPOCH)
        extract = self.shop.fetch_df(
            "SELECT * FROM orders WHERE updated_at > ? ORDER BY updated_at", (watermark,)
        )
        if extract.empty:
            log.info("nothing new", watermark=watermark)
            return
        # write_frame converts the columns (timestamps become ISO text in SQLite) and upserts
        # by the key, all rows in one transaction.
        loaded = self.warehouse.write_frame("orders", clean(extract), mode="upsert", keys="id")
        state.set("watermark", str(extract["updated_at"].max()))
        log.info("orders synced", extracted=len(extract), loaded=loaded, watermark=watermark)

    def _insert_orders(self, count: int) -> None:
        now = _now()
        rows = [
            (random.choice(CUSTOMERS), f"{random.uniform(5, 500):.2f}", now, now)
            for _ in range(count)
        ]
        self.shop.executemany(
            "INSERT INTO orders (customer, amount, ordered_at, updated_at) VALUES (?, ?, ?, ?)",
            rows,
        )


def clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Tidy names, numeric amounts, UTC timestamps; the warehouse's column order."""
    out = pd.DataFrame(
        {
            "id": frame["id"].astype("int64"),
            "customer": frame["customer"].str.strip().str.title(),
            "amount": pd.to_numeric(frame["amount"], errors="coerce").round(2),
            "ordered_at": pd.to_datetime(frame["ordered_at"], utc=True),
        }
    )
    out = out.dropna(subset=["amount"])
    out["loaded_at"] = _now()
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat()
