"""Every `Store` implementation, as one fixture: the contract tests run over each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dataflow.state import SqliteStore, Store


def open_sqlite(folder: Path) -> Store:
    return SqliteStore(folder / "state.db")


IMPLEMENTATIONS: dict[str, Callable[[Path], Store]] = {
    "sqlite": open_sqlite,
    # "postgresql": the shared store (fire ledger, fenced leases) joins here, against the
    # server on 127.0.0.1:5432 (tests/_pg.py), each test in a schema of its own.
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = IMPLEMENTATIONS[request.param](tmp_path)
    try:
        yield opened
    finally:
        opened.close()
