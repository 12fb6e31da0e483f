"""`trigger NAME T --from A --to B`: run a cron trigger's past fires again, or list them.

The fires are those of T's own schedule in [A, B) (`--to` excluded, as cron tools take a
range), found by the cron engine that schedules them, DST gaps and folds included. A time
without offset is in the trigger's zone. The runs themselves: `dataflow.runtime._backfill`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dataflow._cli.backfill_options import BACKFILL_CONFIRM
from dataflow._cli.tables import print_json, print_table, utc_time, zone_time
from dataflow._core.errors import SettingsError
from dataflow._core.logs import configure_logging
from dataflow._core.settings import Settings
from dataflow.runtime._describe import run_json
from dataflow.state import RunRecord
from dataflow.triggers._cron.schedule import CronSchedule
from dataflow.triggers._cron.span import fires_between
from dataflow.triggers.cronjob import CronSpec
from dataflow.triggers.workflow import DeclaredTrigger, Workflow

if TYPE_CHECKING:
    from dataflow.runtime._backfill import Backfill

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell shows for a command Ctrl-C ended
MAX_FIRES = 100_000  # one range: more takes seconds to list and runs for hours: split it
_FAILED_SHOWN = 5  # fire times of failed runs named in the summary line
_KIND_WORDS = {"mongodb_change_stream": "change-stream"}
_BACKFILL_ONLY = ("dry_run", "yes", "stop_on_failure")


def wants_backfill(args: argparse.Namespace) -> bool:
    """Any backfill option given: a backfill (or a mistake that `check_options` names)."""
    given = [args.start, args.end, *(getattr(args, name) for name in _BACKFILL_ONLY)]
    return any(value not in (None, False) for value in given)


def backfill_command(
    args: argparse.Namespace, settings: Settings, workflow_class: type[Workflow]
) -> int:
    """Once `check_options` passed and the workflow is loaded: list the fires, or run them."""
    declared = workflow_class.declared_trigger(args.trigger)  # unknown: its own one line
    schedule = cron_schedule(declared)
    start, end = in_zone(args.start, schedule.timezone), in_zone(args.end, schedule.timezone)
    if start >= end:
        raise SettingsError(
            f"--from {start.isoformat()} is not before --to {end.isoformat()}: the fires in "
            "[--from, --to) run, so give a --from earlier than --to"
        )
    fires = fires_between(schedule, start, end, MAX_FIRES + 1)
    if len(fires) > MAX_FIRES:
        raise SettingsError(
            f"the range holds more than {MAX_FIRES:,} fires of {declared.name}: "
            "split it into smaller ranges"
        )
    if args.dry_run:
        show_fires(declared.name, schedule, fires, as_json=args.json)
        return EXIT_OK
    if len(fires) > BACKFILL_CONFIRM and not args.yes:
        raise SettingsError(
            f"the range holds {len(fires):,} fires of {declared.name} (more than "
            f"{BACKFILL_CONFIRM:,}): add --yes to run them all, or --dry-run to list them"
        )
    return _run(args, settings, workflow_class, fires, end)


def check_options(args: argparse.Namespace) -> None:
    """Options that make no backfill, each refused in one line before anything loads."""
    if (args.start is None) != (args.end is None):
        given, missing = ("--from", "--to") if args.end is None else ("--to", "--from")
        raise SettingsError(
            f"{given} needs {missing}: a backfill runs the fires in [--from, --to); give both"
        )
    if args.start is None:
        used = next(name for name in _BACKFILL_ONLY if getattr(args, name))
        option = "--" + used.replace("_", "-")
        raise SettingsError(f"{option} is a backfill option: give --from and --to with it")
    if args.payload is not None:
        raise SettingsError(
            "--payload is for one run now; a backfill's runs get the fire time, not a payload: "
            "drop --payload"
        )


def cron_schedule(declared: DeclaredTrigger) -> CronSchedule:
    if not isinstance(declared.spec, CronSpec):
        kind = _KIND_WORDS.get(declared.spec.kind, declared.spec.kind)
        raise SettingsError(
            f"trigger {declared.name} is a {kind} trigger; --from/--to need a cron trigger"
        )
    return declared.spec.schedule


def in_zone(value: datetime, zone: ZoneInfo) -> datetime:
    """A time without offset is the trigger's wall time (a skipped or repeated wall time
    takes the offset before the change: Python's `fold=0`)."""
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def show_fires(
    trigger: str, schedule: CronSchedule, fires: Sequence[datetime], *, as_json: bool
) -> None:
    if as_json:
        listed = [{"local": fire, "utc": fire.astimezone(UTC)} for fire in fires]
        zone = schedule.timezone.key
        print_json({"trigger": trigger, "timezone": zone, "count": len(fires), "fires": listed})
        return
    rows = [[str(n), zone_time(f), utc_time(f)] for n, f in enumerate(fires, start=1)]
    print_table(("#", "FIRE (ZONE)", "FIRE (UTC)"), rows, empty="no fire times in the range")


def _run(
    args: argparse.Namespace,
    settings: Settings,
    workflow_class: type[Workflow],
    fires: Sequence[datetime],
    end: datetime,
) -> int:
    import anyio

    from dataflow._cli.views import show_history

    if not fires:
        print(f"no fire of {args.trigger} in the range: nothing to run", file=sys.stderr)
        return EXIT_OK
    configure_logging(settings.log_format, settings.log_level, stream=sys.stderr)
    workflow = workflow_class()
    backfill, records = anyio.run(
        _backfill_recorded, workflow, settings, args, fires, backend=settings.backend
    )
    if args.json:
        print_json(_summary_json(backfill, records))
    else:
        show_history(records, as_json=False)
    print(summary_line(args.trigger, backfill, end), file=sys.stderr, flush=True)
    if backfill.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if backfill.failed_fires else EXIT_OK


async def _backfill_recorded(
    workflow: Workflow, settings: Settings, args: argparse.Namespace, fires: Sequence[datetime]
) -> tuple[Backfill, list[RunRecord]]:
    """Run the backfill, then read back the runs it recorded (each fire's last attempt)."""
    from dataflow.runtime import Runtime
    from dataflow.runtime._backfill import run_backfill

    runtime = Runtime(workflow, settings=settings)
    try:
        backfill = await run_backfill(
            runtime,
            args.trigger,
            fires,
            startup=not args.no_startup,
            stop_on_failure=args.stop_on_failure,
        )
        ids = [handle.run.run_id for handle in backfill.done if handle.run is not None]
        return backfill, await runtime.state.call(runtime.state.runs_by_id, ids)
    finally:
        runtime.state.close()


def summary_line(trigger: str, backfill: Backfill, end: datetime) -> str:
    """What happened, in one line; when fires are left, the options to resume with."""
    failed = backfill.failed_fires
    counts = (
        f"{len(backfill.done):,} of {len(backfill.fires):,} fires done ({len(failed):,} failed), "
        f"{len(backfill.left):,} left"
    )
    resume = resume_from(backfill)
    if resume is not None:
        why = "interrupted"
        if not backfill.interrupted:
            why = f"stopped at its failed run of {resume.isoformat()}"
        return f"backfill of {trigger} {why}: {counts}; resume with {_resume(resume, end)}"
    if not failed:
        return f"backfill of {trigger}: {len(backfill.fires):,} fires run, all succeeded"
    shown = ", ".join(fire.isoformat() for fire in failed[:_FAILED_SHOWN])
    more = f" and {len(failed) - _FAILED_SHOWN:,} more" if len(failed) > _FAILED_SHOWN else ""
    ran = len(backfill.fires)
    return f"backfill of {trigger}: {ran:,} fires run, {len(failed):,} failed: {shown}{more}"


def resume_from(backfill: Backfill) -> datetime | None:
    """Where to start again: after a signal, the first fire not run to the end; after a failed
    run stopped the backfill (--stop-on-failure), that fire, to run it again once fixed."""
    if backfill.interrupted:
        return backfill.left[0]
    if backfill.stopped_at_failure and backfill.left:
        return backfill.failed_fires[-1]
    return None


def _resume(fire: datetime, end: datetime) -> str:
    return f"--from {fire.isoformat()} --to {end.isoformat()}"


def _summary_json(backfill: Backfill, records: list[RunRecord]) -> dict[str, Any]:
    return {
        "fires": len(backfill.fires),
        "done": len(backfill.done),
        "failed": len(backfill.failed_fires),
        "left": len(backfill.left),
        "interrupted": backfill.interrupted,
        "resume_from": resume_from(backfill),
        "runs": [run_json(record) for record in records],
    }
