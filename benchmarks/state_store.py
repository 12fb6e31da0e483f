"""State store (issue 16): what a start costs with a long run history, and bytes per run.

    python -m benchmarks.state_store [--runs 1000000]

A state file as the last release wrote it (schema 2) gets `--runs` finished runs, 40 days old
(1% failed), of 10 triggers, plus one run left `running`. Then, with whichever dataflow is on
`sys.path` (run it once with the release's checkout first on PYTHONPATH for "before"), it times
what a start does: open (a schema migration included), `mark_interrupted`, each trigger's last
fire; `history --failed`; and, where the store has it, pruning the whole history in batches.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from dataflow.state import StateStore

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TRIGGERS = [f"job{i}" for i in range(10)]


def build_release_file(path: Path, runs: int) -> None:
    """Schema 2 as the last release wrote it, filled in one transaction."""
    base = files("dataflow.state").joinpath("_schema.sql").read_text()
    from dataflow.state._migrate import APPLICATION_ID, MIGRATIONS

    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        f"{base}{''.join(MIGRATIONS[:2])}PRAGMA application_id={APPLICATION_ID};"
        "PRAGMA user_version=2;"
    )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO runs (run_id, workflow, trigger, scheduled_at, started_at, ended_at,"
        " status, attempt, error) VALUES (?, 'w', ?, ?, ?, ?, ?, 1, ?)",
        (_old_run(i) for i in range(runs)),
    )
    db.execute(
        "INSERT INTO runs (run_id, workflow, trigger, started_at, status)"
        " VALUES ('left running', 'w', 'job0', ?, 'running')",
        (NOW.isoformat(),),
    )
    for trigger in TRIGGERS:
        db.execute(
            "INSERT INTO trigger_state VALUES ('w', ?, 'last_fire', ?, ?)",
            (trigger, NOW.isoformat(), NOW.isoformat()),
        )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _old_run(i: int) -> tuple[Any, ...]:
    at = (NOW - timedelta(days=40) + timedelta(seconds=i)).isoformat()
    failed = i % 100 == 0
    return (
        f"{i:032x}",
        TRIGGERS[i % len(TRIGGERS)],
        at,
        at,
        at,
        "failed" if failed else "succeeded",
        "Traceback (most recent call last):\nValueError: bad row" if failed else None,
    )


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    began = time.perf_counter()
    store = StateStore(path)
    found["open (first, schema migration included)"] = _ms(time.perf_counter() - began)
    store.close()
    found["open (again)"] = _ms(timed(lambda: StateStore(path).close()))
    store = StateStore(path)
    found["mark_interrupted"] = _ms(timed(lambda: store.mark_interrupted("w")))
    found["last fire of 10 triggers"] = _ms(
        timed(lambda: [store.get_state("w", t, "last_fire") for t in TRIGGERS])
    )
    found["history --failed (50 newest)"] = _ms(
        timed(lambda: store.runs("w", failed_only=True, limit=50))
    )
    found["history --failed of one trigger"] = _ms(
        timed(lambda: store.runs("w", "job3", failed_only=True, limit=50))
    )
    found["file size per 1,000 runs"] = _kb(path, store)
    if hasattr(store, "prune_history"):
        found |= _prune(store)
        found["file size after pruning (pages kept for reuse)"] = f"{_size(path) / 1e6:,.1f} MB"
    store.close()
    return found


def _prune(store: Any) -> dict[str, str]:
    from dataflow.runtime._pruner import BATCH
    from dataflow.state import Retention

    keep = Retention(older_than=NOW - timedelta(days=30), max_runs_per_trigger=10_000)
    batches: list[float] = []
    began = time.perf_counter()
    while True:
        start = time.perf_counter()
        gone = store.prune_history("w", keep, batch=BATCH)
        batches.append(time.perf_counter() - start)
        if gone < BATCH:
            break
    total = time.perf_counter() - began
    return {
        f"prune all ({len(batches)} batches of {BATCH})": _ms(total),
        "longest batch (the store is held this long)": _ms(max(batches)),
        "median batch": _ms(statistics.median(batches)),
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f} ms"


def _kb(path: Path, store: Any) -> str:
    runs = store._db.execute("SELECT count(*) AS n FROM runs").fetchone()[0]
    size = _size(path)
    return f"{size / runs:,.0f} KB ({size / 1e6:,.1f} MB for {runs:,} runs)"


def _size(path: Path) -> int:
    """The file's size once its write-ahead log is checkpointed into it."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        made = Path(folder) / "release.db"
        build_release_file(made, args.runs)
        path = Path(folder) / "state.db"
        shutil.copy(made, path)
        for what, value in measure(path).items():
            print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
