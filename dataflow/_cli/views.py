"""How each inspection command prints its result: a table, or JSON with `--json`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dataflow._cli.tables import (
    age,
    cut,
    duration,
    print_json,
    print_table,
    utc_time,
    zone_time,
)
from dataflow.runtime._describe import (
    StateEntry,
    TriggerInfo,
    error_summary,
    last_fire,
    letter_json,
    replica_json,
    run_duration,
    run_elapsed,
    run_json,
)
from dataflow.state import DeadLetter, RunRecord
from dataflow.state._leases import Lease, Replica

_VALUE_WIDTH = 24  # a saved value (resume token, watermark) is cut to this in a table
_SECONDS = frozenset({"misfire_grace", "jitter", "timeout", "retry_delay", "checkpoint_interval"})


def show_triggers(
    workflow: str,
    infos: Sequence[TriggerInfo],
    now: datetime,
    *,
    as_json: bool,
    replicas: Sequence[tuple[Replica, bool]] = (),
) -> None:
    """`replicas`: on a shared store, every replica that sent a heartbeat, and whether it is
    live (heard within DATAFLOW_REPLICA_TTL)."""
    if as_json:
        shown = {"workflow": workflow, "now": now, "triggers": [i.to_json() for i in infos]}
        if replicas:
            shown["replicas"] = [replica_json(replica, live) for replica, live in replicas]
        print_json(shown)
        return
    _trigger_table(infos, now)
    if replicas:
        print()
        rows = [
            [r.replica_id, utc_time(r.last_heartbeat), _liveness(r, live)] for r, live in replicas
        ]
        print_table(("REPLICA", "LAST HEARTBEAT (UTC)", "STATUS"), rows)


def _liveness(replica: Replica, live: bool) -> str:
    silent = f"silent {replica.silent_for.total_seconds():.0f}s"
    return f"live ({silent})" if live else f"dead ({silent})"


def _trigger_table(infos: Sequence[TriggerInfo], now: datetime) -> None:
    headers = (
        "TRIGGER",
        "KIND",
        "SCHEDULE / SOURCE",
        "POLICY",
        "NEXT (ZONE)",
        "NEXT (UTC)",
        "STATE",
    )
    print_table(headers, [_trigger_row(info, now) for info in infos], wrap=True)


def _trigger_row(info: TriggerInfo, now: datetime) -> list[str]:
    source = info.source if info.timezone is None else f"{info.source}\n{info.timezone}"
    policy = "\n".join(f"{k}={_option(k, v)}" for k, v in info.policy.items() if v is not None)
    return [
        info.name,
        info.kind,
        source,
        policy or "-",
        "\n".join(zone_time(t) for t in info.next_fires) or "-",
        "\n".join(utc_time(t) for t in info.next_fires) or "-",
        "\n".join(_owner_lines(info.owner) + _state_lines(info.state, now)) or "-",
    ]


def _option(key: str, value: Any) -> str:
    if key in _SECONDS and isinstance(value, int | float):
        return f"{value:g}s"
    return str(value)


def _owner_lines(owner: Lease | None) -> list[str]:
    """Which replica reads a change stream (on a store replicas share)."""
    if owner is None:
        return []
    if owner.live:
        return [f"owned by {owner.holder} (term {owner.term})"]
    return [f"owned by none (lease of {owner.holder} expired or released)"]


def _state_lines(state: Sequence[StateEntry], now: datetime) -> list[str]:
    fired = last_fire(list(state))
    lines = [] if fired is None else [f"last fire {utc_time(fired)} ({age(fired, now)})"]
    for entry in state:
        saved = f"saved {age(entry.updated_at, now)}"
        if entry.position_time is not None:
            lines.append(f"{entry.key}: at {utc_time(entry.position_time)} ({saved})")
        elif fired is None or entry.key != "last_fire":
            lines.append(f"{entry.key}={cut(entry.value, _VALUE_WIDTH)} ({saved})")
    return lines


def show_history(runs: Sequence[RunRecord], *, as_json: bool, now: datetime | None = None) -> None:
    """`now`: a running run shows how long it has been going (`12.5s so far`)."""
    if as_json:
        print_json([run_json(run, now) for run in runs])
        return
    headers = ("RUN", "TRIGGER", "SCHEDULED (UTC)", "STARTED (UTC)", "DURATION", "STATUS", "ERROR")
    print_table(headers, [_run_row(run, now) for run in runs], empty="no runs recorded")


def _run_row(run: RunRecord, now: datetime | None) -> list[str]:
    notes = ["backfill"] if run.backfill else []
    notes += [f"attempt {run.attempt}"] if run.attempt != 1 else []
    notes += [f"{run.events:,} events"] if run.events is not None else []
    status = f"{run.status} ({', '.join(notes)})" if notes else run.status
    elapsed = None if now is None else run_elapsed(run, now)
    return [
        run.run_id[:8],
        run.trigger,
        utc_time(run.scheduled_at),
        utc_time(run.started_at),
        duration(run_duration(run)) if elapsed is None else f"{duration(elapsed)} so far",
        status,
        error_summary(run.error) or _positions(run) or "-",
    ]


def _positions(run: RunRecord) -> str:
    """A batch of change events: its first and last position, as the start of their resume
    tokens (`82` + the event's cluster time in hex: where it is in the oplog)."""
    if run.events is None:
        return ""
    return f"{_position(run.first_position)} .. {_position(run.last_position)}"


def _position(text: str | None) -> str:
    try:
        token = json.loads(text or "null")
    except ValueError:
        token = text
    shown = token.get("_data", token) if isinstance(token, dict) else token
    return "?" if shown is None else str(shown)[:18]


def show_dead_letters(letters: Sequence[DeadLetter], *, as_json: bool) -> None:
    if as_json:
        print_json([letter_json(letter) for letter in letters])
        return
    headers = ("ID", "TRIGGER", "CREATED (UTC)", "RETRIED", "ERROR", "PAYLOAD")
    rows = [_letter_row(letter) for letter in letters]
    print_table(headers, rows, empty="no dead letters")


def _letter_row(letter: DeadLetter) -> list[str]:
    retried = "-"
    if letter.retried_at is not None:
        retried = f"{letter.retry_status} {utc_time(letter.retried_at)}"
    return [
        str(letter.id),
        letter.trigger,
        utc_time(letter.created_at),
        retried,
        error_summary(letter.error),
        " ".join(letter.payload.split()),
    ]
