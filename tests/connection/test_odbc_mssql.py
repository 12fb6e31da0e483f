"""SQL Server specifics: driver choice, connection strings, URLs, the upsert's SQL.

No SQL Server runs here, so what can be checked offline is checked as exact strings, and the
connect-failure path runs through the real FreeTDS driver. The live tests at the end run when
DATAFLOW_TEST_MSSQL_URL points at a server (`mssql://sa:...@localhost:1433/master?...`).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from dataflow.connection import (
    DataflowConnectionError,
    MicrosoftSQLServerConnection,
    QueryCancelledError,
    RetryPolicy,
    _mssql,
)
from dataflow.connection._mssql import (
    SqlServerTarget,
    build_connection_string,
    choose_driver,
    parse_mssql_url,
)
from dataflow.connection._tsql import quote_name, quote_table, upsert_sql
from tests._peers import require_odbc_driver

T = TypeVar("T")
_SECRET = "p;w}d=S3cret"
_TARGET = SqlServerTarget(
    server="db.example.com", port=1433, database="sales", username="etl", password=_SECRET
)


def test_driver_18_connection_string() -> None:
    """Microsoft's driver: host,port; braced password; Encrypt on, certificate checked."""
    assert build_connection_string(_TARGET, "ODBC Driver 18 for SQL Server") == (
        "DRIVER={ODBC Driver 18 for SQL Server};SERVER=db.example.com,1433;DATABASE=sales;"
        "UID=etl;PWD={p;w}}d=S3cret};Encrypt=yes;TrustServerCertificate=no"
    )


def test_driver_18_connection_string_without_encryption_or_port() -> None:
    """encrypt=False and trust_server_certificate=True; no port means the driver's default."""
    target = SqlServerTarget(
        server="localhost",
        username="sa",
        password="x",
        encrypt=False,
        trust_server_certificate=True,
        extra=(("ApplicationIntent", "ReadOnly"),),
    )
    assert build_connection_string(target, "ODBC Driver 17 for SQL Server") == (
        "DRIVER={ODBC Driver 17 for SQL Server};SERVER=localhost;UID=sa;PWD={x};"
        "Encrypt=no;TrustServerCertificate=yes;ApplicationIntent=ReadOnly"
    )


def test_freetds_connection_string() -> None:
    """FreeTDS: separate PORT, TDS 7.4, UTF-8 client charset, Encryption=require."""
    assert build_connection_string(_TARGET, "FreeTDS") == (
        "DRIVER={FreeTDS};SERVER=db.example.com;PORT=1433;DATABASE=sales;UID=etl;"
        "PWD={p;w}}d=S3cret};TDS_Version=7.4;ClientCharset=UTF-8;Encryption=require"
    )


def test_freetds_without_encryption_requests_it() -> None:
    """encrypt=False maps to FreeTDS's `request` (encrypt when the server can), as Encrypt=no."""
    target = SqlServerTarget(server="h", database="d", encrypt=False)
    assert build_connection_string(target, "FreeTDS") == (
        "DRIVER={FreeTDS};SERVER=h;PORT=1433;DATABASE=d;TDS_Version=7.4;ClientCharset=UTF-8;"
        "Encryption=request"
    )


_V17, _V18 = "ODBC Driver 17 for SQL Server", "ODBC Driver 18 for SQL Server"


@pytest.mark.parametrize(
    ("installed", "chosen"),
    [
        (["FreeTDS", _V17, _V18], _V18),
        (["SQLite3", _V17, "FreeTDS"], _V17),
        (["PostgreSQL Unicode", "FreeTDS"], "FreeTDS"),
    ],
)
def test_choose_driver_prefers_microsoft_then_freetds(installed: list[str], chosen: str) -> None:
    """Driver 18, else 17, else FreeTDS, whatever order pyodbc.drivers() lists them in."""
    assert choose_driver(installed) == chosen


def test_choose_driver_without_any_names_what_is_missing() -> None:
    with pytest.raises(DataflowConnectionError, match="no SQL Server ODBC driver installed"):
        choose_driver(["SQLite3"])


def test_parse_url_reads_every_part() -> None:
    """User and password are percent-decoded; query keys are case-insensitive; extras pass on."""
    target = parse_mssql_url(
        "mssql://etl:p%3Bw%7Dd%3DS3cret@db.example.com:1433/sales"
        "?driver=FreeTDS&ENCRYPT=no&TrustServerCertificate=yes&ApplicationIntent=ReadOnly"
    )
    assert target == SqlServerTarget(
        server="db.example.com",
        port=1433,
        database="sales",
        username="etl",
        password=_SECRET,
        driver="FreeTDS",
        encrypt=False,
        trust_server_certificate=True,
        extra=(("ApplicationIntent", "ReadOnly"),),
    )
    assert _SECRET not in repr(target)


@pytest.mark.parametrize(
    "url", ["postgres://u:pw@h/db", "mssql:///nohost", "mssql://h/db?encrypt=maybe"]
)
def test_parse_url_rejects_what_it_cannot_read(url: str) -> None:
    with pytest.raises(ValueError, match="SQL Server URL"):
        parse_mssql_url(url)


def test_constructor_forms_and_reprs_hide_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keywords, a URL (also passed as server=) and a raw connection string all work."""
    installed = SimpleNamespace(drivers=lambda: ["ODBC Driver 17 for SQL Server"])
    monkeypatch.setattr(_mssql, "load_pyodbc", lambda: installed)  # no unixODBC needed
    by_keywords = MicrosoftSQLServerConnection(
        server="db.example.com", port=1433, database="sales", username="etl", password=_SECRET
    )
    by_url = MicrosoftSQLServerConnection("mssql://etl:secret-in-url@db.example.com/sales")
    url_as_server = MicrosoftSQLServerConnection(server="mssql://etl:secret-in-url@h/sales")
    escaped = _SECRET.replace("}", "}}")
    raw = MicrosoftSQLServerConnection(f"DRIVER={{FreeTDS}};SERVER=h;UID=sa;PWD={{{escaped}}}")
    shown = "mssql://etl@db.example.com:1433/sales"
    assert repr(by_keywords) == f"MicrosoftSQLServerConnection('{shown}')"
    assert repr(by_url) == "MicrosoftSQLServerConnection('mssql://etl@db.example.com/sales')"
    assert repr(raw) == "MicrosoftSQLServerConnection('DRIVER=FreeTDS;SERVER=h;UID=sa;PWD=***')"
    for conn in (by_keywords, by_url, url_as_server, raw):
        assert _SECRET not in repr(conn) and "secret-in-url" not in repr(conn)
    assert by_keywords._odbc_string().startswith("DRIVER={ODBC Driver 17 for SQL Server};")


def test_constructor_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="needs a URL or server="):
        MicrosoftSQLServerConnection()
    with pytest.raises(ValueError, match="needs a URL or server="):
        MicrosoftSQLServerConnection("mssql://h/db", server="h")


def test_unreachable_server_through_freetds_is_one_clear_line() -> None:
    """A refused connection (real FreeTDS driver) names the target and never the password."""
    require_odbc_driver("FreeTDS")
    conn = MicrosoftSQLServerConnection(
        server="127.0.0.1",
        port=1,
        database="master",
        username="sa",
        password=_SECRET,
        driver="FreeTDS",
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    with pytest.raises(DataflowConnectionError) as caught:
        conn.connect()
    message = str(caught.value)
    assert message.startswith("cannot connect to mssql://sa@127.0.0.1:1/master [08S01]: ")
    assert "\n" not in message
    assert _SECRET not in message and _SECRET not in repr(caught.value)


def test_quoting_identifiers() -> None:
    assert quote_name("odd]name") == "[odd]]name]"
    assert quote_table("dbo.items") == "[dbo].[items]"


def test_merge_upsert_sql() -> None:
    """Stage with the target's column types, then one MERGE under HOLDLOCK."""
    sql = upsert_sql("dbo.items", ["id", "name", "price"], ["id"])
    assert sql.create == (
        "SELECT [id], [name], [price] INTO #dataflow_upsert FROM [dbo].[items] WHERE 1 = 0"
        " UNION ALL SELECT [id], [name], [price] FROM [dbo].[items] WHERE 1 = 0;"
    )
    assert sql.stage == "INSERT INTO #dataflow_upsert ([id], [name], [price]) VALUES (?, ?, ?);"
    assert sql.apply == (
        "MERGE INTO [dbo].[items] WITH (HOLDLOCK) AS target USING #dataflow_upsert AS source"
        " ON target.[id] = source.[id]"
        " WHEN MATCHED THEN UPDATE SET target.[name] = source.[name],"
        " target.[price] = source.[price]"
        " WHEN NOT MATCHED BY TARGET THEN INSERT ([id], [name], [price])"
        " VALUES (source.[id], source.[name], source.[price]);",
    )
    assert sql.drop == "DROP TABLE #dataflow_upsert;"


def test_update_then_insert_upsert_sql() -> None:
    """The UPDATE and INSERT hold UPDLOCK + SERIALIZABLE range locks on a composite key."""
    sql = upsert_sql("items", ["shop", "sku", "qty"], ["shop", "sku"], "update_insert")
    on = "target.[shop] = source.[shop] AND target.[sku] = source.[sku]"
    assert sql.apply == (
        "UPDATE target SET target.[qty] = source.[qty] FROM [items] AS target"
        f" WITH (UPDLOCK, SERIALIZABLE) INNER JOIN #dataflow_upsert AS source ON {on};",
        "INSERT INTO [items] ([shop], [sku], [qty]) SELECT source.[shop], source.[sku],"
        " source.[qty] FROM #dataflow_upsert AS source WHERE NOT EXISTS (SELECT 1 FROM [items]"
        f" AS target WITH (UPDLOCK, SERIALIZABLE) WHERE {on});",
    )


def test_keys_only_upsert_only_inserts() -> None:
    """With no column besides the keys, there is nothing to update."""
    merge = upsert_sql("tags", ["tag"], ["tag"]).apply[0]
    assert "WHEN MATCHED" not in merge
    assert len(upsert_sql("tags", ["tag"], ["tag"], "update_insert").apply) == 1


def test_upsert_sql_refuses_keys_outside_columns() -> None:
    with pytest.raises(ValueError, match="missing: \\['id'\\]"):
        upsert_sql("t", ["name"], ["id"])


class _Recorder(MicrosoftSQLServerConnection):
    """Records the statements an upsert sends instead of sending them."""

    def __init__(self) -> None:
        super().__init__(server="h", database="d")
        self.sent: list[tuple[str, Any]] = []

    def execute(self, sql: str, params: Sequence[Any] = (), **_: Any) -> int:
        self.sent.append((sql, None))
        return 2 if sql.startswith("MERGE") else -1

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]], **_: Any) -> None:
        self.sent.append((sql, list(seq_of_params)))

    def atomic(self, body: Callable[[], T], *, idempotent: bool = False) -> T:
        self.sent.append(("BEGIN", idempotent))
        return body()


def test_upsert_runs_stage_merge_drop_in_one_atomic_unit() -> None:
    """Rows are deduplicated by key (last wins), staged, merged and dropped, idempotently."""
    conn = _Recorder()
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 1, "name": "c"}]
    assert conn.upsert("items", rows, keys=["id"]) == 2
    statements = [sql.split(" ")[0] for sql, _ in conn.sent]
    assert statements == ["BEGIN", "SELECT", "INSERT", "MERGE", "DROP"]
    assert conn.sent[0] == ("BEGIN", True)
    assert conn.sent[2][1] == [(1, "c"), (2, "b")]


def test_upsert_takes_the_seed_filters_and_data_form() -> None:
    """`upsert("t", filters={"id": 7}, data=record)`: the filter's keys are the match keys."""
    conn = _Recorder()
    conn.upsert("items", filters={"id": 7}, data={"name": "x"})
    merge = next(sql for sql, _ in conn.sent if sql.startswith("MERGE"))
    assert "ON target.[id] = source.[id]" in merge
    assert conn.sent[2][1] == [(7, "x")]


def test_upsert_rows_must_share_columns() -> None:
    with pytest.raises(ValueError, match="same columns"):
        _Recorder().upsert("t", [{"id": 1, "a": 1}, {"id": 2, "b": 2}], keys=["id"])


# -- live: a real SQL Server -----------------------------------------------------------------

_LIVE_URL = os.environ.get("DATAFLOW_TEST_MSSQL_URL", "")
live = pytest.mark.skipif(
    not _LIVE_URL, reason="DATAFLOW_TEST_MSSQL_URL is not set: no SQL Server to test against"
)


@pytest.fixture
def mssql() -> Iterator[MicrosoftSQLServerConnection]:
    conn = MicrosoftSQLServerConnection(_LIVE_URL)
    conn.connect()
    yield conn
    conn.disconnect()


@pytest.fixture
def items(mssql: MicrosoftSQLServerConnection) -> Iterator[str]:
    name = f"items_{uuid.uuid4().hex[:10]}"
    mssql.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, name NVARCHAR(50), at DATETIME2)")
    yield name
    mssql.execute(f"DROP TABLE {name}")


@live
@pytest.mark.live
def test_live_fetch_with_parameters(mssql: MicrosoftSQLServerConnection) -> None:
    assert mssql.fetch("SELECT ? AS a, N'é' AS b", (41,)) == [{"a": 41, "b": "é"}]


@live
@pytest.mark.live
def test_live_executemany_fast_path(mssql: MicrosoftSQLServerConnection, items: str) -> None:
    """Microsoft's driver gets fast_executemany; 10k rows go in, microseconds intact."""
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    rows = [(i, f"n{i}", moment) for i in range(10_000)]
    mssql.executemany(f"INSERT INTO {items} (id, name, at) VALUES (?, ?, ?)", rows)
    if "msodbcsql" in mssql._driver:
        assert mssql._fast_allowed()
    assert mssql.fetch(f"SELECT count(*) AS n, max(at) AS at FROM {items}") == [
        {"n": 10_000, "at": moment}
    ]


@live
@pytest.mark.live
@pytest.mark.parametrize("strategy", ["merge", "update_insert"])
def test_live_upsert_inserts_then_updates(
    mssql: MicrosoftSQLServerConnection, items: str, strategy: Any
) -> None:
    """The staged upsert inserts new keys and updates existing ones, set-based.

    Non-ASCII text checks the fast_executemany path into the temp table (pyodbc issue 295).
    """
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert mssql.upsert(items, rows, keys=["id"], strategy=strategy) == 2
    changed = [{"id": 2, "name": "B"}, {"id": 3, "name": "çé€"}]
    assert mssql.upsert(items, changed, keys=["id"], strategy=strategy) == 2
    names = mssql.fetch(f"SELECT id, name FROM {items} ORDER BY id")
    assert names == [{"id": 1, "name": "a"}, {"id": 2, "name": "B"}, {"id": 3, "name": "çé€"}]


@live
@pytest.mark.live
def test_live_cancel_stops_waitfor(mssql: MicrosoftSQLServerConnection) -> None:
    """cancel() from another thread ends a WAITFOR DELAY long before it would."""
    threading.Timer(0.5, mssql.cancel).start()
    started = time.monotonic()
    with pytest.raises(QueryCancelledError):
        mssql.execute("WAITFOR DELAY '00:00:30'")
    assert time.monotonic() - started < 3
    assert mssql.fetch("SELECT 1 AS one") == [{"one": 1}]
