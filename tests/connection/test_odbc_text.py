"""ODBC text: connection strings parsed, quoted, redacted and described; SQLSTATEs classified."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dataflow._core.redact import odbc_value, parse_odbc, redact_connection_string, secrets_in
from dataflow.connection._odbc_text import classify, describe_odbc, sqlstate_of
from dataflow.connection._sql_core import ErrorKind
from tests._peers import require_pyodbc

_KEYS = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True)
_VALUES = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


def test_parse_reads_braced_values_whole() -> None:
    text = "DRIVER={ODBC Driver 18 for SQL Server}; SERVER = h,1433 ;PWD={a;b}}c};Encrypt=yes"
    assert parse_odbc(text) == [
        ("DRIVER", "ODBC Driver 18 for SQL Server"),
        ("SERVER", "h,1433"),
        ("PWD", "a;b}c"),
        ("Encrypt", "yes"),
    ]


@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=6))
def test_quoted_values_parse_back(pairs: list[tuple[str, str]]) -> None:
    """Whatever a value holds, `odbc_value` quotes it so that parsing gives it back."""
    text = ";".join(f"{key}={odbc_value(value)}" for key, value in pairs)
    assert parse_odbc(text) == pairs


@given(_VALUES.filter(bool))
def test_redaction_hides_any_password(password: str) -> None:
    """No password survives redaction, whatever characters it holds."""
    redacted = redact_connection_string(f"DRIVER={{X}};UID=u;PWD={odbc_value(password)};DB=d")
    assume(password not in "DRIVER=X;UID=u;PWD=***;DB=d")
    assert redacted == "DRIVER=X;UID=u;PWD=***;DB=d"
    assert secrets_in(f"UID=u;Password={odbc_value(password)}") == [password]


def test_redaction_of_a_malformed_password_hides_the_rest() -> None:
    """An unclosed (or badly escaped) brace: the password's end is unknown, so all is hidden."""
    text = "DRIVER={FreeTDS};UID=sa;PWD={p;w}d=S3cret};SERVER=h"
    assert redact_connection_string(text) == "DRIVER=FreeTDS;UID=sa;PWD=***"
    assert any("S3cret" in secret for secret in secrets_in(text))


@pytest.mark.parametrize(
    ("text", "described"),
    [
        (
            "DRIVER={PostgreSQL Unicode};SERVER=db;PORT=5432;DATABASE=test;UID=pg;PWD=x",
            "PostgreSQL Unicode at pg@db:5432/test",
        ),
        ("DRIVER={SQLite3};Database=/tmp/a.db", "SQLite3 at /tmp/a.db"),
        ("DSN=warehouse", "ODBC at warehouse"),
    ],
)
def test_describe_names_the_target_without_secrets(text: str, described: str) -> None:
    assert describe_odbc(text) == described


# pyodbc's classes are looked up in the test (after `require_pyodbc`), so collecting this module
# needs no unixODBC and the tests that do not raise driver errors run without it.
@pytest.mark.parametrize(
    ("error_class", "args", "kind"),
    [
        ("OperationalError", ("08S01", "[08S01] Communication link failure"), ErrorKind.CONNECTION),
        ("OperationalError", ("08001", "[08001] cannot connect"), ErrorKind.CONNECTION),
        ("Error", ("57P01", "[57P01] FATAL: terminating connection"), ErrorKind.CONNECTION),
        ("Error", ("40001", "[40001] deadlock victim (1205) (SQLExecDirectW)"), ErrorKind.CONFLICT),
        ("Error", ("HY000", "[HY000] chosen as deadlock victim (1205)"), ErrorKind.CONFLICT),
        ("OperationalError", ("HYT00", "[HYT00] Query timeout expired"), ErrorKind.TIMEOUT),
        ("Error", ("HY008", "[HY008] Operation canceled"), ErrorKind.CANCELLED),
        ("Error", ("57014", "[57014] canceling statement"), ErrorKind.CANCELLED),
        ("IntegrityError", ("23000", "[23000] duplicate key"), ErrorKind.OTHER),
    ],
)
def test_classify_by_sqlstate_not_exception_class(
    error_class: str, args: tuple[str, str], kind: ErrorKind
) -> None:
    """A deadlock victim (40001) is a plain pyodbc.Error: only the SQLSTATE tells."""
    assert classify(getattr(require_pyodbc(), error_class)(*args)) is kind


def test_classify_an_error_without_sqlstate_as_other() -> None:
    assert classify(RuntimeError("no SQLSTATE here")) is ErrorKind.OTHER


def test_sqlstate_of_ignores_args_that_are_not_one() -> None:
    assert sqlstate_of(require_pyodbc().Error("40001", "x")) == "40001"
    assert sqlstate_of(ValueError("a long message")) == ""
    assert sqlstate_of(ValueError()) == ""
