"""The README's code examples run as written (extracted from README.md, not copied)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests._paths import ROOT

pytestmark = pytest.mark.anyio


def readme_block(containing: str) -> str:
    """The README's ```python block that contains `containing`."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"expected one README example with {containing!r}"
    return str(found[0])


async def test_fake_clock_example_waits_on_the_clock(tmp_path: Path) -> None:
    """The FakeClock example fires exactly four quarter-hours in one virtual hour."""
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(readme_block("class Quarterly"), "README.md", "exec"), namespace)
    await namespace["test_fires_every_quarter_hour"](tmp_path)


def test_write_frame_example_stores_what_used_to_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQL → pandas → SQL: Decimal, Timestamp and Int64 land in SQLite as documented."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(
        compile(
            readme_block('write_frame("orders", frame, mode="upsert", keys="id") == 2'),
            "README.md",
            "exec",
        ),
        namespace,
    )
    assert namespace["rows"][1] == {"id": 2, "amount": None, "ordered_at": None, "quantity": None}


def test_sql_to_mongodb_example_upserts_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQL → pandas → MongoDB: one update command, upsert by id, BSON-safe values."""
    from tests._mockupdb_peer import body, open_mock_mongo, update_reply

    monkeypatch.chdir(tmp_path)
    with open_mock_mongo() as mongo:
        mongo.always("update", update_reply(1, upserted={0: 1}))
        monkeypatch.setenv("MONGODB_URL", mongo.url("shop"))
        namespace: dict[str, Any] = {"__name__": "readme_example"}
        exec(compile(readme_block('mongo.write_frame("orders"'), "README.md", "exec"), namespace)
        (update,) = mongo.commands("update")
    assert body(update)["updates"] == [
        {
            "q": {"id": 1},
            "u": {"$set": {"id": 1, "amount": 12.5, "ordered_at": datetime(2026, 3, 1, 8, 0)}},
            "multi": False,
            "upsert": True,
        }
    ]


def test_postgresql_to_sqlite_workflow_example_copies_every_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL (ODBC) → pandas → SQLite, the workflow as written: numeric, timestamptz (in
    UTC, naive: ODBC has no zone) and bigint rows land in SQLite, twice (the upsert replaces,
    never duplicates)."""
    from tests._peers import require_odbc_driver, require_pyodbc

    require_odbc_driver("PostgreSQL Unicode")
    source = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=test;Uid=postgres"
    schema = f"readme_{tmp_path.name[-8:].lower().replace('-', '_')}"
    admin = require_pyodbc().connect(source, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        admin.execute(
            f"CREATE TABLE {schema}.payments"
            " (id bigint PRIMARY KEY, amount numeric(12, 2), paid_at timestamptz, units bigint)"
        )
        admin.execute(
            f"INSERT INTO {schema}.payments VALUES"
            " (1, 12.50, '2026-03-01 09:00:00+01', 3), (2, NULL, NULL, NULL)"
        )
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv(
            "PGCOPY_SOURCE", f"{source};Pqopt={{options='-csearch_path={schema} -ctimezone=UTC'}}"
        )
        namespace: dict[str, Any] = {"__name__": "readme_example"}
        exec(compile(readme_block("class PgCopy"), "README.md", "exec"), namespace)
        workflow = namespace["PgCopy"]()
        with workflow.source, workflow.target:
            assert workflow.copy_payments() == 2
            assert workflow.copy_payments() == 2
            rows = workflow.target.fetch("SELECT * FROM payments ORDER BY id")
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
    assert rows == [
        {"id": 1, "amount": "12.50", "paid_at": "2026-03-01T08:00:00.000000", "units": 3},
        {"id": 2, "amount": None, "paid_at": None, "units": None},
    ]
