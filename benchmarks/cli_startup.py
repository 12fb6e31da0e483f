"""5. Command-line start-up: `python -m dataflow --help` vs `python -c pass`, wall time.

Both commands run with the same interpreter, alternately, `cli_runs` times each after one
untimed warm-up of each (so both read from a warm page cache and compiled bytecode). The row
shows the medians; the target is on the difference.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from benchmarks._common import ROOT, Row, Sizes, ms, ratio, verdict

TARGET_OVERHEAD = 0.3  # seconds over the bare interpreter
HELP = (sys.executable, "-m", "dataflow", "--help")
BARE = (sys.executable, "-c", "pass")


def _wall(cmd: tuple[str, ...]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(runs: int) -> tuple[float, float]:
    """Median wall seconds of `--help` and of the bare interpreter."""
    _wall(HELP), _wall(BARE)
    helps: list[float] = []
    bares: list[float] = []
    for _ in range(runs):
        helps.append(_wall(HELP))
        bares.append(_wall(BARE))
    return statistics.median(helps), statistics.median(bares)


def run(sizes: Sizes) -> list[Row]:
    helped, bare = measure(sizes.cli_runs)
    overhead = helped - bare
    met = verdict(overhead <= TARGET_OVERHEAD)
    return [
        Row(
            f"5. `python -m dataflow --help` vs `python -c pass`, median of {sizes.cli_runs}",
            ms(helped),
            ms(bare),
            ratio(helped, bare),
            f"≤ 0.3 s over bare (+{overhead * 1000:.0f} ms): {met}",
        )
    ]
