"""The CLI commands' bodies, imported only when a command runs (keeps `--help` fast).

`run` runs a workflow; `list`, `history` and `dead-letters` read the workflow and its state file
without starting or connecting anything; `trigger` and `dead-letters --retry` run one handler
once through the runtime's dispatcher; `check` tries everything a start would need.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from dataflow._cli.loader import load_workflow
from dataflow._core.errors import SettingsError
from dataflow._core.logs import configure_logging, drain_logs
from dataflow._core.redact import redact_text
from dataflow._core.settings import Settings
from dataflow.triggers.workflow import Workflow

if TYPE_CHECKING:
    from dataflow._cli.check import Check
    from dataflow.runtime import Runtime
    from dataflow.state import RunRecord, Store
    from dataflow.triggers.base import RunHandle

T = TypeVar("T")


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {
        "backend": getattr(args, "backend", None),
        "log_format": getattr(args, "log_format", None),
        "grace_period": getattr(args, "grace_period", None),
        "metrics_port": getattr(args, "metrics_port", None),
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(settings, **given, **_state_override(getattr(args, "state", None)))


def _state_override(state: str | None) -> dict[str, Any]:
    """`--state` names a file or a PostgreSQL store, and replaces whichever the environment set."""
    if state is None:
        return {}
    if "://" in state:  # a URL: Settings says which schemes it takes
        return {"state_url": state, "state_path": None}
    return {"state_path": Path(state), "state_url": None}


def load(args: argparse.Namespace) -> tuple[Settings, type[Workflow]]:
    if not args.workflow:
        raise SettingsError("no workflow given: run `python -m dataflow NAME` or set WORKFLOW")
    settings = settings_from(args)
    sys.path.insert(0, ".")  # workflows import their own helpers relative to the project
    with _signals_end_the_import():
        return settings, load_workflow(args.workflow, settings.workflows_dir)


@contextmanager
def _signals_end_the_import() -> Iterator[None]:
    """While the workflow's module imports, SIGINT and SIGTERM end the process at once, by the
    kernel: Python would only raise KeyboardInterrupt between bytecodes, so a module busy in C
    code (a long query at import, a big computation) would hold off Ctrl-C until it returned.
    Nothing is open yet that a stop would need to close. A signal ignored at start (nohup)
    stays ignored."""
    before = {
        signum: handler
        for signum in (signal.SIGINT, signal.SIGTERM)
        # None: a handler set outside Python, left alone
        if (handler := signal.getsignal(signum)) not in (signal.SIG_IGN, None)
    }
    for signum in before:
        signal.signal(signum, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum, handler in before.items():
            if signal.getsignal(signum) == signal.SIG_DFL:  # not one the workflow installed
                signal.signal(signum, handler)


def run_command(args: argparse.Namespace) -> int:
    import anyio

    from dataflow.runtime import run_workflow

    # Until the runtime watches signals, SIGTERM interrupts like SIGINT does (exit 130).
    signal.signal(signal.SIGTERM, _interrupt)
    settings, workflow_class = load(args)
    configure_logging(settings.log_format, settings.log_level)
    workflow = workflow_class()
    run = partial(
        run_workflow,
        workflow,
        settings=settings,
        reset_state=args.reset_state,
        on_stop_overdue=partial(_exit_overdue, settings.state_location(workflow.workflow_name)),
    )
    anyio.run(run, backend=settings.backend)
    return 0


def _exit_overdue(state_file: str) -> None:
    """The stop did not finish in time: something holds a thread for ever (a state write on a
    frozen disk, a driver that never returns). Say so and end the process without it; what
    was not recorded is not lost silently: this line names it."""
    print(
        "dataflow: error: the stop did not finish within the grace period: a state write to "
        f"{redact_text(state_file)} or a connection did not return (frozen disk?); exiting"
        " without it",
        file=sys.stderr,
        flush=True,
    )
    drain_logs(0.2)
    os._exit(1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# -- reading: list, history, dead letters -------------------------------------------------------
def _existing_state(settings: Settings, workflow_class: type[Workflow]) -> Store | None:
    """The workflow's PostgreSQL store, or its state file if a run created it, with what was
    saved under the workflow's previous name carried over, as a start does (its log line goes
    to stderr: stdout is for the table or JSON)."""
    from dataflow.runtime._describe import open_existing_store
    from dataflow.runtime._identity import claim_state, state_file_of
    from dataflow.state import PostgresStore

    configure_logging(settings.log_format, settings.log_level, stream=sys.stderr)
    if settings.state_url is not None:
        return PostgresStore(settings.state_url)
    store = open_existing_store(state_file_of(workflow_class, settings))
    if store is not None:
        try:
            claim_state(store, workflow_class)
        except BaseException:
            store.close()
            raise
    return store


def list_command(args: argparse.Namespace) -> int:
    from dataflow._cli.views import show_triggers
    from dataflow.runtime._describe import describe_triggers

    settings, workflow_class = load(args)
    now = args.after or datetime.now(UTC)
    store = _existing_state(settings, workflow_class)
    try:
        infos = describe_triggers(workflow_class, store, now, args.next)
    finally:
        if store is not None:
            store.close()
    show_triggers(workflow_class.workflow_name, infos, now, as_json=args.json)
    return 0


def history_command(args: argparse.Namespace) -> int:
    from dataflow._cli.views import show_history

    settings, workflow_class = load(args)
    if args.trigger is not None:
        workflow_class.declared_trigger(args.trigger)  # a typo is bad input, not "no runs"
    store = _existing_state(settings, workflow_class)
    if store is None:
        show_history([], as_json=args.json)
        return 0
    try:
        runs = store.runs(
            workflow_class.workflow_name,
            args.trigger,
            failed_only=args.failed,
            limit=args.limit,
            run_id=args.run,
        )
    finally:
        store.close()
    show_history(runs, as_json=args.json, now=datetime.now(UTC))
    return 0


def dead_letters_command(args: argparse.Namespace) -> int:
    from dataflow._cli.views import show_dead_letters

    if args.retry is not None:
        return _retry_command(args)
    settings, workflow_class = load(args)
    store = _existing_state(settings, workflow_class)
    if store is None:
        show_dead_letters([], as_json=args.json)
        return 0
    try:
        letters = store.dead_letters(workflow_class.workflow_name, include_retried=args.all)
    finally:
        store.close()
    show_dead_letters(letters, as_json=args.json)
    return 0


# -- running one handler: trigger, dead-letters --retry -----------------------------------------
def trigger_command(args: argparse.Namespace) -> int:
    from dataflow._cli import backfill
    from dataflow.runtime._manual import run_trigger_once

    if backfill.wants_backfill(args):
        backfill.check_options(args)  # before the workflow's import, which may be slow
        return backfill.backfill_command(args, *load(args))
    once = partial(
        run_trigger_once,
        trigger_name=args.trigger,
        payload=args.payload,
        startup=not args.no_startup,
    )
    return _run_once(args, once)


def _retry_command(args: argparse.Namespace) -> int:
    from dataflow.runtime._manual import retry_dead_letter

    once = partial(retry_dead_letter, letter_id=args.retry, startup=not args.no_startup)
    return _run_once(args, once)


def _run_once(args: argparse.Namespace, once: Callable[[Runtime], Awaitable[RunHandle]]) -> int:
    """Run `once` on a fresh runtime; print the recorded run; exit 0 only if it succeeded."""
    import anyio

    from dataflow._cli.views import show_history

    settings, workflow_class = load(args)
    configure_logging(settings.log_format, settings.log_level, stream=sys.stderr)
    workflow = workflow_class()
    handle, record = anyio.run(_once_recorded, workflow, settings, once, backend=settings.backend)
    show_history([record] if record else [], as_json=args.json)
    succeeded = handle.outcome is not None and handle.outcome.status == "succeeded"
    return 0 if succeeded else 1


async def _once_recorded(
    workflow: Workflow, settings: Settings, once: Callable[[Runtime], Awaitable[RunHandle]]
) -> tuple[RunHandle, RunRecord | None]:
    """Run `once`, then read back the run it recorded (the runtime is built on the loop)."""
    from dataflow.runtime import Runtime

    runtime = Runtime(workflow, settings=settings)
    try:
        handle = await once(runtime)
        run_id = handle.run.run_id if handle.run is not None else None
        found = await runtime.state.call(runtime.state.runs, runtime.name, handle.request.trigger)
        return handle, next((r for r in found if r.run_id == run_id), None)
    finally:
        runtime.state.close()


# -- check --------------------------------------------------------------------------------------
def check_command(args: argparse.Namespace) -> int:
    from dataflow._cli import check as _check
    from dataflow._cli.tables import print_json

    checks: list[Check] = []
    report = partial(_report_check, checks, as_json=args.json)
    settings = report(*_check.check_settings(partial(settings_from, args)))
    workflow_class = report(*_check.check_import(args.workflow or "", settings))
    if workflow_class is not None:
        for check in _check.check_triggers(workflow_class, datetime.now(UTC)):
            report(check, None)
        configure_logging(settings.log_format, settings.log_level, stream=sys.stderr)
        report(_check.check_state(workflow_class, settings), None)
        workflow = report(*_check.check_instance(workflow_class))
        for check in _check.check_connections(workflow, args.timeout) if workflow else []:
            report(check, None)
    if args.json:
        print_json([dataclasses.asdict(check) for check in checks])
    return 0 if all(check.ok for check in checks) else 1


def _report_check(checks: list[Check], check: Check, value: T, *, as_json: bool) -> T:
    checks.append(check)
    if not as_json:
        line = f"{'ok' if check.ok else 'FAIL':<4}  {check.kind:<10}  {check.detail}"
        print(redact_text(line), flush=True)
    return value
