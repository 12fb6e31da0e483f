"""What a change stream loses, said loudly: an event no run could handle goes to the dead-letter
table (as its bytes and as text); history lost from the oplog stops the trigger or is recorded
as a gap."""

from __future__ import annotations

from bson.raw_bson import RawBSONDocument
from pymongo.errors import PyMongoError

from dataflow._core.errors import ChangeStreamStopped, one_line
from dataflow._core.logs import error_text, get_logger
from dataflow.triggers._changestream.checkpoint import Checkpoint, dumps
from dataflow.triggers._changestream.policy import ChangeStreamPolicy
from dataflow.triggers.base import RunOutcome, StreamStats, TriggerContext

log = get_logger("dataflow.trigger")


def dead_letter(
    ctx: TriggerContext,
    trigger: str,
    stats: StreamStats,
    raw: RawBSONDocument,
    shown: str,
    why: str,
    error: str = "",
) -> None:
    """Keep the event as its bytes (a retry decodes them again) and as text to read. Durable
    before it returns: the stream's position may move past the event only after this."""
    letter = ctx.state.add_dead_letter(ctx.workflow, trigger, shown, why, bytes(raw.raw))
    stats.dead_letters += 1
    log.error(
        "change event dead-lettered",
        dead_letter=letter,
        error=error or why,
        event_id=dumps(raw.get("_id")),
    )


def one_line_error(outcome: RunOutcome) -> str:
    return one_line(outcome.error, with_type=True) if outcome.error else outcome.status.value


def traceback_text(outcome: RunOutcome) -> str:
    return outcome.status.value if outcome.error is None else error_text(outcome.error)


def history_lost(
    policy: ChangeStreamPolicy,
    namespace: str,
    checkpoint: Checkpoint,
    stats: StreamStats,
    exc: PyMongoError,
) -> None:
    """Raise ChangeStreamStopped (`on_history_lost="fail"`), or record the gap, say so, and
    forget the lost position (the next open starts from now)."""
    reason = one_line(exc, with_type=True)
    where = f"{namespace}: the saved position is no longer in the oplog ({reason})"
    if policy.on_history_lost == "fail":
        raise ChangeStreamStopped(
            f"change stream history lost on {where}; on_history_lost='fail' stops here: "
            "re-sync the data, then pass on_history_lost='restart_from_now' once, or "
            "delete the saved position, to start from now"
        ) from exc
    gap = checkpoint.record_gap(reason)
    stats.history_gaps += 1
    log.error(
        "CHANGE STREAM HISTORY LOST: restarting from now; events since the saved "
        "position were NOT delivered",
        namespace=namespace,
        gap=gap,
    )
    checkpoint.forget()
