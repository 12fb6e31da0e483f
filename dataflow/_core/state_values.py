"""Trigger-state values as JSON text: plain JSON, plus aware datetimes as `{"$datetime": iso}`.

A user's own dict whose only key starts with `$` gets one more `$` when stored and loses it
when read, so `{"$datetime": "not a date"}` comes back as it went in instead of poisoning the
key. Every stored value round-trips, or `set` refuses it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from dataflow._core.errors import StateValueError

_DATETIME = "$datetime"


def encode_value(value: Any, where: str) -> str:
    """`value` as JSON text; `where` names the key in the error for a value it cannot keep."""
    try:
        return json.dumps(_tagged(value, where))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, StateValueError):
            raise
        raise StateValueError(f"{where}: cannot keep {exc}; use JSON values") from None


def decode_value(raw: str, where: str) -> Any:
    """The value `encode_value` stored; a value it cannot read names the key."""
    try:
        return json.loads(raw, object_hook=_untagged)
    except ValueError as exc:
        raise StateValueError(
            f"{where} holds a value that cannot be read ({exc}); set it again to replace it"
        ) from None


def _tagged(value: Any, where: str) -> Any:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise StateValueError(
                f"{where}: a naive datetime ({value.isoformat()}) has no time zone; "
                "give it one, e.g. value.replace(tzinfo=UTC)"
            )
        return {_DATETIME: value.isoformat()}
    if isinstance(value, dict):
        tagged = {key: _tagged(item, where) for key, item in value.items()}
        if len(tagged) == 1 and isinstance(key := next(iter(tagged)), str) and key[:1] == "$":
            return {"$" + key: tagged[key]}  # the user's own: escaped, never read as ours
        return tagged
    if isinstance(value, list | tuple):
        return [_tagged(item, where) for item in value]
    return value


def _untagged(obj: dict[str, Any]) -> object:
    if len(obj) != 1:
        return obj
    key, value = next(iter(obj.items()))
    if key == _DATETIME:
        if not isinstance(value, str):
            raise ValueError(f"{_DATETIME} holds {type(value).__name__}, not text")
        return datetime.fromisoformat(value)  # ValueError if it is not a datetime
    if key.startswith("$$"):
        return {key[1:]: value}
    return obj
