"""Replicas of one workflow on a shared PostgreSQL store, as real processes: every fire runs
once among them, a killed replica's run is caught up once by a live one, and a replica that
loses the database for a while claims nothing meanwhile and rejoins."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.reliability._proc import wait_for_file
from tests.reliability._proxy import TcpProxy
from tests.reliability._replicas import (
    each_second_once,
    replicas,
    seen,
    shared_schema,
    wait_for_fires,
)
from tests.state._pg_store import schema_url, sql

pytestmark = pytest.mark.slow


def test_three_replicas_run_each_second_once(tmp_path: Path) -> None:
    """3 replicas, a per-second trigger, 15 s: each second once, no gap, and the claims are
    split (every replica won some, lost most)."""
    with shared_schema() as schema:
        with replicas(tmp_path, schema, ["r1", "r2", "r3"]) as running:
            wait_for_fires(schema, 15)
            for process in running.values():
                assert process.stop(signal.SIGTERM).code == 0, process.stderr
        fires = seen(schema)
        each_second_once(fires)
        assert len(fires) >= 15
        statuses = sql(schema, "SELECT DISTINCT status FROM runs")
        assert statuses == [("succeeded",)]
        left = sql(schema, "SELECT replica_id FROM replicas")
        assert left == []  # a clean stop removes the heartbeat


def test_ten_replicas_started_together_run_each_fire_once(tmp_path: Path) -> None:
    """10 processes started in the same second race for every fire: one run each."""
    names = [f"r{i}" for i in range(10)]
    with shared_schema() as schema:
        with replicas(tmp_path, schema, names) as running:
            wait_for_fires(schema, 5)
            for process in running.values():
                process.signal(signal.SIGTERM)
            for process in running.values():
                assert process.wait().code == 0, process.stderr
        each_second_once(seen(schema))


def test_a_killed_replicas_run_is_caught_up_once_by_a_live_one(tmp_path: Path) -> None:
    """The replica running a slow fire is killed (-9). While it was live the other replicas
    skipped the trigger (overlap `skip`, naming it); once its heartbeat is 3 s silent one live
    replica marks the run interrupted and runs its fire again (catch-up `coalesce`, within the
    grace), exactly once."""
    with shared_schema() as schema:
        with replicas(tmp_path, schema, ["r1", "r2", "r3"], SLOW_FIRST="1") as running:
            pid, fire_text = wait_for_file(tmp_path / "sleeper.pid").split()
            victim = next(n for n, p in running.items() if p.pid == int(pid))
            # a later fire comes while the slow run is live: another replica skips it
            why = f"previous run still in progress on replica {victim}"
            sql_wait(schema, "SELECT error FROM runs WHERE status = 'skipped' AND error = %s", why)
            os.kill(int(pid), signal.SIGKILL)
            rerun = sql_wait(
                schema,
                "SELECT replica FROM runs WHERE scheduled_at = %s AND status = 'succeeded'",
                fire_text,
            )
            wait_for_fires(schema, 2)
            for name, process in running.items():
                if name != victim:
                    assert process.stop(signal.SIGTERM).code == 0, process.stderr
        rows = sql(
            schema,
            f"SELECT status, replica FROM runs WHERE scheduled_at = '{fire_text}' ORDER BY seq",
        )
        assert rows == [("interrupted", victim), ("succeeded", rerun)] and rerun != victim
        skipped = sql(schema, "SELECT DISTINCT error FROM runs WHERE status = 'skipped'")
        assert (f"previous run still in progress on replica {victim}",) in skipped
        fires = seen(schema)
        times = [fire_at for fire_at, _ in fires]
        assert times.count(min(times)) == 2  # the slow fire: the killed run and its catch-up


def test_a_replica_losing_the_database_claims_nothing_and_rejoins(tmp_path: Path) -> None:
    """r1 reaches PostgreSQL through a proxy that goes down for 4 s; r2 directly. No fire runs
    twice or goes missing (r2 has them meanwhile); r1 says once that it lost the database
    and once that it has it back, then claims again."""
    with shared_schema() as schema, TcpProxy(5432) as proxy:
        proxied = schema_url(schema).replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        with (
            replicas(tmp_path, schema, ["r2"]) as direct,
            replicas(tmp_path, schema, ["r1"], state_url=proxied) as behind,
        ):
            r1 = behind["r1"]
            wait_for_fires(schema, 3)
            proxy.down()
            r1.wait_for("state store unreachable: claiming no fires")
            wait_for_fires(schema, 3)  # r2 alone has the fires while r1 is cut off
            proxy.up()
            r1.wait_for("state store reachable again: claiming fires")
            claimed_before = len([f for f in seen(schema) if f[1] == "r1"])
            wait_for_fires(schema, 6)
            assert r1.stop(signal.SIGTERM).code == 0, r1.stderr
            assert direct["r2"].stop(signal.SIGTERM).code == 0
        assert len(r1.events("state store unreachable: claiming no fires")) == 1
        assert len(r1.events("state store reachable again: claiming fires")) == 1
        fires = seen(schema)
        each_second_once(fires)
        assert len([f for f in fires if f[1] == "r1"]) >= claimed_before  # it may win again


def sql_wait(schema: str, query: str, param: str, timeout: float = 20.0) -> str:
    """The first column of the first row `query` returns, once it returns one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sql(schema, query.replace("%s", f"'{param}'"))
        if rows:
            return str(rows[0][0])
        time.sleep(0.1)
    raise AssertionError(f"no row for {query} within {timeout}s")
