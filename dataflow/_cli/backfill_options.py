"""`trigger NAME T --from ... --to ...`: the backfill's options and the type that reads times.

Light on purpose (the parser imports it for `--help`); the command's body is `_cli.backfill`.
"""

from __future__ import annotations

import argparse
from datetime import datetime

BACKFILL_CONFIRM = 1_000  # a backfill of more fires than this needs --yes
TIME_FORMAT = "YYYY-MM-DDTHH:MM[:SS][+HH:MM]"


def add_backfill_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "backfill",
        "run the handler once per fire of the trigger's cron schedule in [--from, --to), "
        "oldest first, one at a time; a time without offset is in the trigger's time zone. "
        "A failed run does not stop the others (exit 1); Ctrl-C or SIGTERM lets the run in "
        "flight finish, starts no other and says where to resume (exit 130)",
    )
    group.add_argument(
        "--from", dest="start", type=wall_time, metavar="TIME", help="first fire time (included)"
    )
    group.add_argument("--to", dest="end", type=wall_time, metavar="TIME", help="end (excluded)")
    group.add_argument(
        "--dry-run", action="store_true", help="list the fire times (zone and UTC), run nothing"
    )
    group.add_argument(
        "--yes",
        action="store_true",
        help=f"confirm a backfill of more than {BACKFILL_CONFIRM:,} fires",
    )
    group.add_argument(
        "--stop-on-failure",
        action="store_true",
        help="stop at the first run that does not succeed (default: run every fire)",
    )


def wall_time(text: str) -> datetime:
    """An ISO time, kept naive when it has no offset: the trigger's zone is not known yet."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO time: {text!r} (use {TIME_FORMAT}, e.g. 2026-11-01T00:00)"
        ) from None
