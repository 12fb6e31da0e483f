"""Command line: `python -m dataflow NAME` runs a workflow until SIGINT/SIGTERM.

Commands: run, list, trigger, history, dead-letters, check (see docs/cli.md).
Exit codes: 0 stopped cleanly / succeeded; 1 a startup handler, trigger, run or check failed;
2 bad input (unknown workflow, invalid workflow, bad setting); 130 interrupted before the
runtime started. Heavy libraries (pandas, pymongo, pyodbc, anyio) are imported only by the
commands that need them, never by `--help`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataflow._version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COMMANDS = ("run", "list", "trigger", "history", "dead-letters", "check")
Handler = Callable[[argparse.Namespace], int]
_ABANDONED_WAIT = 0.5  # seconds abandoned threads get to return once the runtime has ended


def build_parser(prog: str = "python -m dataflow") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run ETL workflows: startup, cron and change-stream triggers on AnyIO.",
        epilog=f"`{prog} NAME` is short for `{prog} run NAME`. "
        "Exit codes: 0 clean stop or success, 1 a handler, trigger or check failed, 2 bad input.",
    )
    parser.add_argument("--version", action="version", version=f"dataflow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_run, _add_list, _add_trigger, _add_history, _add_dead_letters, _add_check):
        add(commands)
    return parser


def _add_run(commands: Any) -> None:
    run = commands.add_parser("run", help="run a workflow until SIGINT/SIGTERM")
    _add_workflow_argument(run)
    _add_runtime_options(run)
    run.add_argument(
        "--grace-period",
        type=float,
        metavar="SECONDS",
        help="time in-flight runs get on shutdown (DATAFLOW_GRACE_PERIOD)",
    )
    run.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve /metrics and /healthz on this port (DATAFLOW_METRICS_PORT; 0 = any free)",
    )
    run.set_defaults(handler=_lazy("run_command"))


def _add_list(commands: Any) -> None:
    show = commands.add_parser(
        "list", help="show triggers: schedule, policies, next fire times, saved positions"
    )
    _add_workflow_argument(show)
    show.add_argument(
        "--next",
        type=_positive,
        default=3,
        metavar="N",
        help="fire times to show per cron trigger (default 3)",
    )
    show.add_argument(
        "--after",
        type=_timestamp,
        metavar="TIME",
        help="fire times after this ISO time, not now (naive = UTC)",
    )
    _add_state_and_json(show)
    show.set_defaults(handler=_lazy("list_command"))


def _add_trigger(commands: Any) -> None:
    fire = commands.add_parser("trigger", help="run one trigger's handler once, now")
    fire.add_argument("workflow", metavar="NAME", help="the workflow (as for `run`)")
    fire.add_argument("trigger", metavar="TRIGGER", help="the trigger's name (see `list`)")
    fire.add_argument(
        "--payload",
        type=_json_value,
        metavar="JSON",
        help="passed to the handler if its trigger passes an event, and set as "
        "current_run().payload",
    )
    _add_one_run_options(fire)
    fire.set_defaults(handler=_lazy("trigger_command"))


def _add_history(commands: Any) -> None:
    history = commands.add_parser("history", help="recent runs from the state file")
    _add_workflow_argument(history)
    history.add_argument("--trigger", metavar="TRIGGER", help="only this trigger's runs")
    history.add_argument(
        "--failed",
        action="store_true",
        help="only failed, timed-out, cancelled or interrupted runs",
    )
    history.add_argument(
        "--limit",
        type=_positive,
        default=20,
        metavar="N",
        help="at most N runs, newest first (default 20)",
    )
    _add_state_and_json(history)
    history.set_defaults(handler=_lazy("history_command"))


def _add_dead_letters(commands: Any) -> None:
    letters = commands.add_parser("dead-letters", help="list dead letters, or re-run one")
    _add_workflow_argument(letters)
    letters.add_argument(
        "--retry",
        type=_positive,
        metavar="ID",
        help="re-run dead letter ID through its trigger's handler",
    )
    letters.add_argument(
        "--all", action="store_true", help="include letters already retried successfully"
    )
    _add_one_run_options(letters)
    letters.set_defaults(handler=_lazy("dead_letters_command"))


def _add_check(commands: Any) -> None:
    check = commands.add_parser(
        "check", help="validate the workflow and settings, try each connection"
    )
    _add_workflow_argument(check)
    check.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long each connection may take to answer (default 5)",
    )
    _add_state_and_json(check)
    check.set_defaults(handler=_lazy("check_command"))


def _add_workflow_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workflow",
        nargs="?",
        default=os.environ.get("WORKFLOW"),
        metavar="NAME",
        help="workflows/NAME.py, a dotted module, module:Class or a .py path (or $WORKFLOW)",
    )


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), help="event loop (DATAFLOW_BACKEND)"
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        help="log format (DATAFLOW_LOG_FORMAT); auto = JSON unless a terminal",
    )
    parser.add_argument(
        "--state", type=Path, metavar="PATH", help="state file (DATAFLOW_STATE_PATH)"
    )


def _add_one_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-startup", action="store_true", help="do not run the startup handlers first"
    )
    _add_runtime_options(parser)
    parser.add_argument("--json", action="store_true", help="print the run as JSON")


def _add_state_and_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", type=Path, metavar="PATH", help="state file (DATAFLOW_STATE_PATH)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _json_value(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _lazy(name: str) -> Handler:
    """The command body `dataflow._cli.commands.<name>`, imported when the command runs."""

    def handler(args: argparse.Namespace) -> int:
        from dataflow._cli import commands as _commands

        command: Handler = getattr(_commands, name)
        return command(args)

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS and not args_list[0].startswith("-")):
        args_list.insert(0, "run")
    if args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version"):
        args_list.insert(0, "run")
    args = build_parser(_prog(argv)).parse_args(args_list)
    handler: Handler = args.handler
    code = _report_errors(handler, args)
    if argv is None:  # the process's entry point: `python -m dataflow`, the `dataflow` script
        _exit_without_abandoned_threads(code)
    return code


def _prog(argv: Sequence[str] | None) -> str:
    """The program as the user invoked it, for usage lines: the console script's argv[0] is
    an executable named `dataflow`; under `python -m dataflow` it is `.../__main__.py`."""
    if argv is None and sys.argv and Path(sys.argv[0]).stem == "dataflow":
        return "dataflow"
    return "python -m dataflow"


def _exit_without_abandoned_threads(code: int) -> None:
    """A sync handler that ignored its cancel still runs in a thread the runtime abandoned.
    AnyIO's asyncio worker threads are not daemons, so the interpreter would wait for it for
    ever after a clean stop: exit without it (the run is already recorded as cancelled)."""
    offload = sys.modules.get("dataflow._core.offload")  # not loaded: no thread was ever started
    if offload is None or not (stuck := offload.abandoned_threads(_ABANDONED_WAIT)):
        return
    from dataflow._core.logs import get_logger

    get_logger("dataflow.runtime").warning("exiting without abandoned threads", threads=len(stuck))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _report_errors(handler: Handler, args: argparse.Namespace) -> int:
    from dataflow._core.errors import (
        DataflowError,
        SettingsError,
        StartupFailed,
        StateStoreError,
        TriggerFailed,
    )

    try:
        return handler(args)
    except (StartupFailed, TriggerFailed, StateStoreError) as exc:
        _error(str(exc))
        # A missing or bad setting is bad input (2) even when only a trigger's start finds it
        # (a change stream's URL variable): restarting the process would not help.
        return EXIT_USAGE if isinstance(getattr(exc, "error", None), SettingsError) else EXIT_FAILED
    except DataflowError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _error(message: str) -> None:
    print(f"dataflow: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
