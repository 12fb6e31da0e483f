"""The secrets masker: whole passwords, in every form, without breaking the text around them."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from dataflow._cli.tables import print_json
from dataflow._core.logs import configure_logging, get_logger
from dataflow._core.redact import (
    redact_text,
    redact_url,
    register_secret,
    register_url,
    url_password,
)


def test_a_non_ascii_or_quoted_password_is_masked_in_json_logs() -> None:
    """JSON escapes `ä` and `"`: values are masked before rendering, so the escaped form of a
    password cannot slip through."""
    for password in ("pässwörd-1", 'pa"ss\\word-2', "ab\tcdef-3"):
        register_secret(password)
        out = io.StringIO()
        configure_logging("json", stream=out)
        try:
            get_logger().info("connecting", detail=f"auth with {password}")
        finally:
            structlog.reset_defaults()
        line = json.loads(out.getvalue())
        assert line["detail"] == "auth with ***"


def test_masking_never_breaks_json_answers() -> None:
    """An ODBC `PWD=` in one value hides that value's secret only: the JSON stays whole."""
    rows = [{"error": "login failed: DRIVER=x;SERVER=h;PWD=abc", "n": 1}, {"error": "", "n": 2}]
    out = io.StringIO()
    print_json(rows, stream=out)
    assert json.loads(out.getvalue()) == [
        {"error": "login failed: DRIVER=x;SERVER=h;PWD=***", "n": 1},
        {"error": "", "n": 2},
    ]


def test_a_password_is_masked_as_a_whole_word_only() -> None:
    """A password that is digits must not eat into a longer number, nor a word into a longer
    word (as `postgres` would into `postgresql://`). Registered secrets last for the process:
    these are unlike anything other tests print."""
    register_secret("918273")
    register_secret("pgsecretword")
    assert redact_text("rows 9182734, password 918273.") == "rows 9182734, password ***."
    assert redact_text("pgsecretwordql://h/db as pgsecretword") == "pgsecretwordql://h/db as ***"


def test_shapes_catch_what_was_never_registered() -> None:
    assert redact_text("DB_PASSWORD=hunter2 next") == "DB_PASSWORD=*** next"
    assert redact_text("redis://:hunter2@host:6379") == "redis://:***@host:6379"


def test_urls_with_unescaped_special_characters_are_read_without_urllib() -> None:
    url = "mongodb://etl:Xq7/Kp?w#1@db.internal:27017/shop"
    assert url_password(url) == "Xq7/Kp?w#1"
    assert redact_url(url) == "mongodb://etl:***@db.internal:27017/shop"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db/flows?password=Xq7Kpw9z",
        "postgresql://app@db/flows?sslmode=require&password=Xq7Kpw9z#frag",
        "postgresql://db/flows?user=app&sslpassword=Xq7Kpw9z",
        "postgresql://db/flows?PASSWORD=Xq7Kpw9z&user=app",
    ],
)
def test_a_password_in_a_url_query_is_masked_and_registered(url: str) -> None:
    """libpq takes `?password=`: the URL shown has `***`, and the registered secret is hidden
    in any text (a driver's error quoting it bare)."""
    assert "Xq7Kpw9z" not in redact_url(url) and "=***" in redact_url(url)
    register_url(url)
    assert redact_text("server said: bad password Xq7Kpw9z") == "server said: bad password ***"
