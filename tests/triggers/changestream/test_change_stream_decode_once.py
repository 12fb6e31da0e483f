"""A raw change event decodes itself once, when the driver first reads its `_id`, and hands the
driver a copy of its token: the handler gets that same decoded event, and altering it cannot
move the stream's position."""

from __future__ import annotations

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from dataflow.triggers._changestream.ahead import buffered
from dataflow.triggers._changestream.events import ChangeEvent, raw_options

EVENT = {"_id": {"_data": "82650001"}, "operationType": "insert", "fullDocument": {"n": "abcdef"}}


def test_the_driver_reads_a_copy_of_the_token_and_the_handler_the_one_decode() -> None:
    options = raw_options(CodecOptions(tz_aware=True))
    raw = options.document_class(bson.encode(EVENT), options)
    assert isinstance(raw, ChangeEvent) and isinstance(raw, RawBSONDocument)
    token = raw["_id"]  # what pymongo's try_next reads
    event = raw.decoded()
    assert event == EVENT and raw.decoded() is event  # decoded once, kept
    event["_id"]["_data"] = "altered by the handler"
    assert token == {"_data": "82650001"}
    assert raw["operationType"] == "insert"  # other fields: read raw, as before


def test_an_undecodable_event_gives_the_driver_its_raw_token_and_fails_where_decoded() -> None:
    options = raw_options(CodecOptions())
    bad = bson.encode(EVENT).replace(b"abcdef", b"ab\xffdef")  # a string not UTF-8
    raw = options.document_class(bad, options)
    assert isinstance(raw, ChangeEvent)
    assert raw["_id"]["_data"] == "82650001"
    try:
        raw.decoded()
    except bson.errors.InvalidBSON:
        pass
    else:
        raise AssertionError("decoded an event that is not UTF-8")


def test_buffered_reads_the_driver_cursor_batch_and_is_zero_without_one() -> None:
    class Cursor:
        _data = (1, 2, 3)

    class Stream:
        _cursor = Cursor()

    assert buffered(Stream()) == 3
    assert buffered(object()) == 0
