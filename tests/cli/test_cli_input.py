"""Bad command-line input is one line and exit 2; a closed pipe ends quietly; typos are caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_cli import SMALL, env, run_cli, write

pytestmark = pytest.mark.slow


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list", "small", "--next", "abc"], "--next: expected a whole number from 1 to"),
        (["list", "small", "--next", "1e20"], "not '1e20'"),
        (["history", "small", "--limit", "99999999999999999999"], "--limit: expected a whole"),
        (["history", "small", "--limit", "0"], "--limit: expected a whole number from 1"),
        (["run", "small", "--grace-period", "-1"], "--grace-period: expected a number of seconds"),
        (["run", "small", "--grace-period", "nan"], "not 'nan'"),
        (["run", "small", "--metrics-port", "99999"], "--metrics-port: expected a whole number"),
        (["check", "small", "--timeout", "inf"], "--timeout: expected a number of seconds"),
        (["histroy", "small"], "unknown command 'histroy' (did you mean 'history'?)"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_option(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    write(tmp_path, "small", SMALL)
    line = one_error_line(run_cli(tmp_path, *args))
    assert expected in line


@pytest.mark.parametrize(
    "args",
    [
        ["history", "small", "--trigger", "nosuch"],
        ["trigger", "small", "nosuch"],
    ],
)
def test_an_unknown_trigger_is_bad_input_in_every_command(tmp_path: Path, args: list[str]) -> None:
    write(tmp_path, "small", SMALL)
    line = one_error_line(run_cli(tmp_path, *args))
    assert "has no trigger 'nosuch': it has prepare, yearly" in line


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`dataflow list --json | head -c 1`: no BrokenPipeError traceback, SIGPIPE's status."""
    write(tmp_path, "small", SMALL)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataflow", "list", "small", "--json", "--next", "1000"],
        cwd=tmp_path,
        env=env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == "{"
    proc.stdout.close()  # the reader goes away before the output ends
    stderr = proc.stderr.read()
    assert proc.wait(timeout=30) == 141, stderr
    assert stderr == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATAFLOW_GRACE_PERIOD", "nan"),
        ("DATAFLOW_GRACE_PERIOD", "-1"),
        ("DATAFLOW_GRACE_PERIOD", "inf"),
        ("DATAFLOW_MAX_WORKER_THREADS", "0"),
        ("DATAFLOW_METRICS_PORT", "99999"),
        ("DATAFLOW_METRICS_PORT", "-5"),
        ("DATAFLOW_HISTORY_DAYS", "0"),
        ("DATAFLOW_HISTORY_MAX_RUNS_PER_TRIGGER", "0"),
        ("DATAFLOW_REPLICA_TTL", "1"),
        ("DATAFLOW_REPLICA_ID", " "),
    ],
)
def test_out_of_range_settings_are_refused_before_anything_starts(
    tmp_path: Path, variable: str, value: str
) -> None:
    """A NaN grace period or no worker threads is bad input at start, not a traceback at stop."""
    write(tmp_path, "small", SMALL)
    line = one_error_line(run_cli(tmp_path, "run", "small", **{variable: value}))
    assert f"{variable}=" in line and "is not valid: use" in line
    assert not (tmp_path / "state.db").exists()  # refused before the state file is created


STREAM = """
from dataflow import Workflow, mongodb_change_stream

class Feed(Workflow):
    @mongodb_change_stream("mongodb://127.0.0.1:1/?replicaSet=rs0", "shop", "orders")
    def handle(self, change_event):
        print("handled", change_event)
"""


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("[1, 2]", "--payload must be a JSON object"),
        ('"text"', "--payload must be a JSON object"),
        ("NaN", "NaN is not JSON"),
        ('{"_id": {"$oid": "zz"}}', "--payload is not valid Extended JSON"),
        ('{"d": {"$date": "nope"}}', "--payload is not valid Extended JSON"),
        ("[" * 20_000 + "]" * 20_000, "nested too deeply"),
    ],
    ids=["list", "string", "nan", "bad-oid", "bad-date", "deep"],
)
def test_a_bad_change_event_payload_is_one_line(
    tmp_path: Path, payload: str, expected: str
) -> None:
    write(tmp_path, "feed", STREAM)
    line = one_error_line(run_cli(tmp_path, "trigger", "feed", "handle", "--payload", payload))
    assert expected in line


def test_a_workflow_that_exits_while_importing_is_an_error(tmp_path: Path) -> None:
    """`sys.exit(0)` at import would read as a clean stop to a supervisor: it is bad input."""
    write(tmp_path, "quits", "import sys\nsys.exit(0)\n")
    result = run_cli(tmp_path, "run", "quits")
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first == (
        "dataflow: error: workflow 'workflows/quits.py' failed to import: "
        "the module called sys.exit(0) while being imported"
    )


@pytest.mark.parametrize("after", ["9999-12-31T23:59:59", "0001-01-01T00:00:00"])
def test_list_at_the_ends_of_time_shows_what_exists(tmp_path: Path, after: str) -> None:
    """Near datetime's limits there are fewer (or no) fire times to show, not a traceback."""
    write(tmp_path, "small", SMALL)
    result = run_cli(tmp_path, "list", "small", "--after", after, "--json")
    assert result.returncode == 0 and result.stderr == ""
    assert "yearly" in result.stdout
