"""ODBC text: connection strings (parse, quote, redact, describe) and SQLSTATE classification."""

from __future__ import annotations

from dataflow._core.redact import parse_odbc
from dataflow.connection._sql_core import ErrorKind

_KINDS = {
    **dict.fromkeys(("08S01", "08001", "08003", "08004", "08006", "08007"), ErrorKind.CONNECTION),
    **dict.fromkeys(("HYT01", "57P01", "57P02", "57P03"), ErrorKind.CONNECTION),
    **dict.fromkeys(("40001", "40P01"), ErrorKind.CONFLICT),
    "HYT00": ErrorKind.TIMEOUT,
    **dict.fromkeys(("HY008", "57014"), ErrorKind.CANCELLED),
}
_DEADLOCK_VICTIM = "(1205)"  # SQL Server's native error, should a driver drop SQLSTATE 40001


def sqlstate_of(err: BaseException) -> str:
    """The SQLSTATE in a pyodbc error's args: first for the driver's errors, second for
    pyodbc's own (a wrong parameter count); '' when there is none."""
    for arg in err.args[:2]:
        if isinstance(arg, str) and len(arg) == 5 and arg.isalnum() and arg.upper() == arg:
            return arg
    return ""


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
