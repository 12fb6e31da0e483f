"""The benchmark suite still runs end to end, at a tiny size; no timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._paths import ROOT

pytestmark = pytest.mark.slow


def test_quick_run_prints_and_writes_a_row_for_every_benchmark(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` exits 0, prints the table and writes it with the machine."""
    output = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| what | dataflow | baseline | ratio | target |" in done.stdout
    written = output.read_text()
    assert done.stdout.strip() in written
    rows = [line for line in written.splitlines() if line.startswith("| ")][1:]
    benchmarks = ("1. fire lag", "2. start-up", "2. RSS", "2. idle CPU", "4. MongoDB", "5. ")
    for benchmark in (*benchmarks, "6. overload fires accounted", "7. RSS after start"):
        assert any(row.startswith(f"| {benchmark}") for row in rows), benchmark
    assert any(row.startswith(("| 3. ", "| change_events: not run")) for row in rows)
    assert any(row.startswith(("| 4. SQL", "| load_sql: not run")) for row in rows)
    assert any(row.startswith(("| 8. ", "| stream_failover: not run")) for row in rows)
    assert not [row for row in rows if ": failed" in row]
    assert "## Machine" in written and "CPU:" in written


def test_sizes_can_be_set_one_by_one() -> None:
    """A size flag overrides one size of the chosen preset and leaves the others alone."""
    from benchmarks.__main__ import parse_args, sizes_from

    sizes = sizes_from(parse_args(["--quick", "--fires", "7", "--idle", "0.25"]))
    assert (sizes.fires, sizes.idle, sizes.parallel) == (7, 0.25, True)
    assert sizes_from(parse_args([])).triggers == 10_000
