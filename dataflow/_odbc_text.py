"""ODBC text: connection strings (parse, quote, redact, describe) and SQLSTATE classification."""

from __future__ import annotations

import re

from dataflow._sql_core import ErrorKind

_KINDS = {
    **dict.fromkeys(("08S01", "08001", "08003", "08004", "08006", "08007"), ErrorKind.CONNECTION),
    **dict.fromkeys(("HYT01", "57P01", "57P02", "57P03"), ErrorKind.CONNECTION),
    **dict.fromkeys(("40001", "40P01"), ErrorKind.CONFLICT),
    "HYT00": ErrorKind.TIMEOUT,
    **dict.fromkeys(("HY008", "57014"), ErrorKind.CANCELLED),
}
_DEADLOCK_VICTIM = "(1205)"  # SQL Server's native error, should a driver drop SQLSTATE 40001
_SECRET_KEYS = frozenset({"pwd", "password"})
_PAIR = re.compile(r"\s*([^=;]+?)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*?)\s*(?:;|$)")
_NEEDS_BRACES = re.compile(r"[;{}=\s]|^$")
_BRACED = re.compile(r"\{(?:[^}]|\}\})*\}(?=\s*(?:;|$))")


def sqlstate_of(err: BaseException) -> str:
    """The SQLSTATE pyodbc puts first in an error's args ('' when there is none)."""
    first = err.args[0] if err.args else None
    return first if isinstance(first, str) and len(first) == 5 else ""


def classify(err: BaseException) -> ErrorKind:
    """Sort a driver error by what the caller may do about it, from its SQLSTATE.

    Connection lost or refused: 08S01, 08001, 08003, 08004, 08006, 08007, HYT01, and
    PostgreSQL's 57P01-57P03 (a terminated backend). Deadlock or serialization failure: 40001
    (SQL Server's 1205), 40P01. Timeout: HYT00. Cancelled: HY008, 57014. A deadlock victim is a
    plain `pyodbc.Error`, not an `OperationalError`: only the SQLSTATE in `args[0]` tells.
    """
    kind = _KINDS.get(sqlstate_of(err), ErrorKind.OTHER)
    if kind is ErrorKind.OTHER and _DEADLOCK_VICTIM in str(err):
        return ErrorKind.CONFLICT
    return kind


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


def describe_odbc(connection_string: str) -> str:
    """Name a connection string's target for messages: driver, user, server, database."""
    attrs = {key.lower(): value for key, value in parse_odbc(connection_string)}
    where = attrs.get("server") or attrs.get("servername") or attrs.get("dsn") or ""
    if attrs.get("port"):
        where += f":{attrs['port']}"
    if attrs.get("uid"):
        where = f"{attrs['uid']}@{where}"
    database = attrs.get("database", "")
    path = f"{where}/{database}" if where and database else where or database
    return f"{attrs.get('driver', 'ODBC')} at {path}"
