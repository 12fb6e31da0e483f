"""`python -m dataflow check NAME`: settings, import, triggers, state file, connections.

Each check is one line. A connection is tried in a daemon thread (connect, ping, disconnect)
with the driver's own timeout and a deadline on top, so a driver that hangs cannot hang the
command. Only reprs and redacted messages are shown: never a password.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dataflow._cli.loader import load_workflow
from dataflow._cli.tables import utc_time
from dataflow._core.errors import (
    DataflowConnectionError,
    DataflowError,
    SettingsError,
    StateStoreError,
    WorkflowImportError,
)
from dataflow._core.redact import redact_url
from dataflow._core.settings import Settings
from dataflow.runtime._connections import declared_connections
from dataflow.runtime._describe import describe_triggers
from dataflow.runtime._identity import claim_state, state_file_of
from dataflow.state import PostgresStore, SqliteStore, Store
from dataflow.triggers._cron.zone import resolve_timezone
from dataflow.triggers.workflow import Workflow

_SLACK = 1.0  # seconds past the ping timeout before a silent driver counts as hung


@dataclass(frozen=True)
class Check:
    kind: str
    ok: bool
    detail: str


def check_settings(load: Callable[[], Settings]) -> tuple[Check, Settings]:
    try:
        settings = load()
        zone = resolve_timezone(settings.timezone).key
    except (DataflowError, ValueError) as exc:
        return Check("settings", False, str(exc)), Settings()
    metrics = "off" if settings.metrics_port is None else f"port {settings.metrics_port}"
    detail = (
        f"backend {settings.backend}, timezone {zone}, grace {settings.grace_period:g}s, "
        f"metrics {metrics}"
    )
    return Check("settings", True, detail), settings


def check_import(name: str, settings: Settings) -> tuple[Check, type[Workflow] | None]:
    try:
        found = load_workflow(name, settings.workflows_dir)
    except WorkflowImportError as exc:
        return Check("import", False, str(exc).splitlines()[0]), None  # what and where
    except DataflowError as exc:
        return Check("import", False, str(exc)), None
    count = len(found.__triggers__)
    triggers = f"{count} trigger{'' if count == 1 else 's'}"
    detail = f"{name}: workflow {found.workflow_name!r} ({found.__name__}), {triggers}"
    return Check("import", True, detail), found


def check_triggers(workflow_class: type[Workflow], now: datetime) -> list[Check]:
    checks = []
    for info in describe_triggers(workflow_class, None, now, 1):
        zone = f" ({info.timezone})" if info.timezone else ""
        following = f", next {info.next_fires[0].isoformat()}" if info.next_fires else ""
        source = info.source.replace("\n", " at ")  # a change stream: namespace at server
        detail = f"{info.name}: {info.kind} {source}{zone}{following}"
        checks.append(Check("trigger", True, detail))
    return checks


def check_instance(workflow_class: type[Workflow]) -> tuple[Check, Workflow | None]:
    """Create the workflow instance: its `__init__` may read settings (`require_env`)."""
    try:
        workflow = workflow_class()
    except Exception as exc:
        return Check("instance", False, f"{workflow_class.__name__}(): {_safe(exc)}"), None
    return Check("instance", True, f"{workflow_class.__name__}() created"), workflow


def check_state(workflow_class: type[Workflow], settings: Settings) -> Check:
    """The state file opens if it exists (what was saved under the workflow's previous name
    carried over, as a start does), or the folder it goes in is writable."""
    workflow = workflow_class.workflow_name
    if settings.state_url is not None:
        return _check_shared_state(workflow, settings.state_url)
    try:
        path = state_file_of(workflow_class, settings)
    except StateStoreError as exc:
        return Check("state", False, str(exc))
    if not path.exists():
        folder = next((p for p in path.absolute().parents if p.exists()), None)
        writable = folder is not None and os.access(folder, os.W_OK)
        folder_state = "writable" if writable else "NOT writable"
        return Check("state", writable, f"{path}: not created yet, folder {folder_state}")
    try:
        store = SqliteStore(path)
        try:
            claim_state(store, workflow_class)
            summary = _saved_summary(store, workflow)
        finally:
            store.close()
    except StateStoreError as exc:
        return Check("state", False, str(exc))
    return Check("state", True, f"{path}: {summary}")


def _check_shared_state(workflow: str, url: str) -> Check:
    """The PostgreSQL store connects and its schema is current (brought forward if not)."""
    try:
        store = PostgresStore(url)
        try:
            summary = _saved_summary(store, workflow)
        finally:
            store.close()
    except (StateStoreError, SettingsError) as exc:
        return Check("state", False, str(exc))
    return Check("state", True, f"{store.where}: {summary}")


def _saved_summary(store: Store, workflow: str) -> str:
    saved, last = store.state_items(workflow), store.runs(workflow, limit=1)
    latest = f", last run {utc_time(last[0].started_at)} {last[0].status}" if last else ""
    return f"{len(saved)} saved value{'' if len(saved) == 1 else 's'}{latest}"


def check_connections(workflow: Workflow, timeout: float) -> list[Check]:
    try:
        connections = declared_connections(workflow)
    except Exception as exc:
        return [Check("connection", False, f"connections(): {_safe(exc)}")]
    pings = [_Ping(name, conn, timeout) for name, conn in connections.items()]
    for ping in pings:
        ping.thread.start()
    deadline = time.monotonic() + timeout + _SLACK
    return [ping.result(deadline) for ping in pings]


class _Ping:
    def __init__(self, name: str, connection: object, timeout: float) -> None:
        self.name, self.connection, self.timeout = name, connection, timeout
        self.error: Exception | None = None
        self.elapsed: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"check {name}", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            probe(self.connection, self.timeout)
        except Exception as exc:
            self.error = exc
        self.elapsed = time.monotonic() - started

    def result(self, deadline: float) -> Check:
        self.thread.join(max(deadline - time.monotonic(), 0.0))
        where = f"{self.name}: {self.connection!r}"
        if self.thread.is_alive() or self.elapsed is None:
            return Check("connection", False, f"{where}: no answer within {self.timeout:g}s")
        if self.error is not None:
            return Check("connection", False, f"{where}: {_safe(self.error)}")
        return Check("connection", True, f"{where}: answered in {self.elapsed * 1000:.0f} ms")


def probe(connection: object, timeout: float) -> None:
    """Connect, ping and disconnect, each call bounded by `timeout` where the driver takes one."""
    target: Any = getattr(connection, "sync", connection)  # MongoDBAsync wraps a blocking MongoDB
    _call(target.connect, timeout)
    try:
        _call(target.ping, timeout)
    finally:
        target.disconnect()


def _call(method: Callable[..., object], timeout: float) -> None:
    if "timeout" in inspect.signature(method).parameters:
        method(timeout=timeout)
    else:
        method()


def _safe(exc: BaseException) -> str:
    """The error on one line, any URL's password replaced (connection errors are already)."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, DataflowConnectionError):
        text = " ".join(redact_url(word) if "://" in word else word for word in text.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
