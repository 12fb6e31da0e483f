"""The README's first command: the demo moves rows end to end, on both backends."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._paths import ROOT


def warehouse_rows(data_dir: Path) -> int:
    path = data_dir / "warehouse.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM orders").fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_moves_rows_and_stops_cleanly_on_sigint(tmp_path: Path, backend: str) -> None:
    data_dir = tmp_path / "demo"
    env = {
        **os.environ,
        "DEMO_DATA_DIR": str(data_dir),
        "DATAFLOW_STATE_PATH": str(tmp_path / "state.db"),
        "DATAFLOW_BACKEND": backend,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataflow", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while warehouse_rows(data_dir) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert warehouse_rows(data_dir) >= 20, "the seeded orders never reached the warehouse"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert '"event": "orders synced"' in out
    with sqlite3.connect(data_dir / "warehouse.db") as db:
        customers = {row[0] for row in db.execute("SELECT customer FROM orders")}
    assert customers <= {"Ada", "Grace", "Linus", "Barbara", "Ken"}  # cleaned by pandas
