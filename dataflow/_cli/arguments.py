"""The command line's arguments: commands, options, and the types that check their values.

Each command's body lives in `dataflow._cli.commands` and is imported only when it runs, so
`--help` loads nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from dataflow._cli.backfill_options import add_backfill_options
from dataflow._version import __version__

EXIT_USAGE = 2
COMMANDS = ("run", "list", "trigger", "history", "dead-letters", "check")
Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """Bad input is one line on stderr and exit 2 (argparse would print the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str = "python -m dataflow") -> argparse.ArgumentParser:
    parser = _Parser(
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
        type=_seconds,
        metavar="SECONDS",
        help="time in-flight runs get on shutdown (DATAFLOW_GRACE_PERIOD)",
    )
    run.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve /metrics and /healthz on this port (DATAFLOW_METRICS_PORT; 0 = any free)",
    )
    run.add_argument(
        "--reset-state",
        action="store_true",
        help="if the state file is empty or not a dataflow store, move it aside "
        "(<file>.broken-<time>) and start fresh",
    )
    run.set_defaults(handler=_lazy("run_command"))


def _add_list(commands: Any) -> None:
    show = commands.add_parser(
        "list", help="show triggers: schedule, policies, next fire times, saved positions"
    )
    _add_workflow_argument(show)
    show.add_argument(
        "--next",
        type=_count,
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
    add_backfill_options(fire)
    fire.set_defaults(handler=_lazy("trigger_command"))


def _add_history(commands: Any) -> None:
    history = commands.add_parser("history", help="recent runs from the state file")
    _add_workflow_argument(history)
    history.add_argument("--trigger", metavar="TRIGGER", help="only this trigger's runs")
    history.add_argument(
        "--run",
        type=_run_id,
        metavar="ID",
        help="only the run whose id starts with ID (the 8 hex digits the console log shows)",
    )
    history.add_argument(
        "--failed",
        action="store_true",
        help="only failed, timed-out, cancelled or interrupted runs",
    )
    history.add_argument(
        "--limit",
        type=_count,
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
        type=_count,
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
        type=_seconds,
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
        "--state",
        metavar="PATH|URL",
        help="state file (DATAFLOW_STATE_PATH) or postgresql:// URL (DATAFLOW_STATE_URL)",
    )


def _add_one_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-startup", action="store_true", help="do not run the startup handlers first"
    )
    _add_runtime_options(parser)
    parser.add_argument("--json", action="store_true", help="print the run as JSON")


def _add_state_and_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        metavar="PATH|URL",
        help="state file (DATAFLOW_STATE_PATH) or postgresql:// URL (DATAFLOW_STATE_URL)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


_MAX_SECONDS = 86_400  # a day: longer is a mistyped unit, not a grace period or a timeout
_MAX_COUNT = 1_000_000  # --next, --limit, ids: more would only exhaust memory or the terminal


def _count(text: str) -> int:
    return _whole_number(text, 1, _MAX_COUNT)


def _port(text: str) -> int:
    return _whole_number(text, 0, 65535)


def _whole_number(text: str, low: int, high: int) -> int:
    """argparse shows this message after the option's name (`argument --next: ...`)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from {low} to {high:,}, not {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= _MAX_SECONDS):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds from 0 to {_MAX_SECONDS:,}, not {text!r}"
        )
    return value


def _run_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{1,32}", text):
        raise argparse.ArgumentTypeError(f"expected a run id (hex digits), not {text!r}")
    return text.lower()


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _json_value(text: str) -> object:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError("JSON nested too deeply to read") from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON (Python's json module would accept it)")


def _lazy(name: str) -> Handler:
    """The command body `dataflow._cli.commands.<name>`, imported when the command runs."""

    def handler(args: argparse.Namespace) -> int:
        from dataflow._cli import commands as _commands

        command: Handler = getattr(_commands, name)
        return command(args)

    return handler
