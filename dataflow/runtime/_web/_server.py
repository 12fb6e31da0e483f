"""A small HTTP/1.1 server on the runtime's event loop: h11 over AnyIO streams, bounded.

Why h11 and not an ASGI server: the server must live in the runtime's own task group on
asyncio and trio alike, hold at most `max_connections` sockets whatever clients do, and drop a
client that sends its request slowly. h11 is only the protocol state machine; the sockets, the
limits and the timeouts are ours, in about a page of AnyIO code.

Bounds: at most `max_connections` accepted sockets. When all are taken, one that is waiting for
the rest of a request head it began (a slowloris client), or has waited `EVICT_IDLE` for a
request with nothing received (a silent client, an idle keep-alive), is dropped to make room,
the longest-waiting first. A connection just accepted is never dropped before it was read: its
whole request is likely in flight (a scrape), and dropping it would reset a client that did
nothing wrong. When no connection may be dropped, new clients wait in the listen backlog.
A request head (and body) must arrive within `head_timeout` seconds, a keep-alive connection is
closed after `idle_timeout`, and a response must be taken within `send_timeout`.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import anyio
import h11
from anyio.abc import SocketListener, SocketStream, TaskStatus

from dataflow._core.logs import get_logger

log = get_logger("dataflow.http")
_ACCEPT_PAUSE = 0.05  # seconds between accepts while the process is out of file descriptors
EVICT_IDLE = 0.25  # seconds a connection that sent nothing keeps its slot when room is needed


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_connections: int = 64
    head_timeout: float = 5.0  # a request (head and body) must arrive whole within it
    idle_timeout: float = 5.0  # a keep-alive connection waits this long for its next request
    send_timeout: float = 10.0  # a client that does not read its response is dropped
    max_head_bytes: int = 16_384
    max_body_bytes: int = 65_536


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lowercase
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(eq=False)
class _Slot:
    """One accepted connection: whether it waits for a request, since when, and whether it
    received part of a request head (then it is slow, not new)."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    waiting: bool = False  # set once its task reads: a connection not yet read is not idle
    since: float = 0.0
    partial: bool = False
    evicted: bool = False

    def evictable(self, now: float) -> bool:
        if not self.waiting or self.evicted:
            return False
        return self.partial or now - self.since >= EVICT_IDLE


class HttpServer:
    """Serves `handler` on `listeners` until cancelled; see the module's bounds."""

    def __init__(
        self, listeners: list[SocketListener], handler: Handler, limits: Limits | None = None
    ) -> None:
        self.listeners = listeners
        self.handler = handler
        self.limits = limits or Limits()
        self.open: set[_Slot] = set()
        self._freed = anyio.Event()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for listener in self.listeners:
                tg.start_soon(self._accept_loop, listener, tg)
            task_status.started()

    async def _accept_loop(self, listener: SocketListener, tg: anyio.abc.TaskGroup) -> None:
        while True:
            await self._room()
            try:
                stream = await listener.accept()
            except OSError as exc:  # out of descriptors: the listener stays, retry shortly
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                await anyio.sleep(_ACCEPT_PAUSE)
                continue
            slot = _Slot(since=anyio.current_time())
            self.open.add(slot)
            tg.start_soon(self._connection, stream, slot)

    async def _room(self) -> None:
        """Wait for a free slot, dropping the longest-waiting slow or idle connection if all
        are held; while none may be dropped yet, look again when the first of them may be."""
        while len(self.open) >= self.limits.max_connections:
            now = anyio.current_time()
            if droppable := [s for s in self.open if s.evictable(now)]:
                oldest = min(droppable, key=lambda s: s.since)
                oldest.evicted = True
                oldest.scope.cancel()
            waiting = [s.since + EVICT_IDLE - now for s in self.open if s.waiting and not s.evicted]
            if self._freed.is_set():  # shared by the accept loops (one per address)
                self._freed = anyio.Event()
            with anyio.move_on_after(max(min(waiting), 0.0) if waiting else float("inf")):
                await self._freed.wait()

    async def _connection(self, stream: SocketStream, slot: _Slot) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
        try:
            with slot.scope:
                await self._exchange(conn, stream, slot)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the client went away
        except Exception as exc:  # a request h11 or we cannot serve: drop it, never the server
            log.warning("http connection dropped", error=f"{type(exc).__name__}: {exc}")
        finally:
            await anyio.aclose_forcefully(stream)
            self.open.discard(slot)
            self._freed.set()

    async def _exchange(self, conn: h11.Connection, stream: SocketStream, slot: _Slot) -> None:
        """Requests one after another on a keep-alive connection, each within its deadline."""
        timeout = self.limits.head_timeout
        while True:
            slot.waiting, slot.since, slot.partial = True, anyio.current_time(), False
            request: Request | None = None
            with anyio.move_on_after(timeout):
                try:
                    request = await _read_request(conn, stream, slot, self.limits.max_body_bytes)
                except h11.RemoteProtocolError as exc:
                    await self._send(conn, stream, _plain(exc.error_status_hint, "bad request"))
                    return
            if request is None:
                return  # closed by the client, or too slow: dropped without an answer
            slot.waiting = False
            # HEAD (a probe's `curl -I`): GET's status and headers, no body.
            head_only = request.method == "HEAD"
            answer = await self._answer(replace(request, method="GET") if head_only else request)
            await self._send(conn, stream, answer, head_only=head_only)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
            timeout = self.limits.idle_timeout

    async def _answer(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception as exc:  # one bad request never ends the server
            log.exception("http handler failed", path=request.path, error=str(exc))
            return _plain(500, "internal error")

    async def _send(
        self,
        conn: h11.Connection,
        stream: SocketStream,
        response: Response,
        *,
        head_only: bool = False,
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            ("cache-control", "no-store"),
            *response.headers,
        ]
        head = h11.Response(status_code=response.status, headers=headers, reason=_reason(response))
        body = () if head_only else (h11.Data(data=response.body),)
        events = (head, *body, h11.EndOfMessage())
        data = b"".join(conn.send(event) or b"" for event in events)
        with anyio.fail_after(self.limits.send_timeout):  # one send: one segment for small ones
            await stream.send(data)


async def _read_request(
    conn: h11.Connection, stream: SocketStream, slot: _Slot, max_body: int
) -> Request | None:
    """The next whole request, or None when the client closed the connection first. Data that
    leaves the head unfinished marks the slot `partial`."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(65_536)
            except anyio.EndOfStream:
                data = b""
            conn.receive_data(data)
            slot.partial = slot.partial or bool(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            return _request(head, bytes(body))
        else:  # ConnectionClosed (or PAUSED, which a server reading one request never sees)
            return None


def _request(head: h11.Request, body: bytes) -> Request:
    target = head.target.decode("latin-1")
    try:
        parts = urlsplit(target)
    except ValueError:  # h11 takes `//[`, urlsplit does not: the client's mistake
        raise h11.RemoteProtocolError("bad request target", error_status_hint=400) from None
    return Request(
        method=head.method.decode("ascii").upper(),
        path=parts.path or "/",
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={name.decode("latin-1").lower(): v.decode("latin-1") for name, v in head.headers},
        body=body,
    )


def _reason(response: Response) -> bytes:
    try:
        return HTTPStatus(response.status).phrase.encode()
    except ValueError:
        return b""


def _plain(status: int, text: str) -> Response:
    return Response(status, text.encode() + b"\n")
