"""workflows/conrad.py, unchanged, against the test peers: SQL through PostgreSQL ODBC (standing
in for SQL Server), MongoDB through mockupdb. Only the settings differ from production."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from dataflow import Settings, SystemClock
from dataflow.runtime import Runtime
from dataflow.runtime._manual import run_trigger_once
from tests._change_stream_peer import FakeOplog, open_oplog, serving, wait_for
from tests._mockupdb_peer import Command, body, update_reply
from tests._paths import ROOT
from tests._pg import PgAdmin, pg_connection_string, unique_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def table() -> Iterator[tuple[str, Any]]:
    """A fresh orders table in PostgreSQL, and a plain pyodbc connection to look at it."""
    name = f"conrad_orders_{uuid.uuid4().hex[:8]}"
    admin = PgAdmin(unique_app())
    db = admin.cnxn
    db.execute(
        f"CREATE TABLE {name} (order_id INTEGER PRIMARY KEY, customer TEXT NOT NULL,"
        " amount NUMERIC(10, 2) NOT NULL, quantity INTEGER NOT NULL, updated_at TIMESTAMP)"
    )
    rows = [
        (1, " Ada ", "12.50", 2, datetime(2026, 3, 1, 8, 0)),
        (2, "Grace", "7.25", 1, datetime(2026, 3, 1, 8, 5)),
        (3, "Linus", "100.00", 10, datetime(2026, 3, 1, 8, 10)),
    ]
    db.cursor().executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?, ?)", rows)
    try:
        yield name, db
    finally:
        db.execute(f"DROP TABLE {name}")
        admin.close()


@pytest.fixture
def oplog() -> Iterator[FakeOplog]:
    with open_oplog() as log:
        log.mongo.always("createIndexes", {"ok": 1})
        log.mongo.always("update", _upserted)
        yield log


def _upserted(command: Command) -> Command:
    count = len(command["updates"])
    return update_reply(count, upserted={i: i for i in range(count)})


def load_conrad(monkeypatch: pytest.MonkeyPatch, table: str, oplog: FakeOplog) -> ModuleType:
    monkeypatch.setenv("CONRAD_MSSQL_URL", pg_connection_string(unique_app()))
    monkeypatch.setenv("CONRAD_MONGODB_URL", oplog.mongo.url("shop"))
    monkeypatch.setenv("CONRAD_SQL_TABLE", table)
    monkeypatch.setenv("CONRAD_MONGODB_DATABASE", "shop")
    monkeypatch.setenv("CONRAD_MONGODB_COLLECTION", "orders")
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("workflows.conrad", None)
    return importlib.import_module("workflows.conrad")


def upserts(oplog: FakeOplog) -> list[Command]:
    return [u for c in oplog.mongo.commands("update") for u in body(c)["updates"]]


async def test_etl_job_loads_changed_rows_into_mongodb_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: tuple[str, Any], oplog: FakeOplog
) -> None:
    conrad = load_conrad(monkeypatch, table[0], oplog)
    runtime = Runtime(
        conrad.Conrad(), settings=Settings(state_path=tmp_path / "s.db"), clock=SystemClock()
    )
    with anyio.fail_after(20):
        first = await run_trigger_once(runtime, "etl_job")
        assert first.outcome is not None and first.outcome.status == "succeeded"
        sent = upserts(oplog)
        assert [u["q"] for u in sent] == [{"order_id": 1}, {"order_id": 2}, {"order_id": 3}]
        assert sent[0]["upsert"] is True and sent[0]["u"]["$set"] == {
            "order_id": 1,
            "customer": "Ada",
            "amount": 12.5,
            "quantity": 2,
            "updated_at": datetime(2026, 3, 1, 8, 0),  # BSON dates are UTC; decoded naive
        }
        assert all(body(c)["ordered"] is False for c in oplog.mongo.commands("update"))

        table[1].execute(
            f"UPDATE {table[0]} SET quantity = 3, updated_at = ? WHERE order_id = 2",
            datetime(2026, 3, 1, 9, 0),
        )
        await run_trigger_once(runtime, "etl_job", startup=False)
    assert [u["q"] for u in upserts(oplog)[3:]] == [{"order_id": 2}]  # only what changed
    runtime.state.close()


async def test_realtime_sync_writes_back_idempotently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: tuple[str, Any], oplog: FakeOplog
) -> None:
    name, db = table
    conrad = load_conrad(monkeypatch, name, oplog)
    document = {"order_id": 3, "customer": "Linus T", "amount": 99.5, "quantity": 7}

    def row() -> tuple[Any, ...]:
        found = db.execute(
            f"SELECT customer, amount, quantity, xmin FROM {name} WHERE order_id = 3"
        )
        return tuple(found.fetchone())

    async with serving(conrad.Conrad(), tmp_path / "s.db"):
        oplog.append("update", doc_id=3, fullDocument=document)
        await wait_for(lambda: row()[0] == "Linus T", timeout=10)
        version = row()[3]
        oplog.append("update", doc_id=3, fullDocument=document)  # replayed: no write
        oplog.append("insert", doc_id=4, fullDocument={**document, "order_id": 4})  # not watched
        await anyio.sleep(0.5)
    customer, amount, quantity, xmin = row()
    assert (customer, float(amount), quantity) == ("Linus T", 99.5, 7)
    assert xmin == version, "a replayed event must not rewrite the row"


def test_a_missing_setting_stops_the_start_with_one_line(tmp_path: Path) -> None:
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONRAD_")}
    env["DATAFLOW_STATE_PATH"] = str(tmp_path / "s.db")
    result = subprocess.run(
        [sys.executable, "-m", "dataflow", "conrad"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dataflow: error: missing setting CONRAD_MSSQL_URL: set the environment variable "
        "CONRAD_MSSQL_URL"
    ]
