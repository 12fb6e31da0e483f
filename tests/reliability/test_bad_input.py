"""The bad-input catalogue: what a user gets wrong, and what `python -m dataflow` says about it.

Each case runs the real CLI on a workflow written for it and checks the exact one-line message
on stderr, the exit code (2 bad input, 1 a start that failed against a server), and that the
password the workflow holds appears nowhere in the output. Every workflow here holds one.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests._mockupdb_peer import command_error, open_mock_mongo
from tests._peers import require_odbc_driver
from tests._pg import PG_PORT, PgAdmin, pg_connection_string, unique_app
from tests.reliability._proc import run_cli, write_workflow

pytestmark = pytest.mark.slow

PASSWORD = "Pa55-w0rd-XYZ"
HOLDS_A_PASSWORD = f"""
from dataflow.connection import OdbcConnection

warehouse = OdbcConnection("DRIVER={{PostgreSQL Unicode}};SERVER=db;UID=etl;PWD={PASSWORD}")
"""

MACROS = "(use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"
# Invalid cron expressions and what the CLI says: `dataflow: error: invalid cron expression
# '<expression>': <reason>`, exit 2.
CRON_ERRORS = [
    ("61 * * * *", "minute: 61 is out of range 0-59"),
    ("0,61 * * * *", "minute: 61 is out of range 0-59"),
    ("99999999999999999999 * * * *", "minute: 99999999... (20 digits) is out of range 0-59"),
    ("* 24 * * *", "hour: 24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
    ("* * 32 * *", "day-of-month: 32 is out of range 1-31"),
    ("* * * 0 *", "month: 0 is out of range 1-12"),
    ("* * * 13 *", "month: 13 is out of range 1-12"),
    ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
    ("60 * * * * *", "second: 60 is out of range 0-59"),
    ("0 0 1 * * 2026", "day-of-week: 2026 is out of range 0-7"),  # a year field: no such thing
    ("5-1 * * * *", "minute: range 5-1 is reversed (start after end)"),
    ("* * * * 7-1", "day-of-week: range 7-1 is reversed (start after end)"),
    ("* * * FOO *", "month: unknown name 'FOO' (use JAN-DEC or numbers)"),
    ("* * * JAN-FOO *", "month: unknown name 'FOO' (use JAN-DEC or numbers)"),
    ("* * * * FUNDAY", "day-of-week: unknown name 'FUNDAY' (use SUN-SAT or numbers)"),
    ("MON * * * *", "minute: 'MON' is not a number"),
    ("a * * * *", "minute: 'a' is not a number"),
    ("*/0 * * * *", "minute: step must be at least 1, got 0"),
    ("*/x * * * *", "minute: step 'x' is not a number"),
    ("1,,2 * * * *", "minute: empty list item"),
    ("5$ * * * *", "minute: unexpected character '$' in '5$'"),
    ("1.5 * * * *", "minute: unexpected character '.' in '1.5'"),
    ("*/ * * * *", "minute: malformed item '*/'"),
    ("-5 * * * *", "minute: malformed item '-5'"),
    ("1- * * * *", "minute: malformed item '1-'"),
    ("1-2-3 * * * *", "minute: malformed item '1-2-3'"),
    ("*/5/2 * * * *", "minute: malformed item '*/5/2'"),
    ("*/-1 * * * *", "minute: malformed item '*/-1'"),
    ("0 0 * * MON-", "day-of-week: malformed item 'MON-'"),
    ("0 0 30 2 *", "day-of-month: day 30 never occurs in the selected months"),
    ("0 0 31 4,6,9,11 *", "day-of-month: day 31 never occurs in the selected months"),
    ("L * * * *", "minute: 'L' is not a number"),  # Quartz extensions are not cron
    ("0 0 15W * *", "day-of-month: '15W' is not a number"),
    ("0 0 ? * MON", "day-of-month: unexpected character '?' in '?'"),
    ("0 0 * * MON#2", "day-of-week: unexpected character '#' in 'MON#2'"),
    ("~ * * * *", "minute: unexpected character '~' in '~'"),  # cronie's random ranges
    ("* * * *", "expected 5 fields (or 6 with a leading seconds field), got 4"),
    ("* * * * * * *", "expected 5 fields (or 6 with a leading seconds field), got 7"),
    ("", "expected 5 fields (or 6 with a leading seconds field), got 0"),
    ("   ", "expected 5 fields (or 6 with a leading seconds field), got 0"),
    ("@reboot", f"unknown macro '@reboot' {MACROS}"),  # use @startup
    ("@every 5m", f"unknown macro '@every 5m' {MACROS}"),
]

WORKFLOW_ERRORS = {
    "wrong signature (cron)": (
        """
        class Shop(Workflow):
            @cronjob("*/5 * * * *")
            def export(self, orders):
                pass
        """,
        "Shop.export: @cronjob handler must accept no arguments (missing a required argument: "
        "'orders')",
    ),
    "wrong signature (change stream)": (
        f"""
        class Shop(Workflow):
            @mongodb_change_stream("mongodb://etl:{PASSWORD}@db.internal/", "shop", "orders")
            def orders(self):
                pass
        """,
        "Shop.orders: @mongodb_change_stream handler must accept change_event (too many "
        "positional arguments)",
    ),
    "unknown operation type": (
        f"""
        class Shop(Workflow):
            @mongodb_change_stream("mongodb://etl:{PASSWORD}@db.internal/", "shop", "orders",
                                   operation_types=["upsert"])
            def orders(self, change):
                pass
        """,
        "@mongodb_change_stream: operation type 'upsert' is not a MongoDB change event: use "
        "create, createIndexes, delete, drop, dropDatabase, dropIndexes, insert, invalidate, "
        "modify, refineCollectionShardKey, rename, replace, reshardCollection, shardCollection, "
        "update",
    ),
    "unknown timezone": (
        """
        class Shop(Workflow):
            @cronjob("0 2 * * *", timezone="Mars/Olympus_Mons")
            def export(self):
                pass
        """,
        "@cronjob('0 2 * * *'): unknown timezone 'Mars/Olympus_Mons': use an IANA name such as "
        "'Europe/Berlin'",
    ),
    "mistyped URI": (
        f"""
        class Shop(Workflow):
            @mongodb_change_stream("mongodb:/etl:{PASSWORD}@db.internal/", "shop", "orders")
            def orders(self, change):
                pass
        """,
        "@mongodb_change_stream: 'mongodb:/etl:***@db.internal/' is neither a mongodb:// URI "
        "nor a setting name (an environment variable name such as 'CONRAD_MONGODB_URL')",
    ),
    "missing setting (read by the workflow)": (
        """
        class Shop(Workflow):
            def __init__(self):
                self.url = require_env("SHOP_SQL_URL")

            @cronjob("0 2 * * *")
            def export(self):
                pass
        """,
        "missing setting SHOP_SQL_URL: set the environment variable SHOP_SQL_URL",
    ),
    "missing setting (a change stream's URL)": (
        """
        class Shop(Workflow):
            @mongodb_change_stream("SHOP_MONGODB_URL", "shop", "orders")
            def orders(self, change):
                pass
        """,
        "trigger 'orders' failed: SettingsError: missing setting SHOP_MONGODB_URL: set the "
        "environment variable SHOP_MONGODB_URL",
    ),
    "no triggers": (
        """
        class Shop(Workflow):
            def export(self):
                pass
        """,
        "workflow 'shop' declares no triggers: decorate a function or method with @startup, "
        "@cronjob(...) or @mongodb_change_stream(...)",
    ),
}

IMPORTS = """
from dataflow import Workflow, cronjob, mongodb_change_stream, require_env
"""


def check_one_line(result: subprocess.CompletedProcess[str], message: str, code: int) -> None:
    """Exit `code`; stderr is exactly `dataflow: error: <message>`; no password anywhere."""
    assert result.returncode == code, result.stderr
    assert result.stderr.splitlines() == [f"dataflow: error: {message}"]
    assert PASSWORD not in result.stdout + result.stderr


def write_shop(project: Path, body: str) -> None:
    write_workflow(project, "shop", HOLDS_A_PASSWORD + IMPORTS + body)


@pytest.mark.parametrize(("expression", "reason"), CRON_ERRORS, ids=[e for e, _ in CRON_ERRORS])
def test_invalid_cron_expression(tmp_path: Path, expression: str, reason: str) -> None:
    write_shop(tmp_path, f"\n\n@cronjob({expression!r})\ndef export():\n    pass\n")
    result = run_cli(tmp_path, "run", "shop")
    check_one_line(result, f"invalid cron expression {expression!r}: {reason}", 2)


@pytest.mark.parametrize("case", list(WORKFLOW_ERRORS))
def test_invalid_workflow(tmp_path: Path, case: str) -> None:
    body, message = WORKFLOW_ERRORS[case]
    write_shop(tmp_path, body.replace("\n        ", "\n"))
    result = run_cli(tmp_path, "run", "shop")
    check_one_line(result, message, 2)


def test_unknown_workflow(tmp_path: Path) -> None:
    write_shop(tmp_path, "\n\n@cronjob('0 2 * * *')\ndef export():\n    pass\n")
    result = run_cli(tmp_path, "run", "shpo")
    check_one_line(
        result,
        "unknown workflow 'shpo': available in workflows/: shop; packaged examples: "
        "conrad, demo (or give a dotted module, module:Class, or a .py path)",
        2,
    )


def test_no_workflow_given(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", WORKFLOW="")
    check_one_line(result, "no workflow given: run `python -m dataflow NAME` or set WORKFLOW", 2)


def test_unknown_timezone_setting(tmp_path: Path) -> None:
    write_shop(tmp_path, "\n\n@cronjob('0 2 * * *')\ndef export():\n    pass\n")
    result = run_cli(tmp_path, "run", "shop", DATAFLOW_TIMEZONE="Mars/Olympus_Mons")
    check_one_line(
        result,
        "DATAFLOW_TIMEZONE='Mars/Olympus_Mons' is not a valid time zone: "
        "use an IANA name such as 'Europe/Berlin'",
        2,
    )


def test_syntax_error_in_a_workflow_file(tmp_path: Path) -> None:
    """One line saying what and where, then the user's own traceback (the offending source
    line shown, with its password masked); no importlib or dataflow frames."""
    write_workflow(
        tmp_path,
        "shop",
        IMPORTS
        + (
            f'\nsource = MongoDB("mongodb://etl:{PASSWORD}@db.internal/shop"\n\n'
            "@cronjob('0 2 * * *')\ndef export():\n    pass\n"
        ),
    )
    result = run_cli(tmp_path, "run", "shop")
    first, *traceback = result.stderr.splitlines()
    assert result.returncode == 2
    assert first == (
        "dataflow: error: workflow 'workflows/shop.py' failed to import: "
        "SyntaxError: '(' was never closed (workflows/shop.py, line 4)"
    )
    assert traceback[0] == "Traceback (most recent call last):"
    assert '    source = MongoDB("mongodb://etl:***@db.internal/shop"' in traceback
    assert traceback[-1] == "SyntaxError: '(' was never closed"
    assert "importlib" not in result.stderr and "dataflow/_cli/loader.py" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_unreachable_host(tmp_path: Path) -> None:
    """Nothing listens on the port: the change stream cannot start; exit 1 within the server
    selection timeout, the URI shown with its password masked."""
    port = _closed_port()
    uri = f"mongodb://etl:{PASSWORD}@127.0.0.1:{port}/?serverSelectionTimeoutMS=1000"
    write_shop(
        tmp_path,
        f"""
class Shop(Workflow):
    @mongodb_change_stream({uri!r}, "shop", "orders")
    def orders(self, change):
        pass
""",
    )
    result = run_cli(tmp_path, "run", "shop")
    check_one_line(
        result,
        "trigger 'orders' failed: DataflowConnectionError: MongoDB "
        f"mongodb://etl:***@127.0.0.1:{port}/: connect: 127.0.0.1:{port}: "
        "[Errno 111] Connection refused",
        1,
    )


def test_unreachable_sql_server(tmp_path: Path) -> None:
    require_odbc_driver("PostgreSQL Unicode")  # the driver's own words are what is checked
    port = _closed_port()
    write_shop(tmp_path, _STARTUP_CONNECT.format(connection=_odbc("etl", port)))
    result = run_cli(tmp_path, "run", "shop")
    prefix = (
        "dataflow: error: startup handler 'connect' failed: DataflowConnectionError: "
        f"cannot connect to PostgreSQL Unicode at etl@127.0.0.1:{port}/test [08001]: "
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(prefix) and "Connection refused" in line  # the driver's own words
    assert PASSWORD not in result.stdout + result.stderr


def test_wrong_credentials_mongodb(tmp_path: Path) -> None:
    """The server refuses the login (error 18)."""
    with open_mock_mongo(replica_set="rs0") as mongo:
        mongo.always("saslStart", command_error(18, "Authentication failed."))
        uri = mongo.url("shop", userinfo=f"etl:{PASSWORD}")
        write_shop(
            tmp_path,
            f"""
class Shop(Workflow):
    @mongodb_change_stream({uri!r}, "shop", "orders")
    def orders(self, change):
        pass
""",
        )
        result = run_cli(tmp_path, "run", "shop")
    check_one_line(
        result,
        "trigger 'orders' failed: DataflowConnectionError: MongoDB "
        f"mongodb://etl:***@127.0.0.1:{mongo.port}/shop: connect: "
        "Authentication failed.",
        1,
    )


def test_wrong_credentials_sql(tmp_path: Path) -> None:
    """The server refuses the login (PostgreSQL here: trust auth, so an unknown role)."""
    require_odbc_driver("PostgreSQL Unicode")
    PgAdmin(unique_app()).close()
    write_shop(tmp_path, _STARTUP_CONNECT.format(connection=_odbc("nobody", PG_PORT)))
    result = run_cli(tmp_path, "run", "shop")
    prefix = (
        "dataflow: error: startup handler 'connect' failed: DataflowConnectionError: "
        f"cannot connect to PostgreSQL Unicode at nobody@127.0.0.1:{PG_PORT}/test [08001]: "
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(prefix) and 'role "nobody" does not exist' in line
    assert PASSWORD not in result.stdout + result.stderr


_STARTUP_CONNECT = """
from dataflow import startup
from dataflow.connection import OdbcConnection


class Shop(Workflow):
    db = OdbcConnection({connection!r}, connect_timeout=2)

    @startup
    def connect(self):
        self.db.connect()

    @cronjob("0 2 * * *")
    def export(self):
        pass
"""


def _odbc(user: str, port: int) -> str:
    return pg_connection_string(unique_app(), user=user, port=port, PWD=PASSWORD)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
