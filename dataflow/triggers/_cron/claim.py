"""A cron fire's claim: the one store call that makes a fire this process's and the trigger's
last fire, with the ledger rows and skipped records of the fires it stands for (`Store`).

Once the workflow is stopping no fire is claimed: a claim that waited for a worker thread
through the stop's signal returns unwritten, so its fire (and the late fires it stood for)
stays after the trigger's last fire, which the restart catches up and records like any fire
due while the workflow was down. Every fire up to a last fire is accounted for when the stop
ends (a claim and its batch are one transaction), and the stop does not wait for claims:
under overload every trigger has one queued when the signal comes, and writing them (then
starting runs for them, to cancel at the grace's end) held a stop up by seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dataflow._core.clock import iso
from dataflow._core.errors import StateStoreError
from dataflow._core.logs import get_logger
from dataflow.state import FireEntry, RunRecord
from dataflow.state._leases import Claim, Leases
from dataflow.triggers._cron.overlap import Overlap
from dataflow.triggers.base import TriggerContext

log = get_logger("dataflow.trigger")


@dataclass(frozen=True)
class FireClaim:
    won: bool  # this process has the fire (`Claim`)
    running_on: str | None = None  # won, but this live replica runs the trigger: skip it
    stopped: bool = False  # not claimed: the workflow was stopping (the restart catches up)
    unreachable: bool = False  # not claimed: the shared store did not answer (see `rejoin.py`)


async def claim_fire(
    ctx: TriggerContext,
    trigger: str,
    overlap: Overlap,
    fire_at: datetime,
    notes: Sequence[FireEntry] = (),
    skipped: Sequence[RunRecord] = (),
) -> FireClaim:
    """Claim the fire, which becomes the last fire (`notes`: ledger rows of fires it runs for;
    `skipped`: records of late fires not run; all written by the claim's store call). Not
    won: another replica runs it, the workflow is stopping, or the store cannot be reached
    (then no replica may be the one that runs it twice: a replica that lost the database
    claims nothing until it has it back)."""
    claiming = _claiming(ctx, trigger, overlap, fire_at, notes, skipped)
    try:
        claim = await ctx.state.call(claiming)
    except StateStoreError as exc:
        if not isinstance(ctx.state, Leases):  # a store of its own (SQLite): its error ends it
            raise
        log.debug("fire not claimed: state store unreachable", trigger=trigger, error=str(exc))
        return FireClaim(False, unreachable=True)
    if not claim.won and not claim.stopped:
        log.debug("fire claimed by another replica", trigger=trigger, fire_at=iso(fire_at))
    return claim


def _claiming(
    ctx: TriggerContext,
    trigger: str,
    overlap: Overlap,
    fire_at: datetime,
    notes: Sequence[FireEntry],
    skipped: Sequence[RunRecord],
) -> Callable[[], FireClaim]:
    """The store call, in a worker thread; it also counts and logs there the skipped records
    it wrote, as the runner does its own (not on the loop, which a slow log pipe would hold)."""
    state = ctx.state
    store_claim: Callable[..., bool | Claim] = (
        state.claim_fire_alone  # overlap=skip across replicas: looks at their runs too
        if overlap is Overlap.SKIP and isinstance(state, Leases)
        else state.claim_fire
    )
    args = (ctx.workflow, trigger, fire_at, *((notes,) if notes else ()))  # none: as before
    late: dict[str, Any] = {"skipped": skipped} if skipped else {}

    def claim() -> FireClaim:
        # Read when the claim would be written (an attribute read: safe from a thread).
        if ctx.stopping.is_set():
            return FireClaim(False, stopped=True)
        outcome = store_claim(*args, **late)
        won = outcome if isinstance(outcome, Claim) else Claim(outcome)
        if won.won and skipped:
            ctx.runner.skipped_written(skipped)
        return FireClaim(won.won, won.running_on)

    return claim
