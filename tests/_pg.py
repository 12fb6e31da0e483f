"""The local PostgreSQL server as an ODBC peer: connection strings and an admin side channel.

PostgreSQL stands in for SQL Server's network behaviour (cancel, timeouts, killed sessions).
Every connection a test opens is tagged with a unique `application_name`, so the admin channel
can find that test's sessions in `pg_stat_activity` without seeing other tests' sessions.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests._peers import peer_unavailable, require_pyodbc

PG_SERVER = "127.0.0.1"
PG_PORT = 5432
PG_DATABASE = "test"
PG_USER = "postgres"


def pg_connection_string(
    app: str,
    *,
    driver: str = "PostgreSQL Unicode",
    port: int = PG_PORT,
    user: str = PG_USER,
    **extra: str,
) -> str:
    """A psqlODBC connection string to the local server, tagged with application name `app`."""
    fields = {
        "DRIVER": f"{{{driver}}}",
        "SERVER": PG_SERVER,
        "PORT": str(port),
        "DATABASE": PG_DATABASE,
        "UID": user,
        "BoolsAsChar": "0",  # booleans as booleans, not '1'/'0' strings
        "pqopt": f"{{application_name={app}}}",
        **extra,
    }
    return ";".join(f"{key}={value}" for key, value in fields.items())


def unique_app() -> str:
    return f"dataflow_test_{uuid.uuid4().hex[:12]}"


class PgAdmin:
    """A plain pyodbc connection that watches and kills the sessions of one test."""

    def __init__(self, app: str) -> None:
        self.app = app
        pyodbc = require_pyodbc()
        try:
            self.cnxn: Any = pyodbc.connect(pg_connection_string(f"{app}_admin"), autocommit=True)
        except pyodbc.Error as err:
            peer_unavailable(f"PostgreSQL at {PG_SERVER}:{PG_PORT} through psqlODBC ({err})")

    def sessions(self) -> list[dict[str, Any]]:
        """The test's server sessions: pid, state, query."""
        cursor = self.cnxn.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE application_name = ?", self.app
        )
        return [{"pid": pid, "state": state, "query": query} for pid, state, query in cursor]

    def running(self, fragment: str) -> list[dict[str, Any]]:
        """The test's sessions actively running a query that contains `fragment`."""
        return [s for s in self.sessions() if s["state"] == "active" and fragment in s["query"]]

    def wait_until(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Poll the server until `predicate()` holds (server-side state settles asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return bool(predicate())

    def terminate(self, pid: int) -> None:
        self.cnxn.execute("SELECT pg_terminate_backend(?)", pid)

    def close(self) -> None:
        self.cnxn.close()
