"""`explain` on a store replicas share (PostgreSQL): each fire's line names the replica that ran
it; the status page's lines (`ledger_accounts` with `here`) name only the other replicas."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from dataflow.main import main
from dataflow.runtime._explain import ledger_accounts
from dataflow.state import PostgresStore
from dataflow.triggers._cron.schedule import CronSchedule
from tests._runtime import START
from tests.state._pg_store import fresh_schema, schema_url

TICK = """
from dataflow import Workflow, cronjob

class Tick(Workflow):
    @cronjob("* * * * *", timezone="UTC")
    def tick(self):
        pass
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The workflow file, and a schema where replica r1 ran the 09:01 fire and r2 the 09:02."""
    folder = tmp_path_factory.mktemp("replicas")
    workflow_file = folder / "tick.py"
    workflow_file.write_text(textwrap.dedent(TICK))
    with fresh_schema() as schema:
        url = schema_url(schema)
        for minute, replica in ((1, "r1"), (2, "r2")):
            _run_fire_on(url, replica, minute)
        yield workflow_file, url


def _run_fire_on(url: str, replica: str, minute: int) -> None:
    """What a replica's runtime writes for a fire it won: the claim, then the run's records."""
    store = PostgresStore(url, replica_id=replica)
    try:
        fire = START + timedelta(minutes=minute)
        assert store.claim_fire("tick", "tick", fire)
        run_id = f"{replica}{minute:030d}"
        store.record_run_start(run_id, "tick", "tick", fire, fire)
        store.record_run_end(run_id, "succeeded", fire + timedelta(seconds=1))
    finally:
        store.close()


def test_explain_names_the_replica_that_ran_each_fire(
    shared: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    workflow_file, url = shared
    lines = []
    for at in ("2026-03-02T09:01", "2026-03-02T09:02"):
        code = main(["explain", str(workflow_file), "tick", "--at", at, "--state", url])
        assert code == 0
        lines.append(capsys.readouterr().out.strip())
    assert lines == [
        "2026-03-02 09:01 UTC: ran: run r1000000 by replica r1, succeeded in 1.0s",
        "2026-03-02 09:02 UTC: ran: run r2000000 by replica r2, succeeded in 1.0s",
    ]


def test_the_page_names_only_the_other_replicas(shared: tuple[Path, str]) -> None:
    _, url = shared
    store = PostgresStore(url, replica_id="r1")
    schedule = CronSchedule("* * * * *", "UTC")
    try:
        now = START + timedelta(minutes=5)
        accounts = ledger_accounts(store, "tick", "tick", schedule, None, 10, now, here="r1")
    finally:
        store.close()
    assert [account.line for account in accounts] == [
        "2026-03-02 09:02 UTC: ran: run r2000000 by replica r2, succeeded in 1.0s",
        "2026-03-02 09:01 UTC: ran: run r1000000, succeeded in 1.0s",
    ]
