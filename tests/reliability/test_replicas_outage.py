"""Two replicas of a workflow with a per-second cron trigger and a change stream, as real
processes, both reaching PostgreSQL only through a TCP proxy that goes down for 30 s (issue 17:
"the database goes away for 30 s"). Meanwhile no replica runs a fire (none can claim one) nor
reads the stream (none holds its lease); once it is back, one replica runs one catch-up fire
for the fires missed (`coalesce` within the 60 s grace) and the ledger records the others
coalesced into it, one replica takes the lease again and reads on from the saved position, and
each replica said once each way that it lost the database and has it back."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests._change_stream_peer import open_oplog
from tests.reliability._proc import DataflowProcess, run_cli, write_workflow
from tests.reliability._proxy import TcpProxy
from tests.reliability._replicas import seen, shared_schema, wait_for_fires
from tests.reliability._stream_replicas import handled, saved_position
from tests.state._pg_store import schema_url, sql

pytestmark = pytest.mark.slow

OUTAGE = 30.0  # seconds the database is away
TTL = 3.0
CLAIMS_LOST = "state store unreachable: claiming no fires"
CLAIMS_BACK = "state store reachable again: claiming fires"
LEASE_LOST = "state store unreachable: left the change stream"
LEASE_BACK = "state store reachable again: taking the change stream lease"
UNRECORDED_END = "run end not recorded: state store unreachable; written once it is back"

# Every second: the fire time into `seen` (the handler's own connection, not the proxy). Each
# change event: `<id> <replica>` appended to handled.txt.
BOTH = """
import os
import time

import psycopg

from dataflow import Workflow, cronjob, current_run, mongodb_change_stream

ME = os.environ.get("DATAFLOW_REPLICA_ID")


class Both(Workflow):
    @cronjob("* * * * * *", timezone="UTC")
    def tick(self):
        with psycopg.connect(os.environ["SEEN_URL"], autocommit=True) as conn:
            conn.execute(
                "INSERT INTO seen (fire_at, replica) VALUES (%s, %s)",
                (current_run().scheduled_at, ME),
            )
        time.sleep(0.5)  # some work: the database goes away while a run is in flight

    @mongodb_change_stream({url!r}, "shop", "orders", max_await_time=0.2, batch_events=1)
    def orders(self, change):
        with open("handled.txt", "a") as out:
            out.write(f"{{change['documentKey']['_id']}} {{ME}}\\n")
"""


def test_both_replicas_losing_the_database_for_30_s_run_no_fire_twice_and_recover(
    tmp_path: Path,
) -> None:
    """a (the stream's owner) and b, both through the proxy. It goes down for 30 s while a run
    is in flight: each says once that it claims no fires and has left the stream; 5 events
    come meanwhile. Back: each says so once; the run in flight ended `succeeded` (its end kept
    and written once back), and no run was taken for a dead replica's; no fire time ran twice;
    the fires due while it was away did not run, one catch-up fire ran for them and the ledger
    (and `explain`) records each of them coalesced into it; exactly one replica took the lease
    (term 2) and handled events 11 to 25 once, in order, from the saved position; both exit 0
    on SIGTERM."""
    with (
        shared_schema() as schema,
        open_oplog() as oplog,
        TcpProxy(5432) as proxy,
        two_replicas(tmp_path, schema, oplog.mongo.url("shop"), proxy.port) as (a, b),
    ):
        oplog.updates(10)
        a.wait_until(lambda: saved_position(schema) == 10, "a saving event 10")
        wait_for_fires(schema, 3)
        wait_for_fires(schema, 1)  # a run just began: it ends while the database is away
        proxy.down()
        in_flight, ran_it = seen(schema)[-1]
        down_at = time.monotonic()
        for replica in (a, b):
            replica.wait_for(CLAIMS_LOST, timeout=TTL + 5)
            replica.wait_for(LEASE_LOST, timeout=TTL + 5)
        time.sleep(TTL + 1)  # a's trust in its lease is long over: nobody reads the stream
        oplog.updates(5)  # events 11-15, while no replica can hold the lease
        time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
        before = seen(schema)
        proxy.up()
        for replica in (a, b):
            replica.wait_for(CLAIMS_BACK, timeout=TTL + 5)
            replica.wait_for(LEASE_BACK, timeout=TTL + 5)
        owner = wait_for_new_owner(a, b)
        owner.wait_until(lambda: saved_position(schema) == 15, "the new owner saving event 15")
        oplog.updates(10)  # events 16-25, after the outage
        owner.wait_until(lambda: saved_position(schema) == 25, "the new owner saving event 25")
        wait_for_fires(schema, 3)
        explained = explain(tmp_path, schema, since=before[-1][0])
        for replica in (a, b):
            assert replica.stop(signal.SIGTERM).code == 0, replica.stderr
        ledger = fire_ledger(schema)
        fires = seen(schema)
        statuses = sql(schema, "SELECT scheduled_at, status FROM runs WHERE trigger = 'tick'")
    for replica in (a, b):
        for line in (CLAIMS_LOST, CLAIMS_BACK, LEASE_LOST, LEASE_BACK):
            assert len(replica.events(line)) == 1, (replica.pid, line)
    ended = next(r for r in (a, b) if r.name == ran_it).events(UNRECORDED_END)
    assert len(ended) == 1 and ended[0]["status"] == "succeeded", ended
    assert (in_flight, "succeeded") in statuses  # its end, kept, was written once back
    assert {status for _, status in statuses} == {"succeeded"}  # none taken for a dead one's
    times = [fire_at for fire_at, _ in fires]
    assert len(times) == len(set(times)), [t for t in times if times.count(t) > 1]
    last_before = before[-1][0]
    assert last_before == in_flight  # no fire ran while the database was away
    caught_up = min(t for t in times if t > last_before)
    gap = [last_before + timedelta(seconds=i) for i in range(1, _seconds(caught_up - last_before))]
    assert len(gap) >= OUTAGE - 2  # the fires due while the database was away: none ran
    after = [t for t in times if t >= caught_up]
    assert after == [caught_up + timedelta(seconds=i) for i in range(len(after))]  # no gap since
    why = "after downtime (catchup=coalesce)"
    assert [ledger[t] for t in gap] == [("coalesced", why, caught_up)] * len(gap)
    assert ledger[caught_up][0] == "caught_up", ledger[caught_up]
    accounts = {datetime.fromisoformat(x["fire_at"]): x for x in explained}
    assert [accounts[t]["outcome"] for t in gap] == ["coalesced"] * len(gap)
    assert accounts[caught_up]["outcome"] == "caught_up"
    ids = [n for n, _ in handled(tmp_path)]
    assert ids == list(range(1, 26))  # each event once, in order
    assert {r for n, r in handled(tmp_path) if n > 10} == {owner.name}


class Replica(DataflowProcess):
    name: str


@contextmanager
def two_replicas(
    project: Path, schema: str, mongo_url: str, proxy_port: int
) -> Iterator[tuple[Replica, Replica]]:
    """`a` (started first: it owns the stream) and `b` (on standby), both reaching the state
    store through the proxy; killed at the end if still running."""
    write_workflow(project, "both", BOTH.format(url=mongo_url))
    proxied = schema_url(schema).replace("127.0.0.1:5432", f"127.0.0.1:{proxy_port}")
    with ExitStack() as stack:
        started = []
        for name in ("a", "b"):
            replica = Replica(
                project,
                "run",
                "both",
                DATAFLOW_STATE_PATH="",
                DATAFLOW_STATE_URL=proxied,
                SEEN_URL=schema_url(schema),
                DATAFLOW_REPLICA_ID=name,
                DATAFLOW_REPLICA_TTL=str(TTL),
                DATAFLOW_GRACE_PERIOD="2",
            )
            replica.name = name
            stack.callback(replica.kill)
            replica.wait_for("workflow running", timeout=30)
            started.append(replica)
        a, b = started
        a.wait_for("change stream lease taken", term=1)
        b.wait_for("change stream on standby: another replica owns it", owner="a")
        yield a, b


def wait_for_new_owner(a: Replica, b: Replica, timeout: float = 3 * TTL) -> Replica:
    """The replica that took the lease after the outage (term 2); the other took none."""
    deadline = time.monotonic() + timeout
    while not (owners := [r for r in (a, b) if r.events("change stream lease taken", term=2)]):
        assert time.monotonic() < deadline, f"no replica took the lease within {timeout}s"
        time.sleep(0.05)
    assert len(owners) == 1 and not any(
        r.events("change stream lease taken", term=3) for r in (a, b)
    )
    return owners[0]


def fire_ledger(schema: str) -> dict[datetime, tuple[str, str | None, datetime | None]]:
    """The fire ledger of `tick`: fire time -> (outcome, reason, the fire it ran in)."""
    rows = sql(
        schema, "SELECT fire_at, outcome, reason, related_at FROM fires WHERE trigger = 'tick'"
    )
    return {r[0]: (str(r[1]), r[2], r[3]) for r in rows}  # type: ignore[misc]


def explain(project: Path, schema: str, since: datetime) -> list[dict[str, str]]:
    """`explain both tick --since ... --json`: what the CLI says became of each fire time."""
    answer = run_cli(
        project,
        "explain",
        "both",
        "tick",
        "--since",
        since.isoformat(),
        "--json",
        DATAFLOW_STATE_PATH="",
        DATAFLOW_STATE_URL=schema_url(schema),
    )
    assert answer.returncode == 0, answer.stderr
    found: list[dict[str, str]] = json.loads(answer.stdout)["fires"]
    return found


def _seconds(span: timedelta) -> int:
    return int(span.total_seconds())
