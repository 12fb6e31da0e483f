"""The page's actions, only when `DATAFLOW_HTTP_TOKEN` is set: run a trigger now, retry a dead
letter. A caller shows the token as `Authorization: Bearer <token>`, or logs in once through
the page's form, which sets a same-site, HTTP-only cookie holding a digest of the token (never
the token itself).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import anyio
from anyio.abc import TaskGroup

from dataflow._core import offload
from dataflow._core.errors import DataflowError, HttpRequestRefused, one_line
from dataflow._core.logs import get_logger
from dataflow._core.run import RunStatus
from dataflow.runtime._web._api import Served, known_trigger
from dataflow.runtime._web._server import Request, Response
from dataflow.triggers.base import RunHandle, RunRequest, Trigger

log = get_logger("dataflow.http")
COOKIE = "dataflow_session"
_COOKIE_SALT = b"dataflow status page session"


def session_value(token: str) -> str:
    return hmac.new(token.encode(), _COOKIE_SALT, hashlib.sha256).hexdigest()


def authorised(served: Served, request: Request) -> bool:
    """The request shows the token (header) or the session cookie the login form set."""
    token = served.settings.http_token
    if token is None:
        return False
    shown = request.headers.get("authorization", "")
    if shown.startswith("Bearer "):
        return hmac.compare_digest(shown[len("Bearer ") :].encode(), token.encode())
    cookie = _cookies(request.headers.get("cookie", "")).get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def require_token(served: Served, request: Request) -> None:
    if served.settings.http_token is None:  # no actions at all: the routes do not exist
        raise HttpRequestRefused(404, "not found: actions need DATAFLOW_HTTP_TOKEN")
    if not authorised(served, request):
        raise HttpRequestRefused(401, "a valid token is needed: Authorization: Bearer <token>")


def login(served: Served, request: Request) -> Response:
    """The page's form posts `token=...`: a session cookie and back to the page, or 401."""
    token = served.settings.http_token
    if token is None:
        raise HttpRequestRefused(404, "not found: actions need DATAFLOW_HTTP_TOKEN")
    shown = dict(parse_qsl(request.body.decode("utf-8", "replace"))).get("token", "")
    if not hmac.compare_digest(shown.encode(), token.encode()):
        body = b"wrong token: go back and try again\n"
        return Response(401, body, headers=(("www-authenticate", "Bearer"),))
    cookie = f"{COOKIE}={session_value(token)}; Path=/; HttpOnly; SameSite=Strict"
    return Response(303, b"", headers=(("location", "/"), ("set-cookie", cookie)))


async def run_now(served: Served, name: str) -> dict[str, Any]:
    """Start the trigger's handler once, now, in the runtime's run group (like `trigger`)."""
    known_trigger(served, name)
    target = _trigger(served, name)
    with _refused_as_409():  # a trigger that cannot run by hand (a change stream) says why
        request = target.manual_request(None)
    handle = _spawn(served, request)
    log.info("run started from the status page", trigger=name)
    return {"trigger": name, "started": True, "run_id": _run_id(handle)}


async def retry_letter(served: Served, letter_id: str, background: TaskGroup) -> dict[str, Any]:
    """Re-run a dead letter's event through its trigger; its outcome is written back."""
    letters = await served.state.call(served.state.dead_letters, served.name, include_retried=True)
    letter = next((item for item in letters if str(item.id) == letter_id), None)
    if letter is None:
        raise HttpRequestRefused(404, f"workflow {served.name!r} has no dead letter {letter_id!r}")
    target = _trigger(served, letter.trigger)
    retry = partial(target.retry_request, letter.payload, letter.raw, letter.id)
    with _refused_as_409():  # an event that no longer decodes, a setting gone missing
        request = await offload.run_sync(retry)  # may read a connection's options: no stall
    handle = _spawn(served, request)
    background.start_soon(_record_retry, served, handle, letter.id)
    log.info("dead letter retried from the status page", letter=letter.id)
    return {"id": letter.id, "trigger": letter.trigger, "started": True}


async def _record_retry(served: Served, handle: RunHandle, letter_id: int) -> None:
    try:
        await handle.finished.wait()
    finally:
        # A stop cancelling this wait must not lose a retry that did finish (on asyncio the
        # cancel can land after `finished` is set); one that did not stays a dead letter.
        if handle.finished.is_set():
            outcome = handle.outcome
            status = outcome.status.value if outcome else RunStatus.CANCELLED.value
            with anyio.CancelScope(shield=True):
                await served.state.call(served.state.mark_dead_letter_retried, letter_id, status)


@contextmanager
def _refused_as_409() -> Iterator[None]:
    try:
        yield
    except DataflowError as exc:
        raise HttpRequestRefused(409, one_line(exc)) from None


def _trigger(served: Served, name: str) -> Trigger:
    found = next((t for t in served.workflow.triggers() if t.name == name), None)
    if found is None:
        raise HttpRequestRefused(404, f"workflow {served.name!r} has no trigger {name!r}")
    return found


def _spawn(served: Served, request: RunRequest) -> RunHandle:
    if served.phase != "running":
        raise HttpRequestRefused(
            409, f"the workflow is {served.phase}: runs start only while running"
        )
    return served.dispatcher.spawn(request)


def _run_id(handle: RunHandle) -> str | None:
    return None if handle.run is None else handle.run.run_id


def _cookies(header: str) -> dict[str, str]:
    pairs = (part.strip().split("=", 1) for part in header.split(";") if "=" in part)
    return {name: value for name, value in pairs}
