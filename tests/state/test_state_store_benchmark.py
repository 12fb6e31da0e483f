"""The state store benchmark script still runs, at a tiny size; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

from benchmarks.state_store import build_release_file, measure


def test_the_benchmark_measures_a_release_file_and_prunes_it(tmp_path: Path) -> None:
    """2,000 old runs: every row is measured, and pruning takes all but the capped ones."""
    path = tmp_path / "state.db"
    build_release_file(path, 2_000)
    found = measure(path)
    assert "mark_interrupted" in found and "file size per 1,000 runs" in found
    assert any(row.startswith("prune all (") for row in found)
    assert "2,001 runs" in found["file size per 1,000 runs"]
