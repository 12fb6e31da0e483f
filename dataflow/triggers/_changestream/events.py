"""Change events as their exact bytes: read raw, decoded for the handler, kept raw when
dead-lettered.

The stream is read with `RawBSONDocument` as its document class: pymongo then inflates only an
event's top level (its `_id`, the resume token, and the server's own fields), and an event whose
document holds a value this Python cannot represent (a datetime past year 9999, a string that is
not UTF-8) no longer fails the read. Each event is decoded here with the stream's own codec
options; one that cannot be is dead-lettered as its bytes. A dead letter keeps those bytes, so a
retry hands the handler the very document it was first given (Extended JSON cannot tell
`{"$numberLong": "5"}` the sub-document from an Int64); the JSON payload is for reading.

Decoded once: the driver reads each event's `_id` (its resume token), which on a plain
`RawBSONDocument` inflates the whole top level (a raw document per sub-document: more than
decoding the event outright). A `ChangeEvent` decodes itself with the stream's codec options
when that first happens, keeps the result for the handler, and hands the driver a copy of the
`_id` (a handler altering its event must not move the stream's position); an event that
cannot be decoded is inflated raw as before, and fails again where the pump decodes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import bson
from bson import Timestamp
from bson.codec_options import CodecOptions, DatetimeConversion, TypeRegistry
from bson.raw_bson import RawBSONDocument

from dataflow._core.errors import ChangeEventUndecodable, one_line
from dataflow.connection._mongo import Document
from dataflow.triggers._changestream.checkpoint import dumps

# Good enough to show an event no strict decoder accepts: datetimes out of range as milliseconds,
# bytes that are not UTF-8 as \x escapes.
_LENIENT: CodecOptions[Document] = CodecOptions(
    document_class=dict,
    tz_aware=True,
    tzinfo=UTC,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    unicode_decode_error_handler="backslashreplace",
)


class ChangeEvent(RawBSONDocument):
    """A raw event that decodes itself (with `codec`, its class's) the first time its `_id`
    is read, once. `raw_options` makes one subclass per stream, holding its codec options."""

    __slots__ = ("_event",)
    codec: ClassVar[CodecOptions[Any]]

    def decoded(self) -> Document:
        """The event as the handler gets it; raises what the decoder raised."""
        event: Document | None = getattr(self, "_event", None)
        if event is None:  # not decoded yet (an error is not kept: raised again)
            event = self._event = decode(self.raw, self.codec)
        return event

    def __getitem__(self, key: str) -> Any:
        if key != "_id":
            return super().__getitem__(key)
        try:
            token = self.decoded()["_id"]
        except Exception:  # undecodable: the pump dead-letters it; the driver goes on
            return super().__getitem__(key)
        return dict(token) if isinstance(token, Mapping) else token


def raw_options(codec: CodecOptions[Any]) -> CodecOptions[RawBSONDocument]:
    """`codec` reading raw events (a type registry's decoders run when an event is decoded)."""
    events = type("ChangeEvent", (ChangeEvent,), {"__slots__": (), "codec": codec})
    return codec.with_options(document_class=events, type_registry=TypeRegistry())


def decode(raw: bytes | memoryview, codec: CodecOptions[Any]) -> Document:
    """The event as the handler gets it; raises what the decoder raised."""
    event: Document = bson.decode(raw if isinstance(raw, bytes) else bytes(raw), codec)
    return event


def decode_letter(raw: bytes, codec: CodecOptions[Any], letter: int) -> Document:
    try:
        return decode(raw, codec)
    except Exception as exc:
        raise ChangeEventUndecodable(
            f"dead letter {letter} holds a change event this stream cannot decode "
            f"({one_line(exc, with_type=True)}): change the connection's codec options (for "
            "example datetime_conversion='DATETIME_AUTO'), then retry it"
        ) from None


def payload_text(event: Document) -> str:
    """A decoded event as the dead letter shows it: canonical Extended JSON."""
    return dumps(event)


def undecodable_text(raw: bytes, error: BaseException) -> str:
    """An event no strict decoder accepts, as the dead letter shows it: marked `undecodable`,
    with a lenient decode (or, if even that fails, its bytes in hex)."""
    shown: dict[str, Any] = {"undecodable": one_line(error, with_type=True)}
    try:
        shown["lenient"] = json.loads(dumps(bson.decode(raw, codec_options=_LENIENT)))
    except Exception:
        shown["hex"] = raw.hex()
    return json.dumps(shown)


def cluster_time(event: RawBSONDocument | Document) -> datetime | None:
    value = event.get("clusterTime")
    return value.as_datetime() if isinstance(value, Timestamp) else None


def event_time(event: Document) -> datetime | None:
    """When the change happened: `wallTime` (ms precision), else the cluster time (seconds)."""
    wall = event.get("wallTime")
    if isinstance(wall, datetime):
        return wall if wall.tzinfo else wall.replace(tzinfo=UTC)
    return cluster_time(event)
