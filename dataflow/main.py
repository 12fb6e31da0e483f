"""Command line: `python -m dataflow NAME` runs a workflow until SIGINT/SIGTERM.

Exit codes: 0 stopped cleanly; 1 a startup handler or a trigger failed; 2 bad input (unknown
workflow, invalid workflow, bad setting); 130 interrupted before the runtime started.
Heavy libraries (pandas, pymongo, pyodbc) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COMMANDS = ("run",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataflow",
        description="Run ETL workflows: startup, cron and change-stream triggers on AnyIO.",
        epilog="`python -m dataflow NAME` is short for `python -m dataflow run NAME`. "
        "Exit codes: 0 clean stop, 1 a startup handler or trigger failed, 2 bad input.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run a workflow until SIGINT/SIGTERM")
    _add_workflow_argument(run)
    run.add_argument("--backend", choices=("asyncio", "trio"), help="event loop (DATAFLOW_BACKEND)")
    run.add_argument(
        "--log-format", choices=("auto", "json", "console"),
        help="log format (DATAFLOW_LOG_FORMAT); auto = JSON unless a terminal",
    )  # fmt: skip
    run.add_argument(
        "--grace-period", type=float, metavar="SECONDS",
        help="time in-flight runs get on shutdown (DATAFLOW_GRACE_PERIOD)",
    )  # fmt: skip
    run.add_argument("--state", type=Path, metavar="PATH", help="state file (DATAFLOW_STATE_PATH)")
    run.set_defaults(handler=_cmd_run)
    return parser


def _add_workflow_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workflow", nargs="?", default=os.environ.get("WORKFLOW"), metavar="NAME",
        help="workflows/NAME.py, a dotted module, module:Class or a .py path (or $WORKFLOW)",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS and not args_list[0].startswith("-")):
        args_list.insert(0, "run")
    if args_list[0].startswith("-") and args_list[0] not in ("-h", "--help"):
        args_list.insert(0, "run")
    args = build_parser().parse_args(args_list)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return _report_errors(handler, args)


def _report_errors(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from dataflow._errors import DataflowError, StartupFailed, TriggerFailed
    from dataflow.state import StateStoreError

    try:
        return handler(args)
    except (StartupFailed, TriggerFailed, StateStoreError) as exc:
        _error(str(exc))
        return EXIT_FAILED
    except DataflowError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _error(message: str) -> None:
    print(f"dataflow: error: {message}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from dataflow._commands import run_command

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
