"""What an overload run left behind: its run records (read with sqlite3 after the stop) and its
warnings (read from the JSON log)."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks._cli_process import log_lines

SECOND = timedelta(seconds=1)
ACCOUNTED = ("succeeded", "failed", "skipped")
# One skipped record stands for many fires when they are more than a few (triggers/_cron/missed.py)
SUMMARY = re.compile(r"^(?:at least )?\d+ fires from (\S+) to (\S+):")


@dataclass
class Fires:
    """Per-second fires of every trigger: expected between its first and last recorded fire,
    and how many of those have a record with an accounted status."""

    expected: int = 0
    accounted: int = 0
    duplicates: int = 0  # a fire with two accounted records (run twice)
    # missing fires newer than the trigger's second-newest run: in the late batch the stop cut
    in_last_batch: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    triggers: int = 0

    @property
    def share(self) -> float:
        return self.accounted / self.expected if self.expected else 0.0


def count_fires(state: Path, workflow: str) -> Fires:
    by_trigger: dict[str, list[tuple[datetime, datetime, str]]] = {}
    with sqlite3.connect(state) as db:
        rows = db.execute(
            "SELECT trigger, scheduled_at, status, error FROM runs WHERE workflow = ?", (workflow,)
        ).fetchall()
    fires = Fires()
    for trigger, scheduled_at, status, error in rows:
        fires.statuses[status] += 1
        if scheduled_at is None:
            continue
        first = last = datetime.fromisoformat(scheduled_at)
        if status == "skipped" and (summary := SUMMARY.match(error or "")):
            first = datetime.fromisoformat(summary.group(1))
            last = datetime.fromisoformat(summary.group(2))
        by_trigger.setdefault(trigger, []).append((first, last, status))
    for records in by_trigger.values():
        _add_trigger(fires, records)
    return fires


def _add_trigger(fires: Fires, records: list[tuple[datetime, datetime, str]]) -> None:
    fires.triggers += 1
    first = min(record[0] for record in records)
    last = max(record[1] for record in records)
    fires.expected += round((last - first) / SECOND) + 1
    seen: Counter[datetime] = Counter()
    for start, end, status in records:
        if status not in ACCOUNTED:
            continue
        at = start
        while at <= end:
            seen[at] += 1
            at += SECOND
    fires.accounted += len(seen)
    fires.duplicates += sum(1 for count in seen.values() if count > 1)
    runs = sorted(start for start, _, status in records if status != "skipped")
    cut = runs[-2] if len(runs) >= 2 else first
    at = cut + SECOND
    while at <= last:
        fires.in_last_batch += at not in seen
        at += SECOND


@dataclass
class Warnings:
    clock_steps: int = 0
    late_lines: int = 0
    late_fires: int = 0  # fires those lines counted as having come due while the scheduler was late
    latest: float = 0.0  # the latest a late line reported, in seconds
    loop_blocked: int = 0
    other: Counter[str] = field(default_factory=Counter)


def count_warnings(log: Path) -> Warnings:
    found = Warnings()
    for line in log_lines(log):
        if line.get("level") != "warning":
            continue
        event = str(line.get("event"))
        if event.startswith("wall clock stepped"):
            found.clock_steps += 1
        elif event.startswith("trigger woke late"):
            found.late_lines += 1
            found.late_fires += int(line.get("due", 0))
            found.latest = max(found.latest, float(line.get("late", 0.0)))
        elif event == "event loop blocked":
            found.loop_blocked += 1
        elif event != "run skipped":  # each skipped run has its record; counted there
            found.other[event] += 1
    return found


def state_size(state: Path) -> int:
    """Bytes of the state file and its write-ahead log."""
    wal = state.with_name(state.name + "-wal")
    return sum(path.stat().st_size for path in (state, wal) if path.exists())
