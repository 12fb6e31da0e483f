"""The status page of a replica, in a real browser: two `python -m dataflow` replicas of a
change-stream workflow on one PostgreSQL schema (`a` owns the stream, `b` stands by). b's page
names itself as standby, lists both replicas live, and shows `a` as the stream's owner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests._change_stream_peer import open_oplog
from tests.reliability._stream_replicas import owner_and_standby
from tests.state._pg_store import fresh_schema

pytestmark = pytest.mark.slow


def test_a_standbys_page_names_the_replicas_and_the_streams_owner(
    tmp_path: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    with (
        fresh_schema() as schema,
        open_oplog() as oplog,
        owner_and_standby(tmp_path, schema, oplog.mongo.url("shop"), 10.0) as (_, b),
    ):
        page = browser.new_page()
        page.goto(str(b.wait_for("serving metrics")["page"]))
        expect(page.locator("#workflow-info")).to_contain_text(
            "replica b (standby: owns no stream)"
        )
        for name in ("a", "b"):
            replica = page.locator(f'#replicas li[data-replica="{name}"]')
            expect(replica).to_have_class("live")
            expect(replica).to_contain_text(f"{name}: live")
        stream = page.locator('#triggers tr[data-trigger="orders"]')
        expect(stream.locator(".owner")).to_have_text("owned by a (term 1)")
        page.close()
