"""Replicas of one workflow as real `python -m dataflow` processes on one PostgreSQL schema:
a handler writes each fire time it ran into a table, so a test sees every fire, which replica
ran it, and whether any ran twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from tests.reliability._proc import DataflowProcess, write_workflow
from tests.state._pg_store import fresh_schema, schema_url, sql

# Every second: the fire time into `seen`. The first fire of a `slow` replica set sleeps (a
# run to kill mid-way): its process id goes to `sleeper.pid`.
TICKS = """
import os, threading
from pathlib import Path

import psycopg

from dataflow import Workflow, cronjob, current_run

URL = os.environ["SEEN_URL"]


class Ticks(Workflow):
    @cronjob("* * * * * *", timezone="UTC")
    def tick(self):
        run = current_run()
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO seen (fire_at, replica) VALUES (%s, %s)",
                (run.scheduled_at, os.environ["DATAFLOW_REPLICA_ID"]),
            )
            if os.environ.get("SLOW_FIRST") and conn.execute(
                "INSERT INTO slow VALUES (1) ON CONFLICT DO NOTHING"
            ).rowcount:
                Path("sleeper.pid").write_text(f"{os.getpid()} {run.scheduled_at.isoformat()}")
                threading.Event().wait()  # hangs until the test kills this replica
"""


@contextmanager
def shared_schema() -> Iterator[str]:
    """A fresh schema with the handler's tables."""
    with fresh_schema() as schema:
        sql(
            schema,
            "CREATE TABLE seen (fire_at timestamptz, replica text, at timestamptz DEFAULT now())",
        )
        sql(schema, "CREATE TABLE slow (one int PRIMARY KEY)")
        yield schema


@contextmanager
def replicas(
    project: Path, schema: str, names: list[str], state_url: str | None = None, **extra: str
) -> Iterator[dict[str, DataflowProcess]]:
    """`python -m dataflow run ticks` once per name (its DATAFLOW_REPLICA_ID), all started at
    once; killed at the end if still running."""
    write_workflow(project, "ticks", TICKS)
    url = schema_url(schema)
    env = {
        "DATAFLOW_STATE_PATH": "",
        "DATAFLOW_STATE_URL": state_url or url,
        "SEEN_URL": url,
        "DATAFLOW_REPLICA_TTL": "3",
        "DATAFLOW_GRACE_PERIOD": "2",
        **extra,
    }
    with ExitStack() as stack:
        started = {}
        for name in names:
            process = DataflowProcess(
                project, "run", "ticks", preexec=None, DATAFLOW_REPLICA_ID=name, **env
            )
            stack.callback(process.kill)
            started[name] = process
        for process in started.values():
            process.wait_for("workflow running", timeout=30)
        yield started


def seen(schema: str) -> list[tuple[datetime, str]]:
    rows = sql(schema, "SELECT fire_at, replica FROM seen ORDER BY fire_at")
    return [(row[0], str(row[1])) for row in rows if isinstance(row[0], datetime)]


def wait_for_fires(schema: str, count: int, timeout: float = 30.0) -> None:
    """Until `count` more fires were seen."""
    target = len(seen(schema)) + count
    deadline = time.monotonic() + timeout
    while len(seen(schema)) < target:
        assert time.monotonic() < deadline, f"fewer than {count} fires within {timeout}s"
        time.sleep(0.1)


def each_second_once(fires: list[tuple[datetime, str]]) -> None:
    """No fire twice, and none missing between the first and the last."""
    times = [fire_at for fire_at, _ in fires]
    assert len(times) == len(set(times)), [t for t in times if times.count(t) > 1]
    span = int((times[-1] - times[0]).total_seconds()) + 1
    assert times == [times[0] + timedelta(seconds=i) for i in range(span)]
