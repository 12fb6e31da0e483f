"""A runtime serving its status page on 127.0.0.1 under the fake clock, and a tiny client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from dataflow import Runtime, Settings, Workflow
from dataflow.testing import FakeClock
from tests._runtime import START


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the test looks at the 303 itself


_OPENER = urllib.request.build_opener(_NoRedirect)


def call(url: str, *, method: str = "GET", data: bytes | None = None, **headers: str) -> Answer:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=10) as response:
            return Answer(int(response.status), response.read().decode(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read().decode(), dict(error.headers))


async def fetch(runtime: Runtime, path: str, **kwargs: Any) -> Answer:
    assert runtime.metrics_server is not None
    url = runtime.metrics_server.url + path
    return await anyio.to_thread.run_sync(lambda: call(url, **kwargs))


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.001)


@asynccontextmanager
async def serving(
    workflow: Workflow, tmp_path: Path, *, token: str | None = None
) -> AsyncIterator[tuple[Runtime, FakeClock]]:
    """The runtime runs its triggers and serves the page; time moves only by `clock.set`."""
    clock = FakeClock(START)
    settings = Settings(
        state_path=tmp_path / "s.db", metrics_port=0, grace_period=5, http_token=token
    )
    runtime = Runtime(workflow, settings=settings, clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.run)
        await until(runtime.started.is_set)
        yield runtime, clock
        runtime.stop()
