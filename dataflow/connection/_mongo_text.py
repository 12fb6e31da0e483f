"""MongoDB text: URL pieces read with the password hidden, and pymongo errors on one line."""

from __future__ import annotations

import re
from urllib.parse import unquote

from pymongo.errors import OperationFailure, PyMongoError, ServerSelectionTimeoutError

from dataflow._core.errors import one_line
from dataflow._core.redact import redact_url
from dataflow.connection._mongo_bulk import squashed

_AUTHENTICATION_FAILED = 18  # the server's error code for bad credentials
_CONFIGURED_TIMEOUTS = re.compile(r"\s*\(configured timeouts: [^)]*\)")


def without_options(url: str) -> str:
    """A URL (password already hidden) without its query: options may hold secrets too."""
    return url.partition("?")[0].partition("#")[0]


def database_in(url: str | None) -> str | None:
    """The database in a MongoDB URL's path, read with the password hidden (an unescaped `/`,
    `?` or `#` in it would look like a path or a query)."""
    if not url:
        return None
    path = without_options(redact_url(url)).partition("://")[2].partition("/")[2]
    return unquote(path) or None


def is_connection_level(exc: OperationFailure) -> bool:
    return exc.code == _AUTHENTICATION_FAILED or exc.timeout


def reason(exc: PyMongoError) -> str:
    """pymongo's message without the topology dump and timeout settings, on one line."""
    text = squashed(_CONFIGURED_TIMEOUTS.sub("", one_line(exc)))
    # A server that cannot be selected says why (refused, unknown host): that is the news.
    if exc.timeout and "timed out" not in text and not isinstance(exc, ServerSelectionTimeoutError):
        return f"timed out: {text}"
    return text
