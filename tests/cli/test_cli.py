"""The command line as a user runs it: real subprocesses, real signals, exit codes, messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests._paths import ROOT

SMALL = """
from dataflow import Workflow, startup, cronjob

class Small(Workflow):
    @startup
    def prepare(self):
        print("prepared", flush=True)

    @cronjob("0 0 1 1 *")
    def yearly(self):
        pass
"""


def write(tmp_path: Path, name: str, source: str) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAFLOW_STATE_PATH": str(tmp_path / "state.db"),
        **extra,
    }


def run_cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataflow", *args],
        cwd=tmp_path,
        env=env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=30,
    )


def start_cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dataflow", *args],
        cwd=tmp_path,
        env=env(tmp_path, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(
    proc: subprocess.Popen[str], event: str, timeout: float = 20
) -> dict[str, object]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{") and json.loads(line).get("event") == event:
            return json.loads(line)  # type: ignore[no-any-return]
    proc.kill()
    raise AssertionError(f"no {event!r} line; stderr: {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_until_signal_exits_zero(tmp_path: Path, backend: str, sig: signal.Signals) -> None:
    write(tmp_path, "small", SMALL)
    proc = start_cli(tmp_path, "small", "--backend", backend)
    wait_for_line(proc, "workflow running")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert '"event": "workflow stopped"' in out


def test_workflow_env_var_and_run_subcommand_are_equivalent(tmp_path: Path) -> None:
    write(tmp_path, "small", SMALL)
    proc = start_cli(tmp_path, WORKFLOW="small")
    assert wait_for_line(proc, "workflow starting")["workflow"] == "small"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_unknown_workflow_exits_2_listing_available(tmp_path: Path) -> None:
    write(tmp_path, "small", SMALL)
    write(tmp_path, "other", SMALL)
    result = run_cli(tmp_path, "nosuch")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dataflow: error: unknown workflow 'nosuch': available in workflows/: other, small;"
        " packaged examples: conrad, demo (or give a dotted module, module:Class, or a .py path)"
    ]


DEMO_LOOKALIKE = """
from dataflow import Workflow, startup

class Demo(Workflow):
    @startup
    def mine(self):
        pass
"""


def test_packaged_demo_runs_from_a_folder_without_workflows(tmp_path: Path) -> None:
    """No workflows/ folder: `demo` is the example shipped in the package, named `demo`."""
    result = run_cli(tmp_path, "check", "demo", "--json", DATAFLOW_STATE_PATH="")
    assert result.returncode == 0, result.stderr
    details = {check["kind"]: check["detail"] for check in json.loads(result.stdout)}
    assert details["import"] == "demo: workflow 'demo' (Demo), 3 triggers"
    assert details["state"].startswith(".dataflow/demo.db: ")  # the state file a clone used


def test_users_workflows_folder_wins_over_the_packaged_example(tmp_path: Path) -> None:
    """A user's own workflows/demo.py is run, not the example of the same name."""
    write(tmp_path, "demo", DEMO_LOOKALIKE)
    result = run_cli(tmp_path, "check", "demo", "--json")
    assert result.returncode == 0, result.stderr
    details = {check["kind"]: check["detail"] for check in json.loads(result.stdout)}
    assert details["import"] == "demo: workflow 'demo' (Demo), 1 trigger"


def test_syntax_error_shows_only_the_users_traceback(tmp_path: Path) -> None:
    write(tmp_path, "broken", "from dataflow import cronjob\n\ndef f(:\n    pass\n")
    result = run_cli(tmp_path, "broken")
    assert result.returncode == 2
    assert "broken.py" in result.stderr and "SyntaxError" in result.stderr
    assert "importlib" not in result.stderr and "dataflow/_cli/loader.py" not in result.stderr


def test_import_error_in_user_code_shows_its_line(tmp_path: Path) -> None:
    write(tmp_path, "fails", "import json\n\nvalue = json.loads('{')\n")
    result = run_cli(tmp_path, "fails")
    assert result.returncode == 2
    assert 'fails.py", line 3' in result.stderr and "JSONDecodeError" in result.stderr


def test_invalid_cron_expression_is_one_line_exit_2(tmp_path: Path) -> None:
    write(
        tmp_path,
        "badcron",
        "from dataflow import cronjob\n\n@cronjob('61 * * * *')\ndef job():\n    pass\n",
    )
    result = run_cli(tmp_path, "badcron")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'61 * * * *'" in lines[0] and "minute" in lines[0]


def test_startup_failure_exits_1_naming_the_handler(tmp_path: Path) -> None:
    write(
        tmp_path,
        "failing",
        """
        from dataflow import startup, cronjob

        @startup
        def connect_source():
            raise ConnectionRefusedError("source down")

        @cronjob("* * * * *")
        def job():
            print("must not run")
    """,
    )
    result = run_cli(tmp_path, "workflows/failing.py")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "dataflow: error: startup handler 'connect_source' failed: "
        "ConnectionRefusedError: source down"
    )
    assert "must not run" not in result.stdout


def test_module_with_two_workflows_needs_module_colon_class(tmp_path: Path) -> None:
    write(tmp_path, "two", SMALL + "\n\nclass Second(Small):\n    pass\n")
    result = run_cli(tmp_path, "two")
    assert result.returncode == 2
    assert "name one of two:Small, two:Second" in result.stderr


def test_workflow_without_triggers_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "empty", "x = 1\n")
    result = run_cli(tmp_path, "empty")
    assert result.returncode == 2
    assert "workflow 'empty' declares no triggers" in result.stderr


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    write(tmp_path, "small", SMALL)
    result = run_cli(tmp_path, "small", DATAFLOW_GRACE_PERIOD="soon")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "dataflow: error: DATAFLOW_GRACE_PERIOD='soon' is not a valid float"
    )


def test_version_prints_the_version_and_exits_0(tmp_path: Path) -> None:
    """`--version` answers `dataflow <version>` (the one in dataflow/_version.py), exit 0."""
    from dataflow._version import __version__

    result = run_cli(tmp_path, "--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"dataflow {__version__}\n", "")


def test_help_names_the_program_as_invoked_as_a_module(tmp_path: Path) -> None:
    """Under `python -m dataflow` the usage says so (the `dataflow` script: tests/test_wheel.py)."""
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m dataflow [-h] [--version] COMMAND")
    assert "`python -m dataflow NAME` is short for `python -m dataflow run NAME`" in result.stdout


def test_help_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom dataflow.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('pandas', 'pymongo', 'pyodbc', 'anyio') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env(tmp_path), capture_output=True, text=True, timeout=30
    )
    assert "python -m dataflow" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
