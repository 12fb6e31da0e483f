"""Keeping secrets out of logs, errors and reprs: URLs, ODBC connection strings, free text.

A connection string is read pair by pair (`redact_connection_string`), so a braced password
holding `;` or `}}` is hidden whole. Free text (a traceback showing a source line, a mistyped
URI) has no structure to read: `redact_text` hides from the key to the next `;`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEYS = frozenset({"pwd", "password"})
_PAIR = re.compile(r"\s*([^=;]+?)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*?)\s*(?:;|$)")
_NEEDS_BRACES = re.compile(r"[;{}=\s]|^$")
_BRACED = re.compile(r"\{(?:[^}]|\}\})*\}(?=\s*(?:;|$))")
# In free text a value runs to the next `;` (or the end): more hidden rather than less. A
# braced value runs to its closing brace (`}}` is an escaped brace), to the end if unclosed.
_ODBC_SECRET = re.compile(r"(?i)\b(pwd|password)\s*=\s*(\{(?:[^}]|\}\})*\}?|[^;]*)")
_URL_SECRET = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*:/{0,2}[^\s/:@'\"]+:)[^\s@'\"]+@")


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, for logs, errors and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact_text(text: str) -> str:
    """Free text (a traceback showing a source line, a mistyped URI) with the passwords of
    URL-like `scheme:/user:password@host` and ODBC `PWD=` values replaced by `***`."""
    text = _URL_SECRET.sub(r"\1***@", text)
    return _ODBC_SECRET.sub(lambda m: f"{m.group(1)}=***", text)


def parse_odbc(connection_string: str) -> list[tuple[str, str]]:
    """Split an ODBC connection string into (key, value) pairs, unescaping `{...}` values."""
    return [(key, value) for key, value, _ in _pairs(connection_string)]


def _pairs(connection_string: str) -> list[tuple[str, str, str]]:
    """(key, value, rest): `rest` is the text from the value on, for a malformed secret."""
    pairs = []
    for match in _PAIR.finditer(connection_string):
        key, value = match.group(1), match.group(2)
        if _BRACED.fullmatch(value):
            value = value[1:-1].replace("}}", "}")
        pairs.append((key, value, connection_string[match.start(2) :]))
    return pairs


def _malformed(rest: str) -> bool:
    """A value that opens a brace it does not close: where it ends is anyone's guess."""
    return rest.startswith("{") and not _BRACED.match(rest)


def odbc_value(value: str) -> str:
    """A connection-string value, wrapped in braces (with `}` doubled) when ODBC needs it."""
    return "{" + value.replace("}", "}}") + "}" if _NEEDS_BRACES.search(value) else value


def secrets_in(connection_string: str) -> list[str]:
    """The PWD/Password values of a connection string (all the rest, when one is malformed)."""
    secrets = []
    for key, value, rest in _pairs(connection_string):
        if key.lower() in _SECRET_KEYS:
            secrets += [value, rest] if _malformed(rest) else [value]
    return [secret for secret in secrets if secret]


def redact_connection_string(connection_string: str) -> str:
    """The connection string with every PWD/Password value replaced by `***`.

    Unlike a regular expression over the raw text, this reads braced values whole, so a
    password holding `;` or `}}` is hidden entirely; after a malformed one, so is the rest.
    """
    fields = []
    for key, value, rest in _pairs(connection_string):
        if key.lower() not in _SECRET_KEYS:
            fields.append(f"{key}={odbc_value(value)}")
            continue
        fields.append(f"{key}=***")
        if _malformed(rest):
            break
    return ";".join(fields)
