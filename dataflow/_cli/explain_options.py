"""`explain NAME TRIGGER [--at TIME | --since TIME]`: the command's arguments (light: the parser
imports it for `--help`); its body is `_cli.explain`."""

from __future__ import annotations

import argparse
from typing import Any

from dataflow._cli.backfill_options import TIME_FORMAT, wall_time


def add_explain(commands: Any) -> None:
    explain = commands.add_parser(
        "explain",
        help="why a cron trigger's fire ran or not: one line per fire time",
        description="What became of each fire time of a cron trigger, from the fire ledger: "
        "ran (run, status, duration), skipped by overlap, coalesced, missed past the grace, "
        "caught up after downtime, moved by a DST gap, backfilled. A time without offset is "
        f"in the trigger's zone ({TIME_FORMAT}). Without --at or --since: its last 10 fires.",
    )
    explain.add_argument("workflow", metavar="NAME", help="the workflow (as for `run`)")
    explain.add_argument("trigger", metavar="TRIGGER", help="the cron trigger's name")
    when = explain.add_mutually_exclusive_group()
    when.add_argument("--at", type=wall_time, metavar="TIME", help="the fire at TIME")
    when.add_argument(
        "--since", type=wall_time, metavar="TIME", help="every fire time from TIME to now"
    )
    explain.add_argument(
        "--state",
        metavar="PATH|URL",
        help="state file (DATAFLOW_STATE_PATH) or postgresql:// URL (DATAFLOW_STATE_URL)",
    )
    explain.add_argument("--json", action="store_true", help="print JSON instead of lines")
    explain.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    from dataflow._cli.explain import explain_command

    return explain_command(args)
