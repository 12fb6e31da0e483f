"""The bounded HTTP server on the event loop: slow clients cannot take it, many scrapes queue.

Real sockets on 127.0.0.1, in-process, on asyncio and trio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketAttribute, SocketListener

from dataflow.runtime._web._server import HttpServer, Limits, Request, Response

pytestmark = pytest.mark.anyio
GET = b"GET /%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


class Counting:
    """A handler that answers the path back and records the most connections ever open."""

    def __init__(self) -> None:
        self.server: HttpServer | None = None
        self.most_open = 0
        self.answered = 0

    async def __call__(self, request: Request) -> Response:
        assert self.server is not None
        self.most_open = max(self.most_open, len(self.server.open))
        self.answered += 1
        await anyio.lowlevel.checkpoint()  # let other connections in between
        return Response(200, request.path.encode())


@asynccontextmanager
async def serving(limits: Limits) -> AsyncIterator[tuple[HttpServer, Counting, int]]:
    handler = Counting()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", backlog=4096)
    sockets = [item for item in listener.listeners if isinstance(item, SocketListener)]
    server = HttpServer(sockets, handler, limits)
    handler.server = server
    port = sockets[0].extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        await tg.start(server.serve)
        yield server, handler, port
        tg.cancel_scope.cancel()


async def get(port: int, path: str) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(GET % path.encode())
        answer = b""
        try:
            while True:
                answer += await stream.receive()
        except anyio.EndOfStream:
            return answer


async def test_slowloris_clients_leave_the_server_answering_within_a_second() -> None:
    """300 clients that send half a request head: a real request is still answered within a
    second, and the server never holds more than its bound of connections."""
    limits = Limits(max_connections=16, head_timeout=30.0)  # eviction, not timeouts, saves it
    async with serving(limits) as (server, handler, port), anyio.create_task_group() as tg:
        slow: list[anyio.abc.SocketStream] = []
        for _ in range(300):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n")  # and never the rest
            slow.append(stream)
        with anyio.fail_after(1):
            answer = await get(port, "healthz")
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"/healthz")
        assert len(server.open) <= limits.max_connections
        assert handler.answered == 1  # no slow client ever got an answer
        for stream in slow:
            await stream.aclose()
        tg.cancel_scope.cancel()


async def test_a_client_too_slow_with_its_request_head_is_dropped() -> None:
    async with serving(Limits(head_timeout=0.2)) as (server, _, port):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET / HTTP/1.1\r\n")
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await stream.receive()  # closed without an answer
        with anyio.fail_after(5):
            while server.open:
                await anyio.sleep(0.01)


async def test_a_keep_alive_connection_serves_several_requests_then_idles_out() -> None:
    async with serving(Limits(idle_timeout=0.2)) as (_, handler, port):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            for path in (b"/a", b"/b"):
                await stream.send(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path)
                answer = b""
                with anyio.fail_after(5):
                    while not answer.endswith(path):
                        answer += await stream.receive()
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await stream.receive()  # idle past idle_timeout: closed
        assert handler.answered == 2


async def test_a_thousand_concurrent_scrapes_all_succeed_within_the_bound() -> None:
    """Beyond the bound, clients wait in the listen backlog and are answered in turn."""
    limits = Limits(max_connections=64)
    results: list[bytes] = []

    async def scrape() -> None:
        results.append(await get(port, "metrics"))

    async with serving(limits) as (_, handler, port):
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(1000):
                    tg.start_soon(scrape)
    assert len(results) == 1000
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in results)
    assert handler.most_open <= limits.max_connections


async def test_a_malformed_request_gets_400_and_the_server_goes_on() -> None:
    async with serving(Limits()) as (_, _handler, port):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"NOT HTTP AT ALL\r\n\r\n")
            with anyio.fail_after(5):
                answer = await stream.receive()
        assert answer.startswith(b"HTTP/1.1 400 ")
        with anyio.fail_after(5):
            assert (await get(port, "ok")).startswith(b"HTTP/1.1 200 ")


async def raw(port: int, request: bytes) -> bytes:
    """Send `request` as is; everything the server answers before it closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        answer = b""
        with anyio.fail_after(5):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return answer


@pytest.mark.parametrize(
    "target", [b"//[", b"http://[x/", b"/%ff%fe?\xff=\xfe"], ids=["ipv6", "url", "bytes"]
)
async def test_a_request_target_that_does_not_parse_gets_400_and_the_server_goes_on(
    target: bytes,
) -> None:
    """h11 takes these targets; the URL parser does not: one 400, never the server's end."""
    async with serving(Limits()) as (_, _handler, port):
        answer = await raw(port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 200 "))
        with anyio.fail_after(5):
            assert (await get(port, "ok")).startswith(b"HTTP/1.1 200 ")


async def test_head_gets_the_get_answer_without_its_body() -> None:
    """A probe's `curl -I`: GET's status and Content-Length, no body; the server goes on."""
    async with serving(Limits()) as (_, _handler, port):
        answer = await raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 8" in head.lower()
        assert body == b""
        with anyio.fail_after(5):
            assert (await get(port, "ok")).startswith(b"HTTP/1.1 200 ")
