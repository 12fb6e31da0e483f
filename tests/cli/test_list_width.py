"""`list` fits the terminal (100 columns when there is none): long cells wrap in their column,
nothing is cut; `--json` keeps every value whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dataflow._cli.tables import print_table
from dataflow.main import main
from tests.cli.test_inspect_cli import write_workflow

LONG_CRON = "0,5,10,15,20,25,30,35,40,45,50,55 6-18 * * 1-5"
ZONE = "America/Argentina/Buenos_Aires"


def many_triggers(count: int) -> str:
    jobs = "".join(
        f"""
    @cronjob("{LONG_CRON}", timezone="{ZONE}", overlap="queue_one", retries=3, timeout=600)
    def load_partition_{i:02d}_of_the_orders_table(self):
        pass
"""
        for i in range(count)
    )
    return f"from dataflow import Workflow, cronjob\n\nclass Wide(Workflow):{jobs}"


def list_wide(folder: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = write_workflow(folder, "wide", many_triggers(12))
    code = main(["list", str(path), "--state", str(folder / "none.db"), *extra])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


def cells(out: str, header: str, following: str) -> list[str]:
    """The text of one column, row by row: its wrapped lines joined back together."""
    lines = out.splitlines()
    start, end = lines[0].index(header), lines[0].index(following)
    rows, current = [], ""
    for line in lines[1:]:
        if not line:
            rows.append(current)
            current = ""
        else:
            current += line[start:end].strip() + " "
    return [*rows, current] if current else rows


def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)

    def not_a_terminal(fd: int = 1) -> os.terminal_size:
        raise OSError("not a terminal")

    monkeypatch.setattr(os, "get_terminal_size", not_a_terminal)


def test_a_long_schedule_and_many_triggers_fit_100_columns_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_terminal(monkeypatch)
    out = list_wide(tmp_path, "--next", "2", capsys=capsys)
    assert max(len(line) for line in out.splitlines()) <= 100
    names = cells(out, "TRIGGER", "KIND")
    assert [n.replace(" ", "") for n in names] == [
        f"load_partition_{i:02d}_of_the_orders_table" for i in range(12)
    ]
    for schedule in cells(out, "SCHEDULE / SOURCE", "POLICY"):  # wrapped, never cut
        assert schedule.replace(" ", "") == (LONG_CRON + ZONE).replace(" ", "")
    for policy in cells(out, "POLICY", "NEXT (ZONE)"):
        assert policy.split() == [
            "overlap=queue_one",
            "catchup=coalesce",
            "misfire_grace=60s",
            "timeout=600s",
            "retries=3",
            "retry_delay=1s",
        ]


def test_the_table_follows_the_terminal_width(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    narrow = list_wide(tmp_path, capsys=capsys)
    monkeypatch.setenv("COLUMNS", "200")
    wide = list_wide(tmp_path, capsys=capsys)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert max(len(line) for line in wide.splitlines()) > 100
    assert LONG_CRON in wide and LONG_CRON not in narrow


def test_json_keeps_the_long_values_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    no_terminal(monkeypatch)
    found = json.loads(list_wide(tmp_path, "--json", capsys=capsys))
    assert len(found["triggers"]) == 12
    assert {(t["source"], t["timezone"]) for t in found["triggers"]} == {(LONG_CRON, ZONE)}


def test_a_word_longer_than_its_column_is_broken_not_cut(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    print_table(("A", "B"), [["x", "y" * 70]], wrap=True)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 30
    assert "".join(line[3:] for line in lines[1:]) == "y" * 70
