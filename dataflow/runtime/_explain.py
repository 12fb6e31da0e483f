"""`explain`: every fire time of a cron trigger accounted for, from the fire ledger and the
runs it names. Used by the CLI (`python -m dataflow explain`) and the status page's API.

A time without offset is a wall time in the trigger's zone; one a DST gap skipped is the fire
cron runs for it (the first instant after the jump), one that is no fire time says so and
names the nearest. A span lists the schedule's fire times and every ledger row in it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dataflow._core.errors import SettingsError
from dataflow.runtime._describe import run_json
from dataflow.runtime._fire_words import FireWords
from dataflow.state import FireEntry, Leases, RunRecord, Store
from dataflow.triggers._cron.schedule import CronSchedule
from dataflow.triggers._cron.zone import first_change
from dataflow.triggers.cronjob import CronSpec
from dataflow.triggers.workflow import DeclaredTrigger

MAX_FIRES = 1000  # fire times one answer lists at most (the oldest: a later --since goes on)
RECENT = 10  # fire times listed without --at or --since
RECENT_RUNS = 50  # a trigger's runs looked at to tell whether several replicas run it
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class FireAccount:
    """One fire time and what became of it."""

    fire_at: datetime  # aware, in the trigger's zone
    entry: FireEntry | None
    run: RunRecord | None
    line: str

    def to_json(self, now: datetime) -> dict[str, Any]:
        entry = self.entry
        return {
            "fire_at": self.fire_at.astimezone(UTC),
            "local": self.fire_at,
            "outcome": None if entry is None else entry.outcome.value,
            "reason": None if entry is None else entry.reason,
            "run_id": None if entry is None else entry.run_id,
            "related_at": None if entry is None else entry.related_at,
            "recorded_at": None if entry is None else entry.recorded_at,
            "run": None if self.run is None else run_json(self.run, now),
            "line": self.line,
        }


def cron_schedule_of(declared: DeclaredTrigger) -> CronSchedule:
    if not isinstance(declared.spec, CronSpec):
        raise SettingsError(
            f"trigger {declared.name} is a {declared.spec.kind} trigger; only cron triggers "
            "have fire times to explain"
        )
    return declared.spec.schedule


def explain_at(
    store: Store | None,
    workflow: str,
    trigger: str,
    schedule: CronSchedule,
    at: datetime,
    now: datetime,
) -> list[str | FireAccount]:
    """The fire at `at` (naive: a wall time in the trigger's zone), or why there is none."""
    instant = _instant(schedule, at)
    words = FireWords(schedule)
    skipped_wall = (
        at.tzinfo is None and instant.astimezone(schedule.timezone).replace(tzinfo=None) != at
    )  # a DST gap's wall time: it names a fire only if the fire runs for that wall time
    if not schedule.is_fire_time(instant) or (skipped_wall and schedule.gap_wall(instant) != at):
        if skipped_wall:  # cron's rule: nothing runs for it (a wildcard job, another time)
            nearest = words.not_a_fire_time(instant).split("; ", 1)[1]
            return [
                f"{at} {schedule.timezone.key} did not exist (a DST gap) and is not a fire "
                f"time of `{schedule.expression}`; {nearest}"
            ]
        return [words.not_a_fire_time(instant)]
    found = [] if store is None else store.fires(workflow, trigger, since=instant, until=instant)
    return [*_accounts(store, words, [instant], found, now, (workflow, trigger))]


def explain_since(
    store: Store | None,
    workflow: str,
    trigger: str,
    schedule: CronSchedule,
    since: datetime | None,
    now: datetime,
) -> list[FireAccount]:
    """Oldest first: the schedule's fire times in [since, now] and every ledger row there
    (the last `RECENT` fire times without `since`), at most `MAX_FIRES` (the oldest)."""
    start = _instant(schedule, since) if since is not None else _recent_start(schedule, now)
    due = itertools.takewhile(lambda t: t <= now, schedule.iter_after(start - _TICK))
    times = list(itertools.islice(due, MAX_FIRES + 1))
    until = times[MAX_FIRES - 1] if len(times) > MAX_FIRES else now
    found = (
        []
        if store is None
        else store.fires(workflow, trigger, since=start, until=until, limit=MAX_FIRES)
    )
    words = FireWords(schedule)
    return _accounts(store, words, times[:MAX_FIRES], found, now, (workflow, trigger))


def _accounts(
    store: Store | None,
    words: FireWords,
    times: list[datetime],
    found: list[FireEntry],
    now: datetime,
    whose: tuple[str, str],
) -> list[FireAccount]:
    """`whose`: the workflow and trigger the fires are of."""
    by_time = {entry.fire_at: entry for entry in found}
    every = sorted({t.astimezone(UTC) for t in times} | set(by_time))[:MAX_FIRES]
    ids = [e.run_id for e in found if e.run_id is not None]
    runs = {} if store is None or not ids else {r.run_id: r for r in store.runs_by_id(ids)}
    words.replicas = several_replicas(store, *whose, runs.values())
    accounts = []
    for fire in every:
        entry = by_time.get(fire)
        run = None if entry is None or entry.run_id is None else runs.get(entry.run_id)
        local = fire.astimezone(words.zone)
        accounts.append(FireAccount(local, entry, run, words.line(local, entry, run, now)))
    return accounts


def ledger_accounts(
    store: Store,
    workflow: str,
    trigger: str,
    schedule: CronSchedule,
    since: datetime | None,
    limit: int,
    now: datetime,
    here: str | None = None,
) -> list[FireAccount]:
    """The trigger's ledger rows (newest first, at most `limit`) with their lines: the API
    (`here`: the replica asking, whose own runs need no replica named)."""
    found = store.fires(workflow, trigger, since=since, limit=limit)
    times = [entry.fire_at for entry in found]
    words = FireWords(schedule, here=here)
    return _accounts(store, words, times, found, now, (workflow, trigger))[::-1]


def several_replicas(
    store: Store | None, workflow: str, trigger: str, runs: Iterable[RunRecord]
) -> bool:
    """Whether a line should name the replica that ran its fire: only where replicas share the
    store and more than one ran the trigger (these runs or its last `RECENT_RUNS`). A store of
    its own records each process's id, which says nothing about who ran a fire; a single
    replica on a shared store would name itself on every line."""
    if not isinstance(store, Leases):
        return False
    recent = store.runs(workflow, trigger, limit=RECENT_RUNS)
    return len({run.replica for run in [*runs, *recent]} - {None}) > 1


def _instant(schedule: CronSchedule, at: datetime) -> datetime:
    """`at` as an instant: a wall time in the trigger's zone, a skipped one (a DST gap) at the
    first instant after the jump, where cron runs what it skipped."""
    if at.tzinfo is not None:
        return at
    zone = schedule.timezone
    before, after = at.replace(tzinfo=zone, fold=0), at.replace(tzinfo=zone, fold=1)
    if before.utcoffset() == after.utcoffset() or before.astimezone(UTC) < after.astimezone(UTC):
        return before  # an ordinary or a repeated wall time (its first pass)
    change = first_change(zone, after.astimezone(UTC), before.astimezone(UTC))
    return before if change is None else change.astimezone(zone)


def _recent_start(schedule: CronSchedule, now: datetime) -> datetime:
    fire = now + timedelta(microseconds=1)
    for _ in range(RECENT):
        try:
            fire = schedule.previous_before(fire)
        except ValueError:
            break
    return fire
