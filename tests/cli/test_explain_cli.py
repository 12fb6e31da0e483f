"""`explain NAME TRIGGER`: one line per fire time from the fire ledger of a state file a real
(in-process, fake-clock) run left, `--json`, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from dataflow import Runtime, Settings
from dataflow._cli.loader import load_workflow
from dataflow.main import main
from dataflow.testing import FakeClock
from tests._runtime import START, until

TICK = """
from dataflow import Workflow, cronjob, startup

class Tick(Workflow):
    @startup
    def prepare(self):
        pass

    @cronjob("* * * * *", timezone="UTC")
    def tick(self):
        pass
"""


async def _two_fires(workflow_file: Path, state: Path) -> None:
    clock = FakeClock(START)
    settings = Settings(state_path=state)
    runtime = Runtime(load_workflow(str(workflow_file))(), settings=settings, clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.run)
        await until(runtime.started.is_set)
        for minute in (1, 2):
            await until(lambda: clock.next_deadline() is not None)
            clock.advance(START + timedelta(minutes=minute) - clock.now())
            await until(lambda m=minute: _ended(runtime) == m)  # type: ignore[misc]
        runtime.stop()
    runtime.state.close()


def _ended(runtime: Runtime) -> int:
    return sum(r.ended_at is not None for r in runtime.state.runs("tick", "tick", limit=10))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("explain")
    (folder / "workflows").mkdir()
    (folder / "workflows" / "tick.py").write_text(textwrap.dedent(TICK))
    anyio.run(_two_fires, folder / "workflows" / "tick.py", folder / "state.db")
    return folder


def explain(folder: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    workflow = str(folder / "workflows" / "tick.py")
    code = main(["explain", workflow, *args, "--state", str(folder / "state.db")])
    out, err = capsys.readouterr()
    return code, out, err


def test_at_a_fire_time_says_it_ran_with_its_run(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = explain(folder, capsys, "tick", "--at", "2026-03-02T09:01")
    assert code == 0
    assert out.startswith("2026-03-02 09:01 UTC: ran: run ")
    assert out.rstrip().endswith(", succeeded in 0.0s")


def test_since_lists_every_fire_time_up_to_now_oldest_first(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = explain(folder, capsys, "tick", "--since", "2026-03-02T09:00", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["schedule"] == "* * * * *" and answer["timezone"] == "UTC"
    assert answer["more"] is True and len(answer["fires"]) == 1000  # months of minutes to now
    fires = answer["fires"][:3]  # then every minute to now, none in the ledger
    assert [f["fire_at"] for f in fires] == [
        "2026-03-02T09:00:00+00:00",
        "2026-03-02T09:01:00+00:00",
        "2026-03-02T09:02:00+00:00",
    ]
    assert [f["outcome"] for f in fires] == [None, "ran", "ran"]
    assert fires[1]["run"]["status"] == "succeeded"
    assert fires[0]["line"].startswith("2026-03-02 09:00 UTC: no ledger entry")


def test_a_time_that_is_no_fire_time_names_the_nearest(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = explain(folder, capsys, "tick", "--at", "2026-03-02T09:01:30")
    assert code == 0
    assert out == (
        "2026-03-02 09:01 UTC is not a fire time of `* * * * *`; the nearest are "
        "2026-03-02 09:01 UTC and 2026-03-02 09:02 UTC\n"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("nope",), "has no trigger 'nope'"),
        (("prepare",), "trigger prepare is a startup trigger; only cron triggers"),
        (("tick", "--at", "yesterday"), "not an ISO time: 'yesterday'"),
        (("tick", "--at", "2026-03-02", "--since", "2026-03-01"), "not allowed with argument"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    folder: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], says: str
) -> None:
    code, out, err = (2, "", "")
    try:
        code, out, err = explain(folder, capsys, *args)
    except SystemExit as stop:  # argparse's own refusals
        code, err = int(stop.code or 0), capsys.readouterr().err
    assert code == 2 and out == ""
    assert says in err and len(err.strip().splitlines()) == 1, err
