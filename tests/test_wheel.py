"""The installed package, not the clone: the wheel has what it needs, and a user who installs
it into a fresh venv can run the demo from an empty folder.

The venv gets its dependencies from the package index (pip's cache makes later runs fast).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dataflow._version import __version__

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("*.whl")
    return found


def test_wheel_holds_the_license_and_the_examples(wheel: Path) -> None:
    """LICENSE, the demo and conrad are in the wheel; its metadata names the free
    distribution name and only dependencies the package imports."""
    dist_info = f"dataflow_runtime-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        demo = archive.read("dataflow/examples/demo.py")
    assert {
        f"{dist_info}/licenses/LICENSE",
        "dataflow/examples/__init__.py",
        "dataflow/examples/demo.py",
        "dataflow/examples/conrad.py",
    } <= names
    assert demo == (ROOT / "workflows" / "demo.py").read_bytes()  # one source, not a copy
    headers = [line.partition(": ") for line in metadata.splitlines()]
    assert ("Name", ": ", "dataflow-runtime") in headers
    assert ("Version", ": ", __version__) in headers
    required = [value for key, _, value in headers if key == "Requires-Dist"]
    runtime = {value.split(">")[0] for value in required if ";" not in value}  # not extras
    assert "sniffio" in runtime and "croniter" not in runtime


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH to this checkout, no dataflow settings."""
    unset = ("PYTHONPATH", "WORKFLOW", "DEMO_DATA_DIR")
    keep = {k: v for k, v in os.environ.items() if k not in unset and not k.startswith("DATAFLOW_")}
    return {**keep, **extra}


def read_events(proc: subprocess.Popen[str], until: str, count: int) -> list[dict[str, Any]]:
    """JSON log lines up to and including the `count`-th `until` event (the demo logs every
    few seconds, so each readline returns within the deadline)."""
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(e["event"] == until for e in events) < count:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_installed_wheel_runs_the_demo_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    """Fresh venv outside the repository, `pip install` the wheel, then in an empty folder:
    `dataflow --version`, `dataflow --help`, and `python -m dataflow demo` moves rows until
    SIGINT, exit 0."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, script = venv / "bin" / "python", venv / "bin" / "dataflow"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
        check=True,
        timeout=900,
        env=clean_env(),
    )
    empty = tmp_path / "empty"
    empty.mkdir()

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=empty, env=clean_env(), capture_output=True, text=True, timeout=60
        )

    assert run(script, "--version").stdout == f"dataflow {__version__}\n"
    assert run(script, "--help").stdout.startswith("usage: dataflow [-h] [--version] COMMAND")
    where = run(python, "-c", "import dataflow; print(dataflow.__file__)").stdout
    assert Path(where.strip()).is_relative_to(venv)  # the installed copy, not this checkout

    proc = subprocess.Popen(
        [python, "-m", "dataflow", "demo"],
        cwd=empty,
        env=clean_env(DATAFLOW_LOG_FORMAT="json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        events = read_events(proc, "orders synced", count=2)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    seeded = [e for e in events if e["event"] == "shop seeded"]
    synced = [e for e in events if e["event"] == "orders synced"]
    assert seeded == [{**seeded[0], "orders": 20}]
    assert len(synced) == 2, f"the demo moved no rows twice; stderr: {err}"
    assert synced[0]["extracted"] == synced[0]["loaded"] >= 20  # the seeded orders, at least
    assert all(e["workflow"] == "demo" for e in synced)
    assert (empty / ".dataflow" / "demo.db").is_file()  # state file named after the workflow
    assert (empty / ".dataflow" / "demo" / "warehouse.db").is_file()
