"""The runtime's HTTP routes: health, Prometheus metrics, the status page and its JSON API.

GET  /healthz                        200 while the triggers serve (`standby`: a replica whose
                                     change streams other replicas own), else 503
GET  /metrics                        Prometheus text (or OpenMetrics, by Accept)
GET  /                               the status page
GET  /api/workflow | /api/triggers | /api/runs | /api/runs/{id} | /api/dead-letters
GET  /api/triggers/{name}/fires       a cron trigger's fire ledger (explain's lines)
GET  /api/charts | /api/streams       run durations and fire lag; change streams and their oplog
POST /api/triggers/{name}/run, /api/dead-letters/{id}/retry, /login   (with a token only)
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Final

from anyio.abc import TaskGroup
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from dataflow._core.errors import HttpRequestRefused
from dataflow.runtime._web import _actions, _api
from dataflow.runtime._web._api import Served
from dataflow.runtime._web._charts import run_charts
from dataflow.runtime._web._page import render_page
from dataflow.runtime._web._server import Request, Response
from dataflow.runtime._web._streams import StreamsView

READY_PHASE: Final = "running"
METRICS_FRESH: Final = 0.1  # seconds a /metrics answer is served again (a scrape burst)
STANDBY: Final = "standby"  # running, its change streams owned by other replicas: still 200
Route = Callable[[Request, list[str]], Awaitable[Response]]


class StatusApp:
    """Answers one request; `closing` turns /healthz to 503 before the server stops."""

    def __init__(self, served: Served, registry: CollectorRegistry) -> None:
        self.served = served
        self.registry = registry
        self.closing = False
        self.background: TaskGroup | None = None  # where dead-letter retries are awaited
        self.streams = StreamsView(served.clock)
        self._last_metrics: tuple[float, str, Response] | None = None
        self.connections: Callable[[], int] = lambda: 1  # open now, set by the server

    async def __call__(self, request: Request) -> Response:
        parts = [part for part in request.path.split("/") if part]
        try:
            return await self._route(request, parts)
        except HttpRequestRefused as error:
            return _api.error_response(error)

    async def _route(self, request: Request, parts: list[str]) -> Response:
        if request.method == "POST":
            return await self._post(request, parts)
        if request.method != "GET":
            raise HttpRequestRefused(405, f"method {request.method} is not allowed here")
        if parts == ["healthz"]:
            return self._health()
        if parts == ["metrics"]:
            return self._metrics(request.headers.get("accept", ""))
        if not parts:
            actions = self.served.settings.http_token is not None
            html = render_page(self.served.name, actions, _actions.authorised(self.served, request))
            return Response(200, html, "text/html; charset=utf-8")
        if parts[0] == "api":
            return _api.json_response(await self._read(request, parts[1:]))
        raise HttpRequestRefused(404, "not found: try /, /metrics, /healthz or /api/workflow")

    def _metrics(self, accept: str) -> Response:
        """The registry's text. While other connections are open (a burst of scrapes: 1,000 at
        once), encoded at most once per `METRICS_FRESH` for one `Accept`: a few encodings, not
        one each, so /healthz queued behind them still answers within a second. A lone scrape
        is always fresh: it sees every change made before it. One entry: varied headers from
        a hostile client cannot grow it."""
        now = time.monotonic()
        last, burst = self._last_metrics, self.connections() > 1
        if burst and last is not None and now - last[0] < METRICS_FRESH and last[1] == accept:
            return last[2]
        encoder, content_type = choose_encoder(accept)
        response = Response(200, encoder(self.registry), content_type)
        self._last_metrics = (now, accept, response)
        return response

    async def _read(self, request: Request, parts: list[str]) -> object:
        served = self.served
        if parts == ["workflow"]:
            return await _api.workflow_info(served)
        if parts == ["triggers"]:
            return await _api.triggers_info(served)
        if parts == ["runs"]:
            return await _api.runs_page(served, request)
        if len(parts) == 3 and parts[0] == "triggers" and parts[2] == "fires":
            return await _api.trigger_fires(served, parts[1], request)
        if len(parts) == 2 and parts[0] == "runs":
            return await _api.one_run(served, parts[1])
        if parts == ["dead-letters"]:
            return await _api.dead_letters(served, request)
        if parts == ["charts"]:
            return await run_charts(served, request)
        if parts == ["streams"]:
            return await self.streams.streams(served)
        raise HttpRequestRefused(404, f"no API route /api/{'/'.join(parts)}: see docs/api.md")

    async def _post(self, request: Request, parts: list[str]) -> Response:
        if parts == ["login"]:
            return _actions.login(self.served, request)
        _actions.require_token(self.served, request)
        if len(parts) == 4 and parts[:2] == ["api", "triggers"] and parts[3] == "run":
            return _api.json_response(await _actions.run_now(self.served, parts[2]), 202)
        if len(parts) == 4 and parts[:2] == ["api", "dead-letters"] and parts[3] == "retry":
            assert self.background is not None
            found = await _actions.retry_letter(self.served, parts[2], self.background)
            return _api.json_response(found, 202)
        raise HttpRequestRefused(404, "no such action: see docs/api.md")

    def _health(self) -> Response:
        phase = "stopping" if self.closing else self.served.phase
        ready = phase == READY_PHASE
        if ready and self.served.standby:
            phase = STANDBY
        body = json.dumps({"status": phase}).encode() + b"\n"
        return Response(200 if ready else 503, body, "application/json")
