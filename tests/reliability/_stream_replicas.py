"""Replicas of a change-stream workflow as real `python -m dataflow` processes on one PostgreSQL
schema, all reading one mockupdb oplog: the handler appends `<event id> <replica>` to
`handled.txt` (one file, appended by every replica, so its order is the order of handling),
and the replica named in HOLD_ON holds the event HOLD_AT in its handler until `release`
exists (an owner frozen mid-event)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests._change_stream_peer import position_of
from tests.reliability._proc import DataflowProcess, write_workflow
from tests.state._pg_store import schema_url, sql

STREAM = """
import os
import time
from pathlib import Path

from dataflow import Workflow, mongodb_change_stream

ME = os.environ.get("DATAFLOW_REPLICA_ID")
HOLD = (int(os.environ.get("HOLD_AT", "0")), os.environ.get("HOLD_ON"))


class Feed(Workflow):
    @mongodb_change_stream({url!r}, "shop", "orders", max_await_time=0.2, batch_events=1)
    def orders(self, change):
        n = change["documentKey"]["_id"]
        time.sleep(0.003)  # some work, so a kill lands mid-handler as often as not
        with open("handled.txt", "a") as out:
            out.write(f"{{n}} {{ME}}\\n")
        if (n, ME) == HOLD and not Path("release").exists():
            Path("holding").write_text(str(os.getpid()))
            while not Path("release").exists():
                time.sleep(0.01)
"""


def start_replica(
    project: Path, schema: str, name: str, ttl: float, state_url: str = "", **extra: str
) -> DataflowProcess:
    """`python -m dataflow run feed` as replica `name`, serving /healthz on a port of its own."""
    return DataflowProcess(
        project,
        "run",
        "feed",
        preexec=None,
        DATAFLOW_STATE_PATH="",
        DATAFLOW_STATE_URL=state_url or schema_url(schema),
        DATAFLOW_REPLICA_ID=name,
        DATAFLOW_REPLICA_TTL=str(ttl),
        DATAFLOW_GRACE_PERIOD="2",
        DATAFLOW_METRICS_PORT="0",
        **extra,
    )


@contextmanager
def owner_and_standby(
    project: Path, schema: str, url: str, ttl: float, a_state_url: str = "", **extra: str
) -> Iterator[tuple[DataflowProcess, DataflowProcess]]:
    """Replica `a` started first (it takes the stream's lease; `a_state_url`: its own way to
    the database), then `b` (on standby); both killed at the end if still running."""
    write_workflow(project, "feed", STREAM.format(url=url))
    a = start_replica(project, schema, "a", ttl, a_state_url, **extra)
    try:
        a.wait_for("change stream lease taken", timeout=30)
        a.wait_for("workflow running", timeout=30)
        b = start_replica(project, schema, "b", ttl, **extra)
        try:
            b.wait_for("change stream on standby: another replica owns it", owner="a", timeout=30)
            b.wait_for("workflow running", timeout=30)
            yield a, b
        finally:
            b.kill()
    finally:
        a.kill()


def handled(project: Path) -> list[tuple[int, str]]:
    """(event id, replica) in the order the events were handled."""
    path = project / "handled.txt"
    if not path.exists():
        return []
    pairs = [line.split() for line in path.read_text().splitlines()]
    return [(int(n), replica) for n, replica in pairs]


def saved_position(schema: str) -> int:
    """The stream's saved position (the number of the last event it stands after), 0 if none."""
    rows = sql(schema, "SELECT value FROM trigger_state WHERE key LIKE 'resume_token:%'")
    return position_of(json.loads(str(rows[0][0]))) if rows else 0


def health(process: DataflowProcess) -> tuple[int, str]:
    """The replica's /healthz: the HTTP status and the `status` it says."""
    url = process.wait_for("serving metrics")["health"]
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, json.loads(answer.read())["status"]


def page_json(process: DataflowProcess, path: str) -> Any:
    """One answer of the replica's status-page API (`/api/...`)."""
    health_url = process.wait_for("serving metrics")["health"]
    with urllib.request.urlopen(health_url.replace("/healthz", path), timeout=5) as answer:
        return json.loads(answer.read())


def leases_metric(process: DataflowProcess) -> float:
    """`dataflow_replica_leases` as the replica's /metrics says it."""
    url = process.wait_for("serving metrics")["url"]
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    line = next(x for x in text.splitlines() if x.startswith("dataflow_replica_leases{"))
    return float(line.rsplit(" ", 1)[1])


class PositionWatch:
    """Reads the saved position every 50 ms in a thread while the block runs: every value it
    took, in order (to show it never moved back)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.seen: list[int] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PositionWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._done.is_set():
            position = saved_position(self.schema)
            if not self.seen or self.seen[-1] != position:
                self.seen.append(position)
            time.sleep(0.05)
