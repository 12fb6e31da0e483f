"""A change stream read by one replica of several, as real processes on one PostgreSQL schema
and one mockupdb oplog: the owner of the stream's lease reads it, the others stand by (healthz
`standby`, no lease in the metrics) and take over when it dies (kill -9: once its lease
expired), is frozen past its lease (SIGSTOP: its late position write is refused and it stops
reading) or stops (SIGTERM: its lease is released, so about a second). Each takeover resumes
with `startAfter` the last saved token: nothing lost, in order, the position never moves back.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests._change_stream_peer import change_streams, open_oplog, token
from tests.reliability._proc import run_cli, wait_for_file
from tests.reliability._proxy import TcpProxy
from tests.reliability._stream_replicas import (
    PositionWatch,
    handled,
    health,
    leases_metric,
    owner_and_standby,
    page_json,
    saved_position,
)
from tests.state._pg_store import fresh_schema, schema_url, sql

pytestmark = pytest.mark.slow

TTL = 3.0
TAKEOVER_BOUND = TTL + 2.0  # seconds from a kill -9 to the new owner's open stream (issue 17)


def test_kill_9_of_the_owner_hands_the_stream_to_the_standby_from_the_saved_token(
    tmp_path: Path,
) -> None:
    """a owns the stream (healthz `running`, 1 lease), b stands by (`standby`, still 200, 0
    leases). `kill -9` a mid-stream: within TTL + 2 s b opens the stream with `startAfter` the
    token a saved last; every event is handled, in order, and only the event in flight at the
    kill twice."""
    events = 300
    with fresh_schema() as schema, open_oplog() as oplog:
        url = oplog.mongo.url("shop")
        with owner_and_standby(tmp_path, schema, url, TTL) as (a, b):
            assert health(a) == (200, "running") and leases_metric(a) == 1
            assert health(b) == (200, "standby") and leases_metric(b) == 0
            seen_by_b = page_json(b, "/api/workflow")
            [stream] = page_json(b, "/api/triggers")
            oplog.updates(events)
            a.wait_until(lambda: len(handled(tmp_path)) >= 100, "100 events handled by a")
            a.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            assert a.wait().code == -signal.SIGKILL
            saved = saved_position(schema)
            by_a = handled(tmp_path)
            b.wait_for("change stream lease taken", term=2, timeout=TAKEOVER_BOUND + 5)
            b.wait_for("change stream open", timeout=TAKEOVER_BOUND + 5)
            took = time.monotonic() - killed_at
            assert change_streams(oplog.mongo)[-1] == {"startAfter": token(saved)}
            b.wait_until(lambda: len(handled(tmp_path)) >= len(by_a) + events - saved, "the rest")
            assert health(b) == (200, "running") and leases_metric(b) == 1
            assert b.stop(signal.SIGTERM).code == 0, b.stderr
    assert took <= TAKEOVER_BOUND, f"b took the stream {took:.1f}s after the kill"
    assert (seen_by_b["replica"], seen_by_b["standby"]) == ("b", True)  # the status page
    assert {(r["replica"], r["live"]) for r in seen_by_b["replicas"]} == {("a", True), ("b", True)}
    assert (stream["owner"]["replica"], stream["owner"]["live"]) == ("a", True)
    ids = [n for n, _ in handled(tmp_path)]
    assert {r for _, r in by_a} == {"a"} and [n for n, _ in by_a] == list(range(1, len(by_a) + 1))
    assert 0 <= len(by_a) - saved <= 1  # handled, not yet saved: the event in flight
    assert [n for n, r in handled(tmp_path) if r == "b"] == list(range(saved + 1, events + 1))
    assert sorted(set(ids)) == list(range(1, events + 1))  # none lost
    assert [n for n in set(ids) if ids.count(n) > 1] == list(range(saved + 1, len(by_a) + 1))


def test_an_owner_frozen_past_its_lease_has_its_late_write_refused_and_stops(
    tmp_path: Path,
) -> None:
    """a holds event 5 in its handler and is stopped (SIGSTOP) for longer than the TTL; b takes
    the stream over from the saved token (after event 4) and handles on. SIGCONT: a's handler
    returns, its position write (term 1) is refused, it says once that it lost the lease and
    reads nothing more; its cut batch is recorded `interrupted`. The saved position never
    moved back, and ends where b left it."""
    with fresh_schema() as schema, open_oplog() as oplog:
        url = oplog.mongo.url("shop")
        hold = {"HOLD_AT": "5", "HOLD_ON": "a"}
        with (
            owner_and_standby(tmp_path, schema, url, TTL, **hold) as (a, b),
            PositionWatch(schema) as positions,
        ):
            oplog.updates(10)
            wait_for_file(tmp_path / "holding", process=a)
            a.signal(signal.SIGSTOP)
            try:
                b.wait_for("change stream lease taken", term=2, timeout=TTL + 10)
                b.wait_until(lambda: (10, "b") in handled(tmp_path), "b handling on to 10")
                oplog.updates(10)
                b.wait_until(lambda: saved_position(schema) == 20, "b saving event 20")
                (tmp_path / "release").write_text("go")
            finally:
                a.signal(signal.SIGCONT)
            lost = a.wait_for("change stream lease lost: stopped reading", term=1)
            a.wait_until(lambda: len(_ended_rows(schema, "a")) == 5, "a's row of event 5 ended")
            assert saved_position(schema) == 20  # a's write of its position (5) was refused
            oplog.updates(5)
            b.wait_until(lambda: saved_position(schema) == 25, "b saving event 25")
            assert a.stop(signal.SIGTERM).code == 0, a.stderr
            assert b.stop(signal.SIGTERM).code == 0, b.stderr
        assert change_streams(oplog.mongo)[1] == {"startAfter": token(4)}  # b's takeover
        cut = sql(
            schema, "SELECT status, error FROM runs WHERE replica = 'a' AND status <> 'succeeded'"
        )
    assert len(a.events("change stream lease lost: stopped reading")) == 1, lost
    assert positions.seen == sorted(positions.seen) and positions.seen[-1] == 25
    assert [n for n, r in handled(tmp_path) if r == "a"] == [1, 2, 3, 4, 5]  # none after
    assert [n for n, r in handled(tmp_path) if r == "b"] == list(range(5, 26))
    assert [status for status, _ in cut] == ["interrupted"]
    assert "lease lost" in str(cut[0][1])


def test_sigterm_of_the_owner_releases_the_stream_to_the_standby_in_about_a_second(
    tmp_path: Path,
) -> None:
    """With a 10 s TTL: a stops cleanly (SIGTERM), saving its position and releasing its lease;
    b opens the stream within 2.5 s of a's exit, not after the TTL, from exactly where a
    stopped: no event twice. `list` shows b as the owner."""
    ttl = 10.0
    with fresh_schema() as schema, open_oplog() as oplog:
        url = oplog.mongo.url("shop")
        with owner_and_standby(tmp_path, schema, url, ttl) as (a, b):
            oplog.updates(50)
            a.wait_until(lambda: len(handled(tmp_path)) >= 50, "50 events handled by a")
            assert a.stop(signal.SIGTERM).code == 0, a.stderr
            stopped_at = time.monotonic()
            b.wait_for("change stream open", timeout=ttl)
            took = time.monotonic() - stopped_at
            oplog.updates(50)
            b.wait_until(lambda: len(handled(tmp_path)) >= 100, "the next 50 by b")
            listed = run_cli(
                tmp_path,
                "list",
                "feed",
                "--json",
                DATAFLOW_STATE_PATH="",
                DATAFLOW_STATE_URL=schema_url(schema),
            )
            assert b.stop(signal.SIGTERM).code == 0, b.stderr
        assert change_streams(oplog.mongo)[-1] == {"startAfter": token(50)}
    assert took < 2.5, f"b took the stream {took:.1f}s after a stopped"
    assert handled(tmp_path) == [(n, "a") for n in range(1, 51)] + [
        (n, "b") for n in range(51, 101)
    ]
    assert listed.returncode == 0, listed.stderr
    owner = json.loads(listed.stdout)["triggers"][0]["owner"]
    assert (owner["replica"], owner["term"], owner["live"]) == ("b", 2, True), listed.stderr


def _ended_rows(schema: str, replica: str) -> list[tuple[object, ...]]:
    """The runs (batches of one event) `replica` recorded as ended, whatever their status."""
    return sql(
        schema, f"SELECT status FROM runs WHERE replica = '{replica}' AND status <> 'running'"
    )


def test_an_owner_losing_the_database_leaves_the_stream_and_rejoins_as_standby(
    tmp_path: Path,
) -> None:
    """a reaches PostgreSQL through a proxy that goes down: a says once that it left the stream
    (it cannot renew its lease, so it stops reading before the lease expires); b takes over
    once it expired and handles what comes meanwhile. The proxy comes back: a says so once and
    stands by (b owns the stream). Every event handled once, in order."""
    with fresh_schema() as schema, open_oplog() as oplog, TcpProxy(5432) as proxy:
        url = oplog.mongo.url("shop")
        proxied = schema_url(schema).replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        with owner_and_standby(tmp_path, schema, url, TTL, proxied) as (a, b):
            oplog.updates(10)
            a.wait_until(lambda: saved_position(schema) == 10, "a saving event 10")
            proxy.down()
            a.wait_for("state store unreachable: left the change stream")
            b.wait_for("change stream lease taken", term=2, timeout=TTL + 10)
            oplog.updates(10)
            b.wait_until(lambda: saved_position(schema) == 20, "b saving event 20")
            proxy.up()
            a.wait_for("state store reachable again: taking the change stream lease")
            oplog.updates(5)
            b.wait_until(lambda: saved_position(schema) == 25, "b saving event 25")
            assert a.stop(signal.SIGTERM).code == 0, a.stderr
            assert b.stop(signal.SIGTERM).code == 0, b.stderr
    assert handled(tmp_path) == [(n, "a") for n in range(1, 11)] + [(n, "b") for n in range(11, 26)]
    assert len(a.events("state store unreachable: left the change stream")) == 1
    assert len(a.events("state store reachable again: taking the change stream lease")) == 1
    assert a.events("change stream lease lost: stopped reading") == []  # said as unreachable
