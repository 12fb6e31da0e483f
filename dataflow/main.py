"""Command line: `python -m dataflow NAME` runs a workflow until SIGINT/SIGTERM.

Commands: run, list, trigger, history, dead-letters, check (see docs/cli.md).
Exit codes: 0 stopped cleanly / succeeded; 1 a startup handler, trigger, run or check failed;
2 bad input (unknown workflow, invalid workflow, bad setting, bad argument); 130 interrupted
before the runtime started, or a backfill (`trigger --from/--to`) stopped by a signal; 141 the
reader of the output went away (`| head`). Heavy libraries (pandas, pymongo, pyodbc, anyio) are
imported only by the commands that need them, never by `--help`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dataflow._cli.arguments import COMMANDS, Handler, build_parser

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGPIPE = 141  # 128 + SIGPIPE, as `cat` or `grep` report a reader that went away
_ABANDONED_WAIT = 0.5  # seconds abandoned threads get to return once the runtime has ended


def main(argv: Sequence[str] | None = None) -> int:
    words = _with_command(list(sys.argv[1:] if argv is None else argv), _prog(argv))
    args = build_parser(_prog(argv)).parse_args(words)
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


def _with_command(words: list[str], prog: str) -> list[str]:
    """`NAME [options]` is short for `run NAME [options]`; a mistyped command is not a name."""
    first = words[0] if words else ""
    if first in COMMANDS or first in ("-h", "--help", "--version"):
        return words
    if len(words) > 1 and not words[1].startswith("-"):
        close = difflib.get_close_matches(first, COMMANDS, n=1)
        if close:  # `histroy demo` would otherwise run a workflow called "histroy"
            hint = f"unknown command {first!r} (did you mean {close[0]!r}?)"
            build_parser(prog).error(hint)
    return ["run", *words]


def _exit_without_abandoned_threads(code: int) -> None:
    """A sync handler that ignored its cancel still runs in a thread the runtime abandoned.
    AnyIO's asyncio worker threads are not daemons, so the interpreter would wait for it for
    ever after a clean stop: exit without it (the run is already recorded as cancelled)."""
    offload = sys.modules.get("dataflow._core.offload")  # not loaded: no thread was ever started
    if offload is None or not (stuck := offload.abandoned_threads(_ABANDONED_WAIT)):
        return
    from dataflow._core.logs import drain_logs, get_logger

    get_logger("dataflow.runtime").warning("exiting without abandoned threads", threads=len(stuck))
    drain_logs()  # os._exit skips atexit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _report_errors(handler: Handler, args: argparse.Namespace) -> int:
    from dataflow._core.errors import DataflowError

    try:
        return handler(args)
    except BrokenPipeError:
        return _stdout_closed()
    except DataflowError as exc:
        _error(str(exc))
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130


def exit_code(exc: BaseException) -> int:
    """The one place an error becomes an exit code: 2 for bad input (what the user must fix
    before a restart can help: the workflow, a setting, an argument), 1 for everything else."""
    from dataflow._core import errors

    bad_input = (
        errors.WorkflowError,
        errors.CronError,
        errors.WorkflowNotFound,
        errors.WorkflowImportError,
        errors.SettingsError,
        errors.StateFileRefused,
    )
    # A missing or bad setting is bad input even when only a trigger's start finds it (a change
    # stream's URL variable): restarting the process would not help.
    if isinstance(exc, errors.StartupFailed | errors.TriggerFailed):
        return EXIT_USAGE if isinstance(exc.error, errors.SettingsError) else EXIT_FAILED
    return EXIT_USAGE if isinstance(exc, bad_input) else EXIT_FAILED


def _stdout_closed() -> int:
    """The reader of our output went away (`dataflow list --json | head -1`): end quietly, with
    the status Unix tools have when SIGPIPE ends them, and without Python's complaint when it
    flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_SIGPIPE


def _error(message: str) -> None:
    from dataflow._core.redact import redact_text

    print(f"dataflow: error: {redact_text(message)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
