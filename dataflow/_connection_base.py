"""The shape every connection shares, and the helpers that keep secrets out of logs and reprs."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

_ODBC_SECRET = re.compile(r"(?i)\b(pwd|password)\s*=\s*(\{[^}]*\}|[^;]*)")
_URL_SECRET = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*:/{0,2}[^\s/:@'\"]+:)[^\s@'\"]+@")


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, for logs, errors and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact_odbc(connection_string: str) -> str:
    """Return an ODBC connection string with `PWD=`/`Password=` values replaced by `***`."""
    return _ODBC_SECRET.sub(lambda m: f"{m.group(1)}=***", connection_string)


def redact_text(text: str) -> str:
    """Free text (a traceback showing a source line, a mistyped URI) with the passwords of
    URL-like `scheme:/user:password@host` and ODBC `PWD=` values replaced by `***`."""
    return redact_odbc(_URL_SECRET.sub(r"\1***@", text))


class DataflowConnectionError(ConnectionError):
    """A connection could not be opened or used; the message names the target, never a secret.

    A subclass of the built-in `ConnectionError`, so either name catches it.
    """


class Connection(ABC):
    """A blocking connection: open with `connect()` or `with`, close with `disconnect()`."""

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise `DataflowConnectionError` unless the server answers."""

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()
