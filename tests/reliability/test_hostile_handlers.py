"""A real `python -m dataflow` whose handler raises what no handler should (SystemExit,
KeyboardInterrupt, a lone surrogate in its message): the process keeps running, the run is
recorded failed, the other trigger keeps firing, SIGTERM still ends it with 0."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.reliability._proc import runs, started, write_workflow

pytestmark = pytest.mark.slow

WORKFLOW = """
from dataflow import Workflow, cronjob


class Hostile(Workflow):
    @cronjob("* * * * * *")
    {prefix}def bad(self):
        raise {error}

    @cronjob("* * * * * *")
    def good(self):
        pass
"""


@pytest.mark.parametrize(
    ("prefix", "error"),
    [
        ("", "SystemExit(3)"),
        ("async ", "SystemExit(3)"),
        ("", "KeyboardInterrupt()"),
        ("async ", "GeneratorExit()"),
        ("", "ValueError('bad byte \\udcff')"),
    ],
)
def test_a_hostile_handler_does_not_stop_the_process(
    tmp_path: Path, prefix: str, error: str
) -> None:
    write_workflow(tmp_path, "hostile", WORKFLOW.format(prefix=prefix, error=error))
    with started(tmp_path, "run", "hostile") as process:
        process.wait_for("run failed", trigger="bad", count=2)
        first = len(process.events("run finished", trigger="good", status="succeeded"))
        process.wait_for("run finished", trigger="good", status="succeeded", count=first + 2)
        assert process.proc.poll() is None
        assert process.stop(signal.SIGTERM).code == 0
    bad = runs(tmp_path / "state.db", "bad")
    assert bad and {row.status for row in bad} == {"failed"}
    assert all(error.split("(")[0] in (row.error or "") for row in bad)
