"""A workflow without a change stream never loads the MongoDB driver: pymongo and bson are
~10 MB of a runtime's resident memory (issue 16's RSS target), paid only by workflows that use
them. Checked in a real `python -m dataflow run` with the status page served."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.reliability._proc import started, write_workflow

CRON_ONLY = """
import sys
import signal
from pathlib import Path

from dataflow import Workflow, cronjob


class Plain(Workflow):
    @cronjob("* * * * * *")
    def tick(self):
        loaded = sorted(m for m in ("pymongo", "bson", "psycopg") if m in sys.modules)
        (Path(__file__).parent.parent / "loaded.txt").write_text(" ".join(loaded) or "none")
"""


def test_a_cron_workflow_never_loads_the_mongodb_driver(tmp_path: Path) -> None:
    write_workflow(tmp_path, "plain", CRON_ONLY)
    with started(tmp_path, "run", "plain", "--metrics-port", "0") as process:
        process.wait_for("serving metrics")
        process.wait_for("run finished")
        assert process.stop(signal.SIGTERM).code == 0
    assert (tmp_path / "loaded.txt").read_text() == "none"
