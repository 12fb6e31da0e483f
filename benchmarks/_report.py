"""The results table as markdown, with the date and a description of the machine it ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmarks._common import ROOT, Row

PACKAGES = ("anyio", "trio", "APScheduler", "pymongo", "mockupdb", "pyodbc", "structlog")


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| what | dataflow | baseline | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = (row.what, row.dataflow, row.baseline, row.ratio, row.target or "—")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def document(rows: Sequence[Row], *, command: str, started: datetime, load: str) -> str:
    finished = datetime.now(UTC)
    missed = [f"{row.what}: {row.target}" for row in rows if "missed" in row.target]
    parts = [
        "# dataflow benchmarks: results",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC with `{command}`, every "
        "row in this one run, on this machine. `ratio` is dataflow / baseline of the row's "
        "key number (for times and sizes lower is better; see README.md for each row).",
        "",
        table(rows),
        "",
        "## Targets missed",
        "",
        *([f"- {what}" for what in missed] or ["- none"]),
        "",
        "## Machine",
        "",
        *[f"- {line}" for line in machine_description()],
        f"- load average (1/5/15 min) at start {load}, at end {load_average()}: other work "
        "shared the machine when this is not close to 0",
        "",
    ]
    return "\n".join(parts)


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def machine_description() -> list[str]:
    return [
        f"CPU: {_cpu_model()}, {os.cpu_count()} logical cores; memory {_memory_gib():.0f} GiB",
        f"OS: {_os_name()}, Linux {platform.release()} ({platform.machine()})",
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        "packages: " + ", ".join(_version(name) for name in PACKAGES),
        f"PostgreSQL: {_postgres()}",
        f"source: {_git_revision()}",
    ]


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _version(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} (not installed)"


def _postgres() -> str:
    """The server's version and the ODBC driver's, as the load benchmark reaches them."""
    try:
        import pyodbc

        from benchmarks.load_sql import CONNECTION

        cnxn = pyodbc.connect(CONNECTION, autocommit=True, timeout=3)
        try:
            server = cnxn.execute("SHOW server_version").fetchone()[0]
            driver = cnxn.getinfo(pyodbc.SQL_DRIVER_NAME), cnxn.getinfo(pyodbc.SQL_DRIVER_VER)
        finally:
            cnxn.close()
    except Exception as exc:  # a description must not stop the report
        return f"not reachable ({type(exc).__name__})"
    return f"server {server} on 127.0.0.1 (same machine), psqlODBC {driver[0]} {driver[1]}"


def _git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "dataflow")
    return f"commit {head}" + (" with uncommitted changes in dataflow/" if dirty else "")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
