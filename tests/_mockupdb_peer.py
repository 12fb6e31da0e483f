"""A mockupdb server that pymongo 4 talks to: records every command, answers from a script.

mockupdb speaks the wire protocol but its canned handshake is too old for pymongo 4 (which needs
maxWireVersion >= 9, and sends `hello` once the reply says `helloOk`). `open_mock_mongo()` starts
one with a modern handshake, optionally as a replica-set primary, and answers from mockupdb's
connection threads, so the client under test can run in any thread or event loop.

Every command document is recorded in arrival order (OP_MSG document sequences such as an
update's statements are merged into the document, as `updates: [...]`). Each command is answered
by the first that applies:
1. the next reply queued for its name with `script(name, reply, ...)`;
2. the reply set with `always(name, reply)`;
3. the built-in answers: the handshake (`hello`, `ismaster`), `ping`, `endSessions`, `killCursors`;
4. otherwise it waits, unanswered, for the test: `request = mongo.receives("find")`, then
   `mongo.answer(request, {...})` (or mockupdb's own `request.ok(...)`, `request.hangup()`).

A reply is a document (`ok: 1` is added unless present), a callable taking the command document
and returning a reply, `HANGUP` (close the connection), `NO_REPLY` (never answer: the client
times out) or `Verbatim(document, flags=...)`: an OP_MSG reply sent as it is, which may hold
`RawBSONDocument`s whose bytes no decoder accepts, and flag bits a client must refuse.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import bson
from mockupdb import OP_MSG_FLAGS, MockupDB, OpMsg, OpMsgReply

Command = dict[str, Any]


class _Action:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


HANGUP: Final = _Action("HANGUP")
NO_REPLY: Final = _Action("NO_REPLY")


@dataclass(frozen=True)
class Verbatim:
    """An OP_MSG reply sent without mockupdb's logging, which decodes every reply (and fails on
    a RawBSONDocument holding, say, a datetime past year 9999); `flags` are its flag bits."""

    document: Mapping[str, Any]
    flags: int = 0


Answer = Mapping[str, Any] | _Action | Verbatim
Reply = Answer | Callable[[Command], Answer]

_OP_MSG = 2013
HANDSHAKE: Final = frozenset({"hello", "ismaster", "isMaster"})
# Fields the driver adds to every command: sessions, cluster time, read preference, database.
ENVELOPE: Final = frozenset({"lsid", "txnNumber", "$clusterTime", "$readPreference", "$db"})


def body(command: Mapping[str, Any]) -> Command:
    """The command without its `ENVELOPE` fields, for exact assertions."""
    return {name: value for name, value in command.items() if name not in ENVELOPE}


def hello_reply(
    port: int, *, replica_set: str | None = None, max_wire_version: int = 21
) -> Command:
    """A handshake reply as a MongoDB 7.0 server sends it (standalone or replica-set primary)."""
    reply: Command = {
        "ismaster": True,
        "isWritablePrimary": True,
        "helloOk": True,
        "minWireVersion": 0,
        "maxWireVersion": max_wire_version,
        "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": 1,
    }
    if replica_set is not None:
        me = f"127.0.0.1:{port}"
        reply |= {"setName": replica_set, "setVersion": 1, "secondary": False}
        reply |= {"hosts": [me], "primary": me, "me": me}
    return reply


def update_reply(
    n: int, *, modified: int = 0, upserted: Mapping[int, Any] | None = None, errors: Any = ()
) -> Command:
    """An `update` reply; `upserted` maps statement index to the new `_id`."""
    reply: Command = {"n": n, "nModified": modified}
    if upserted:
        reply["upserted"] = [{"index": i, "_id": _id} for i, _id in upserted.items()]
    if errors:
        reply["writeErrors"] = list(errors)
    return reply


def write_error(index: int, code: int = 11000, errmsg: str = "E11000 duplicate key") -> Command:
    return {"index": index, "code": code, "errmsg": errmsg}


def command_error(code: int, errmsg: str, *, labels: tuple[str, ...] = ()) -> Command:
    """A failed command (`ok: 0`), with error labels such as `ResumableChangeStreamError`."""
    reply: Command = {"ok": 0, "code": code, "errmsg": errmsg}
    if labels:
        reply["errorLabels"] = list(labels)
    return reply


def cursor_reply(
    namespace: str, batch: list[Any], *, cursor_id: int = 0, first: bool = True, **extra: Any
) -> Command:
    """A `find`/`aggregate` (`first=True`) or `getMore` reply; `extra` adds cursor fields
    such as `postBatchResumeToken`."""
    name = "firstBatch" if first else "nextBatch"
    return {"cursor": {"id": cursor_id, "ns": namespace, name: batch, **extra}}


class MockMongo:
    """A running mock server: its URL, the commands it received, and its reply script."""

    def __init__(self, server: MockupDB, hello: Command) -> None:
        self.server = server
        self.port: int = server.port
        self.errors: list[BaseException] = []
        self._received: list[Command] = []
        self._changed = threading.Condition()
        self._scripts: defaultdict[str, deque[Reply]] = defaultdict(deque)
        self._always: dict[str, Reply] = {}
        self._builtin: dict[str, Reply] = {name: hello for name in HANDSHAKE}
        self._builtin |= {"ping": {}, "endSessions": {}, "killCursors": _killed}

    def url(self, database: str = "test", *, userinfo: str = "", **options: object) -> str:
        """A URL for this server; `options` are URI options (camelCase) added to the defaults."""
        query = {"directConnection": "true", "serverSelectionTimeoutMS": 3000} | options
        credentials = f"{userinfo}@" if userinfo else ""
        return f"mongodb://{credentials}127.0.0.1:{self.port}/{database}?{urlencode(query)}"

    def script(self, name: str, *replies: Reply) -> None:
        """Answer the next commands called `name` with `replies`, in order."""
        with self._changed:
            self._scripts[name].extend(replies)

    def always(self, name: str, reply: Reply) -> None:
        """Answer every command called `name` (once its script is used up) with `reply`."""
        with self._changed:
            self._always[name] = reply

    def commands(self, *names: str) -> list[Command]:
        """The commands received so far, in order: those called `names`, or all but handshakes."""
        with self._changed:
            received = list(self._received)
        if names:
            return [command for command in received if _name(command) in names]
        return [command for command in received if _name(command) not in HANDSHAKE]

    def wait_for(self, name: str, count: int = 1, timeout: float = 3.0) -> list[Command]:
        """Block until `count` commands called `name` were received; return all of them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self._named(name)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} {name!r} commands, got {len(found)}")
                self._changed.wait(left)
        return found

    def receives(self, name: str, timeout: float = 3.0) -> Any:
        """Pop the next unanswered command, which must be called `name`; the test answers it."""
        request = self.server.receives(timeout=timeout)
        if request is None or request.command_name != name:
            raise AssertionError(f"expected an unanswered {name!r} command, got {request!r}")
        return request

    def answer(self, request: Any, reply: Reply) -> None:
        """Answer a request obtained from `receives()` as a scripted reply would."""
        _send(request, _plain(request.doc), reply)

    def _named(self, name: str) -> list[Command]:
        return [command for command in self._received if _name(command) == name]

    def _handle(self, request: Any) -> bool:
        """mockupdb's hook for every request; True means answered, False leaves it queued."""
        if not getattr(request, "is_command", False):
            return False
        command = _plain(request.doc)
        with self._changed:
            self._received.append(command)
            self._changed.notify_all()
            reply = self._reply_for(str(request.command_name))
        if request.flags and request.flags & OP_MSG_FLAGS["moreToCome"]:
            return True  # an unacknowledged write: the client expects no reply
        if reply is None:
            return False
        try:
            _send(request, command, reply)
        except Exception as exc:  # a broken script: fail the client, and the test at exit
            self.errors.append(exc)
            _send(request, command, command_error(8000, f"mock script failed: {exc!r}"))
        return True

    def _reply_for(self, name: str) -> Reply | None:
        script = self._scripts.get(name)
        if script:
            return script.popleft()
        return self._always.get(name, self._builtin.get(name))


@contextlib.contextmanager
def open_mock_mongo(
    *, replica_set: str | None = None, max_wire_version: int = 21, verbose: bool = False
) -> Iterator[MockMongo]:
    """Run a mock server for the block; fail the test if a scripted reply raised."""
    server = MockupDB(verbose=verbose, request_timeout=3)
    port = server.run()
    mongo = MockMongo(
        server, hello_reply(port, replica_set=replica_set, max_wire_version=max_wire_version)
    )
    server.autoresponds(mongo._handle)
    _wait_until_serving(port)
    mongo._received.clear()
    try:
        yield mongo
    finally:
        _stop(server)
    if mongo.errors:
        raise AssertionError(f"mock server script failed: {mongo.errors!r}")


def _wait_until_serving(port: int) -> None:
    """One ping round trip: mockupdb's run() returns before its accept loop has started, and
    a stop() in between makes that thread fail."""
    payload = struct.pack("<IB", 0, 0) + bson.encode({"ping": 1, "$db": "admin"})
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, _OP_MSG)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as probe:
        probe.sendall(header + payload)
        length = struct.unpack("<i", probe.recv(4, socket.MSG_WAITALL))[0]
        probe.recv(length - 4, socket.MSG_WAITALL)


def _stop(server: MockupDB) -> None:
    """Stop at once: mockupdb's accept loop would notice the stop only at its next 1 s poll."""
    server._stopped = True
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
        pass  # wakes the accept loop, which sees the stop flag and exits
    server.stop()


def _send(request: Any, command: Command, reply: Reply) -> None:
    if not isinstance(reply, Mapping | _Action | Verbatim):
        reply = reply(command)
    if isinstance(reply, Verbatim):
        assert isinstance(request, OpMsg), f"a Verbatim reply answers OP_MSG only: {request!r}"
        message = OpMsgReply({"ok": 1} | dict(reply.document), flags=reply.flags)
        request._client.sendall(message.reply_bytes(request))
    elif reply is HANGUP:
        request.hangup()
    elif reply is not NO_REPLY:
        assert isinstance(reply, Mapping), f"not a reply: {reply!r}"
        request.replies(dict(reply))


def _killed(command: Command) -> Command:
    return {"cursorsKilled": command.get("cursors", []), "cursorsNotFound": []}


def _name(command: Mapping[str, Any]) -> str:
    return next(iter(command), "")


def _plain(value: Any) -> Any:
    """mockupdb's OrderedDicts as plain dicts and lists, for readable assertion diffs."""
    if isinstance(value, Mapping):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
