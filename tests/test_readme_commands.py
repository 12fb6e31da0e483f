"""The README's set-up commands: what they say matches what CI and the project run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    """The command lines of the first `sh` block under README's "## Set up"."""
    section = (ROOT / "README.md").read_text().split("## Set up", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_each_command_makes_and_activates_its_own_venv() -> None:
    """Each line works on its own on a fresh clone: no step left to an earlier line."""
    run, test = setup_commands()
    prefix = "python3 -m venv .venv && . .venv/bin/activate && pip install -e "
    assert run == prefix + ". && python -m dataflow demo"
    assert test == prefix + "'.[test]' && pytest"


def test_ci_runs_the_readme_test_command_as_written() -> None:
    """.ci/run calls the README's test command verbatim (it may only add `|| exit`)."""
    test = setup_commands()[1]
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in lines if line.startswith(test)] == [f"{test} || exit"]
