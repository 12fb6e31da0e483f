"""Microsoft SQL Server: driver choice, connection strings, URLs, and a set-based upsert.

The connection itself is the generic `OdbcConnection`; this module only adds what is specific
to SQL Server. The upsert's statements are in `_tsql`; here they run in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from dataflow._core.errors import DataflowConnectionError
from dataflow._core.exports import publish
from dataflow._core.redact import (
    odbc_value,
    redact_connection_string,
    redact_url,
    register_secret,
    register_url,
    url_password,
)
from dataflow.connection._odbc import OdbcConnection
from dataflow.connection._pyodbc import load_pyodbc
from dataflow.connection._sql_core import RetryPolicy
from dataflow.connection._tsql import Strategy, upsert_sql

MSSQL_DRIVERS = ("ODBC Driver 18 for SQL Server", "ODBC Driver 17 for SQL Server")
FREETDS = "FreeTDS"
FREETDS_TDS_VERSION = "7.4"  # SQL Server 2012 and later

_SCHEMES = frozenset({"mssql", "mssql+pyodbc", "sqlserver"})
_TRUE = frozenset({"yes", "true", "1", "on", "mandatory"})
_FALSE = frozenset({"no", "false", "0", "off", "optional"})


def choose_driver(installed: Iterable[str]) -> str:
    """Microsoft's ODBC Driver 18, else 17, else FreeTDS, from the installed driver names."""
    names = list(installed)
    for driver in (*MSSQL_DRIVERS, FREETDS):
        if driver in names:
            return driver
    wanted = ", ".join((*MSSQL_DRIVERS, FREETDS))
    raise DataflowConnectionError(
        f"no SQL Server ODBC driver installed: need one of {wanted}; found {names or 'none'}"
    )


@dataclass(frozen=True, kw_only=True)
class SqlServerTarget:
    """Where and how to reach a SQL Server; `repr` leaves the password out."""

    server: str
    port: int | None = None
    database: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    driver: str | None = None  # None: choose from the installed drivers at connect time
    encrypt: bool = True
    trust_server_certificate: bool = False
    extra: tuple[tuple[str, str], ...] = ()  # more connection-string attributes, passed through

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        port = f":{self.port}" if self.port else ""
        return f"mssql://{user}{self.server}{port}/{self.database or ''}"


def parse_mssql_url(url: str) -> SqlServerTarget:
    """Read `mssql://user:pass@host:1433/db?driver=...&encrypt=no&TrustServerCertificate=yes`.

    User and password are percent-decoded; query keys are case-insensitive; unknown ones become
    extra connection-string attributes (e.g. `ApplicationIntent=ReadOnly`).
    """
    register_url(url)
    # The structure is read with the password hidden: unescaped `/ ? # @` in it would otherwise
    # split the URL in the wrong places, and urllib's errors would quote the pieces.
    try:
        parts = urlsplit(redact_url(url))
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        raise ValueError(f"not a SQL Server URL (mssql://user:pass@host/db): {redact_url(url)}")
    password = url_password(url)
    options: dict[str, Any] = {"encrypt": True, "trust_server_certificate": False}
    extra = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        name = key.lower()
        if name == "driver":
            options["driver"] = value
        elif name in ("encrypt", "trustservercertificate"):
            attribute = "encrypt" if name == "encrypt" else "trust_server_certificate"
            options[attribute] = _flag(key, value)
        else:
            extra.append((key, value))
    return SqlServerTarget(
        server=unquote(parts.hostname),
        port=port,
        database=unquote(parts.path.lstrip("/")) or None,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(password) if password is not None else None,
        extra=tuple(extra),
        **options,
    )


def build_connection_string(target: SqlServerTarget, driver: str) -> str:
    """The ODBC connection string for `target` through `driver` (Microsoft's or FreeTDS)."""
    pairs: list[tuple[str, str | None]]
    if driver == FREETDS:
        # FreeTDS names encryption differently; `request` (its default) encrypts when the server
        # can, like Microsoft's Encrypt=no. FreeTDS checks no certificate unless a CA file is set
        # in freetds.conf, so TrustServerCertificate has nothing to switch off there.
        pairs = [("SERVER", target.server), ("PORT", str(target.port or 1433))]
        pairs += [("DATABASE", target.database), ("UID", target.username), ("PWD", target.password)]
        pairs += [("TDS_Version", FREETDS_TDS_VERSION), ("ClientCharset", "UTF-8")]
        pairs += [("Encryption", "require" if target.encrypt else "request")]
    else:
        server = f"{target.server},{target.port}" if target.port else target.server
        pairs = [("SERVER", server), ("DATABASE", target.database)]
        pairs += [("UID", target.username), ("PWD", target.password)]
        pairs += [("Encrypt", _yes_no(target.encrypt))]
        pairs += [("TrustServerCertificate", _yes_no(target.trust_server_certificate))]
    fields = [f"DRIVER={{{driver}}}"]
    fields += [
        f"{key}={_quoted(key, value)}"
        for key, value in [*pairs, *target.extra]
        if value is not None
    ]
    return ";".join(fields)


class MicrosoftSQLServerConnection(OdbcConnection):
    """SQL Server through pyodbc, by keyword arguments, a `mssql://` URL or a connection string.

    `MicrosoftSQLServerConnection(server=..., database=..., username=..., password=...)` or
    `MicrosoftSQLServerConnection("mssql://user:pass@host:1433/db")`. The driver is Microsoft's
    ODBC Driver 18 or 17 when installed, else FreeTDS; encryption is on unless `encrypt=False`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        server: str | None = None,
        hostname: str | None = None,
        database: str | None = None,
        username: str | None = None,
        password: str | None = None,
        driver: str | None = None,
        encrypt: bool = True,
        trust_server_certificate: bool = False,
        port: int | None = None,
        timeout: float | None = None,
        connect_timeout: int = 15,
        retry: RetryPolicy | None = None,
        fast_executemany: bool | None = None,
    ) -> None:
        where, is_host = _url_or_host(url, server or hostname)
        register_secret(password)
        self._server: SqlServerTarget | None = None
        if is_host:
            self._server = SqlServerTarget(
                server=where,
                port=port,
                database=database,
                username=username,
                password=password,
                driver=driver,
                encrypt=encrypt,
                trust_server_certificate=trust_server_certificate,
            )
        elif not _is_connection_string(where):
            self._server = parse_mssql_url(where)
        super().__init__(
            "" if self._server else where,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            fast_executemany=fast_executemany,
        )

    @property
    def target(self) -> str:
        return self._server.describe() if self._server else super().target

    def __repr__(self) -> str:
        shown = self.target if self._server else redact_connection_string(self._connection_string)
        return f"MicrosoftSQLServerConnection({shown!r})"

    def upsert(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any]] = (),
        *,
        keys: Sequence[str] = (),
        filters: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        strategy: Strategy = "merge",
        timeout: float | None = None,
    ) -> int:
        """Insert or update `rows` matched on `keys`, in one transaction; returns rows affected.

        Also takes the seed's one-record form: `upsert("t", filters={"id": 1}, data={...})`.
        When a key repeats, the last row wins. Retried whole on a deadlock or a lost
        connection: an upsert by key is idempotent.
        """
        if filters is not None:
            rows, keys = [{**filters, **(data or {})}], list(filters)
        records, columns = _last_per_key(rows, keys)
        if not records:
            return 0
        sql = upsert_sql(table, columns, keys, strategy)
        values = [tuple(record[c] for c in columns) for record in records]

        def body() -> int:
            self.execute(sql.create, timeout=timeout)
            self.executemany(sql.stage, values, timeout=timeout)
            affected = sum(self.execute(statement, timeout=timeout) for statement in sql.apply)
            self.execute(sql.drop, timeout=timeout)
            return affected

        return self.atomic(body, idempotent=True)

    def _odbc_string(self) -> str:
        if self._server is None:
            return self._connection_string
        driver = self._server.driver or choose_driver(load_pyodbc().drivers())
        return build_connection_string(self._server, driver)

    def _secrets(self) -> list[str]:
        if self._server is None:
            return super()._secrets()
        return [self._server.password] if self._server.password else []


def _last_per_key(
    rows: Iterable[Mapping[str, Any]], keys: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows deduplicated by key (MERGE updates a target row once at most), and their columns."""
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    columns: list[str] = []
    for row in rows:
        columns = columns or list(row)
        if not keys or any(key not in row for key in keys):
            raise ValueError(f"upsert keys {list(keys)} must be non-empty and in every row")
        if set(row) != set(columns):
            raise ValueError(f"every upsert row needs the same columns {columns}; got {list(row)}")
        by_key[tuple(row[key] for key in keys)] = dict(row)
    return list(by_key.values()), columns


def _url_or_host(url: str | None, host: str | None) -> tuple[str, bool]:
    """Exactly one of a URL (or connection string) and a host, and whether it is the host."""
    if url is None and host is not None and ("://" in host or _is_connection_string(host)):
        url, host = host, None  # a URL passed as server= must not reach the repr
    if host is not None and url is None:
        return host, True
    if url is not None and host is None:
        return url, False
    raise ValueError("MicrosoftSQLServerConnection needs a URL or server=, not both")


def _is_connection_string(text: str) -> bool:
    return "=" in text and ";" in text and "://" not in text


def _quoted(key: str, value: str) -> str:
    # A password is always braced: then any character in it is safe.
    return "{" + value.replace("}", "}}") + "}" if key == "PWD" else odbc_value(value)


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError(f"{key}={value!r} in a SQL Server URL: expected yes or no")


publish("dataflow.connection", MicrosoftSQLServerConnection)
