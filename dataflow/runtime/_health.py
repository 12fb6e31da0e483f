"""The metrics and health endpoint: `/metrics` (Prometheus) and `/healthz` on a thread.

`/healthz` answers 200 while the trigger group runs and 503 while starting (startup handlers)
or stopping, for container liveness and readiness probes. The server is a threaded wsgiref
server in a daemon thread, started and stopped with the runtime; it binds 127.0.0.1 unless
`DATAFLOW_METRICS_HOST` says otherwise.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import anyio
from prometheus_client import CollectorRegistry, make_wsgi_app

from dataflow._core import offload
from dataflow._core.errors import SettingsError
from dataflow._core.logs import get_logger
from dataflow._core.settings import Settings

log = get_logger("dataflow.metrics")
READY_PHASE: Final = "running"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the process exit


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class MetricsServer:
    """Serves `registry` and the health of `phase()` until `close()`."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, phase: Callable[[], str]
    ) -> None:
        self.phase = phase
        self.closing = False
        self._metrics = make_wsgi_app(registry)
        server_class = _IPv6Server if ":" in host else _ThreadingServer
        self._server = make_server(
            host, port, self._app, server_class=server_class, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="dataflow-metrics",
            daemon=True,
        )

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Answer 503 from now on, stop serving and release the port (blocks briefly)."""
        self.closing = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return self._health(start_response)
        if path in ("/metrics", "/"):
            served: Iterable[bytes] = self._metrics(environ, start_response)
            return served
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        phase = "stopping" if self.closing else self.phase()
        status = "200 OK" if phase == READY_PHASE else "503 Service Unavailable"
        body = json.dumps({"status": phase}).encode() + b"\n"
        start_response(status, [("Content-Type", "application/json")])
        return [body]


@asynccontextmanager
async def serve_metrics(
    settings: Settings, registry: CollectorRegistry, phase: Callable[[], str]
) -> AsyncIterator[MetricsServer | None]:
    """Serve metrics and health while the block runs, if `settings.metrics_port` is set."""
    if settings.metrics_port is None:
        yield None
        return
    host, port = settings.metrics_host, settings.metrics_port
    try:
        server = await offload.run_sync(lambda: MetricsServer(host, port, registry, phase))
    except OSError as exc:
        raise SettingsError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    server.start()
    log.info("serving metrics", url=f"{server.url}/metrics", health=f"{server.url}/healthz")
    try:
        yield server
    finally:
        server.closing = True
        with anyio.CancelScope(shield=True):  # even when cancelled: the port must be released
            await offload.run_sync(server.close)
