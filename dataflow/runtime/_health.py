"""The runtime's HTTP endpoint: `/metrics` (Prometheus), `/healthz`, the status page and its
JSON API, served on the runtime's own event loop while it runs.

`/healthz` answers 200 while the trigger group runs and 503 while starting (startup handlers)
or stopping, for container liveness and readiness probes. The server (`_web/_server.py`) holds
a bounded number of connections and drops slow clients, so no client can take the process's
file descriptors or threads; it binds 127.0.0.1 unless `DATAFLOW_METRICS_HOST` says otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketAttribute, SocketListener
from prometheus_client import CollectorRegistry

from dataflow._core.errors import SettingsError
from dataflow._core.logs import get_logger
from dataflow._core.settings import Settings
from dataflow.runtime._web._api import Served
from dataflow.runtime._web._app import READY_PHASE, StatusApp
from dataflow.runtime._web._server import HttpServer, Limits

__all__ = ["READY_PHASE", "MetricsServer", "serve_metrics"]
log = get_logger("dataflow.metrics")


class MetricsServer:
    """Where the endpoint listens, and the app that answers (`closing`: /healthz says 503)."""

    def __init__(self, listeners: list[SocketListener], app: StatusApp, limits: Limits) -> None:
        self.app = app
        self.http = HttpServer(listeners, app, limits)
        app.connections = lambda: len(self.http.open)
        address = listeners[0].extra(SocketAttribute.local_address)
        self.host, self.port = str(address[0]), int(address[1])

    @property
    def closing(self) -> bool:
        return self.app.closing

    @closing.setter
    def closing(self, value: bool) -> None:
        self.app.closing = value

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@asynccontextmanager
async def serve_metrics(
    settings: Settings,
    registry: CollectorRegistry,
    served: Served,
    limits: Limits | None = None,
) -> AsyncIterator[MetricsServer | None]:
    """Serve metrics, health and the status page while the block runs, if
    `settings.metrics_port` is set; the port is released when the block ends."""
    if settings.metrics_port is None:
        yield None
        return
    host, port = settings.metrics_host, settings.metrics_port
    try:  # a backlog of 4096: scrapers beyond the connection bound wait there, not refused
        multi = await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=4096)
    except OSError as exc:
        raise SettingsError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    listeners = [item for item in multi.listeners if isinstance(item, SocketListener)]
    server = MetricsServer(listeners, StatusApp(served, registry), limits or Limits())
    async with multi, anyio.create_task_group() as tg:
        server.app.background = tg
        await tg.start(server.http.serve)
        log.info(
            "serving metrics",
            url=f"{server.url}/metrics",
            health=f"{server.url}/healthz",
            page=f"{server.url}/",
        )
        try:
            yield server
        finally:
            server.closing = True
            tg.cancel_scope.cancel()
