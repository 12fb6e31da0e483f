"""Every `Store` implementation, as one fixture: the contract tests run over each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from dataflow.state import PostgresStore, SqliteStore, Store
from tests.state._pg_store import fresh_schema, schema_url


@contextmanager
def open_sqlite(folder: Path) -> Iterator[Store]:
    store = SqliteStore(folder / "state.db")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_postgres(folder: Path) -> Iterator[Store]:
    """The shared store against the server on 127.0.0.1:5432, in a schema of the test's own."""
    with fresh_schema() as schema:
        store = PostgresStore(schema_url(schema))
        try:
            yield store
        finally:
            store.close()


IMPLEMENTATIONS: dict[str, Callable[[Path], AbstractContextManager[Store]]] = {
    "sqlite": open_sqlite,
    "postgresql": open_postgres,
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with IMPLEMENTATIONS[request.param](tmp_path) as opened:
        yield opened
