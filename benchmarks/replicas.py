"""Replicas (issue 17), run by hand: N cron triggers served by R replica processes on one
PostgreSQL schema, against one process on a SQLite state file.

    python -m benchmarks.replicas --triggers 1000 --replicas 3 --seconds 20

Trigger i fires every 10 s at second i % 10 (`i%10-59/10 * * * * *`), so N triggers make N / 10
fires a second, spread evenly. Each side is real `python -m dataflow run` processes on the real
clock, logging at warning level to /dev/null, after a warm-up. Fire lag = a run's recorded start
minus its fire time, for fires in the measured window; claims/s = every replica's
`dataflow_fire_claims_total` (won + lost) over the window, read from its `/metrics`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from benchmarks._common import percentile

ROOT = Path(__file__).resolve().parents[1]
SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Side:
    name: str
    lags: list[float]
    claims_per_s: float | None
    fires: int


def workflow_source(triggers: int) -> str:
    lines = ["from dataflow import Workflow, cronjob", "", "class Many(Workflow):"]
    for i in range(triggers):
        cron = f"{i % 10}-59/10 * * * * *"
        lines += [
            f'    @cronjob("{cron}", timezone="UTC")',
            f"    def t{i}(self):",
            "        pass",
            "",
        ]
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def processes(project: Path, envs: list[dict[str, str]]) -> Iterator[list[int]]:
    """One `python -m dataflow run many` per environment; their metrics ports."""
    procs, ports = [], []
    for extra in envs:
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATAFLOW_LOG_LEVEL": "warning",
            "DATAFLOW_METRICS_PORT": str(port),
            **extra,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dataflow", "run", "many"],
                cwd=project,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        ports.append(port)
    try:
        yield ports
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


def claims(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("dataflow_fire_claims_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def measure(
    project: Path, envs: list[dict[str, str]], warmup: float, seconds: float
) -> tuple[datetime, datetime, float | None]:
    with processes(project, envs) as ports:
        time.sleep(warmup)
        shared = "DATAFLOW_STATE_URL" in envs[0]
        before = claims(ports) if shared else 0.0
        start = datetime.now(UTC)
        time.sleep(seconds)
        end = datetime.now(UTC)
        after = claims(ports) if shared else 0.0
    rate = (after - before) / (end - start).total_seconds() if shared else None
    return start, end, rate


def postgres_side(project: Path, replicas: int, warmup: float, seconds: float) -> Side:
    import psycopg

    schema = f"bench_replicas_{os.getpid()}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{SERVER}?options={quote(f'-csearch_path={schema}', safe='')}"
    envs = [
        {"DATAFLOW_STATE_URL": url, "DATAFLOW_REPLICA_ID": f"bench-{i}"} for i in range(replicas)
    ]
    try:
        start, end, rate = measure(project, envs, warmup, seconds)
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM started_at - scheduled_at) FROM runs"
                " WHERE scheduled_at >= %s AND scheduled_at < %s",
                (start, end),
            ).fetchall()
    finally:
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    lags = [float(row[0]) for row in rows]
    return Side(f"{replicas} replicas, PostgreSQL", lags, rate, len(lags))


def sqlite_side(project: Path, warmup: float, seconds: float) -> Side:
    state = project / "state.db"
    start, end, _ = measure(project, [{"DATAFLOW_STATE_PATH": str(state)}], warmup, seconds)
    with sqlite3.connect(state) as db:
        rows = db.execute(
            "SELECT scheduled_at, started_at FROM runs WHERE scheduled_at IS NOT NULL"
        )
        lags = [
            (datetime.fromisoformat(started) - datetime.fromisoformat(scheduled)).total_seconds()
            for scheduled, started in rows
            if start <= datetime.fromisoformat(scheduled) < end
        ]
    return Side("1 process, SQLite", lags, None, len(lags))


def row(side: Side, seconds: float) -> str:
    p50, p99 = (percentile(side.lags, q) * 1000 for q in (50, 99))
    rate = "—" if side.claims_per_s is None else f"{side.claims_per_s:,.0f}"
    return (
        f"| {side.name} | {side.fires:,} ({side.fires / seconds:,.0f}/s) | {p50:.1f} ms |"
        f" {p99:.1f} ms | {rate} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas", description=__doc__)
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "workflows").mkdir()
        (project / "workflows" / "many.py").write_text(workflow_source(args.triggers))
        sides = [
            sqlite_side(project, args.warmup, args.seconds),
            postgres_side(project, args.replicas, args.warmup, args.seconds),
        ]
    print(f"{args.triggers} triggers, {args.seconds:g} s measured after {args.warmup:g} s")
    print("| side | fires run | lag p50 | lag p99 | claims/s (won + lost) |")
    print("|---|---|---|---|---|")
    for side in sides:
        print(row(side, args.seconds))


if __name__ == "__main__":
    main()
