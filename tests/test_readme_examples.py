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
