"""`kill -9` of a running `python -m dataflow`, then a restart on the same state file.

A change stream resumes from the position its last committed batch saved (counted end to end:
none lost; handled twice at most the `2 * batch_events` events after that position, as the
README's "Delivery guarantees" say). A cron fire whose run was cut off
is recorded `interrupted` and handled by the trigger's catch-up policy at the restart: run again
once (`all`), folded into one catch-up run (`coalesce`), or only logged (`none`); never run twice,
never dropped without a word.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests._change_stream_peer import change_streams, open_oplog, position_of, token
from tests.reliability._proc import runs, started, state_value, wait_for_file, write_workflow
from tests.reliability._streams import handled_ids

pytestmark = pytest.mark.slow

EVENTS = 300
BATCH = 20  # events per batch: the kill lands after several batch ends
DOWNTIME = 1.2  # seconds between the kill and the restart

STREAM = """
import time

from dataflow import Workflow, mongodb_change_stream


class Feed(Workflow):
    @mongodb_change_stream({url!r}, "shop", "orders", max_await_time=0.2, batch_events={batch})
    def orders(self, change):
        time.sleep(0.003)  # some work, so the kill lands mid-handler as often as not
        with open("handled.txt", "a") as out:
            out.write(f"{{change['documentKey']['_id']}}\\n")
"""

CRON = """
import time
from pathlib import Path

from dataflow import Workflow, cronjob, current_run


class Nightly(Workflow):
    @cronjob("* * * * * *", catchup={catchup!r}, misfire_grace=600)
    def load(self):
        fire = current_run().scheduled_at.isoformat()
        if not Path("killed").exists():  # before the kill: hang until the process dies
            Path("hanging").write_text(fire)
            time.sleep(600)
        with open("fires.txt", "a") as out:
            out.write(fire + "\\n")
"""


def test_kill_9_mid_change_stream_resumes_after_the_last_handled_event(tmp_path: Path) -> None:
    """300 events; `kill -9` after 100 or so (asyncio); the restart (trio) resumes with
    `startAfter` = the saved token, that of the last batch committed: every event up to it was
    handled, and at most two batches after it (the one saved but not yet committed, the one in
    hand with the event in flight). Every event handled, in order; handled twice only the events
    after the saved position, at most `2 * BATCH` (issue 16: positions are saved per batch; the
    test asserted one save per event before)."""
    state = tmp_path / "state.db"
    with open_oplog() as oplog:
        write_workflow(tmp_path, "feed", STREAM.format(url=oplog.mongo.url("shop"), batch=BATCH))
        with started(tmp_path, "run", "feed", "--backend", "asyncio") as first:
            first.wait_for("workflow running")
            oplog.updates(EVENTS)
            first.wait_until(lambda: len(handled_ids(tmp_path)) >= 100, "100 events handled")
            first.signal(signal.SIGKILL)
            assert first.wait().code == -signal.SIGKILL
        before_kill = handled_ids(tmp_path)
        saved = _saved_position(state)
        assert before_kill == list(range(1, len(before_kill) + 1))
        assert 0 <= len(before_kill) - saved <= 2 * BATCH  # handled, not yet durably saved

        with started(tmp_path, "run", "feed", "--backend", "trio") as second:
            second.wait_until(
                lambda: len(handled_ids(tmp_path)) >= len(before_kill) + EVENTS - saved,
                "the rest of the events",
            )
            result = second.stop(signal.SIGTERM)
        assert result.code == 0, result.stderr
        assert change_streams(oplog.mongo)[-1] == {"startAfter": token(saved)}

    everything = handled_ids(tmp_path)
    assert sorted(set(everything)) == list(range(1, EVENTS + 1))  # none lost
    assert everything[len(before_kill) :] == list(range(saved + 1, EVENTS + 1))  # in order
    twice = sorted(n for n in set(everything) if everything.count(n) > 1)
    assert twice == before_kill[saved:]  # at most the event in flight at the kill
    statuses = [row.status for row in runs(state)]
    assert set(statuses) <= {"succeeded", "interrupted"} and statuses.count("interrupted") <= 1


@pytest.mark.parametrize("catchup", ["all", "coalesce", "none"])
def test_kill_9_mid_cron_run_is_handled_by_the_catch_up_policy(
    tmp_path: Path, catchup: str
) -> None:
    """A per-second job's run hangs (later fires are skipped, the last fire time moves on);
    `kill -9`. At the restart the cut-off run is recorded `interrupted` and logged, and the
    missed fires (it and those since the last fire) go through the catch-up policy, before any
    new fire; no fire time runs twice."""
    state = tmp_path / "state.db"
    write_workflow(tmp_path, "nightly", CRON.format(catchup=catchup))
    with started(tmp_path, "run", "nightly") as first:
        hanging = datetime.fromisoformat(wait_for_file(tmp_path / "hanging", process=first))
        first.wait_for("run skipped")  # the next fire came while it hung
        first.signal(signal.SIGKILL)
        assert first.wait().code == -signal.SIGKILL
    last_fire = datetime.fromisoformat(state_value(state, "load", "last_fire") or "")
    assert runs(state, "load")[0].status == "running"  # cut off
    (tmp_path / "killed").write_text("x")
    time.sleep(DOWNTIME)  # the process stays down while fires come due: they are missed too

    with started(tmp_path, "run", "nightly") as second:
        missed = second.wait_for("missed fires after downtime", catchup=catchup)
        interrupted = second.wait_for("run interrupted by a previous stop", trigger="load")
        second.wait_until(
            lambda: _fires(tmp_path) and _fires(tmp_path)[-1] > _restart(missed),
            "a regular fire after the catch-up",
        )
        assert second.stop(signal.SIGTERM).code == 0

    assert datetime.fromisoformat(interrupted["scheduled_at"]) == hanging
    assert missed["missed"] >= 2  # the cut-off fire and at least one that came due while down
    due = [last_fire + timedelta(seconds=s) for s in range(1, missed["missed"])]
    expected = {"all": [hanging, *due], "coalesce": [max([hanging, *due])], "none": []}[catchup]
    fires = _fires(tmp_path)
    assert fires[: len(expected)] == expected  # the catch-up, before anything else
    assert all(fire > max([hanging, *due]) for fire in fires[len(expected) :])
    assert len(fires) == len(set(fires))  # no fire time ran twice
    by_fire = [row.status for row in runs(state, "load") if row.scheduled_at == hanging.isoformat()]
    assert by_fire == ["interrupted", "succeeded"] if catchup == "all" else ["interrupted"]


def _saved_position(state: Path) -> int:
    from dataflow.triggers._changestream.checkpoint import loads

    raw = state_value(state, "orders", "resume_token:shop.orders")
    assert raw is not None
    return position_of(loads(raw))


def _fires(project: Path) -> list[datetime]:
    path = project / "fires.txt"
    lines = path.read_text().split() if path.exists() else []
    return [datetime.fromisoformat(line) for line in lines]


def _restart(missed: dict[str, object]) -> datetime:
    """When the restarted process looked for missed fires (its log line's time)."""
    return datetime.fromisoformat(str(missed["timestamp"]).replace("Z", "+00:00"))
