"""The local PostgreSQL server as the shared state store's peer: each test gets a schema of its
own (a URL whose `search_path` names it), dropped afterwards, so tests never see each other's
rows and may run in any order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from tests._peers import peer_unavailable, require_module

SERVER = "postgresql://postgres@127.0.0.1:5432/test"
CLOSED_PORT = "postgresql://ops:pg-S3cret-pw@127.0.0.1:1/test"  # nothing listens on port 1


def admin() -> Any:
    """An autocommit psycopg connection as the server's superuser (typed loosely)."""
    psycopg = require_module("psycopg", "psycopg (pip install 'dataflow-runtime[postgresql]')")
    try:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=5)
    except psycopg.Error as err:
        peer_unavailable(f"PostgreSQL at 127.0.0.1:5432 ({' '.join(str(err).split())})")


def schema_url(schema: str, *, app: str = "dataflow_test", password: str = "") -> str:
    """A URL to the test database whose tables live in `schema`."""
    user = f"postgres:{quote(password, safe='')}" if password else "postgres"
    options = quote(f"-csearch_path={schema}", safe="")
    return f"postgresql://{user}@127.0.0.1:5432/test?options={options}&application_name={app}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """An empty schema for one test; yields its name, drops it (and all in it) afterwards."""
    name = f"dataflow_test_{uuid.uuid4().hex[:12]}"
    conn = admin()
    try:
        conn.execute(f"CREATE SCHEMA {name}")
        yield name
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.close()
