"""`explain NAME TRIGGER`: what became of a cron trigger's fire times (`runtime._explain`)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from dataflow._cli.commands import _existing_state, load
from dataflow._cli.tables import print_json
from dataflow.runtime._explain import (
    MAX_FIRES,
    FireAccount,
    cron_schedule_of,
    explain_at,
    explain_since,
)


def explain_command(args: argparse.Namespace) -> int:
    settings, workflow_class = load(args)
    declared = workflow_class.declared_trigger(args.trigger)  # unknown: one line, exit 2
    schedule = cron_schedule_of(declared)
    now = datetime.now(UTC)
    store = _existing_state(settings, workflow_class)
    name, trigger = workflow_class.workflow_name, declared.name
    try:
        if args.at is not None:
            found = explain_at(store, name, trigger, schedule, args.at, now)
        else:
            found = [*explain_since(store, name, trigger, schedule, args.since, now)]
    finally:
        if store is not None:
            store.close()
    if args.json:
        fires = [f.to_json(now) if isinstance(f, FireAccount) else {"line": f} for f in found]
        zone, expression = schedule.timezone.key, schedule.expression
        more = len(found) >= MAX_FIRES  # the first MAX_FIRES only: a later --since goes on
        shape = {"trigger": trigger, "timezone": zone, "schedule": expression, "more": more}
        print_json({**shape, "fires": fires})
    else:
        for account in found:
            print(account.line if isinstance(account, FireAccount) else account)
        if len(found) >= MAX_FIRES:
            print(f"(the first {MAX_FIRES} fire times only: give a later --since for more)")
    return 0
