"""Which connections a workflow declares, for `check` (and anything else that must know).

A workflow declares a connection by holding it: any attribute of the instance or its class
that is a `dataflow.connection.Connection` (MongoDB, SQL Server, ODBC, SQLite) or a
`MongoDBAsync`, plus the source of each change-stream trigger (a connection, or the URI or
setting the trigger connects with). A workflow that builds its connections elsewhere defines
`connections()` returning name -> connection instead.
"""

from __future__ import annotations

import inspect
import sys

import anyio

from dataflow._core import offload
from dataflow._core.errors import DataflowError
from dataflow._core.logs import get_logger
from dataflow._core.settings import require_env
from dataflow.connection._base import Connection
from dataflow.triggers.mongo_change_listener import ChangeStreamSpec
from dataflow.triggers.workflow import Workflow

log = get_logger("dataflow.runtime")
_CLOSE_TIMEOUT = 5.0  # seconds each connection gets to close at stop


def declared_connections(workflow: Workflow) -> dict[str, object]:
    """`workflow.connections()` if the workflow defines it, else what it holds."""
    custom = getattr(workflow, "connections", None)
    if callable(custom):
        return dict(custom())
    held = held_connections(workflow)
    return {**held, **_stream_sources(workflow, list(held.values()))}


def is_connection(value: object) -> bool:
    if isinstance(value, Connection):
        return True
    # MongoDBAsync is not a Connection (its methods are coroutines). Looked up only if already
    # imported: no workflow can hold one otherwise, and pymongo stays unloaded.
    module = sys.modules.get("dataflow.connection._mongo_async")
    return module is not None and isinstance(value, module.MongoDBAsync)


def held_connections(workflow: Workflow) -> dict[str, object]:
    """The connections the workflow holds as attributes (the runtime closes them at stop)."""
    found: dict[str, object] = {}
    for cls in reversed(type(workflow).__mro__):
        if cls in (object, Workflow):
            continue
        found |= {k: v for k, v in vars(cls).items() if is_connection(v)}
    found |= {k: v for k, v in vars(workflow).items() if is_connection(v)}
    return found


def _stream_sources(workflow: Workflow, held: list[object]) -> dict[str, object]:
    """Each change stream's source, as `<trigger>.source`, unless the workflow holds it too."""
    found: dict[str, object] = {}
    for declared in type(workflow).__triggers__:
        spec = declared.spec
        if not isinstance(spec, ChangeStreamSpec) or any(spec.source is c for c in held):
            continue
        found[f"{declared.name}.source"] = _stream_connection(spec)
    return found


def _stream_connection(spec: ChangeStreamSpec) -> object:
    """The connection the trigger would open: its own, or one from the URI or setting."""
    if not isinstance(spec.source, str):
        return spec.source
    from dataflow.connection._mongo import MongoDB  # pymongo: only for workflows that watch MongoDB

    try:
        url = spec.source if "://" in spec.source else require_env(spec.source)
        return MongoDB(url, database=spec.database or "admin")
    except (DataflowError, ValueError) as exc:
        return Unresolved(spec.source if "://" not in spec.source else "MongoDB(...)", exc)


class Unresolved:
    """A source that cannot even be built (a missing setting): `check` reports its error."""

    def __init__(self, label: str, error: Exception) -> None:
        self.label, self.error = label, error

    def __repr__(self) -> str:
        return f"${self.label}" if not self.label.startswith("MongoDB") else self.label

    def connect(self) -> None:
        raise self.error

    def ping(self) -> None:
        """Never reached: `connect` raises."""

    def disconnect(self) -> None:
        """Nothing was opened."""


async def close_held_connections(workflow: Workflow) -> None:
    """Disconnect what the workflow holds (at stop); a connection that hangs is left behind."""
    for name, connection in held_connections(workflow).items():
        with anyio.move_on_after(_CLOSE_TIMEOUT):
            try:
                await _disconnect(connection)
            except Exception as exc:
                log.warning("closing a connection failed", connection=name, error=str(exc))


async def _disconnect(connection: object) -> None:
    disconnect = getattr(connection, "disconnect", None)
    if disconnect is None:
        return
    if inspect.iscoroutinefunction(disconnect):
        await disconnect()
    else:
        await offload.run_sync(disconnect, abandon_on_cancel=True)
